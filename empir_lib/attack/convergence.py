"""Until the numbers stop moving: a row's survivors re-attacked with twice the budget and a new seed.

The developers' rule (chapter 8's checklist; Carlini et al. 2019, "On
evaluating adversarial robustness", section 5.1: "increase the number of
iterations and random restarts until the accuracy no longer changes"): a
robust accuracy is quoted only once re-attacking its survivors with
**doubled** iterations and restarts and a **different seed** changes it by less
than :data:`TOLERANCE_POINTS` (0.1 percentage point).

:func:`doubled` turns a suite into its re-check (every stage renamed
``recheck-<name>``): gradient stages get twice the iterations and restarts
(APGD-T: per target class), Square twice the queries and restarts, CW twice
the Adam steps per binary-search step.  :func:`recheck` runs it as the
continuation of the row's finished cascade (``suite.cascade(start=...)``), so
it attacks only the row's survivors, and reports the change.

**Rounds.**  A row that moved is not done: its new figure is re-checked in
turn.  Round ``r`` (:func:`next_round`) runs the suite's own stages at
``2**r`` times their budget, with seed ``RECHECK_SEED + r - 1``, named
``recheck<r>-<name>`` (round 1: ``recheck-<name>``), on what the rounds
before left; the row's number is quoted once a round moves it by less than
the tolerance.  Iterations and restarts both grow, so a gradient stage of
round ``r`` costs about ``4**r`` times the suite's per image (round 4: 256x,
round 5: 1024x): the rounds stop at five (``suite_checks.ROUNDS``).  A round
that moves stops at the break that moved it, so only a round that settles the
row spends its whole budget.  Its survivors are attacked closest first
(:func:`cascade_state.closest_first`), so a round that moves finds its breaks
sooner; the order changes neither verdict.

**Chunks that fit a session.**  Round 5 spends about 300,000 image-steps on
each survivor in APGD-CE alone: a whole round takes many hours here, longer
than a working session.  Each re-check stage therefore runs in chunks of as
many survivors as fit :data:`CHUNK_IMAGE_STEPS` (:func:`chunk_for`), and its
state is saved after every chunk, so a round cut short loses one chunk at
most and the next session resumes it (``scripts/attack_stages.py`` keeps that
state in ``data/partial/``, which is committed).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..core.errors import EmpirError
from ..nets import ensemble as ens_mod
from . import outcomes, suite

TOLERANCE_POINTS = 0.1
PREFIX = "recheck-"
RECHECK_SEED = 1  # the suite's default is 0
# Most image-steps in one chunk of a long stage (a re-check's, or new stages run on a row's survivors): about
# 15-25 minutes of CPU here (round 5 ran about 1,450 image-steps/s on MNIST alone, about 700 on CIFAR-10 beside
# it), so a job cut short loses that much at most.
CHUNK_IMAGE_STEPS = 1_000_000


def prefix(r: int) -> str:
    """The stage-name prefix of re-check round ``r``: ``recheck-`` for the first, ``recheck<r>-`` after."""
    return PREFIX if r == 1 else f"recheck{r}-"


def chunk_for(spec: dict, limit: int = CHUNK_IMAGE_STEPS) -> int:
    """Survivors per chunk of a long stage: as many as fit ``limit`` image-steps, at least 1, at most 1,000."""
    return max(1, min(1000, int(limit) // suite.stage_budget(spec)))


def round_of(name: str) -> int:
    """The re-check round a stage name belongs to (0: one of the suite's own stages)."""
    m = re.match(r"recheck(\d*)-", name)
    return 0 if m is None else int(m.group(1) or 1)


def doubled(specs: list[dict], factor: int = 2, r: int = 1) -> list[dict]:
    """The re-check of a suite: each stage with ``factor`` times its iterations (queries) and restarts, renamed."""
    out = []
    for s in specs:
        d = {**s, "name": prefix(r) + s["name"]}
        if s["kind"] in ("apgd", "pgd", "apgd-t"):
            d.update(n_iter=factor * s["n_iter"], restarts=factor * s.get("restarts", 1))
        elif s["kind"] == "square":
            d.update(queries=factor * s["queries"], restarts=factor * s.get("restarts", 1))
        elif s["kind"] == "cw":
            d.update(max_iterations=factor * s["max_iterations"])
        else:
            raise EmpirError(f"no doubled budget is defined for attack kind {s['kind']!r}.")
        out.append(d)
    return out


def next_round(attacks: list[dict]) -> tuple[int, list[dict]]:
    """The next re-check of a cascade: its round ``r`` and stages (the suite's own at ``2**r`` the budget)."""
    r = 1 + max((round_of(a["name"]) for a in attacks), default=0)
    # Carried breaks ran no attack here: there is nothing of theirs to double.
    return r, doubled([a for a in attacks if round_of(a["name"]) == 0 and a["kind"] != outcomes.CARRIED], 2 ** r, r)


def recheck(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, threat: dict, attacks: list[dict],
            broken_by: np.ndarray, norm: np.ndarray, seed: int | None = None,
            state_path: str | os.PathLike | None = None, progress: bool = True, stop_when_moved: bool = True,
            chunk_steps: int = CHUNK_IMAGE_STEPS) -> dict:
    """Re-attack the survivors of a finished cascade (its ``attacks``, per-image ``broken_by`` and ``norm``).

    The re-check's stages run one at a time, each continuing the last
    (``suite.cascade(start=...)``; with ``state_path`` each finished stage is
    a checkpoint ``<state_path stem>-<k>.npz``, so a cut-short job resumes
    there, and within a stage after every chunk of :func:`chunk_for`
    ``(spec, chunk_steps)`` survivors).  With ``stop_when_moved`` it stops
    as soon as the change reaches :data:`TOLERANCE_POINTS` (:func:`moved_by` images), in the middle of a
    stage if need be (``suite.cascade``'s ``stop_after``: between restart
    waves, APGD segments or Square queries): later breaks can only add to
    it, so the verdict "not converged" is final for this round
    (``stopped_early``; ``stopped_in`` names the stage); the next round
    re-checks the new figure.  ``attacks`` may hold rounds
    already: this runs the next one (:func:`next_round`), with the seed
    ``RECHECK_SEED + round - 1`` unless ``seed`` is given.  Returns the
    continued cascade (:func:`suite.cascade`'s dict: its ``broken_by``
    carries the row's stages and then the re-check's) with
    ``robust_before``, ``robust_after``, ``change_points`` (percentage
    points of the ``n`` images), ``converged`` (change below the tolerance),
    ``stages_run`` and ``round``.
    """
    broken_by = np.asarray(broken_by)
    r, more = next_round(attacks)  # a cascade that holds rounds already gets the next one
    seed = RECHECK_SEED + r - 1 if seed is None else seed
    before = int(np.sum(broken_by == outcomes.ROBUST))
    res = {"broken_by": broken_by, "norm": np.asarray(norm, np.float32),
           "stats": {a["name"]: {"seconds": 0.0} for a in attacks}, "resumed_s": 0.0}
    resumed, k = 0.0, 0
    moves = moved_by(len(broken_by))
    for k in range(1, len(more) + 1):
        state = None if state_path is None else Path(state_path).with_name(f"{Path(state_path).stem}-{k}.npz")
        left = moves - (before - int(np.sum(res["broken_by"] == outcomes.ROBUST)))
        res = suite.cascade(ens, x, y, threat, list(attacks) + more[:k], seed=seed, state_path=state,
                            chunk=chunk_for(more[k - 1], chunk_steps), progress=progress,
                            start={k2: res[k2] for k2 in ("broken_by", "norm", "stats")},
                            stop_after=left if stop_when_moved else None)
        resumed += res["resumed_s"]
        if res.get("stopped_in") or before - int(np.sum(res["broken_by"] == outcomes.ROBUST)) >= moves:
            break
    after = int(np.sum(res["broken_by"] == outcomes.ROBUST))
    change = 100.0 * (before - after) / len(broken_by)
    res["stats"] = {k2: v for k2, v in res["stats"].items() if round_of(k2) == r}
    names = [a["name"] for a in attacks] + [s["name"] for s in more]
    res["counts"] = outcomes.counts(res["broken_by"], names)
    return {**res, "resumed_s": resumed, "robust_before": before, "robust_after": after, "change_points": change,
            "converged": bool(change < TOLERANCE_POINTS), "stages_run": k,
            "stopped_early": k < len(more) or res.get("stopped_in") is not None, "round": r}


def moved_by(n: int) -> int:
    """The fewest breaks among ``n`` images that move a row by :data:`TOLERANCE_POINTS` (1 in 1,000)."""
    return max(1, int(np.ceil(TOLERANCE_POINTS * n / 100.0 - 1e-9)))


def checkpoints(state_path: str | os.PathLike | None, stages: int) -> list[Path]:
    """The per-stage checkpoint files :func:`recheck` writes for ``state_path`` (to delete once the job is done)."""
    return [Path(state_path).with_name(f"{Path(state_path).stem}-{k}.npz") for k in range(1, stages + 1)]
