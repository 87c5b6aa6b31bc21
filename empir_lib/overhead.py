"""Execution-time and storage overheads of EMPIR (paper section 3.3, Eq. 6), predicted and measured.

The paper prices an ensemble of M full-precision and N low-precision members
in units of one full-precision model (Eq. 6):

    TimeOverhead{EMPIR(M, N)}    = M + sum_{i=1..N} Ops_per_sec(FP) / Ops_per_sec(k_i)
    StorageOverhead{EMPIR(M, N)} = M + sum_{i=1..N} k_i / FP

where k_i is the precision of the i-th low-precision member, FP = 32 bits,
and Ops_per_sec(b) is the throughput of b-bit operations on the hardware.
The value is the ensemble's *total* cost relative to one FP model: three FP
members cost 3 (the paper's "3x"), and EMPIR(1, 2) costs 1 + the two LP
terms, whose sum is what the paper calls its "<25%" overhead.

Eq. 6 gives each member one precision k_i, but a member has two (wbits,
abits).  We read k_i as follows, and say so wherever it matters:

* storage holds weights, not activations: ``storage_bits = wbits``;
* an operation multiplies a weight by an activation, so the datapath must be
  as wide as the wider operand: ``compute_bits = max(wbits, abits)``.

Ops_per_sec is a function argument.  ``proportional`` is the paper's
description of a reconfigurable datapath (section 3.3: the same compute
elements and bandwidth run more narrow operations at once), ops/s ~ 1/b;
``native`` models hardware with only some widths built in (the paper names
4, 8 and 16 bits besides 32), so a 2-bit operation runs at the 4-bit rate.

Eq. 6 also treats a whole member as k-bit, while the networks keep some
layers in full precision (every FC layer of MNISTconv and CIFARconv).  So
the storage is also *measured*: :func:`pack_model` bit-packs each quantised
kernel into k-bit integer codes (DoReFa weights need no scale factor: the
codes alone fix the values, Eq. 5), keeps every other weight as float32, and
counts the bytes.  :func:`unpack_model` inverts it exactly.
"""
from __future__ import annotations

import math
import re

import numpy as np

from . import quantize
from .errors import FULL_PRECISION, EmpirError, check_bits

FP = FULL_PRECISION
NATIVE_WIDTHS = (4, 8, 16, 32)


# --- Eq. 6 -----------------------------------------------------------------------------


def proportional(bits: int) -> float:
    """Ops_per_sec(b) ~ 1/b: a bit-parallel datapath runs 32/b b-bit operations per 32-bit one."""
    return 1.0 / check_bits(bits)


def native(bits: int, widths=NATIVE_WIDTHS) -> float:
    """Ops_per_sec(b) on hardware with only ``widths`` built in: b runs at the next width up."""
    bits = check_bits(bits)
    return 1.0 / min(w for w in widths if w >= bits)


THROUGHPUTS = {"proportional": proportional, "native": native}


def _throughput(ops_per_sec):
    if callable(ops_per_sec):
        return ops_per_sec
    if ops_per_sec not in THROUGHPUTS:
        raise EmpirError(f"unknown throughput model {ops_per_sec!r}; choose one of "
                         f"{', '.join(THROUGHPUTS)} or pass a function bits -> ops per second.")
    return THROUGHPUTS[ops_per_sec]


def _count(m: int) -> int:
    if isinstance(m, bool) or not isinstance(m, int) or m < 0:
        raise EmpirError(f"the number of full-precision members must be an integer >= 0; got {m!r}.")
    return m


def eq6_time(m: int, k, ops_per_sec="proportional", fp: int = FP) -> float:
    """Eq. 6, time: ``M + sum_i Ops_per_sec(FP) / Ops_per_sec(k_i)`` for LP precisions ``k``."""
    rate = _throughput(ops_per_sec)
    return _count(m) + sum(rate(fp) / rate(check_bits(ki)) for ki in k)


def eq6_storage(m: int, k, fp: int = FP) -> float:
    """Eq. 6, storage: ``M + sum_i k_i / FP`` for LP precisions ``k``."""
    return _count(m) + sum(check_bits(ki) / fp for ki in k)


def storage_bits(wbits: int, abits: int) -> int:
    """Eq. 6's k_i for storage: the weight precision (activations are not stored)."""
    return check_bits(wbits, "wbits")


def compute_bits(wbits: int, abits: int) -> int:
    """Eq. 6's k_i for time: the wider operand of a weight x activation product."""
    return max(check_bits(wbits, "wbits"), check_bits(abits, "abits"))


def split_members(precisions) -> tuple[int, list]:
    """(M, LP precisions) from a list of (wbits, abits); (32, 32) is a full-precision member."""
    precisions = [(check_bits(w, "wbits"), check_bits(a, "abits")) for w, a in precisions]
    lp = [(w, a) for w, a in precisions if (w, a) != (FP, FP)]
    return len(precisions) - len(lp), lp


def ensemble_overheads(precisions, ops_per_sec="proportional") -> dict:
    """Eq. 6 for an ensemble given as (wbits, abits) per member: {'time', 'storage'}.

    >>> ensemble_overheads([(2, 4), (2, 4), (32, 32)])   # the paper's MNIST EMPIR
    {'time': 1.25, 'storage': 1.125}
    """
    m, lp = split_members(precisions)
    return {"time": eq6_time(m, [compute_bits(w, a) for w, a in lp], ops_per_sec),
            "storage": eq6_storage(m, [storage_bits(w, a) for w, a in lp])}


def parse_precision(member: str) -> tuple[int, int]:
    """(wbits, abits) from a zoo id or tag: 'mnist-a4w2-s1' -> (2, 4), 'cifar10-fp-s1' -> (32, 32)."""
    if re.search(r"(^|-)fp(-|$)", member):
        return FP, FP
    found = re.search(r"(^|-)a(\d+)w(\d+)(-|$)", member)
    if not found:
        raise EmpirError(f"{member!r} names no precision; zoo ids look like 'mnist-a4w2-s1' or 'mnist-fp-s1'.")
    return check_bits(int(found.group(3)), "wbits"), check_bits(int(found.group(2)), "abits")


def paper_configurations() -> dict:
    """The paper's three EMPIR ensembles as (wbits, abits) per member.

    MNIST and CIFAR come from ``zoo.EMPIR_MEMBERS``; AlexNet's {2,2} and
    {4,4} members are from the paper's section 5.1 (not in our zoo).
    """
    from . import zoo

    # Tiny ImageNet's members have AlexNet's precisions, listed once below.
    configs = {ds: [parse_precision(m) for m in zoo.EMPIR_MEMBERS[ds]] for ds in ("mnist", "cifar10")}
    configs["alexnet (paper)"] = [(2, 2), (4, 4), (FP, FP)]
    return configs


def sweep(n_max: int = 3, lp=(2, 4), ops_per_sec="proportional") -> dict:
    """Eq. 6 over M, N = 0..n_max with every LP member at ``lp`` = (wbits, abits) (Figure 4 c, d).

    Returns arrays ``time[m, n]`` and ``storage[m, n]``; (0, 0) is NaN (no ensemble).
    """
    shape = (n_max + 1, n_max + 1)
    time, storage = np.full(shape, np.nan), np.full(shape, np.nan)
    for m in range(n_max + 1):
        for n in range(n_max + 1):
            if m + n:
                o = ensemble_overheads([(FP, FP)] * m + [tuple(lp)] * n, ops_per_sec)
                time[m, n], storage[m, n] = o["time"], o["storage"]
    return {"time": time, "storage": storage, "lp": tuple(lp)}


def member_grid(bits=(1, 2, 4, 8, 16), ops_per_sec="proportional") -> dict:
    """One LP member's Eq. 6 terms over a wbits x abits grid: arrays indexed [abits, wbits]."""
    time = np.array([[eq6_time(0, [compute_bits(w, a)], ops_per_sec) for w in bits] for a in bits])
    storage = np.array([[eq6_storage(0, [storage_bits(w, a)]) for w in bits] for a in bits])
    return {"bits": tuple(bits), "time": time, "storage": storage}


# --- bit-packing: the measured storage -----------------------------------------------------


def weight_codes(kernel, bits: int) -> np.ndarray:
    """The integer codes j in 0..2^k-1 of a kernel's DoReFa weights (Eq. 5): w_k = 2 j/(2^k-1) - 1.

    The codes are read back from :func:`quantize.quantize_weights`, so they
    encode exactly the values the model computes with.
    """
    bits = check_bits(bits, "wbits")
    if bits == FP:
        raise EmpirError("wbits=32 is full precision: its weights are floats, not codes.")
    wq = np.asarray(quantize.quantize_weights(np.asarray(kernel, np.float32), bits))
    return np.rint((wq.astype(np.float64) + 1.0) / 2.0 * (2**bits - 1)).astype(np.uint32)


def dequantise(codes, bits: int) -> np.ndarray:
    """Codes back to float32 weights with the same float32 operations as Eq. 5's forward pass.

    ``quantize_weights`` computes ``2 * (j / n) - 1`` in float32; doing the
    same here makes the round trip bit-exact, not merely close.
    """
    n = np.float32(2**check_bits(bits, "wbits") - 1)
    return np.float32(2.0) * (np.asarray(codes).astype(np.float32) / n) - np.float32(1.0)


def pack_codes(codes, bits: int) -> np.ndarray:
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


def unpack_codes(packed, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: the first ``count`` k-bit codes of ``packed``."""
    bits = check_bits(bits)
    packed = np.asarray(packed, np.uint8)
    if packed.size * 8 < count * bits:
        raise EmpirError(f"{packed.size} bytes hold {packed.size * 8 // bits} {bits}-bit codes, not {count}.")
    stream = np.unpackbits(packed, count=count * bits, bitorder="little").reshape(count, bits)
    return (stream.astype(np.uint32) << np.arange(bits, dtype=np.uint32)).sum(1, dtype=np.uint32)


def quantised_kernels(model) -> dict:
    """{variable path: wbits} for every kernel the model quantises (wbits < 32)."""
    out = {}
    for layer in model.layers:
        bits = getattr(layer, "wbits", FP)
        if bits != FP and getattr(layer, "kernel", None) is not None:
            out[layer.kernel.path] = bits
    return out


def pack_model(model) -> list[dict]:
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
        bits = quantised.get(w.path, FP)
        data = values.copy() if bits == FP else pack_codes(weight_codes(values, bits), bits)
        records.append({"path": w.path, "shape": tuple(values.shape), "bits": bits, "data": data})
    return records


def unpack_model(records) -> list[np.ndarray]:
    """Float32 weights from :func:`pack_model`'s records, in order: the values the model computes with."""
    out = []
    for r in records:
        if r["bits"] == FP:
            out.append(np.asarray(r["data"], np.float32).reshape(r["shape"]))
        else:
            codes = unpack_codes(r["data"], r["bits"], math.prod(r["shape"]))
            out.append(dequantise(codes, r["bits"]).reshape(r["shape"]))
    return out


def packed_bytes(records) -> int:
    """Bytes of a packed model: the payload only (shapes and bit widths are a few bytes more)."""
    return int(sum(r["data"].nbytes for r in records))


def float_bytes(model) -> int:
    """Bytes of the same architecture stored in float32: the FP model Eq. 6 divides by."""
    return 4 * int(sum(math.prod(w.shape) for w in model.weights))


def predicted_bytes(model) -> float:
    """Eq. 6 applied layer by layer: every weight tensor at its own precision (no padding)."""
    quantised = quantised_kernels(model)
    return sum(math.prod(w.shape) * quantised.get(w.path, FP) / 8 for w in model.weights)


def fp_twin(model, records):
    """A copy of ``model`` with wbits = 32 everywhere, loaded with the unpacked weights.

    Its quantised activations are kept, so if the packed codes are right its
    logits equal the original member's, bit for bit.
    """
    import keras

    config = model.get_config()
    for layer in config["layers"]:
        if "wbits" in layer["config"]:
            layer["config"]["wbits"] = FP
    twin = keras.Model.from_config(config)
    twin.set_weights(unpack_model(records))
    return twin


def member_wbits(model) -> int:
    """The one weight precision of a member (32 if nothing is quantised); Eq. 6 assumes there is one."""
    bits = set(quantised_kernels(model).values())
    if len(bits) > 1:
        raise EmpirError(f"{model.name} mixes weight precisions {sorted(bits)}; Eq. 6 gives a member one k_i.")
    return bits.pop() if bits else FP


def storage_report(model, name: str = "") -> dict:
    """Measured and predicted storage of one member, as fractions of the same network in float32.

    ``measured``: packed bytes / float bytes; ``eq6``: the member's Eq. 6
    term wbits / 32; ``layerwise``: Eq. 6 per weight tensor (what the
    measurement should equal, up to the padding of each tensor's last byte).
    """
    records = pack_model(model)
    packed, full = packed_bytes(records), float_bytes(model)
    wbits = member_wbits(model)
    return {"member": name or model.name, "wbits": wbits, "parameters": full // 4, "packed_bytes": packed,
            "float_bytes": full, "measured": packed / full, "eq6": eq6_storage(0, [wbits]),
            "layerwise": predicted_bytes(model) / full, "fp_share": fp_share(model)}


def fp_share(model) -> float:
    """Fraction of a member's weights that stay float32 (not quantised)."""
    quantised = quantised_kernels(model)
    total = sum(math.prod(w.shape) for w in model.weights)
    return sum(math.prod(w.shape) for w in model.weights if w.path not in quantised) / total


# --- the time analogue: multiply-accumulates per layer ----------------------------------------


def layer_macs(model) -> list[dict]:
    """Multiply-accumulates per image of every weighted layer, with its precision.

    A convolution does (output pixels) x (kernel size) MACs, a dense layer
    (kernel size); pooling, ReLU and the like are not counted.
    """
    rows = []
    for layer in model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        size = math.prod(kernel.shape)
        out = layer.output.shape
        pixels = math.prod(out[1:-1]) if len(out) == 4 else 1
        rows.append({"layer": layer.name, "macs": pixels * size, "parameters": size,
                     "wbits": getattr(layer, "wbits", FP), "abits": getattr(layer, "abits", FP)})
    return rows


def layerwise_time(model, ops_per_sec="proportional") -> float:
    """Eq. 6's time term for one member, layer by layer: MAC-weighted Ops_per_sec(FP)/Ops_per_sec(k_l)."""
    rate = _throughput(ops_per_sec)
    rows = layer_macs(model)
    cost = sum(r["macs"] * rate(FP) / rate(compute_bits(r["wbits"], r["abits"])) for r in rows)
    return cost / sum(r["macs"] for r in rows)


# The paper's own numbers for Figure 4 (c, d), quoted in section 5.4 as multiples of one FP
# model: shown only labelled as the paper's.  The precisions of the three LP members are not given.
PAPER_FIGURE4 = {"3 LP members": {"m": 0, "n": 3, "time": 0.38, "storage": 0.25},
                 "3 FP members": {"m": 3, "n": 0, "time": 3.0, "storage": 3.0}}
