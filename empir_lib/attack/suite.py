"""The worst-case evaluation: threat models, an attack suite run as a cascade, judged on the deployed vote.

This is the book's **adaptive protocol** (chapter 8).  It answers "how many
test images can *some* attack within the threat model break?", and reports
robust accuracy per **threat model** rather than per attack name:

* L-infinity at the dataset's Table 1 eps (the paper's FGSM, BIM and PGD
  columns all live in this one threat model), plus 8/255 on CIFAR-10
  (Tramer et al. 2020's setting) and 4/255 on Tiny ImageNet;
* L2 at a stated budget per dataset (the paper's CW column), plus the median
  minimal L2 that CW-L2 finds (:func:`empir_lib.attack.minnorm.cw_min_l2`).

An image counts as robust only if it survives *every* attack in the suite.
Following AutoAttack (Croce & Hein 2020) the suite runs as a **cascade**:
each attack sees only the images every earlier attack failed on, so the
strong, expensive attacks cost little once the cheap ones have done their
work.  Every success is re-checked here on the deployed decision
(:func:`empir_lib.nets.ensemble.predict`) and on the perturbation's norm, whatever
the attack itself believed.

The suite for an ensemble of K members (attacker's choices, independent of
the paper's Table 1 presets):

1. ``apgd-ce``: APGD on the cross-entropy of the mean probability, 100
   iterations, up to 3 restarts on the survivors;
2. ``apgd-dlr``: APGD on the DLR loss of the mean logits (scale-invariant),
   likewise;
3. ``apgd-ce-sum``: APGD on the sum of the members' cross-entropies;
4. ``pgd-margin``: 100 steps of fixed-size PGD (2.5 eps / 100, Madry et al.'s
   rule) on the CW margin of the mean logits;
5. ``apgd-t``: targeted APGD on the targeted DLR loss of the mean logits,
   one run per target class, the 9 classes ranked highest after the true one
   (AutoAttack's APGD-T, :mod:`empir_lib.attack.targeted`): a vote falls when
   two members are pushed to the *same* wrong class;
6. the gradient-free check that gradients are not masked, 5,000 queries
   (AutoAttack's budget): L-inf ``square`` and L2 ``square-l2``, our own
   Square (:mod:`empir_lib.attack.square`: ART's Square-L2 returns non-finite
   images and its L-inf one shares window places across a batch; results
   files whose provenance commit predates our Square-L-inf ran ART's);
7. L2 only: ``cw-l2``, Carlini & Wagner with a binary search over c, every
   iterate judged on the vote (FAB-T, AutoAttack's fourth attack, is left
   out: ART 1.20.1 has no FAB, and the maintained one is AutoAttack's
   PyTorch code, which does not run on these Keras models);
8. last, ``member-<i>``: APGD-CE on member i alone, judged on the vote; for
   the full-precision member this is the transfer attack (``transfer-fp``).
   They run after every ensemble-level stage, so an image they break is one
   every attack on the ensemble itself failed on: the per-image transfer
   check of :mod:`empir_lib.attack.diagnostics` counts exactly these.

Every output is validated (:mod:`empir_lib.attack.validate`: finite, in the
box, within the budget) before it counts as a break or a survivor, and the
number of invalid outputs is recorded per stage.  A cascade can also start
from a finished one (``cascade(..., start=...)``) and run only the stages it
lacks, on its survivors: how new stages are added to a committed row, and how
:mod:`empir_lib.attack.convergence` re-attacks a row's survivors.

Against stochastic members (:mod:`empir_lib.nets.stochastic`) the suite can run
with **EOT** (``attack_suite(..., eot_samples=S, decision=...)``, Athalye et
al. 2018): every gradient attack averages its objective over S stochastic
passes (:func:`empir_lib.attack.objectives.expectation`), and every success, during
the attack and in the cascade's re-check, is judged on the named deployed
decision, ``'draw'`` (one stochastic pass) or ``'majority'`` (over S passes).
Square and CW keep their own search and are judged the same way.  The
cascade then also reports ``randomness``, the share of images whose class
differs across S draws (:func:`empir_lib.nets.stochastic.disagreement`).  With
the default ``eot_samples=1`` the suite, its specs and its results are
exactly those without EOT.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from ..core import memo
from ..core import threats as threat_models
from ..core.errors import EmpirError, check_choice, check_finite_number, check_positive_int
from ..nets import ensemble as ens_mod
from ..nets import stochastic
from . import apgd, attacks, cascade_state, objectives, outcomes, square, targeted, validate
from . import progress as progress_bars  # "progress" is the cascade's argument

KINDS = ("apgd", "pgd", "apgd-t", "square", "cw")
# The L2 budgets per dataset (settings.DatasetSettings.l2_budget; the paper reports CW without one).
SQUARE_QUERIES = 5000  # AutoAttack's budget
CW_SEARCH = {"binary_search_steps": 5, "max_iterations": 100, "learning_rate": 0.1, "initial_const": 10.0,
             "confidence": 0.0, "abort_early": True, "batch_size": 100}
NORM_SLACK = validate.NORM_SLACK  # relative slack on eps when re-checking a perturbation's norm


def threats(dataset: str) -> dict[str, dict]:
    """The threat models evaluated for ``dataset``: name -> {'norm', 'eps'} (:mod:`empir_lib.core.threats`)."""
    return {name: t.as_dict() for name, t in threat_models.of(dataset).items()}


def threat(dataset: str, name: str) -> dict:
    """One of :func:`threats` by name, or one sentence naming the threat models ``dataset`` has."""
    return threat_models.get(dataset, name).as_dict()


def check_threat(threat: dict) -> dict:
    """A threat model ``{'norm': 'linf'|'l2', 'eps': float}``, checked (eps in [0, 1] for L-inf)."""
    if not isinstance(threat, dict) or set(threat) - {"norm", "eps", "name"} or not {"norm", "eps"} <= set(threat):
        raise EmpirError(f"a threat model is {{'norm': 'linf' or 'l2', 'eps': number}}; got {threat!r}.")
    check_choice(threat["norm"], apgd.NORMS, "threat-model norm")
    hi = 1.0 if threat["norm"] == "linf" else 1e3
    return {**threat, "eps": check_finite_number(threat["eps"], "eps", 0.0, hi)}


def attack_suite(ens: ens_mod.Ensemble, threat: dict, eot_samples: int = 1, decision: str = "draw") -> list[dict]:
    """The cascade's attacks for ``ens`` under ``threat``, in the order they run (module docstring).

    ``eot_samples > 1`` adds ``eot_samples`` and ``decision`` to every attack
    (EOT, module docstring); the default suite's specs carry neither key.
    """
    threat = check_threat(threat)
    eot_samples, decision = objectives.check_eot(eot_samples, decision)
    specs = _suite(ens, threat)
    if eot_samples > 1:
        specs = [{**spec, "eot_samples": eot_samples, "decision": decision} for spec in specs]
    return specs


def _eot(spec: dict) -> tuple[int, str]:
    """An attack's EOT samples and deployed decision (1 and 'draw' for a spec without them)."""
    return spec.get("eot_samples", 1), spec.get("decision", "draw")


def _suite(ens: ens_mod.Ensemble, threat: dict) -> list[dict]:
    specs = [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 100, "restarts": 3},
             {"name": "apgd-dlr", "kind": "apgd", "loss": "dlr_mean_logits", "n_iter": 100, "restarts": 3}]
    if len(ens.members) > 1:
        specs.append({"name": "apgd-ce-sum", "kind": "apgd", "loss": "ce_sum", "n_iter": 100, "restarts": 1})
    specs.append({"name": "pgd-margin", "kind": "pgd", "loss": "margin_mean_logits", "n_iter": 100,
                  "restarts": 1, "step_frac": 0.025})
    if ens.num_classes >= 4:  # the targeted DLR loss needs four classes
        specs.append(apgd_t_spec())
    specs.append(square_spec(threat))
    if threat["norm"] == "l2":
        specs.append({"name": "cw-l2", "kind": "cw", **CW_SEARCH})
    return specs + member_specs(ens)


def apgd_t_spec(targets: int = targeted.TARGETS) -> dict:
    """The suite's APGD-T stage: AutoAttack's schedule (100 iterations, 1 start per target class)."""
    return {"name": "apgd-t", "kind": "apgd-t", "loss": targeted.LOSS, "n_iter": 100, "restarts": 1,
            "targets": targets}


def square_spec(threat: dict) -> dict:
    """The suite's gradient-free stage: Square, 5,000 queries, L-inf (ART's) or L2 (ours)."""
    name = "square" if threat["norm"] == "linf" else "square-l2"
    return {"name": name, "kind": "square", "queries": SQUARE_QUERIES, "restarts": 1}


def member_specs(ens: ens_mod.Ensemble) -> list[dict]:
    """APGD-CE on each member alone, judged on the vote: low-precision members first, the FP member last."""
    if len(ens.members) < 2:
        return []
    return [{"name": "transfer-fp" if ens.fp[i] else f"member-{i}", "kind": "apgd", "loss": f"ce_member:{i}",
             "n_iter": 100, "restarts": 1} for i in ens_mod.priority(ens)[::-1]]


def check_suite(specs: list[dict], started: int = 0) -> list[dict]:
    """Refuse an empty suite, an unknown kind or loss, or two attacks with one name.

    The first ``started`` stages ran already (a cascade's ``start``): they may
    hold breaks carried in from another evaluation (:data:`outcomes.CARRIED`).
    """
    if not specs:
        raise EmpirError("a suite needs at least one attack; start from suite.attack_suite(ens, threat).")
    seen = set()
    for j, s in enumerate(specs):
        check_choice(s.get("kind"), KINDS + (outcomes.CARRIED,) * (j < started), "attack kind")
        if s.get("name") in seen or not s.get("name"):
            raise EmpirError(f"attack names must be unique and non-empty; {s.get('name')!r} is not.")
        seen.add(s["name"])
        objectives.check_eot(*_eot(s))
    if len({_eot(s) for s in specs if s["kind"] != outcomes.CARRIED}) > 1:
        raise EmpirError("every attack of a suite must share one EOT setting (eot_samples and decision): "
                         "the cascade re-checks every break with it.")
    return specs


def stage_budget(spec: dict) -> int:
    """The most image-steps (gradient steps or queries) one image can cost in a stage; early stops spend less."""
    r = spec.get("restarts", 1)
    if spec["kind"] in ("apgd", "pgd"):
        return r * (spec["n_iter"] + 1)  # the random start's pass, then n_iter steps
    if spec["kind"] == "apgd-t":
        return spec.get("targets", targeted.TARGETS) * r * (spec["n_iter"] + 1)
    if spec["kind"] == "square":
        return r * spec["queries"]
    return spec["binary_search_steps"] * spec["max_iterations"]


def run_attack(ens: ens_mod.Ensemble, spec: dict, threat: dict, x: np.ndarray, y: np.ndarray,
               seed: int = 0, tick: Callable[[int], object] | None = None,
               stop: Callable[[np.ndarray, np.ndarray], bool] | None = None) -> tuple[np.ndarray, dict]:
    """One attack of the suite on a batch: (adversarial images, statistics for the diagnostics).

    ``tick(k)``, if given, hears of every ``k`` image-steps as they are spent
    (the cascade's progress bar, at most :func:`stage_budget` per image).
    ``stop(images, x_adv)``, if given, hears of new breaks (indices into ``x``)
    as the attack finds them and ends it once it returns True
    (:func:`empir_lib.attack.apgd.run`); images not finished then count as not broken.
    """
    norm, eps = threat["norm"], threat["eps"]
    eot = _eot(spec)
    tick = tick or (lambda _k: None)
    if spec["kind"] in ("apgd", "pgd"):
        key = ("loss", spec["loss"]) if eot == (1, "draw") else ("loss", spec["loss"], *eot)
        fn = _cached(ens, key, lambda: objectives.loss_fn(ens, spec["loss"], *eot))
        fixed = spec["kind"] == "pgd"
        out = apgd.run(fn, x, y, eps, norm, spec["n_iter"], spec.get("restarts", 1), seed,
                       step=spec["step_frac"] * eps if fixed else None, schedule=not fixed, momentum=not fixed,
                       tick=tick, stop=stop)
        # An image a stop left unfinished has no best loss (NaN): it made no progress only if it finished.
        failed = ~out.broken & np.isfinite(out.loss_best)
        stats = {"image_steps": out.steps, "zero_grad": int(out.zero_grad.sum()),
                 "no_progress": int(np.sum(failed & ~(out.loss_best > out.loss_start)))}
        return out.x_adv, stats
    if spec["kind"] == "apgd-t":
        fn = _cached(ens, ("apgd-t", *eot), lambda: targeted.loss_fn(ens, *eot))
        return targeted.run(ens, fn, x, y, eps, norm, spec["n_iter"], spec.get("restarts", 1),
                            spec.get("targets", targeted.TARGETS), seed, tick=tick, stop=stop)
    if spec["kind"] == "square":
        attack = square.square_l2 if norm == "l2" else square.square_linf  # ours: module square says why

        def once(xs, ys, s, stop_copies):
            xa, more = attack(ens, xs, ys, eps, spec["queries"], s, eot=eot, tick=tick, stop=stop_copies)
            return xa, more["image_steps"]
        best, steps = square.with_restarts(once, ens, x, y, threat, spec.get("restarts", 1), seed, eot, stop=stop)
        return best, {"image_steps": steps}
    p = {k: spec[k] for k in CW_SEARCH}

    def make_step():
        cw = dict(num_classes=ens.num_classes, max_iterations=p["max_iterations"], learning_rate=p["learning_rate"],
                  confidence=p["confidence"], abort_early=p["abort_early"])
        if eot == (1, "draw"):  # scores and vote from one pass through the members
            joint = objectives.mean_logits_and_decision_fn(ens)
            return tf.function(lambda xb, yb, c: attacks.cw_l2(joint, xb, yb, c, joint=True, **cw),
                               reduce_retracing=True)
        # EOT: the decision is its own (possibly S-pass) query of the stochastic ensemble.
        score_fn, decide = objectives.mean_logits_fn(ens), objectives.decision_fn(ens, *eot)
        return tf.function(lambda xb, yb, c: attacks.cw_l2(score_fn, xb, yb, c, decide=decide, **cw),
                           reduce_retracing=True)

    key = ("cw", json.dumps(p, sort_keys=True)) + (() if eot == (1, "draw") else eot)
    step = _cached(ens, key, make_step)
    bs = p["batch_size"]
    xa, spent = x.copy(), 0  # images a stop leaves unattacked count as not broken
    for i in range(0, len(x), bs):
        xa[i:i + bs] = attacks.cw_search(step, x[i:i + bs], y[i:i + bs].astype(np.int32), p)
        spent += len(xa[i:i + bs]) * p["binary_search_steps"] * p["max_iterations"]
        tick(len(xa[i:i + bs]) * p["binary_search_steps"] * p["max_iterations"])
        if stop is not None and stop(np.arange(i, min(i + bs, len(x))), xa[i:i + bs]):
            break
    # CW minimises the norm with no hard bound: what it found beyond the budget is no attack within it (the
    # image itself), not an invalid output; a non-finite or out-of-box image still counts as invalid.
    beyond = validate.valid(x, xa, {"norm": norm, "eps": np.inf}) & ~validate.valid(x, xa, {"norm": norm, "eps": eps})
    xa = np.where(beyond[:, None, None, None], x, xa)
    return xa, {"image_steps": spent}


def _cached(ens: ens_mod.Ensemble, key: tuple, make):
    # One loss function (and so one traced APGD segment, one traced CW step) per
    # ensemble and attack, reused across chunks: tracing costs seconds per call.
    # The entry keeps the ensemble alive so that a member's id is never reused.
    return memo.get("suite.losses", (tuple(id(m) for m in ens.members), ens.rule, key), make, 64, keep=ens)


def cascade(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, threat: dict, specs: list[dict] | None = None,
            seed: int = 0, chunk: int = 1000, state_path: str | os.PathLike | None = None,
            progress: bool = True, start: dict | None = None, stop_after: int | None = None) -> dict:
    """Run the suite as a cascade on ``(x, y)``; every output is validated, every break re-checked on the vote.

    With ``state_path`` the cascade saves its state after every chunk of
    images and a rerun with the same configuration resumes there (a different
    configuration is refused).  ``start`` continues a finished cascade on the
    same images: ``{'broken_by', 'norm', 'stats'}`` of a run whose attacks are
    the first ``len(start['stats'])`` of ``specs`` (checked: names, and the
    images it calls misclassified against the vote now); only the later
    stages run, on its survivors.  ``stop_after`` ends the cascade as soon as
    its stages have broken that many images, in the middle of an attack if
    need be (a re-check round that has moved by the tolerance: later breaks
    cannot undo the verdict, :mod:`empir_lib.attack.convergence`); the stage it
    ended in is ``stopped_in`` and its statistics say ``stopped``.  Each break
    that ends an attack early is validated and judged on the vote there, and
    the cascade keeps that image, so the count it reports reaches ``stop_after``
    (survivors closest first: :func:`cascade_state.closest_first`).
    Returns a dict with the per-image
    ``broken_by`` and ``norm`` arrays, the per-attack counts, seconds,
    image-steps and invalid outputs, and the statistics the diagnostics read.
    """
    threat = check_threat(threat)
    specs = check_suite(specs if specs is not None else attack_suite(ens, threat), len((start or {}).get("stats", ())))
    x = np.asarray(x, np.float32)
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if len(x) != len(y) or len(y) == 0:
        raise EmpirError(f"{len(x)} images and {len(y)} labels: pass the same number, at least one.")
    chunk = check_positive_int(chunk, "chunk")
    config = {"members": list(ens.names), "rule": ens.rule, "threat": threat, "attacks": specs, "seed": seed,
              "n": len(y), "chunk": chunk}
    if start is not None:
        config.update(start_stage=len(start["stats"]), start_sha256=cascade_state.start_digest(start))
    eot = _eot(specs[0])
    if stop_after is not None:
        config["stop_after"] = check_positive_int(stop_after, "stop_after")
        if eot[0] > 1:  # a stochastic vote could disown at the re-check a break that ended an attack
            raise EmpirError("stop_after needs a deterministic decision; this suite attacks with EOT.")
    state = cascade_state.load(state_path, config)
    if state is None:
        clean = objectives.deployed(ens, x, *eot)
        state = {"broken_by": np.where(clean == y, outcomes.ROBUST, outcomes.CLEAN).astype(np.int8),
                 "norm": np.zeros(len(y), np.float32), "stage": 0, "pos": 0, "todo": None, "stats": {}}
        if start is not None:
            state = cascade_state.from_start(start, specs, state["broken_by"])
    # Seconds spent by earlier, interrupted invocations (the stats carry them over; a start's are its own).
    first = config.get("start_stage", 0)
    resumed_s = sum(v["seconds"] for k, v in state["stats"].items() if k not in [s["name"] for s in specs[:first]])
    for j, spec in enumerate(specs, start=1):
        if j < state["stage"] + 1 or cascade_state.stopped(state["stats"]):
            continue
        if state["todo"] is None:
            state["todo"] = np.flatnonzero(state["broken_by"] == outcomes.ROBUST)
        todo = state["todo"]
        st = state["stats"].setdefault(spec["name"], {"attacked": int(len(todo)), "broken": 0, "seconds": 0.0,
                                                      "image_steps": 0, "zero_grad": 0, "no_progress": 0,
                                                      "invalid": 0})
        if stop_after is not None:  # the same verdict, sooner; "from": older code attacked the first ones in order
            todo = state["todo"] = cascade_state.closest_first(ens, x, y, todo, state["pos"])
            st.setdefault("order", {"rule": cascade_state.ORDER, "from": int(state["pos"])})
        per_image, pos0 = stage_budget(spec), state["pos"]  # pos0: where a resumed stage starts (pos moves on)
        bar = progress_bars.steps_bar(per_image * (len(todo) - pos0),
                         f"{threat['norm']} {threat['eps']:.4g} {spec['name']} ({len(todo)} left)", progress)
        for c in range(state["pos"], len(todo), chunk):
            idx = todo[c:c + chunk]
            t0 = time.perf_counter()
            need = None if stop_after is None else stop_after - sum(state["stats"][s["name"]]["broken"]
                                                                  for s in specs[first:] if s["name"] in state["stats"])
            stop, found = cascade_state.stopper(ens, x[idx], y[idx], threat, eot, need)
            xa, info = run_attack(ens, spec, threat, x[idx], y[idx], seed * 1_000_003 + j * 7919 + c,
                                  tick=bar.update if bar else None, stop=stop)
            for i, xi in found.items():  # the breaks that ended it early, validated there
                xa[i] = xi
            if bar:  # early stops spend less than the budget: the bar jumps to the chunk's end
                bar.n = per_image * (c + len(idx) - pos0)
                bar.refresh()
            good = validate.valid(x[idx], xa, threat)
            xa = np.where(good[:, None, None, None], xa, x[idx])  # an invalid output is judged as no attack
            nrm = validate.norms(x[idx], xa, threat["norm"])
            ok = good & (objectives.deployed(ens, xa, *eot) != y[idx])
            st["invalid"] = st.get("invalid", 0) + int((~good).sum())
            state["broken_by"][idx[ok]] = j
            state["norm"][idx[ok]] = nrm[ok]
            st["broken"] += int(ok.sum())
            st["seconds"] += time.perf_counter() - t0
            for k in ("image_steps", "zero_grad", "no_progress"):
                st[k] += int(info.get(k, 0))
            for k, v in info.items():  # per-rank counts (APGD-T's breaks per target class), added up
                if isinstance(v, list):
                    st[k] = [a + b for a, b in zip(st.get(k, [0] * len(v)), v)]
            state["pos"] = c + chunk
            if need is not None and ok.sum() >= need:
                st["stopped"] = True
            cascade_state.save(state_path, config, state)
            if st.get("stopped"):
                break
        if bar:
            bar.close()
        state.update(stage=j, pos=0, todo=None)
        cascade_state.save(state_path, config, state)
    names = [s["name"] for s in specs]
    out = {"config": config, "broken_by": state["broken_by"], "norm": state["norm"], "stats": state["stats"],
           "counts": outcomes.counts(state["broken_by"], names), "resumed_s": resumed_s,
           "stopped_in": cascade_state.stopped(state["stats"])}
    if eot[0] > 1:  # the randomness diagnostic: how often the deployed class changes between draws
        out["randomness"] = stochastic.disagreement(ens, x, eot[0])["share"]
    return out

