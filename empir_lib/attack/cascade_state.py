"""A cascade's state on disk (resuming an interrupted run) and in memory (continuing a finished one).

:func:`empir_lib.attack.suite.cascade` saves its state after every chunk of
images; a rerun with the same configuration resumes there and a different
configuration is refused.  :func:`stopper` and :func:`stopped` end a cascade
at a number of breaks (its ``stop_after``).  :func:`from_start` turns a finished cascade's
per-image outcomes into the state of a longer suite that has run its first
stages, so that only the new stages run, on its survivors.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable

import numpy as np

from ..core import partial
from ..core.errors import EmpirError
from ..nets import ensemble as ens_mod
from . import objectives, outcomes, validate


def from_start(start: dict, specs: list[dict], clean_now: np.ndarray) -> dict:
    """A cascade state that has run the first ``len(start['stats'])`` stages of ``specs`` (``cascade(start=)``)."""
    done = [s["name"] for s in specs[:len(start["stats"])]]
    if sorted(done) != sorted(start["stats"]) or len(done) == len(specs):
        raise EmpirError(f"a cascade's start must have run exactly the first stages of the suite and leave some; "
                         f"it ran {sorted(start['stats'])}, the suite begins {done}.")
    broken_by = np.asarray(start["broken_by"], np.int8).copy()
    if broken_by.shape != clean_now.shape or not np.array_equal(broken_by == outcomes.CLEAN,
                                                                clean_now == outcomes.CLEAN):
        raise EmpirError("the start's per-image outcomes do not match these images: the images it calls "
                         "misclassified differ from the vote's mistakes now (other images or another ensemble).")
    if broken_by.max(initial=0) > len(done):
        raise EmpirError("the start's per-image outcomes name a stage it did not run.")
    stats = {k: {**v, "seconds": float(v["seconds"])} for k, v in start["stats"].items()}
    return {"broken_by": broken_by, "norm": np.asarray(start["norm"], np.float32).copy(), "stage": len(done),
            "pos": 0, "todo": None, "stats": stats}


ORDER = "closest first: smallest clean margin of the members' mean probability"


def closest_first(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, todo: np.ndarray, pos: int) -> np.ndarray:
    """``todo`` with its part not attacked yet (from ``pos``) in :data:`ORDER` (stable; idempotent).

    Why: a cascade with ``stop_after`` (a re-check round,
    :mod:`empir_lib.attack.convergence`) ends at its tolerance, so attacking
    the survivors likeliest to break first reaches the verdict "moved"
    sooner; a round that settles attacks every survivor anyway.  Either way
    the verdict and the count do not depend on the order.  The margin (the
    true class's mean probability minus the largest other's, on the clean
    image) only ranks the images; success is still judged on the vote.
    """
    todo = np.asarray(todo, np.int64)
    rest = todo[pos:]
    if len(rest) < 2:
        return todo
    p = ens_mod.predict_all(ens, x[rest])["mean_prob"]
    rows = np.arange(len(rest))
    true = p[rows, y[rest]]
    p[rows, y[rest]] = -np.inf
    return np.concatenate([todo[:pos], rest[np.argsort(true - p.max(1), kind="stable")]])


def start_digest(start: dict) -> str:
    """sha256 of a start's per-image outcomes, for the configuration its continued cascade's state is tied to.

    A state saved for one start must not resume another: a re-check's state
    can outlive its session (``data/partial/``), and the row below it may be
    re-run meanwhile, which would leave the state's outcomes stale.
    """
    h = hashlib.sha256(np.asarray(start["broken_by"], np.int64).tobytes())
    h.update(np.asarray(start["norm"], np.float32).tobytes())
    return h.hexdigest()


def save(path: str | os.PathLike | None, config: dict, state: dict) -> None:
    """Write a cascade's state after a chunk (:mod:`empir_lib.core.partial`: atomic, tied to its configuration)."""
    partial.save(path, config, {"broken_by": state["broken_by"], "norm": state["norm"], "stage": state["stage"],
                                "pos": state["pos"],
                                "todo": np.array([] if state["todo"] is None else state["todo"], np.int64),
                                "has_todo": state["todo"] is not None, "stats": json.dumps(state["stats"])})


def load(path: str | os.PathLike | None, config: dict) -> dict | None:
    """A saved cascade state for ``config``, or None; another configuration's is refused."""
    f = partial.load(path, config, "a partial cascade", "delete it or pass another state path")
    if f is None:
        return None
    return {"broken_by": f["broken_by"], "norm": f["norm"], "stage": int(f["stage"]), "pos": int(f["pos"]),
            "todo": f["todo"] if bool(f["has_todo"]) else None, "stats": json.loads(str(f["stats"]))}


def progress(path: str | os.PathLike) -> dict:
    """Where a saved cascade state stands, read without its configuration check (``data/partial/``'s listing).

    ``stage``: the stage it is in (the last one, once every stage ran),
    ``stage_index`` and ``stages``; ``done`` and ``left``: that stage's
    attacked images so far and still to attack; ``robust``: the images
    still robust; ``broken``: what its own stages broke so far (a continued
    cascade's start counts as its earlier stages); ``seconds`` spent on them.
    """
    with np.load(path, allow_pickle=False) as f:
        if not {"config", "stats", "broken_by", "stage", "pos", "todo", "has_todo"} <= set(f.files):
            raise EmpirError(f"{path} is not a cascade's saved state.")
        config, stats = json.loads(str(f["config"])), json.loads(str(f["stats"]))
        broken_by, stage, pos = f["broken_by"], int(f["stage"]), int(f["pos"])
        todo = f["todo"] if bool(f["has_todo"]) else None
    names = [a["name"] for a in config["attacks"]]
    own = names[config.get("start_stage", 0):]
    at = min(stage, len(names) - 1)  # a finished cascade stands at its last stage
    left = 0 if todo is None else max(0, len(todo) - pos)
    return {"stage": names[at], "stage_index": at + 1, "stages": len(names),
            "done": 0 if todo is None else min(pos, len(todo)), "left": left,
            "robust": int(np.sum(broken_by == outcomes.ROBUST)),
            "broken": {k: int(stats[k]["broken"]) for k in own if k in stats},
            "seconds": round(sum(float(stats[k]["seconds"]) for k in own if k in stats), 1)}


def stopped(stats: dict) -> str | None:
    """The stage a cascade's ``stop_after`` ended it in, or None."""
    return next((k for k, v in stats.items() if v.get("stopped")), None)


def stopper(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, threat: dict, eot: tuple,
             need: int | None) -> tuple[Callable | None, dict]:
    """An attack's ``stop`` for a chunk that ends it at ``need`` breaks, and the breaks it confirmed.

    Each break it hears of is validated and judged on the vote as the cascade
    judges it; the confirmed ones (index -> image) are kept, so the cascade
    counts them whatever the attack returns for them.
    """
    found: dict[int, np.ndarray] = {}
    if need is None:
        return None, found

    def stop(i: np.ndarray, xa: np.ndarray) -> bool:
        # Attacks report a wave's breaks again when it ends: judge only images not confirmed yet.
        fresh = np.array([k not in found for k in np.asarray(i).tolist()], bool)
        i, xa = np.asarray(i)[fresh], xa[fresh]
        if len(i):
            ok = validate.valid(x[i], xa, threat) & (objectives.deployed(ens, xa, *eot) != y[i])
            for k, xk in zip(i[ok].tolist(), xa[ok]):
                found.setdefault(k, xk)
        return len(found) >= need

    return stop, found
