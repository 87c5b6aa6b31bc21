"""Minimal L2 perturbation per image that always succeeds with an unbounded budget, judged on the vote.

CW-L2 (the suite's old minimal-norm figure) can fail outright: with a
masked or saturated objective it finds nothing even unbounded, and its
"median minimal L2" is then a median over a set it chose.  Here every
correctly classified image gets a finite minimal L2, by construction:

1. **A boundary start.**  Among the evaluated images, the nearest (in L2)
   one that the vote puts in another class is adversarial for this image
   with perturbation ``x' - x``.  A bisection on the segment from ``x`` to
   ``x'`` (decision-only, :data:`LINE_STEPS` steps) moves it to the vote's
   boundary.  This needs no gradient at all, so it succeeds on a model whose
   gradient is zero everywhere, and it fails only if the vote gives every
   image the same class (then the image has no adversarial example among
   them, and the function says so).
2. **A bisection on the budget with the suite's APGD** (Croce & Hein 2020,
   L2, on the cross-entropy of the mean probability; :func:`apgd.run` with
   one budget per image): between ``lo = 0`` and ``hi`` (the best norm so
   far), APGD at ``(lo + hi) / 2``; a break lowers ``hi`` to the norm it
   used, a failure raises ``lo``.  After :data:`BISECT_STEPS` steps
   ``hi`` is the minimal L2 reported: an upper bound on the true minimum, as
   every attack's is, but never "none found".

Every returned perturbation is re-checked: finite, in the box, its norm the
one reported, and the vote on it wrong.  The medians carry a bootstrap 95%
interval (:func:`median_interval`).  Pintor et al.'s (2021) FMN would do step
2 in one run; the bisection reuses the suite's tested APGD instead.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..core.errors import EmpirError, check_positive_int
from ..core.files import atomic_write
from ..nets import ensemble as ens_mod
from . import apgd, objectives, outcomes, suite, validate
from . import progress as progress_bars  # "progress" is an argument here

LINE_STEPS = 20
BISECT_STEPS = 8
N_ITER = 50
BOOTSTRAP = 2000


def boundary_start(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, pool: np.ndarray, pool_pred: np.ndarray,
                   steps: int = LINE_STEPS) -> tuple[np.ndarray, np.ndarray]:
    """Per image: a point on the segment to the nearest image of ``pool`` voted into another class, voted wrong.

    ``pool_pred`` is the vote on ``pool``.  Returns ``(x_adv, found)``;
    ``found`` is False only where no pool image is voted into a class other than ``y``.
    """
    flat = x.reshape(len(x), -1).astype(np.float64)
    pf = pool.reshape(len(pool), -1).astype(np.float64)
    dist = (flat ** 2).sum(1)[:, None] + (pf ** 2).sum(1)[None, :] - 2.0 * flat @ pf.T
    dist[pool_pred[None, :] == y[:, None]] = np.inf  # only images the vote puts in another class
    j = dist.argmin(1)
    found = np.isfinite(dist[np.arange(len(x)), j])
    other = pool[j]
    lo, hi = np.zeros(len(x)), np.ones(len(x))  # hi: a point of the segment the vote gets wrong
    for _ in range(steps):
        mid = (lo + hi) / 2
        xm = (x + mid[:, None, None, None] * (other - x)).astype(np.float32)
        wrong = ens_mod.predict(ens, xm) != y
        hi, lo = np.where(wrong, mid, hi), np.where(wrong, lo, mid)
    xa = np.clip(x + hi[:, None, None, None] * (other - x), 0.0, 1.0).astype(np.float32)
    return np.where(found[:, None, None, None], xa, x), found


def minimal_l2(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, seed: int = 0, n_iter: int = N_ITER,
               bisect_steps: int = BISECT_STEPS, progress: bool = True,
               pool: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """The minimal L2 per image (0 if the vote is already wrong), always finite where an adversary exists.

    Returns ``norm`` (per image), ``broken_by`` (0 misclassified, 1 the
    boundary start, 2 APGD's bisection gave the smallest, -1 no adversary
    found: only when the vote is constant), ``success_rate`` on the correctly
    classified images, ``median_l2`` with its bootstrap ``median_ci95``, and
    the seconds spent.  ``pool`` (images, their vote) is where the boundary
    start looks for differently-voted images; by default ``x`` itself (a job
    that runs in chunks passes all its images).
    """
    x = np.asarray(x, np.float32)
    y = np.asarray(y).reshape(-1).astype(np.int64)
    if len(x) != len(y) or not len(y):
        raise EmpirError(f"{len(x)} images and {len(y)} labels: pass the same number, at least one.")
    n_iter, bisect_steps = check_positive_int(n_iter, "n_iter"), check_positive_int(bisect_steps, "bisect_steps")
    t0 = time.perf_counter()
    pred = ens_mod.predict(ens, x)
    correct = np.flatnonzero(pred == y)
    norm = np.zeros(len(y), np.float32)
    broken_by = np.full(len(y), outcomes.CLEAN, np.int8)
    xs, ys = x[correct], y[correct]
    pool_x, pool_pred = pool if pool is not None else (x, pred)
    best, found = boundary_start(ens, xs, ys, np.asarray(pool_x, np.float32), np.asarray(pool_pred))
    hi = np.where(found, validate.norms(xs, best, "l2"), np.inf)
    lo = np.zeros(len(correct))
    how = np.where(found, 1, outcomes.ROBUST).astype(np.int8)
    fn = objectives.loss_fn(ens, "ce_mean_prob")
    steps = range(bisect_steps)
    if progress:
        from tqdm.auto import tqdm  # noqa: PLC0415  (only when shown: tqdm.auto warns in a notebook)

        steps = tqdm(steps, desc="minimal L2 (bisection)", unit="step")
    cap = float(np.sqrt(np.prod(x.shape[1:])))
    for s in steps:
        todo = np.flatnonzero(found)
        if not len(todo):
            break
        mid = np.minimum((lo[todo] + hi[todo]) / 2, cap)
        out = apgd.run(fn, xs[todo], ys[todo], mid, "l2", n_iter, 1, seed * 1_000_003 + s)
        d = validate.norms(xs[todo], out.x_adv, "l2")
        ok = out.broken & validate.valid(xs[todo], out.x_adv, {"norm": "l2", "eps": float(mid.max())})
        ok &= ens_mod.predict(ens, out.x_adv) != ys[todo]
        better = ok & (d < hi[todo])
        best[todo[better]] = out.x_adv[better]
        hi[todo[better]] = d[better]
        how[todo[better]] = 2
        lo[todo] = np.where(ok, lo[todo], mid)
    # The re-check of what is reported: finite, in the box, the norm it claims, and the vote fooled.
    if len(correct):
        fooled = ens_mod.predict(ens, best) != ys
        good = validate.valid(xs, best, {"norm": "l2", "eps": cap}) & fooled
        hi = np.where(found & good, validate.norms(xs, best, "l2"), np.inf)
        how = np.where(found & good, how, outcomes.ROBUST).astype(np.int8)
    norm[correct] = hi
    broken_by[correct] = how
    d_correct = norm[correct]
    rate = float(np.isfinite(d_correct).mean()) if len(correct) else float("nan")
    med = float(np.median(d_correct)) if len(correct) else float("nan")
    return {"norm": norm, "broken_by": broken_by, "success_rate": rate, "attacked": int(len(correct)),
            "found": int(np.isfinite(d_correct).sum()), "median_l2": med,
            "median_ci95": median_interval(d_correct, seed), "seconds": time.perf_counter() - t0,
            "from_apgd": int(np.sum(how == 2)), "from_boundary": int(np.sum(how == 1))}


def median_interval(d: np.ndarray, seed: int = 0, resamples: int = BOOTSTRAP) -> list[float]:
    """Percentile bootstrap 95% interval of the median of ``d`` (inf entries count as larger than any)."""
    d = np.asarray(d, np.float64)
    if not len(d):
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    meds = np.median(d[rng.integers(0, len(d), (resamples, len(d)))], axis=1)
    lo, hi = np.percentile(meds, [2.5, 97.5])
    return [float(lo), float(hi)]


def cw_min_l2(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, seed: int = 0, progress: bool = True) -> dict:
    """CW-L2 on every image, judged on the vote: the minimal L2 it finds (inf where none, 0 if misclassified).

    The suite's old minimal-norm figure, kept for the rows that quote it; it can
    fail outright (module docstring), which :func:`minimal_l2` cannot.
    """
    y = np.asarray(y).reshape(-1).astype(np.int64)
    clean = ens_mod.predict(ens, x)
    spec = {"name": "cw-l2", "kind": "cw", **suite.CW_SEARCH}
    dist = np.where(clean == y, np.inf, 0.0).astype(np.float32)
    todo = np.flatnonzero(clean == y)
    t0 = time.perf_counter()
    for c in progress_bars.chunk_bar(range(0, len(todo), 500), "cw-l2 minimal L2", progress):
        idx = todo[c:c + 500]
        xa, _ = suite.run_attack(ens, spec, {"norm": "l2", "eps": 1e3}, x[idx], y[idx], seed)
        ok = ens_mod.predict(ens, xa) != y[idx]
        d = validate.norms(x[idx], xa, "l2")
        dist[idx[ok]] = d[ok]
    broken_by = np.where(clean != y, outcomes.CLEAN, np.where(np.isfinite(dist), 1, outcomes.ROBUST)).astype(np.int8)
    correct = dist[clean == y]
    return {"broken_by": broken_by, "norm": dist, "attack": spec, "seconds": time.perf_counter() - t0,
            "median_l2": float(np.median(correct)) if len(correct) else float("nan"),
            "found": int(np.isfinite(correct).sum()), "attacked": int(len(correct))}


def minimal_l2_resumable(ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray, state: Path, cfg: dict,
                         progress: bool, chunk: int = 100) -> dict:
    """:func:`minimal_l2` in chunks of images, resumable at ``state`` (tied to ``cfg``), then summarised.

    The pool of starting points is every image; each chunk's outcome is saved
    as it finishes, so a job cut short resumes at its last chunk.
    """
    pool = (x, ens_mod.predict(ens, x))
    key = json.dumps(cfg, sort_keys=True)
    norm, how, secs, done = np.zeros(len(y), np.float32), np.zeros(len(y), np.int8), 0.0, 0
    if state.is_file():
        with np.load(state, allow_pickle=False) as f:
            if str(f["config"]) == key:
                norm, how, secs, done = f["norm"].copy(), f["broken_by"].copy(), float(f["seconds"]), int(f["done"])
    resumed = secs
    for c in range(done, len(y), chunk):
        r = minimal_l2(ens, x[c:c + chunk], y[c:c + chunk], seed=c, progress=progress, pool=pool)
        norm[c:c + chunk], how[c:c + chunk] = r["norm"], r["broken_by"]
        secs += r["seconds"]
        state.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"config": np.array(key), "norm": norm, "broken_by": how, "seconds": np.array(secs),
                  "done": np.array(c + chunk)}
        atomic_write(state, lambda p, a=arrays: np.savez(open(p, "wb"), **a))
    correct = how != outcomes.CLEAN
    d = norm[correct]
    return {"norm": norm, "broken_by": how, "success_rate": float(np.isfinite(d).mean()) if len(d) else float("nan"),
            "attacked": int(correct.sum()), "found": int(np.isfinite(d).sum()),
            "median_l2": float(np.median(d)) if len(d) else float("nan"), "median_ci95": median_interval(d),
            "seconds": secs, "resumed_s": resumed, "from_apgd": int(np.sum(how == 2)),
            "from_boundary": int(np.sum(how == 1))}
