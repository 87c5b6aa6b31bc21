"""Bit-packed storage of a member: the storage that Eq. 6 predicts, measured.

Eq. 6 (:mod:`empir_lib.hardware.overhead`) treats a whole member as k-bit, while the
networks keep some layers in full precision (every FC layer of MNISTconv and
CIFARconv).  So the storage is also *measured*: :func:`pack_model` bit-packs
each quantised kernel into k-bit integer codes (DoReFa weights need no scale
factor: the codes alone fix the values, Eq. 5), keeps every other weight as
float32, and counts the bytes.  :func:`unpack_model` inverts it exactly, and
:func:`fp_twin` proves it: a copy of the member loaded with the unpacked
weights computes the same logits, bit for bit.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from numpy.typing import ArrayLike

from ..core.errors import FULL_PRECISION, EmpirError, check_bits
from ..nets import quantize


def weight_codes(kernel: ArrayLike, bits: int) -> np.ndarray:
    """The integer codes j in 0..2^k-1 of a kernel's DoReFa weights (Eq. 5): w_k = 2 j/(2^k-1) - 1.

    The codes are read back from :func:`quantize.quantize_weights`, so they
    encode exactly the values the model computes with.
    """
    bits = check_bits(bits, "wbits")
    if bits == FULL_PRECISION:
        raise EmpirError("wbits=32 is full precision: its weights are floats, not codes.")
    wq = np.asarray(quantize.quantize_weights(np.asarray(kernel, np.float32), bits))
    return np.rint((wq.astype(np.float64) + 1.0) / 2.0 * (2**bits - 1)).astype(np.uint32)


def dequantise(codes: ArrayLike, bits: int) -> np.ndarray:
    """Codes back to float32 weights with the same float32 operations as Eq. 5's forward pass.

    ``quantize_weights`` computes ``2 * (j / n) - 1`` in float32; doing the
    same here makes the round trip bit-exact, not merely close.
    """
    n = np.float32(2**check_bits(bits, "wbits") - 1)
    return np.float32(2.0) * (np.asarray(codes).astype(np.float32) / n) - np.float32(1.0)


def pack_codes(codes: ArrayLike, bits: int) -> np.ndarray:
    """k-bit codes -> bytes: code i fills bits [i*k, (i+1)*k) of the stream, least significant first.

    The result has ceil(len * k / 8) bytes: nothing but the codes and at most
    7 bits of padding at the end.
    """
    bits = check_bits(bits)
    codes = np.asarray(codes).reshape(-1)
    if codes.size and (codes.min() < 0 or codes.max() >= 2**bits):
        raise EmpirError(f"codes must lie in 0..{2**bits - 1} for {bits} bits; got {codes.min()}..{codes.max()}.")
    stream = (codes.astype(np.uint32)[:, None] >> np.arange(bits, dtype=np.uint32)) & 1
    return np.packbits(stream.astype(np.uint8).reshape(-1), bitorder="little")


def unpack_codes(packed: ArrayLike, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: the first ``count`` k-bit codes of ``packed``."""
    bits = check_bits(bits)
    packed = np.asarray(packed, np.uint8)
    if packed.size * 8 < count * bits:
        raise EmpirError(f"{packed.size} bytes hold {packed.size * 8 // bits} {bits}-bit codes, not {count}.")
    stream = np.unpackbits(packed, count=count * bits, bitorder="little").reshape(count, bits)
    return (stream.astype(np.uint32) << np.arange(bits, dtype=np.uint32)).sum(1, dtype=np.uint32)


def quantised_kernels(model: keras.Model) -> dict:
    """{variable path: wbits} for every kernel the model quantises (wbits < 32)."""
    out = {}
    for layer in model.layers:
        bits = getattr(layer, "wbits", FULL_PRECISION)
        if bits != FULL_PRECISION and getattr(layer, "kernel", None) is not None:
            out[layer.kernel.path] = bits
    return out


def pack_model(model: keras.Model) -> list[dict]:
    """A model's weights as stored for deployment, in ``model.weights`` order.

    Each record: ``path``, ``shape``, ``bits`` and ``data`` (a uint8 array of
    packed codes for a quantised kernel, else the float32 values).  The
    full-precision shadow weights that training keeps are *not* stored: a
    quantised layer computes only with the levels.
    """
    quantised = quantised_kernels(model)
    records = []
    for w in model.weights:
        values = np.asarray(w.numpy(), np.float32)
        bits = quantised.get(w.path, FULL_PRECISION)
        data = values.copy() if bits == FULL_PRECISION else pack_codes(weight_codes(values, bits), bits)
        records.append({"path": w.path, "shape": tuple(values.shape), "bits": bits, "data": data})
    return records


def unpack_model(records: list[dict]) -> list[np.ndarray]:
    """Float32 weights from :func:`pack_model`'s records, in order: the values the model computes with."""
    out = []
    for r in records:
        if r["bits"] == FULL_PRECISION:
            out.append(np.asarray(r["data"], np.float32).reshape(r["shape"]))
        else:
            codes = unpack_codes(r["data"], r["bits"], math.prod(r["shape"]))
            out.append(dequantise(codes, r["bits"]).reshape(r["shape"]))
    return out


def packed_bytes(records: list[dict]) -> int:
    """Bytes of a packed model: the payload only (shapes and bit widths are a few bytes more)."""
    return int(sum(r["data"].nbytes for r in records))


def float_bytes(model: keras.Model) -> int:
    """Bytes of the same architecture stored in float32: the FP model Eq. 6 divides by."""
    return 4 * int(sum(math.prod(w.shape) for w in model.weights))


def fp_twin(model: keras.Model, records: list[dict]) -> keras.Model:
    """A copy of ``model`` with wbits = 32 everywhere, loaded with the unpacked weights.

    Its quantised activations are kept, so if the packed codes are right its
    logits equal the original member's, bit for bit.
    """
    config = model.get_config()
    for layer in config["layers"]:
        if "wbits" in layer["config"]:
            layer["config"]["wbits"] = FULL_PRECISION
    twin = keras.Model.from_config(config)
    twin.set_weights(unpack_model(records))
    return twin


def member_wbits(model: keras.Model) -> int:
    """The one weight precision of a member (32 if nothing is quantised); Eq. 6 assumes there is one."""
    bits = set(quantised_kernels(model).values())
    if len(bits) > 1:
        raise EmpirError(f"{model.name} mixes weight precisions {sorted(bits)}; Eq. 6 gives a member one k_i.")
    return bits.pop() if bits else FULL_PRECISION


def fp_share(model: keras.Model) -> float:
    """Fraction of a member's weights that stay float32 (not quantised)."""
    quantised = quantised_kernels(model)
    total = sum(math.prod(w.shape) for w in model.weights)
    return sum(math.prod(w.shape) for w in model.weights if w.path not in quantised) / total
