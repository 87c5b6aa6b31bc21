"""Resumable state: what a long job has finished so far, saved after every chunk and checked on resume.

Every slow job of ``empir reproduce`` (a paper-protocol evaluation, a
worst-case cascade, an accuracy-against-eps sweep) saves its partial state
after each finished chunk (a batch of images, a chunk of a cascade stage, an
eps), so a killed run, or a killed Ray worker, resumes at the last finished
chunk.  One file per job: the job's configuration (JSON) and its arrays, in
one ``.npz`` written atomically (:func:`empir_lib.core.files.atomic_write`),
so a kill leaves either the previous state or the new one, never half a
file.  A state saved for another configuration is refused, not mixed in.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import EmpirError
from .files import atomic_write


def save(path: str | os.PathLike | None, config: dict, arrays: dict[str, object]) -> None:
    """Write ``config`` and ``arrays`` to ``path`` atomically (nothing when ``path`` is None)."""
    if path is None:
        return
    out = {"config": np.array(json.dumps(config, sort_keys=True)), **{k: np.asarray(v) for k, v in arrays.items()}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(Path(path), lambda p: np.savez(open(p, "wb"), **out))


def load(path: str | os.PathLike | None, config: dict, what: str, fix: str) -> dict[str, np.ndarray] | None:
    """The arrays saved at ``path`` for ``config``, or None when there is no state yet.

    A state of another configuration raises :class:`EmpirError` naming
    ``what`` it holds (e.g. "a partial cascade") and ``fix``, what to do.
    """
    if path is None or not Path(path).is_file():
        return None
    with np.load(path, allow_pickle=False) as f:
        if json.loads(str(f["config"])) != json.loads(json.dumps(config, sort_keys=True)):
            raise EmpirError(f"{path} holds {what} of another configuration; {fix}.")
        return {k: f[k].copy() for k in f.files if k != "config"}
