"""Chapter 10's training costs: each defended member beside the plain member it is compared with."""
from __future__ import annotations

import os

from ...core import defences, settings
from ...core.tables import DASH
from ...nets import zoo
from .. import plots


def _hardware(entry: dict) -> str:
    hw = entry.get("hardware") or {}
    gpus = ", ".join(hw.get("gpus", [])) or "no GPU"
    return f"{hw.get('cores', '?')} cores ({hw.get('cpu', '?')}), {gpus}"


def _same_machine(a: dict, b: dict) -> bool:
    # The platform string names the kernel build, which changes between VMs of the same kind.
    keys = ("cores", "cpu", "gpus")
    return all((a.get("hardware") or {}).get(k) == (b.get("hardware") or {}).get(k) for k in keys)


def training_rows(dataset: str, zoo_dir: str | os.PathLike | None = None) -> list[dict]:
    """Each defended member of the dataset, after the plain members they are compared with, from the manifest.

    Each row: ``member``, ``defence``, ``params``, ``epochs``, ``accuracy`` (%,
    full test set), ``seconds``, ``hardware``, and ``epoch_ratio``: its time per
    epoch over the plain member of the same precision and seed (None when
    either is missing or they were trained on different hardware).
    """
    s, have = settings.get(dataset), zoo.members(dataset, zoo_dir)
    plain = {}
    for w, a, seed, *_ in s.defended:
        plain.setdefault(settings.member_id(dataset, w, a, seed), None)
    out = []
    for mid in plain:
        e = have.get(mid)
        out.append({"member": mid, "defence": "none", "params": "", "epochs": e and e["epochs"],
                    "accuracy": e and 100 * e["test_accuracy"], "seconds": e and e["train_time_s"],
                    "hardware": e and _hardware(e), "epoch_ratio": None, "plain": True})
    for spec in s.defended:
        w, a, seed, defence, params = spec[:5]
        mid, e = settings.defended_id(dataset, spec), have.get(settings.defended_id(dataset, spec))
        ref = have.get(settings.member_id(dataset, w, a, seed))
        ratio = None
        if e and ref and _same_machine(e, ref) and e["epochs"] and ref["epochs"]:
            ratio = (e["train_time_s"] / e["epochs"]) / (ref["train_time_s"] / ref["epochs"])
        full = defences.check(defence, params)
        out.append({"member": mid, "defence": defence,
                    "params": ", ".join(f"{k}={v:.3g}" if isinstance(v, (int, float)) else f"{k}={v}"
                                      for k, v in full.items()),
                    "epochs": e and e["epochs"], "accuracy": e and 100 * e["test_accuracy"],
                    "seconds": e and e["train_time_s"], "hardware": e and _hardware(e), "epoch_ratio": ratio,
                    "plain": False})
    return out


def training_table(dataset: str, zoo_dir: str | os.PathLike | None = None) -> str:
    """:func:`training_rows` as Markdown, with a line naming the command that trains any missing member."""
    rows, absent = [], {True: [], False: []}
    for r in training_rows(dataset, zoo_dir):
        there = r["accuracy"] is not None
        if not there:
            absent[r["plain"]].append(r["member"])
        ratio = DASH if r["epoch_ratio"] is None else f"{r['epoch_ratio']:.1f}\u00d7"
        rows.append({"member": f"`{r['member']}`", "defence": r["defence"], "params": r["params"] or DASH,
                     "epochs": r["epochs"] if there else DASH, "accuracy": plots.percent_cell(r["accuracy"]),
                     "minutes": f"{r['seconds'] / 60:,.1f}" if there else DASH, "ratio": "" if r["plain"] else ratio,
                     "hardware": r["hardware"] if there else DASH})
    md = plots.markdown_table(rows, ["member", "defence", "params", "epochs", "accuracy", "minutes", "ratio",
                                     "hardware"],
                              ["member", "defence", "parameters", "epochs", "clean accuracy, % (full test set)",
                               "training time, min", "time per epoch vs plain member", "hardware"])
    notes = [plots.missing_line(f"plain {dataset} member(s)", absent[True], f"empir zoo build --dataset {dataset}"),
             plots.missing_line(f"defended {dataset} member(s)", absent[False],
                                f"empir zoo build --dataset {dataset} --defended")]
    return "\n\n".join(p for p in (md, *notes) if p)
