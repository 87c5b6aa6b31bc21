"""The expected-accuracy suite in JAX, for an accelerator (issue 29).

:mod:`empir_lib.attack.expected_suite` is the reference: TensorFlow on the
CPU.  Its quantity (:mod:`empir_lib.attack.expected`'s docstring: per image,
the probability over the defence's draws that its deployed vote at the
attacker's point is right) needs S EOT samples per gradient and R fresh
draws per point, which on two cores costs about 30 s per image at S = 16.
This module computes the same quantity with the same attacks in JAX, so
that it runs on a GPU where TensorFlow is not installed.  It imports no
TensorFlow: a **bundle** (:func:`empir_lib.studies.expected_gpu.bundle`)
carries the members' layers and weights as plain arrays.

What is the same as the reference, and tested against it
(``tests/test_expected_jax.py``):

* the members and their vote (:mod:`empir_lib.nets.jax_members`);
* the objectives (:mod:`empir_lib.attack.objectives`): ``ce_mean_prob``,
  ``dlr_mean_logits``, ``margin_mean_logits``, ``ce_member:<i>``, each the
  mean over S draws (EOT, Athalye et al. 2018, section 4);
* APGD's schedule (Croce & Hein 2020, Algorithm 1; the checkpoints of
  :mod:`empir_lib.attack.apgd_schedule`) and fixed-step PGD, run to the
  end and returning the best-loss iterate, as in the reference suite;
* the transfer stages: ``nearest`` (the deterministic Eq. 5 version) and
  ``fixed-draws`` (K frozen noise draws per member, attacked as one ensemble).

What differs: the random numbers (JAX's generator, so single runs differ,
not the distribution), and Square is not here (it is ART's, on the CPU).
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..core import memo
from ..core.errors import EmpirError, check_choice, check_positive_int
from ..nets import jax_members as jm
from . import apgd_jax, validate
from . import lottery as lottery_rule

LOSSES = ("ce_mean_prob", "dlr_mean_logits", "margin_mean_logits", "ce_member")
Members = list[list[dict]]  # jax_members.members: one list of layer dicts per member


# --- objectives (objectives.py's, on stacked logits) ----------------------------------------------------


def _margin(z: jax.Array, y: jax.Array) -> jax.Array:
    onehot = jax.nn.one_hot(y, z.shape[-1], dtype=z.dtype)
    return (z - onehot * 1e9).max(-1) - (onehot * z).sum(-1)


def objective(name: str, z: jax.Array, y: jax.Array) -> jax.Array:
    """The per-image loss ``name`` of stacked member logits ``z`` (members, batch, classes)."""
    return objective_stack(z, y)[loss_index(name, z.shape[0])]


def loss_index(name: str, n_members: int) -> int:
    """The row of ``name`` in :func:`objective_stack`' stack (a traced index: one compiled attack serves all)."""
    base, _, idx = name.partition(":")
    check_choice(base, LOSSES, "objective")
    if base != "ce_member":
        return LOSSES.index(base)
    if not idx.isdigit() or not 0 <= int(idx) < n_members:
        raise EmpirError(f"objective {name!r} names no member; this ensemble has members 0..{n_members - 1}.")
    return 3 + int(idx)


def objective_stack(z: jax.Array, y: jax.Array) -> jax.Array:
    """Every objective of objectives.py on the same logits, stacked (rows: :func:`loss_index`):
    ce_mean_prob, dlr_mean_logits, margin_mean_logits, then ce_member:<i> for each member."""
    ce = lambda lg: -jnp.take_along_axis(jax.nn.log_softmax(lg), y[:, None], 1)[:, 0]  # noqa: E731
    log_mean = jax.nn.logsumexp(jax.nn.log_softmax(z), 0) - jnp.log(z.shape[0])
    zbar = z.mean(0)
    top = jax.lax.top_k(zbar, 3)[0]
    margin = _margin(zbar, y)
    return jnp.stack([ce(log_mean), margin / (top[:, 0] - top[:, 2] + 1e-12), margin,
                      *[ce(z[i]) for i in range(z.shape[0])]])


def eot_loss(ms: Members, samples: int, mode: str = "sample", noises: list | None = None) -> Callable:
    """``f(x, y, key, which) -> (per-image loss, y)``: objective row ``which`` (:func:`loss_index`), the mean
    over ``samples`` draws (EOT).  A member's objective runs every member, as the reference suite does."""

    def f(x, y, key, which):
        b = x.shape[0]
        z = jm.stack_logits(ms, jnp.tile(x, (samples, 1, 1, 1)), mode, key, noises)
        per = objective_stack(z, jnp.tile(y, samples))[which].reshape(samples, b).mean(0)
        return per, y  # no decision: the expected accuracy is judged on fresh draws, after the attack

    return f


# --- APGD and PGD (apgd_jax's loop, run to the end, best-loss iterate) ----------------------------------


def attack(loss: Callable, which: int, x: np.ndarray, y: np.ndarray, eps: float, n_iter: int, key: jax.Array,
           step: float | None = None, schedule: bool = True, momentum: bool = True) -> np.ndarray:
    """APGD (defaults; Croce & Hein 2020, Algorithm 1) or fixed-step PGD at L-inf ``eps``: the best-loss points.

    ``loss(x, y, key, which)`` is per image (:func:`eot_loss`); every
    iterate's loss is a fresh EOT estimate, as in the reference.  The
    objective, the schedule and the momentum are traced arguments, so one
    compiled loop (:func:`empir_lib.attack.apgd_jax.run`) serves every stage of a setting.
    """
    return apgd_jax.run(loss, which, x, y, eps, n_iter, key, "linf", step, schedule, momentum)["x_best"]


# --- the expected accuracy and the suite --------------------------------------------------------------


def correct_rate(ms: Members, order: np.ndarray, x: np.ndarray, y: np.ndarray, draws: int, key: jax.Array,
                 batch: int = 1000) -> np.ndarray:
    """Per image, the share of ``draws`` fresh draws whose vote is the label (expected.correct_rate)."""
    draws = check_positive_int(draws, "R (fresh draws per point)")
    f = vote_fn(ms, tuple(int(o) for o in order))
    hits, size = np.zeros(len(y)), padded(len(y), batch)
    for r in range(draws):
        k = jax.random.fold_in(key, r)
        for i in range(0, len(y), size):
            xb = _pad(np.asarray(x[i:i + size], np.float32), size)
            pred = np.asarray(f(jnp.asarray(xb), jax.random.fold_in(k, i)))[:len(y[i:i + size])]
            hits[i:i + size] += pred == np.asarray(y[i:i + size])
    return hits / draws


def padded(n: int, most: int) -> int:
    """The batch size for ``n`` images: the next power of two, at most ``most``.

    Every batch is padded to it, so a compiled attack or vote is reused
    across chunks instead of compiled again for each new length.
    """
    return int(min(most, 2 ** int(np.ceil(np.log2(max(n, 1))))))


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    # Copies of the last row; their results are dropped.
    return a if len(a) == size else np.concatenate([a, np.repeat(a[-1:], size - len(a), 0)])


def vote_fn(ms: Members, order: tuple, mode: str = "sample", noises: list | None = None) -> Callable:
    """``f(x, key) -> the vote`` (compiled, cached), at full float32 precision: a deployed decision is not a
    place for TF32."""
    return memo.get("expected_jax.votes", (id(ms), order, mode, id(noises)), lambda: jax.jit(
        lambda x, k: jm.vote(jm.stack_logits(ms, x, mode, k, noises, jax.lax.Precision.HIGHEST),
                             jnp.asarray(order))), 32, keep=(ms, noises))


def stage_points(ms: Members, spec: dict, x: np.ndarray, y: np.ndarray, eps: float, key: jax.Array,
                 input_shape: tuple) -> np.ndarray:
    """One stage's points (expected_suite.suite's specs, less Square)."""
    kind = spec["kind"]
    if kind == "square":
        raise EmpirError("Square is ART's and runs on the CPU (expected_suite); the JAX suite has no Square.")
    if kind == "nearest":
        loss, which = _cached_loss(ms, 1, "nearest", None), 0
    elif kind == "fixed-draws":
        fms, noises = _cached_frozen(ms, input_shape, spec["draws"])
        loss, which = _cached_loss(fms, 1, "fixed", noises), 0
    else:
        loss, which = _cached_loss(ms, spec["samples"], "sample", None), loss_index(spec["loss"], len(ms))
    fixed = kind == "pgd"
    return attack(loss, which, x, y, eps, spec["n_iter"], key, step=spec["step_frac"] * eps if fixed else None,
                  schedule=not fixed, momentum=not fixed)


def _cached_loss(ms: Members, samples: int, mode: str, noises: list | None) -> Callable:
    # One loss function per setting: the compiled attack is keyed on it.
    return memo.get("expected_jax.losses", (id(ms), samples, mode, id(noises)),
                    lambda: eot_loss(ms, samples, mode, noises), 64, keep=(ms, noises))


def _cached_frozen(ms: Members, input_shape: tuple, draws: int) -> tuple[list, list]:
    return memo.get("expected_jax.frozen", (id(ms), draws), lambda: jm.frozen(ms, input_shape, draws, seed=draws),
                    16, keep=ms)


def evaluate(ms: Members, order: np.ndarray, x: np.ndarray, y: np.ndarray, eps: float, specs: list[dict],
             draws: int, seed: int = 0, chunk: int = 16384, clean: np.ndarray | None = None,
             tick: Callable[[str, int], object] | None = None) -> dict:
    """expected_suite.evaluate's cascade: each stage on the images still above zero; per image the
    worst case over stages, re-estimated on fresh draws at the chosen point.

    ``chunk`` bounds the images times EOT samples in one batch.
    Returns ``clean``, ``per_stage`` (n, stages + 1), ``best_stage``, ``robust``, ``points``, ``stats``.
    """
    if not specs:
        raise EmpirError("an expected-accuracy suite needs at least one stage.")
    x = np.asarray(x, np.float32)
    y = np.asarray(y).reshape(-1).astype(np.int64)
    key = jax.random.key(seed)
    shape = tuple(x.shape[1:])
    p0 = correct_rate(ms, order, x, y, draws, jax.random.fold_in(key, 1)) if clean is None else np.asarray(clean)
    per = np.full((len(y), len(specs) + 1), np.nan)
    per[:, 0] = p0
    best_x, best_p, best_stage = x.copy(), p0.copy(), np.zeros(len(y), np.int64)
    stats = {}
    for j, spec in enumerate(specs, start=1):
        todo = np.flatnonzero(best_p > 0)
        st = stats.setdefault(spec["name"], {"attacked": int(len(todo)), "invalid": 0})
        # One batch size per setting (not per stage): each compiled loop is reused by every stage.
        size = padded(len(y), max(16, chunk // spec.get("samples", 1)))
        for c in range(0, len(todo), size):
            idx = todo[c:c + size]
            k = jax.random.fold_in(jax.random.fold_in(key, 100 + j), c)
            xa = stage_points(ms, spec, _pad(x[idx], size), _pad(y[idx], size), eps, k, shape)[:len(idx)]
            ok = validate.valid(x[idx], xa, {"norm": "linf", "eps": eps})
            st["invalid"] += int((~ok).sum())
            xa = np.where(ok[:, None, None, None], xa, x[idx])
            p = correct_rate(ms, order, xa, y[idx], draws, jax.random.fold_in(k, 7))
            per[idx, j] = p
            better = p < best_p[idx]
            best_x[idx[better]], best_p[idx[better]], best_stage[idx[better]] = xa[better], p[better], j
            if tick is not None:
                tick(spec["name"], len(idx))
    # Fresh draws at the chosen point: the min over noisy estimates is biased low.
    robust = correct_rate(ms, order, best_x, y, draws, jax.random.fold_in(key, 2))
    return {"clean": p0, "per_stage": per, "best_stage": best_stage, "robust": robust, "points": best_x,
            "stats": stats, "stages": [s["name"] for s in specs]}


def lottery(ms: Members, order: np.ndarray, x: np.ndarray, y: np.ndarray, queries: list[int], key: jax.Array) -> dict:
    """expected.lottery: the share right on every one of Q fresh draws, per Q, and ``mean(p ** Q)``."""
    f = vote_fn(ms, tuple(int(o) for o in order))
    xj, y = jnp.asarray(x, jnp.float32), np.asarray(y)
    return lottery_rule.count(lambda q: np.asarray(f(xj, jax.random.fold_in(key, q))) == y, len(y), queries)
