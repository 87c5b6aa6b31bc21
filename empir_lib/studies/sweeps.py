"""Attack strength against precision: when quantisation helps and when it hurts (Gorsline, Smith & Merkel 2021).

Gorsline et al. (2021, abstract) report that for simple gradient attacks
quantisation can improve *or* degrade robustness depending on the attack
strength.  This module measures that on the zoo's wbits x abits grid
(Figures 1 and 3a's members, ``settings.GRID``) and the FP member: accuracy
against a list of eps, from 0 to Table 1's eps, for FGSM (Eq. 1) and PGD
(Eq. 4), computed two ways so a reader can tell real robustness from
gradient masking:

* **white-box**: the attack differentiates the member itself (its logits,
  true labels; the adaptive protocol's ``member:0``);
* **transfer**: adversarial images crafted on the FP member, evaluated on
  the member.  A member that resists its own gradient but not the FP
  member's is masking its gradient, not robust (Athalye et al. 2018,
  section 3; the suite's ``transfer-fp`` stage asks the same question).

PGD keeps Table 1's 40 steps and step-to-eps ratio at every eps (``eps_iter
= eps x table eps_iter / table eps``), so each point is the same attack
scaled, and starts at a random point clipped to the pixel box.

**The mechanism** (:func:`flip_fractions`): a k-bit input quantiser maps a
perturbation smaller than the distance to the nearest rounding boundary to
nothing; a larger one moves whole bins.  For each eps we count the share of
input pixels, and of every quantised layer's inputs, whose quantised code
changes when the image moves by eps along the FGSM direction or a random
sign: the fraction that rises with eps is the "attack strength" at which
quantisation stops absorbing the perturbation.

Results go to ``data/results/<dataset>/sweeps/``: ``whitebox-<member>-<attack>``,
``transfer-<attack>`` (all members on the FP member's images) and
``flips-<member>``, each JSON with provenance (:func:`empir_lib.studies.results.write_result`)
and per-image correctness bits in an ``.npz`` beside it (its sha256 in the
JSON).  An interrupted job resumes from its last finished eps (``runs/sweeps/``).
"""
from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from numpy.typing import ArrayLike

from ..attack import attacks, outcomes
from ..core import memo, partial, provenance, settings
from ..core.errors import EmpirError, check_choice, check_positive_int
from ..core.files import atomic_write, sha256
from ..nets import data, ensemble, models, zoo
from . import results

FOLDER = "sweeps"
ATTACKS = ("fgsm", "pgd")
N_EPS = 9            # 0 and eight positive values up to Table 1's eps
DIRECTIONS = ("fgsm", "random")
PIXEL_BITS = (1, 2, 4)
DATASETS = ("mnist", "cifar10")


def check_eps_list(eps: object) -> list[float]:
    """A non-empty, strictly increasing list of finite eps in [0, 1], or one sentence saying what is wrong."""
    try:
        values = [float(e) for e in eps]  # type: ignore[union-attr]
        bad_type = any(isinstance(e, bool) or not isinstance(e, numbers.Real) for e in eps)  # type: ignore
    except (TypeError, ValueError):
        values, bad_type = [], True
    problem = None
    if bad_type or not values:
        problem = "it must be a non-empty list of numbers"
    elif not all(math.isfinite(v) for v in values):
        problem = "it holds NaN or Inf"
    elif min(values) < 0:
        problem = f"it holds a negative eps ({min(values):g})"
    elif max(values) > 1:
        problem = f"it holds an eps above 1 ({max(values):g}), the whole pixel range"
    elif any(b <= a for a, b in zip(values, values[1:])):
        problem = "it is not sorted in increasing order without repeats"
    if problem:
        raise EmpirError(f"eps list {eps!r} is not usable: {problem}; pass increasing values in [0, 1], "
                         "e.g. sweeps.eps_grid(dataset).")
    return values


def eps_grid(dataset: str, k: int = N_EPS) -> list[float]:
    """``k`` evenly spaced eps from 0 to Table 1's FGSM eps for ``dataset`` (rounded to 6 decimals)."""
    k = check_positive_int(k, "k", 2)
    top = float(settings.get(dataset).attacks["fgsm"]["eps"])
    return [round(float(e), 6) for e in np.linspace(0.0, top, k)]


def attack_params(dataset: str, attack: str, eps: float) -> dict:
    """The attack at ``eps``: FGSM's single step, or PGD with Table 1's steps and step-to-eps ratio."""
    check_choice(attack, ATTACKS, "sweep attack")
    table = settings.get(dataset).attacks
    if attack == "fgsm":
        return attacks.check_params("fgsm", {"eps": eps})
    p = table["pgd"]
    return attacks.check_params("pgd", {"eps": eps, "eps_iter": round(eps * p["eps_iter"] / p["eps"], 8),
                                        "nb_iter": p["nb_iter"]})


def members(dataset: str) -> list[str]:
    """The swept members: the FP member first, then the wbits x abits grid (``settings.GRID``), by zoo id."""
    check_choice(dataset, DATASETS, "dataset with a precision grid")
    return [zoo.find(dataset)] + [zoo.find(dataset, w, a) for w, a in settings.GRID]


# --- accuracy against eps ----------------------------------------------------------------------------


def correct_against_eps(source: keras.Model, targets: list[keras.Model], x: ArrayLike, y: ArrayLike,
                        attack: str, eps_list: list[float], dataset: str, seed: int = 0, batch_size: int = 500,
                        done: list[np.ndarray] | None = None,
                        on_eps: Callable[[list], None] | None = None) -> np.ndarray:
    """Per image, is each target right on images attacked on ``source`` at each eps: (targets, eps, n) bools.

    White-box when ``targets == [source]``; transfer otherwise.  The attack
    is :func:`empir_lib.attack.attacks.compile_attack` on the source's logits
    (``member:0``, true labels).  eps 0 is the clean image.  ``done`` holds
    rows (targets, n) of eps already finished (resuming); ``on_eps(rows)`` is
    called after each eps with every row so far.
    """
    eps_list = check_eps_list(eps_list)
    x = models.check_images(x, source.input_shape[1:])
    y = np.asarray(y).reshape(-1).astype(np.int32)
    if len(y) != len(x) or not len(y):
        raise EmpirError(f"{len(x)} images and {len(y)} labels: pass the same number, at least one.")
    batch_size = check_positive_int(batch_size, "batch_size")
    src = ensemble.make([source])
    tgts = [ensemble.make([t]) for t in targets]
    rows = list(done or [])
    for j, eps in enumerate(eps_list):
        if j < len(rows):
            continue
        if eps == 0:
            xa = x
        else:
            run = attacks.compile_attack(src, attack, "member:0", attack_params(dataset, attack, eps))
            xa = np.concatenate([run(x[i:i + batch_size], y[i:i + batch_size], seed * 1_000_003 + j * 7919 + i)
                                 for i in range(0, len(x), batch_size)])
        rows.append(np.stack([ensemble.predict(t, xa, batch_size) == y for t in tgts]))
        if on_eps is not None:
            on_eps(rows)
    return np.stack(rows, 1)


# --- the mechanism: which quantised values an eps perturbation changes -----------------------------------


def _codes(a: tf.Tensor, bits: int) -> tf.Tensor:
    # Eq. 5's activation code: round((2^k - 1) clip(a, 0, 1)), the integer behind quantize_activations.
    return tf.round(tf.clip_by_value(a, 0.0, 1.0) * float(2**bits - 1))


def quantised_inputs(model: keras.Model) -> tuple[list[tuple[str, int]], keras.Model | None]:
    """(name, abits) of every layer that quantises its input, and a sub-model returning those inputs."""
    layers = [(name, abits) for name, _, abits in models.quantised_layers(model) if abits != settings.FULL_PRECISION]
    if not layers:
        return [], None
    sub = keras.Model(model.inputs, [model.get_layer(name).input for name, _ in layers])
    return layers, sub


def flip_fractions(model: keras.Model, x: ArrayLike, y: ArrayLike, eps_list: list[float], direction: str = "fgsm",
                   pixel_bits: tuple[int, ...] = PIXEL_BITS, seed: int = 0, batch_size: int = 500) -> dict:
    """Per eps, the share of quantised values that a perturbation of size eps changes.

    The image moves to ``clip(x + eps d, 0, 1)`` with ``d`` the sign of the
    gradient of the model's cross-entropy at the true label (``'fgsm'``, Eq. 1)
    or a random sign (``'random'``, seeded).  Returns ``pixels``: for each
    k in ``pixel_bits``, the share of input pixels whose k-bit code
    ``round((2^k - 1) x)`` changes; and ``layers``: for each quantised layer
    (:func:`empir_lib.nets.models.quantised_layers`), its ``abits`` and the share of
    its input values whose code changes (read with a Keras sub-model of the
    clean network).  Lists run over ``eps_list``.
    """
    check_choice(direction, DIRECTIONS, "direction")
    eps_list = check_eps_list(eps_list)
    x = models.check_images(x, model.input_shape[1:])
    y = np.asarray(y).reshape(-1).astype(np.int32)
    if len(y) != len(x) or not len(y):
        raise EmpirError(f"{len(x)} images and {len(y)} labels: pass the same number, at least one.")
    pixel_bits = tuple(quantize_bits(b) for b in pixel_bits)
    layers, sub = quantised_inputs(model)
    px = np.zeros((len(pixel_bits), len(eps_list)))
    ly = np.zeros((len(layers), len(eps_list)))
    n_px, n_ly = 0, np.zeros(len(layers))
    rng = np.random.RandomState(seed)
    for i in range(0, len(x), batch_size):
        xb = tf.constant(x[i:i + batch_size])
        if direction == "fgsm":
            d = tf.sign(attacks.ce_grad(lambda v: model(v, training=False), xb, tf.constant(y[i:i + batch_size])))
        else:
            d = tf.constant(rng.choice(np.array([-1.0, 1.0], np.float32), size=xb.shape))
        clean = [] if sub is None else _as_list(sub(xb, training=False))
        n_px += int(tf.size(xb))
        n_ly += [int(tf.size(c)) for c in clean]
        for j, eps in enumerate(eps_list):
            xp = tf.clip_by_value(xb + eps * d, 0.0, 1.0)
            for b, bits in enumerate(pixel_bits):
                px[b, j] += float(tf.reduce_sum(tf.cast(_codes(xp, bits) != _codes(xb, bits), tf.float64)))
            if sub is not None:
                for k, (a, (_, bits)) in enumerate(zip(_as_list(sub(xp, training=False)), layers)):
                    ly[k, j] += float(tf.reduce_sum(tf.cast(_codes(a, bits) != _codes(clean[k], bits), tf.float64)))
    return {"eps": eps_list, "direction": direction, "n": int(len(y)),
            "pixels": {str(b): (px[k] / n_px).round(6).tolist() for k, b in enumerate(pixel_bits)},
            "layers": {name: {"abits": bits, "fraction": (ly[k] / n_ly[k]).round(6).tolist()}
                       for k, (name, bits) in enumerate(layers)}}


def quantize_bits(bits: object) -> int:
    """A pixel quantiser's bits, 1..16 (32 would change nothing)."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or not 1 <= int(bits) <= 16:
        raise EmpirError(f"pixel bits {bits!r} must be an integer in 1..16.")
    return int(bits)


def _as_list(out: object) -> list:
    return list(out) if isinstance(out, (list, tuple)) else [out]


# --- jobs and results files ------------------------------------------------------------------------


def jobs(dataset: str, n: int, select_n: int | None = None) -> list[dict]:
    """The sweep jobs of ``dataset`` in the style of :func:`empir_lib.studies.reproduce.plan` (names ``sweeps/...``).

    Per attack: one white-box job per member, then one transfer job (every
    member on the FP member's images); then one ``flips-<member>`` job per
    member.  FGSM runs on the first ``n`` images; PGD (40 steps a point) and
    the flips on the first ``select_n`` (default ``n``), as the reproduce
    plan's sweeps do.
    """
    ids = members(dataset)
    n = check_positive_int(n, "n")
    select_n = check_positive_int(select_n or n, "select_n")
    eps = eps_grid(dataset)
    out = []
    for attack in ATTACKS:
        size = n if attack == "fgsm" else min(select_n, n)
        for m in ids:
            out.append({"name": f"{FOLDER}/whitebox-{m}-{attack}", "kind": "whitebox", "source": m, "targets": [m],
                        "attack": attack, "eps": eps, "n": size})
        out.append({"name": f"{FOLDER}/transfer-{attack}", "kind": "transfer", "source": ids[0],
                    "targets": ids[1:], "attack": attack, "eps": eps, "n": size})
    for m in ids:
        out.append({"name": f"{FOLDER}/flips-{m}", "kind": "flips", "source": m, "targets": [m],
                    "eps": eps, "n": min(select_n, n)})
    return out


def config(job: dict, dataset: str, n: int, seed: int = 0) -> dict:
    """What a job's results file must record for it to count as done (compared on rerun)."""
    cfg = {"kind": job["kind"], "source": job["source"], "targets": list(job["targets"]),
           "eps": check_eps_list(job["eps"]), "n": n, "seed": seed}
    if job["kind"] == "flips":
        cfg.update(directions=list(DIRECTIONS), pixel_bits=list(PIXEL_BITS))
    else:
        cfg.update(attack=job["attack"], params=[attack_params(dataset, job["attack"], e) if e else None
                                                 for e in cfg["eps"]],
                   labels="true label", objective="member:0")
    return cfg


def _model(member: str) -> keras.Model:
    # A member appears in many jobs: load (and hash-check) it once per process.
    return memo.get("sweeps.models", member, lambda: zoo.load(member), 32)


def run_job(job: dict, dataset: str, x: np.ndarray, y: np.ndarray, out_dir: str | os.PathLike,
            partial_dir: str | os.PathLike, progress: bool = True, prov: dict | None = None,
            seed: int = 0) -> tuple[dict, bool]:
    """Run one sweep job unless its results file already holds the same configuration.

    The record's ``headline`` is what a log line prints: the first target's
    accuracy at the largest eps (white-box and transfer), or the share of
    ``PIXEL_BITS[-1]``-bit pixel codes that the FGSM direction changes at the
    largest eps (flips).
    """
    n = min(job["n"], len(y))
    path = Path(out_dir) / f"{job['name']}.json"
    cfg = config(job, dataset, n, seed)
    if (old := results.done(path, cfg)) is not None:
        return old, False
    t0 = time.perf_counter()
    xs, ys = x[:n], y[:n]
    source, targets = _model(job["source"]), [_model(t) for t in job["targets"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    if job["kind"] == "flips":
        record = {**cfg, **{d: flip_fractions(source, xs, ys, cfg["eps"], d, PIXEL_BITS, seed) for d in DIRECTIONS}}
        for d in DIRECTIONS:
            for k in ("eps", "n", "direction"):
                record[d].pop(k)
        record["headline"] = record["fgsm"]["pixels"][str(PIXEL_BITS[-1])][-1]
        record["wall_time_s"] = round(time.perf_counter() - t0, 1)
        return results.write_result(path, record, dataset, prov=prov), True
    partial = Path(partial_dir) / f"{dataset}-{job['name'].replace('/', '-')}.npz"
    done, before = _load_partial(partial, cfg)
    t_eps = [time.perf_counter()]

    def save(rows: list) -> None:
        _save_partial(partial, cfg, rows, before + time.perf_counter() - t0)
        t_eps.append(time.perf_counter())
        if progress:
            print(f"  {job['name']} eps {cfg['eps'][len(rows) - 1]:.4g} done "
                  f"({t_eps[-1] - t_eps[-2]:.1f} s)", flush=True)

    correct = correct_against_eps(source, targets, xs, ys, job["attack"], cfg["eps"], dataset, seed,
                                  done=done, on_eps=save)
    record = {**cfg, **summarise(correct, job["targets"])}
    record["headline"] = record["accuracy"][job["targets"][0]][-1]
    record["per_image"] = _save_per_image(path.with_suffix(".npz"), correct)
    record["wall_time_s"] = round(before + time.perf_counter() - t0, 1)
    written = results.write_result(path, record, dataset, prov=prov)
    partial.unlink(missing_ok=True)
    return written, True


def summarise(correct: np.ndarray, names: list[str]) -> dict:
    """Accuracy and its 95% Wilson interval per target and eps, from (targets, eps, n) correctness."""
    n = correct.shape[-1]
    acc, ci = {}, {}
    for t, name in enumerate(names):
        k = correct[t].sum(-1)
        acc[name] = [round(float(v) / n, 6) for v in k]
        ci[name] = [[round(v, 6) for v in outcomes.wilson_interval(int(v), n)] for v in k]
    return {"accuracy": acc, "ci95": ci}


def _save_per_image(path: Path, correct: np.ndarray) -> dict:
    shape = np.array(correct.shape)
    atomic_write(path, lambda p: np.savez_compressed(open(p, "wb"), correct=np.packbits(correct.reshape(-1)),
                                                     shape=shape))
    return {"file": path.name, "sha256": sha256(path), "shape": shape.tolist()}


def load_correct(json_path: str | os.PathLike) -> np.ndarray:
    """The per-image correctness (targets, eps, n) of a sweep results file, checked against its sha256."""
    json_path = Path(json_path)
    desc = results.read_result(json_path).get("per_image")
    path = json_path.parent / (desc or {}).get("file", "")
    if not desc or not path.is_file() or sha256(path) != desc["sha256"]:
        raise EmpirError(f"{path} is missing or does not match {json_path}; rerun the job that writes them.")
    with np.load(path, allow_pickle=False) as f:
        shape = tuple(int(s) for s in f["shape"])
        return np.unpackbits(f["correct"])[:int(np.prod(shape))].reshape(shape).astype(bool)


def _save_partial(path: Path, cfg: dict, rows: list, elapsed: float) -> None:
    partial.save(path, cfg, {"rows": np.stack(rows), "elapsed_s": elapsed})


def _load_partial(path: Path, cfg: dict) -> tuple[list, float]:
    f = partial.load(path, cfg, "a partial sweep", "delete it or pass another partial folder")
    return ([], 0.0) if f is None else (list(f["rows"]), float(f["elapsed_s"]))


def run(dataset: str, n: int = 10000, select_n: int = 1000, only: str | None = None,
        data_dir: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None,
        partial_dir: str | os.PathLike = "runs/sweeps", progress: bool = True) -> list[dict]:
    """Every sweep job of ``dataset`` (or those whose name starts with ``only``), resumably; returns a log."""
    check_choice(dataset, DATASETS, "dataset with a precision grid")
    todo = [j for j in jobs(dataset, n, select_n) if not only or j["name"].startswith(only)]
    if not todo:
        raise EmpirError(f"no sweep job of {dataset} starts with {only!r}; they start with '{FOLDER}/'.")
    missing = sorted({m for j in todo for m in [j["source"], *j["targets"]]} - set(zoo.members(dataset)))
    if missing:
        raise EmpirError(f"the zoo lacks {', '.join(missing)}; train them with 'empir zoo build --dataset {dataset}'.")
    x, y = data.load(dataset, "test", data_dir, n)
    out_dir = Path(out_dir or results.RESULTS_DIR / dataset)
    prov = provenance.record(f"empir reproduce {dataset} --n {n} --select-n {select_n} --only {only or FOLDER + '/'}")
    log = []
    for job in todo:
        t0 = time.perf_counter()
        record, ran = run_job(job, dataset, x, y, out_dir, partial_dir, progress, prov)
        log.append({"name": job["name"], "ran": ran, "seconds": round(time.perf_counter() - t0, 1),
                    "headline": record["headline"]})
        if progress:
            print(f"{dataset} {job['name']:48s} {record['headline']:.4f} {'ran' if ran else 'kept'} "
                  f"{log[-1]['seconds']:7.1f} s", flush=True)
    return log
