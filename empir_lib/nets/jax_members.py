"""The members in JAX, for a GPU machine without TensorFlow (issue 29).

:mod:`empir_lib.attack.expected_jax` attacks and judges the stochastic
ensemble on a GPU where only JAX is installed.  The members travel there as a
**bundle** of plain arrays (:func:`empir_lib.studies.expected_gpu.bundle`:
every layer's kind and options, and its kernel); this module rebuilds them as
functions, the same networks as :mod:`empir_lib.nets.models` and
:mod:`empir_lib.nets.quantize` (tested against them in
``tests/test_expected_jax.py``):

* DoReFa weights (Eq. 5, middle) and input activations rounded to the
  nearest level (Eq. 5, right) or stochastically (the original code's
  ``stocRound``: ``floor(s) + [u < s - floor(s)]``), both with the
  straight-through gradient of the ``'ste'`` relaxation;
* one frozen noise draw per member (:func:`frozen`, as
  :func:`empir_lib.nets.stochastic.fixed_draw`);
* max voting with the FP-first tie-break (:func:`empir_lib.nets.ensemble.vote`).

The random numbers are JAX's: single draws differ from TensorFlow's, their
distribution does not.
"""
from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import EmpirError, check_positive_int

FULL = 32


def members(bundle: dict) -> tuple[list[list[dict]], np.ndarray]:
    """The members' layer lists (weights already quantised, Eq. 5 middle) and the tie-break order.

    ``bundle`` holds ``layers`` (JSON: one list of layer dicts per member)
    and ``m<k>-l<j>`` kernels (:func:`empir_lib.studies.expected_gpu.bundle`).
    """
    try:
        spec = json.loads(str(bundle["layers"]))
        order = np.asarray(bundle["order"], np.int32)
    except KeyError as e:
        raise EmpirError(f"not a members bundle: it has no {e.args[0]!r}; write one with "
                         "empir_lib.studies.expected_gpu.bundle.") from None
    out = []
    for k, layers in enumerate(spec):
        built = []
        for j, layer in enumerate(layers):
            layer = dict(layer)
            if layer["kind"] in ("conv", "dense"):
                layer["w"] = jnp.asarray(_quantise_weights(np.asarray(bundle[f"m{k}-l{j}"], np.float32),
                                                           layer["wbits"]))
            built.append(layer)
        out.append(built)
    return out, order


def _quantise_weights(w: np.ndarray, bits: int) -> np.ndarray:
    # Eq. 5, middle (quantize.quantize_weights); the weights are constants here, so no gradient is needed.
    if bits == FULL:
        return w
    t = np.tanh(w.astype(np.float32))
    u = t / np.abs(t).max() * 0.5 + 0.5
    n = np.float32(2**bits - 1)
    return (2.0 * np.round(u * n) / n - 1.0).astype(np.float32)


def _round_ste(v: jnp.ndarray) -> jnp.ndarray:
    return v + jax.lax.stop_gradient(jnp.round(v) - v)


def quantise_input(x: jax.Array, layer: dict, mode: str, key: jax.Array | None,
                   noise: jax.Array | None) -> jax.Array:
    """Eq. 5's activation rule, nearest or stochastic, with the straight-through gradient."""
    bits = layer["abits"]
    if bits == FULL:
        return x
    n = float(2**bits - 1)
    v = jnp.clip(x, 0.0, 1.0) * n
    if not layer.get("stochastic") or mode == "nearest":
        return _round_ste(v) / n
    if mode == "fixed":
        u = noise  # one frozen draw, shared by every image (stochastic.FixedDraw)
    else:
        u = jax.random.uniform(key, v.shape, minval=1e-7, maxval=1.0 - 1e-7)
    floor = jnp.floor(v)
    hard = floor + (u < v - floor).astype(v.dtype)
    return (hard + (v - jax.lax.stop_gradient(v))) / n


def logits(member: list[dict], x: jax.Array, mode: str = "sample", key: jax.Array | None = None,
           noises: list | None = None, precision: object = None) -> jax.Array:
    """One member's logits on a batch (NHWC): ``mode`` 'sample' (fresh draws from ``key``),
    'nearest' (Eq. 5) or 'fixed' (``noises``: one array per stochastic layer)."""
    k = 0
    for layer in member:
        kind = layer["kind"]
        if kind in ("conv", "dense"):
            sub = None if key is None else jax.random.fold_in(key, k)
            noise = None if noises is None or not layer.get("stochastic") else noises[k]
            if layer.get("stochastic"):
                k += 1
            x = quantise_input(x, layer, mode, sub, noise)
            if kind == "conv":
                s = layer["strides"]
                x = jax.lax.conv_general_dilated(x, layer["w"], (s, s), layer["padding"],
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)
            else:
                x = jnp.dot(x, layer["w"], precision=precision)
        elif kind == "relu":
            x = jnp.maximum(x, 0.0)
        elif kind in ("maxpool", "avgpool"):
            p, s = layer["size"], layer["stride"]
            window, strides = (1, p, p, 1), (1, s, s, 1)
            if kind == "maxpool":
                x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, window, strides, layer["padding"])
            else:
                x = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, strides, layer["padding"]) / (p * p)
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        else:
            raise EmpirError(f"unknown layer kind {kind!r} in the bundle.")
    return x


def stochastic_shapes(member: list[dict], input_shape: tuple) -> list[tuple]:
    """The activation shape (one image) at each stochastic layer's input: what a frozen draw covers."""
    shapes, x = [], jnp.zeros((1, *input_shape), jnp.float32)
    for layer in member:
        if layer.get("stochastic"):
            shapes.append(tuple(x.shape[1:]))
        x = logits([layer], x, "nearest")
    return shapes


def stack_logits(ms: list[list[dict]], x: jax.Array, mode: str, key: jax.Array | None, noises: list | None = None,
                 precision: object = None) -> jax.Array:
    """Every member's logits, (members, batch, classes); member k draws from ``fold_in(key, 1000 + k)``."""
    return jnp.stack([logits(m, x, mode, None if key is None else jax.random.fold_in(key, 1000 + k),
                             None if noises is None else noises[k], precision) for k, m in enumerate(ms)])


def vote(z: jax.Array, order: np.ndarray) -> jax.Array:
    """Max voting with the FP-first tie-break (:func:`empir_lib.nets.ensemble.vote`): (batch,) int32."""
    preds = jnp.argmax(z, -1).astype(jnp.int32)                       # (K, B)
    counts = jax.nn.one_hot(preds, z.shape[-1]).sum(0)                # (B, C)
    tied = counts >= counts.max(-1, keepdims=True)
    ranked = preds[jnp.asarray(order)]                                # (K, B)
    in_tied = jnp.take_along_axis(tied, ranked.T, axis=1)             # (B, K)
    first = jnp.argmax(in_tied, -1)
    return jnp.take_along_axis(ranked.T, first[:, None], axis=1)[:, 0]


def frozen(ms: list[list[dict]], input_shape: tuple, draws: int, seed: int) -> tuple[list, list]:
    """K frozen draws of every member (stochastic.fixed_draw): (members repeated K times, their noises)."""
    rng = np.random.default_rng(seed)
    out, noises = [], []
    for _ in range(check_positive_int(draws, "K (frozen draws)")):
        for m in ms:
            out.append(m)
            noises.append([jnp.asarray(rng.uniform(size=s).astype(np.float32))
                           for s in stochastic_shapes(m, input_shape)])
    return out, noises
