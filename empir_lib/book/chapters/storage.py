"""Measured storage and time of members and ensembles (chapter 6), beside the paper's Eq. 6.

:mod:`empir_lib.hardware.overhead` holds Eq. 6 and the bit packing; this module only
gathers its numbers into the tables and curves the chapter shows.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import keras

from ...core import settings
from ...core.settings import FULL_PRECISION
from ...hardware import overhead
from ...nets import zoo
from .. import plots
from .members import precision


def configurations_table() -> str:
    """The paper's EMPIR configurations under Eq. 6: time (proportional and native widths) and storage."""
    rows = []
    for name, config in overhead.paper_configurations().items():
        prop, nat = overhead.ensemble_overheads(config), overhead.ensemble_overheads(config, "native")
        rows.append({"ensemble": name, "members": " + ".join(precision(w, a) for w, a in config),
                     "time": prop["time"], "native": nat["time"], "storage": prop["storage"]})
    return plots.markdown_table(
        rows, ["ensemble", "members", "time", "native", "storage"],
        ["ensemble", "members", "time (proportional)", "time (native 4/8/16/32)", "storage"],
        {"time": ".4g", "native": ".4g", "storage": ".4g"})


def packed_size(member: str) -> int:
    """Bytes of a zoo member's weights, bit-packed at their own precision."""
    return overhead.packed_bytes(overhead.pack_model(zoo.load(member)))


def measured_storage(fp_ids: Sequence[str], lp_ids: Sequence[str]) -> dict:
    """Bit-packed storage of (M FP, N LP) ensembles in units of one float32 FP member: {(M, N): ratio}."""
    size = {mid: packed_size(mid) for mid in [*fp_ids, *lp_ids]}
    unit = overhead.float_bytes(zoo.load(fp_ids[0]))
    return {(m, n): sum(size[i] for i in [*fp_ids[:m], *lp_ids[:n]]) / unit
            for m in range(len(fp_ids) + 1) for n in range(len(lp_ids) + 1) if m + n}


def storage_reports(datasets: Iterable[str] = ("mnist", "cifar10")) -> dict:
    """``overhead.storage_report`` of each seed-1 member of the grid and FP, with its ``.keras`` file size."""
    entries = zoo.members()
    reports = {}
    for ds in datasets:
        for w, a in [(FULL_PRECISION, FULL_PRECISION), *settings.GRID]:
            mid = zoo.find(ds, w, a)
            reports[mid] = overhead.storage_report(zoo.load(mid), mid)
            reports[mid]["file_bytes"] = entries[mid]["size_bytes"]
    return reports


def storage_table(reports: dict) -> str:
    """The storage reports as Markdown: packed against float32 bytes, against Eq. 6's wbits/32."""
    return plots.markdown_table(
        list(reports.values()),
        ["member", "wbits", "parameters", "packed_bytes", "float_bytes", "measured", "eq6", "fp_share", "file_bytes"],
        ["member", "wbits", "weights", "packed bytes", "float32 bytes", "measured ratio", "Eq. 6: wbits/32",
         "float32 share", ".keras file bytes"],
        {"parameters": ",", "packed_bytes": ",", "float_bytes": ",", "measured": ".4f", "eq6": ".4f",
         "fp_share": ".1%", "file_bytes": ","})


def largest_layerwise_gap(reports: dict) -> float:
    """The largest |measured - layer-wise Eq. 6| storage over the members, in bytes."""
    return max(abs(r["measured"] - r["layerwise"]) * r["float_bytes"] for r in reports.values())


def ensembles_table(reports: dict) -> str:
    """The paper's EMPIR ensembles from our zoo: packed bytes, measured storage per FP model, Eq. 6."""
    rows = []
    for ds, config in overhead.paper_configurations().items():
        if ds not in settings.EMPIR_MEMBERS or any(zoo.find(ds, w, a) not in reports for w, a in config):
            continue  # AlexNet is not in our zoo
        members = [reports[zoo.find(ds, w, a)] for w, a in config]
        rows.append({"ensemble": ds, "members": " + ".join(precision(w, a) for w, a in config),
                     "eq6": overhead.ensemble_overheads(config)["storage"],
                     "measured": sum(r["packed_bytes"] for r in members) / members[-1]["float_bytes"],
                     "bytes": sum(r["packed_bytes"] for r in members)})
    return plots.markdown_table(
        rows, ["ensemble", "members", "bytes", "measured", "eq6"],
        ["ensemble", "members", "packed bytes", "measured storage / FP model", "Eq. 6 storage"],
        {"bytes": ",", "measured": ".4f", "eq6": ".4f"})


def macs_table(model: keras.Model, name: str) -> str:
    """A member's multiply-accumulates per layer, their share and the bits they run at, as Markdown."""
    macs = overhead.layer_macs(model)
    total = sum(r["macs"] for r in macs)
    rows = [{**r, "share": r["macs"] / total, "bits": overhead.compute_bits(r["wbits"], r["abits"])} for r in macs]
    return plots.markdown_table(rows, ["layer", "parameters", "macs", "share", "bits"],
                                [f"layer ({name})", "weights", "MACs per image", "share of MACs",
                                 "max(wbits, abits)"], {"parameters": ",", "macs": ",", "share": ".2%"})
