"""Per-image outcomes of a worst-case evaluation, stored beside its JSON results file.

For every test image the cascade records *which attack broke it first*
(``broken_by``: -1 robust, 0 misclassified before any attack, ``j`` the j-th
attack of the suite) and the norm of the perturbation that did it.  With these
kept, the union over attacks, "which attack did the work" figures and
confidence intervals can be recomputed without rerunning anything.

The file is a compressed ``.npz`` of plain arrays (``robust`` as packed bits,
``broken_by`` as int8, ``norm`` as float32), read with ``allow_pickle=False``.
Its sha256, length and per-attack counts are written into the JSON, and
:func:`load` refuses a file that does not match them.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..core.errors import EmpirError
from ..core.files import atomic_write, sha256

ROBUST, CLEAN = -1, 0
# The kind of a stage that ran nothing: breaks carried in from an evaluation it replaced (studies.chains.carry).
CARRIED = "carried"


def save(path: str | os.PathLike, broken_by: np.ndarray, norm: np.ndarray) -> dict:
    """Write the per-image file atomically; return the description the JSON keeps (name, sha256, n)."""
    path = Path(path)
    broken_by = np.asarray(broken_by, np.int8)
    norm = np.asarray(norm, np.float32)
    if broken_by.shape != norm.shape or broken_by.ndim != 1:
        raise EmpirError(f"per-image arrays disagree: broken_by {broken_by.shape}, norm {norm.shape}.")
    robust = np.packbits(broken_by == ROBUST)
    atomic_write(path, lambda p: np.savez_compressed(open(p, "wb"), broken_by=broken_by, norm=norm,
                                                     robust=robust, n=np.array(len(broken_by))))
    return {"file": path.name, "sha256": sha256(path), "n": int(len(broken_by))}


def counts(broken_by: np.ndarray, attack_names: list[str]) -> dict:
    """Images broken first by each stage: ``{'clean': k0, name_1: k1, ..., 'robust': k}``."""
    broken_by = np.asarray(broken_by)
    out = {"clean": int(np.sum(broken_by == CLEAN))}
    for j, name in enumerate(attack_names, start=1):
        out[name] = int(np.sum(broken_by == j))
    out["robust"] = int(np.sum(broken_by == ROBUST))
    return out


def stage_counts(record: dict) -> dict:
    """A results record's ``broken_by`` in cascade order: misclassified, the attacks as they ran, robust.

    The files store their keys sorted (:func:`empir_lib.studies.results.write_result`), which puts ``clean``
    among the attacks; a figure of the cascade needs them in the order the images went through it.
    """
    order = ["clean", *(a["name"] for a in record.get("attacks", [])), "robust"]
    counts = record["broken_by"]
    out = {k: counts[k] for k in order if k in counts}
    out.update({k: v for k, v in counts.items() if k not in out})
    return out


def load(json_path: str | os.PathLike, record: dict) -> dict:
    """The per-image arrays of a results file, checked against its JSON ``record``.

    Refuses (one clear error) a missing file, a file whose sha256, length or
    per-attack counts differ from what the JSON says.
    """
    desc = record.get("per_image")
    if not desc:
        raise EmpirError(f"{json_path} records no per-image outcomes; rerun its command to produce them.")
    path = Path(json_path).parent / desc["file"]
    if not path.is_file():
        raise EmpirError(f"{path} is missing; its results file {json_path} needs it. Rerun the command in its "
                         "provenance, or restore both files with git.")
    if sha256(path) != desc["sha256"]:
        raise EmpirError(f"{path} does not match {json_path} (sha256 differs): one of the two was changed or "
                         "replaced. Restore both with git, or rerun the command that writes them.")
    with np.load(path, allow_pickle=False) as f:
        arrays = {k: f[k] for k in ("broken_by", "norm", "robust")}
    n = len(arrays["broken_by"])
    if n != desc["n"] or n != record.get("n", n):
        raise EmpirError(f"{path} holds {n} images but {json_path} says {desc['n']}.")
    names = [a["name"] for a in record.get("attacks", [])]
    if "broken_by" in record and counts(arrays["broken_by"], names) != record["broken_by"]:
        raise EmpirError(f"{path} disagrees with the per-attack counts in {json_path}; rerun its command.")
    if not np.array_equal(np.unpackbits(arrays["robust"])[:n].astype(bool), arrays["broken_by"] == ROBUST):
        raise EmpirError(f"{path} is internally inconsistent (robust bits vs broken_by).")
    return arrays


def robust_mask(broken_by: np.ndarray) -> np.ndarray:
    """True where no stage broke the image."""
    return np.asarray(broken_by) == ROBUST


def union_robust(*broken_by: np.ndarray) -> np.ndarray:
    """Per image: robust under *every* evaluation given (e.g. two threat runs on the same images)."""
    if not broken_by:
        raise EmpirError("pass at least one per-image array.")
    return np.logical_and.reduce([robust_mask(b) for b in broken_by])


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a proportion k / n (robust accuracy on n test images)."""
    if n <= 0:
        raise EmpirError("a confidence interval needs n >= 1 images.")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value: are ``only_a`` and ``only_b`` discordant pairs unlike a fair coin's?"""
    k, n = min(only_a, only_b), only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)
