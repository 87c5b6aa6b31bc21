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
layers in full precision; the bit-packed storage that measures this is
:mod:`empir_lib.hardware.packing`, and :func:`storage_report` sets the two side by side.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import keras
import numpy as np

from ..core import paper, settings
from ..core.errors import FULL_PRECISION, EmpirError, check_bits
from .packing import (
    dequantise,
    float_bytes,
    fp_share,
    fp_twin,
    member_wbits,
    pack_codes,
    pack_model,
    packed_bytes,
    quantised_kernels,
    unpack_codes,
    unpack_model,
    weight_codes,
)

# The bit-packing functions, under the names the chapters import them from here.
__all__ = ["dequantise", "float_bytes", "fp_share", "fp_twin", "member_wbits", "pack_codes", "pack_model",
           "packed_bytes", "quantised_kernels", "unpack_codes", "unpack_model", "weight_codes"]

ThroughputModel = str | Callable[[int], float]


# --- Eq. 6 -----------------------------------------------------------------------------


def proportional(bits: int) -> float:
    """Ops_per_sec(b) ~ 1/b: a bit-parallel datapath runs 32/b b-bit operations per 32-bit one."""
    return 1.0 / check_bits(bits)


def native(bits: int, widths: tuple[int, ...] = paper.NATIVE_WIDTHS) -> float:
    """Ops_per_sec(b) on hardware with only ``widths`` built in: b runs at the next width up."""
    bits = check_bits(bits)
    return 1.0 / min(w for w in widths if w >= bits)


THROUGHPUTS = {"proportional": proportional, "native": native}


def _throughput(ops_per_sec: ThroughputModel) -> Callable[[int], float]:
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


def eq6_time(m: int, k: Iterable[int], ops_per_sec: ThroughputModel = "proportional",
             fp: int = FULL_PRECISION) -> float:
    """Eq. 6, time: ``M + sum_i Ops_per_sec(FP) / Ops_per_sec(k_i)`` for LP precisions ``k``."""
    rate = _throughput(ops_per_sec)
    return _count(m) + sum(rate(fp) / rate(check_bits(ki)) for ki in k)


def eq6_storage(m: int, k: Iterable[int], fp: int = FULL_PRECISION) -> float:
    """Eq. 6, storage: ``M + sum_i k_i / FP`` for LP precisions ``k``."""
    return _count(m) + sum(check_bits(ki) / fp for ki in k)


def storage_bits(wbits: int, abits: int) -> int:
    """Eq. 6's k_i for storage: the weight precision (activations are not stored)."""
    return check_bits(wbits, "wbits")


def compute_bits(wbits: int, abits: int) -> int:
    """Eq. 6's k_i for time: the wider operand of a weight x activation product."""
    return max(check_bits(wbits, "wbits"), check_bits(abits, "abits"))


def split_members(precisions: Iterable[tuple[int, int]]) -> tuple[int, list]:
    """(M, LP precisions) from a list of (wbits, abits); (32, 32) is a full-precision member."""
    precisions = [(check_bits(w, "wbits"), check_bits(a, "abits")) for w, a in precisions]
    lp = [(w, a) for w, a in precisions if (w, a) != (FULL_PRECISION, FULL_PRECISION)]
    return len(precisions) - len(lp), lp


def ensemble_overheads(precisions: Iterable[tuple[int, int]], ops_per_sec: ThroughputModel = "proportional"
                       ) -> dict:
    """Eq. 6 for an ensemble given as (wbits, abits) per member: {'time', 'storage'}.

    >>> ensemble_overheads([(2, 4), (2, 4), (32, 32)])   # the paper's MNIST EMPIR
    {'time': 1.25, 'storage': 1.125}
    """
    m, lp = split_members(precisions)
    return {"time": eq6_time(m, [compute_bits(w, a) for w, a in lp], ops_per_sec),
            "storage": eq6_storage(m, [storage_bits(w, a) for w, a in lp])}


def paper_configurations() -> dict:
    """The paper's three EMPIR ensembles as (wbits, abits) per member.

    MNIST and CIFAR come from their settings' EMPIR members; AlexNet's {2,2}
    and {4,4} members are from the paper's section 5.1 (``paper.ALEXNET_EMPIR``).
    """
    # Tiny ImageNet's members have AlexNet's precisions, listed once below.
    configs = {ds: [(w, a) for w, a, _ in settings.get(ds).empir] for ds in ("mnist", "cifar10")}
    configs["alexnet (paper)"] = list(paper.ALEXNET_EMPIR)
    return configs


def sweep(n_max: int = 3, lp: tuple[int, int] = (2, 4), ops_per_sec: ThroughputModel = "proportional") -> dict:
    """Eq. 6 over M, N = 0..n_max with every LP member at ``lp`` = (wbits, abits) (Figure 4 c, d).

    Returns arrays ``time[m, n]`` and ``storage[m, n]``; (0, 0) is NaN (no ensemble).
    """
    shape = (n_max + 1, n_max + 1)
    time, storage = np.full(shape, np.nan), np.full(shape, np.nan)
    for m in range(n_max + 1):
        for n in range(n_max + 1):
            if m + n:
                o = ensemble_overheads([(FULL_PRECISION, FULL_PRECISION)] * m + [tuple(lp)] * n, ops_per_sec)
                time[m, n], storage[m, n] = o["time"], o["storage"]
    return {"time": time, "storage": storage, "lp": tuple(lp)}


def member_grid(bits: tuple[int, ...] = (1, 2, 4, 8, 16), ops_per_sec: ThroughputModel = "proportional") -> dict:
    """One LP member's Eq. 6 terms over a wbits x abits grid: arrays indexed [abits, wbits]."""
    time = np.array([[eq6_time(0, [compute_bits(w, a)], ops_per_sec) for w in bits] for a in bits])
    storage = np.array([[eq6_storage(0, [storage_bits(w, a)]) for w in bits] for a in bits])
    return {"bits": tuple(bits), "time": time, "storage": storage}


# --- Eq. 6 against the bit-packed measurement ------------------------------------------------


def predicted_bytes(model: keras.Model) -> float:
    """Eq. 6 applied layer by layer: every weight tensor at its own precision (no padding)."""
    quantised = quantised_kernels(model)
    return sum(math.prod(w.shape) * quantised.get(w.path, FULL_PRECISION) / 8 for w in model.weights)


def storage_report(model: keras.Model, name: str = "") -> dict:
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


# --- the time analogue: multiply-accumulates per layer ----------------------------------------


def layer_macs(model: keras.Model) -> list[dict]:
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
                     "wbits": getattr(layer, "wbits", FULL_PRECISION),
                     "abits": getattr(layer, "abits", FULL_PRECISION)})
    return rows


def layerwise_time(model: keras.Model, ops_per_sec: ThroughputModel = "proportional") -> float:
    """Eq. 6's time term for one member, layer by layer: MAC-weighted Ops_per_sec(FP)/Ops_per_sec(k_l)."""
    rate = _throughput(ops_per_sec)
    rows = layer_macs(model)
    cost = sum(r["macs"] * rate(FULL_PRECISION) / rate(compute_bits(r["wbits"], r["abits"])) for r in rows)
    return cost / sum(r["macs"] for r in rows)
