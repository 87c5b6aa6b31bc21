"""A cascade's state on disk (resuming an interrupted run) and in memory (continuing a finished one).

:func:`empir_lib.attack.suite.cascade` saves its state after every chunk of
images; a rerun with the same configuration resumes there and a different
configuration is refused.  :func:`from_start` turns a finished cascade's
per-image outcomes into the state of a longer suite that has run its first
stages, so that only the new stages run, on its survivors.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..core.errors import EmpirError
from ..core.files import atomic_write
from . import outcomes


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


def save(path, config: dict, state: dict) -> None:
    if path is None:
        return
    arrays = {"config": np.array(json.dumps(config, sort_keys=True)), "broken_by": state["broken_by"],
              "norm": state["norm"], "stage": np.array(state["stage"]), "pos": np.array(state["pos"]),
              "todo": np.array([] if state["todo"] is None else state["todo"], np.int64),
              "has_todo": np.array(state["todo"] is not None), "stats": np.array(json.dumps(state["stats"]))}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(path), lambda p: np.savez(open(p, "wb"), **arrays))


def load(path, config: dict) -> dict | None:
    if path is None or not Path(path).is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        if json.loads(str(f["config"])) != json.loads(json.dumps(config, sort_keys=True)):
            raise EmpirError(f"{path} holds a partial cascade of another configuration; delete it or pass "
                             "another state path.")
        return {"broken_by": f["broken_by"].copy(), "norm": f["norm"].copy(), "stage": int(f["stage"]),
                "pos": int(f["pos"]), "todo": f["todo"].copy() if bool(f["has_todo"]) else None,
                "stats": json.loads(str(f["stats"]))}
