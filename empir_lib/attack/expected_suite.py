"""The worst-case suite on the expected accuracy of a randomised ensemble (issue 29).

Each **stage** proposes one point per image and reports the expected
accuracy there over R fresh draws (:mod:`empir_lib.attack.expected`, whose
docstring defines the quantity and how points are chosen).  The stages
(:func:`suite`), all at L-inf ``eps``:

1. ``apgd-ce``: APGD (:mod:`empir_lib.attack.apgd`) on the cross-entropy of
   the members' mean probability, averaged over S draws (EOT);
2. ``apgd-dlr``: APGD on the DLR loss of the mean logits, with EOT;
3. ``pgd-margin``: fixed-step PGD (2.5 eps / N per step) on the CW margin of
   the mean logits, with EOT;
4. ``member-<i>``: APGD-CE on member i alone, with EOT;
5. ``nearest``: APGD-CE on the **nearest-rounding** version of the ensemble
   (deterministic, Eq. 5), its point transferred to the randomised one;
6. ``fixed-draws``: APGD-CE on K frozen noise draws of every member
   (:func:`empir_lib.nets.stochastic.fixed_draw`, each a deterministic
   network), attacked as one ensemble of 3K members and transferred;
7. ``square``: ART's gradient-free Square attack on the mean over S draws of
   the members' mean probability.

The suite's APGD loop judges every iterate on a decision; here no iterate
is ever "broken" (the loss function reports the label as its decision), so
APGD runs its whole schedule and returns its best-loss iterate.  A targeted
stage is not included (the suite has none yet).  Every point is validated
(:func:`empir_lib.attack.validate.valid`: finite, in [0, 1], within eps); an
invalid point is replaced by the clean image and counted in the stage's
``invalid``.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..core import memo
from ..core.errors import EmpirError, check_choice, check_finite_number, check_positive_int
from ..core.files import atomic_write
from ..nets import ensemble as ens_mod
from ..nets import stochastic
from . import apgd, expected, objectives, validate
from .progress import chunk_bar

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="PyTorch not found")
    from art.attacks.evasion import SquareAttack
    from art.estimators.classification import TensorFlowV2Classifier

KINDS = ("apgd", "pgd", "nearest", "fixed-draws", "square")
FIXED_DRAWS = 4  # K frozen draws per member for the fixed-draws stage


def suite(ens: ens_mod.Ensemble, samples: int, n_iter: int, members: bool = True, square_queries: int = 100,
          square_samples: int = 8, fixed: int = FIXED_DRAWS, member_samples: int | None = None) -> list[dict]:
    """The stages in the order they run (module docstring), with S = ``samples`` and N = ``n_iter``.

    ``member_samples`` (default S) is the members' S: each member stage costs
    as much as a whole-ensemble stage (every member runs), so a budget may
    give them fewer samples; the record says which.
    """
    samples, n_iter = expected.check_samples(samples), check_positive_int(n_iter, "N (iterations)")
    member_eot = {**{"samples": samples, "n_iter": n_iter, "restarts": 1},
                  "samples": expected.check_samples(member_samples or samples)}
    eot = {"samples": samples, "n_iter": n_iter, "restarts": 1}
    specs = [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", **eot},
             {"name": "apgd-dlr", "kind": "apgd", "loss": "dlr_mean_logits", **eot},
             {"name": "pgd-margin", "kind": "pgd", "loss": "margin_mean_logits", "step_frac": 2.5 / n_iter, **eot}]
    if members and len(ens.members) > 1:
        specs += [{"name": f"member-{i}", "kind": "apgd", "loss": f"ce_member:{i}", **member_eot}
                  for i in range(len(ens.members))]
    specs += [{"name": "nearest", "kind": "nearest", "n_iter": n_iter, "restarts": 1},
              {"name": "fixed-draws", "kind": "fixed-draws", "draws": fixed, "n_iter": n_iter, "restarts": 1}]
    if square_queries:
        specs.append({"name": "square", "kind": "square", "queries": square_queries, "samples": square_samples})
    return specs


def autoattack_rand(samples: int = 20, n_iter: int = 100) -> list[dict]:
    """AutoAttack's ``rand`` version (Croce & Hein 2020): APGD-CE and APGD-DLR, 20 EOT samples, 100 iterations."""
    eot = {"samples": expected.check_samples(samples), "n_iter": n_iter, "restarts": 1}
    return [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", **eot},
            {"name": "apgd-dlr", "kind": "apgd", "loss": "dlr_mean_logits", **eot}]


def cost(spec: dict, members: int = 3) -> int:
    """Forward-backward passes of one member per image (a stage's cost, for the budget)."""
    if spec["kind"] in ("apgd", "pgd"):
        return spec["samples"] * spec["n_iter"] * spec["restarts"] * members
    if spec["kind"] == "nearest":
        return spec["n_iter"] * members
    if spec["kind"] == "fixed-draws":
        return spec["draws"] * spec["n_iter"] * members
    return spec["queries"] * spec["samples"] * members // 3  # forward passes only, a third of a step each


def _cached(ens: ens_mod.Ensemble, key: tuple, make):
    # One loss function per ensemble and stage: APGD traces its loop once per function.
    return memo.get("expected_suite.losses", (tuple(id(m) for m in ens.members), key), make, 64, keep=ens)


def _never_broken(f):
    """The loss of ``f``, with the label as its decision: APGD then returns its best-loss iterate."""

    def g(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return f(x, y)[0], tf.identity(y)

    return g


def surrogate(ens: ens_mod.Ensemble, spec: dict) -> ens_mod.Ensemble:
    """The deterministic ensemble a transfer stage attacks: nearest rounding, or K frozen draws per member."""
    def make():
        if spec["kind"] == "nearest":
            return ens_mod.make([stochastic.with_inference(m, "nearest") for m in ens.members], ens.rule,
                                [f"{n}-nearest" for n in ens.names])
        k = check_positive_int(spec["draws"], "K (frozen draws)")
        return ens_mod.make([stochastic.fixed_draw(m, seed=d) for d in range(k) for m in ens.members], ens.rule,
                            [f"{n}-draw{d}" for d in range(k) for n in ens.names])
    return _cached(ens, ("surrogate", spec["kind"], spec.get("draws")), make)


def _loss(ens: ens_mod.Ensemble, spec: dict):
    if spec["kind"] in ("nearest", "fixed-draws"):
        sur = surrogate(ens, spec)
        return _cached(ens, ("loss", spec["kind"], spec.get("draws")),
                       lambda: _never_broken(objectives.loss_fn(sur, "ce_mean_prob")))
    return _cached(ens, ("loss", spec["loss"], spec["samples"]),
                   lambda: _never_broken(objectives.loss_fn(ens, spec["loss"], spec["samples"], "draw")))


class _MeanScores(tf.Module):
    """The members' mean probability, averaged over S draws: Square's score (its argmax: the mean vote)."""

    def __init__(self, ens: ens_mod.Ensemble, samples: int):
        super().__init__()
        self.ens, self.samples = ens, samples

    def __call__(self, x, training=False):
        x = tf.convert_to_tensor(x, tf.float32)
        z = ens_mod.member_logits(self.ens, tf.tile(x, [self.samples, 1, 1, 1]))
        p = tf.reduce_mean(tf.nn.softmax(z, -1), 0)
        return tf.reduce_mean(tf.reshape(p, [self.samples, tf.shape(x)[0], -1]), 0)


def _square(ens: ens_mod.Ensemble, spec: dict, x: np.ndarray, y: np.ndarray, eps: float, seed: int) -> np.ndarray:
    np.random.seed(seed)  # ART's Square draws its squares from numpy's global generator
    clf = TensorFlowV2Classifier(model=_MeanScores(ens, spec["samples"]), nb_classes=ens.num_classes,
                                 input_shape=ens.input_shape, clip_values=(0.0, 1.0),
                                 loss_object=tf.keras.losses.SparseCategoricalCrossentropy())
    attack = SquareAttack(clf, norm=np.inf, eps=eps, max_iter=spec["queries"], nb_restarts=1,
                          batch_size=len(x), verbose=False)
    return attack.generate(x, y=np.eye(ens.num_classes, dtype=np.float32)[y])


def run_stage(ens: ens_mod.Ensemble, spec: dict, x: np.ndarray, y: np.ndarray, eps: float,
              draws: int = expected.DRAWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """One stage on a batch: (points, expected accuracy there over ``draws`` draws, invalid points)."""
    check_choice(spec.get("kind"), KINDS, "stage kind")
    x = np.asarray(x, np.float32)
    y = np.asarray(y).reshape(-1).astype(np.int64)
    best_x, best_p, invalid = x.copy(), np.full(len(y), np.inf), 0
    for r in range(spec.get("restarts", 1)):
        if spec["kind"] == "square":
            xa = _square(ens, spec, x, y, eps, seed + r)
        else:
            fixed = spec["kind"] == "pgd"
            out = apgd.run(_loss(ens, spec), x, y, eps, "linf", spec["n_iter"], 1, seed + 7919 * r,
                           step=spec["step_frac"] * eps if fixed else None, schedule=not fixed, momentum=not fixed)
            xa = out.x_adv
        ok = validate.valid(x, xa, {"norm": "linf", "eps": eps})
        invalid += int((~ok).sum())
        xa = np.where(ok[:, None, None, None], xa, x)
        p = expected.correct_rate(ens, xa, y, draws)
        better = p < best_p
        best_x[better], best_p[better] = xa[better], p[better]
    return best_x, best_p, invalid


def evaluate(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, eps: float, specs: list[dict],
             draws: int = expected.DRAWS, seed: int = 0, chunk: int = 50,
             state_path: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Every stage on ``(x, y)``; per image the worst case over the stages, re-estimated on fresh draws.

    Returns ``clean`` (per-image expected accuracy at the clean image),
    ``per_stage`` (n, stages; NaN where a stage did not attack the image),
    ``best_stage`` (0 = the clean image, j = stage j), ``robust`` (fresh draws
    at the chosen point), ``points`` and ``stats`` (per stage: attacked,
    seconds, invalid).  With ``state_path`` it saves after every chunk and resumes.
    """
    eps = check_finite_number(eps, "eps", 0.0, 1.0)
    draws = expected.effective_draws(ens, draws)
    chunk = check_positive_int(chunk, "chunk")
    if not specs:
        raise EmpirError("an expected-accuracy suite needs at least one stage; start from expected_suite.suite().")
    for s in specs:
        check_choice(s.get("kind"), KINDS, "stage kind")
    x = np.asarray(x, np.float32)
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if len(x) != len(y) or not len(y):
        raise EmpirError(f"{len(x)} images and {len(y)} labels: pass the same number, at least one.")
    config = {"members": list(ens.names), "eps": eps, "draws": draws, "stages": specs, "seed": seed, "n": len(y),
              "chunk": chunk}
    st = _load(state_path, config)
    if st is None:
        p0 = expected.correct_rate(ens, x, y, draws)
        per = np.full((len(y), len(specs) + 1), np.nan)
        per[:, 0] = p0
        st = {"per": per, "best_x": x.copy(), "best_p": p0.copy(), "best_stage": np.zeros(len(y), np.int64),
              "stage": 0, "pos": 0, "todo": np.zeros(0, np.int64), "stats": {}}
    for j, spec in enumerate(specs, start=1):
        if j <= st["stage"]:
            continue
        if st["pos"] == 0:
            st["todo"] = np.flatnonzero(st["best_p"] > 0)
        todo = st["todo"]
        stats = st["stats"].setdefault(spec["name"], {"attacked": int(len(todo)), "seconds": 0.0, "invalid": 0})
        for c in chunk_bar(range(st["pos"], len(todo), chunk), f"{spec['name']} ({len(todo)} images)", progress):
            idx = todo[c:c + chunk]
            t0 = time.perf_counter()
            xa, p, bad = run_stage(ens, spec, x[idx], y[idx], eps, draws, seed * 1_000_003 + j * 7919 + c)
            st["per"][idx, j] = p
            better = p < st["best_p"][idx]
            st["best_x"][idx[better]] = xa[better]
            st["best_p"][idx[better]] = p[better]
            st["best_stage"][idx[better]] = j
            stats["seconds"] += time.perf_counter() - t0
            stats["invalid"] += bad
            st["pos"] = c + chunk
            _save(state_path, config, st)
        st.update(stage=j, pos=0)
        _save(state_path, config, st)
    # The chosen point's value on fresh draws: the min over noisy estimates would be biased low.
    robust = expected.correct_rate(ens, st["best_x"], y, draws)
    return {"config": config, "clean": st["per"][:, 0], "per_stage": st["per"], "best_stage": st["best_stage"],
            "robust": robust, "points": st["best_x"], "stats": st["stats"], "stages": [s["name"] for s in specs]}


def _save(path, config: dict, st: dict) -> None:
    if path is None:
        return
    arrays = {"config": np.array(json.dumps(config, sort_keys=True)), "per": st["per"], "best_x": st["best_x"],
              "best_p": st["best_p"], "best_stage": st["best_stage"], "stage": np.array(st["stage"]),
              "pos": np.array(st["pos"]), "todo": st["todo"], "stats": np.array(json.dumps(st["stats"]))}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(path), lambda p: np.savez(open(p, "wb"), **arrays))


def _load(path, config: dict) -> dict | None:
    if path is None or not Path(path).is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        if json.loads(str(f["config"])) != json.loads(json.dumps(config, sort_keys=True)):
            raise EmpirError(f"{path} holds a partial run of another configuration; delete it to start again.")
        return {"per": f["per"].copy(), "best_x": f["best_x"].copy(), "best_p": f["best_p"].copy(),
                "best_stage": f["best_stage"].copy(), "stage": int(f["stage"]), "pos": int(f["pos"]),
                "todo": f["todo"].copy(), "stats": json.loads(str(f["stats"]))}
