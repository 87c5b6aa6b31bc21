"""Chapter 10's training costs: each defended member beside the plain member it is compared with."""
from __future__ import annotations

import math
import os

from ...core import defences, paper, settings
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


def _recipe_name(defence: str, params: dict) -> str | None:
    """The named recipe (core.defences.RECIPES) whose values ``params`` hold, if any; else None."""
    for name, values in defences.RECIPES.get(defence, {}).items():
        if values and all(params.get(k) == v for k, v in values.items()):
            return name
    return None


def pgd_training_rows(dataset: str = "cifar10", zoo_dir: str | os.PathLike | None = None,
                      have: dict | None = None) -> list[dict]:
    """What each PGD-trained member learnt: its recipe, eps, clean accuracy and last training loss.

    A member whose last epoch's training loss is within 0.005 of ln(classes),
    the loss of a network that gives every class the same probability, is
    ``collapsed``: it learnt a constant answer (its loss is the same whatever
    the labels, so the test does not depend on label smoothing).  Rows follow
    ``settings.defence_rows``; members not trained yet are left out.  ``have``: the zoo's members, if
    the caller has read them already.
    """
    s = settings.get(dataset)
    have = zoo.members(dataset, zoo_dir) if have is None else have
    floor = math.log(s.num_classes)
    out = []
    for spec in s.defended:
        defence, params = spec[3:5]
        mid = settings.defended_id(dataset, spec)
        e = have.get(mid)
        if defence != "pgd-at" or e is None:
            continue
        full = defences.check(defence, params)
        loss = e["history"][-1]["loss"] if e.get("history") else None
        out.append({"member": mid, "recipe": _recipe_name(defence, full) or "madry",
                    "eps": full["eps"], "steps": full["steps"], "clean_weight": full["clean_weight"],
                    "epochs": e["epochs"], "accuracy": 100 * e["test_accuracy"], "loss": loss,
                    "collapsed": loss is not None and abs(loss - floor) < 0.005})
    return out


def pgd_recipe_lines(dataset: str = "cifar10", zoo_dir: str | os.PathLike | None = None) -> list[str]:
    """Chapter 10's answer to "does the original code's PGD recipe explain the paper's clean accuracy?".

    One line per PGD-trained member (:func:`pgd_training_rows`), then the
    paper's PGD row (Table 2, section 5.3) and our plain FP member beside the
    original recipe's member.
    """
    have = zoo.members(dataset, zoo_dir)
    rows = pgd_training_rows(dataset, have=have)
    classes = settings.get(dataset).num_classes
    recipe = {"madry": "Madry et al.'s recipe (adversarial loss only)",
              "original": "The original code's recipe (half clean loss, predicted labels)"}
    lines = [f"{recipe[r['recipe']]}, eps = {r['eps']:.4g}, {r['steps']} steps, {r['epochs']} epochs: "
             f"clean accuracy {r['accuracy']:.2f}%, last training loss {r['loss']:.3f}"
             + (f" (ln {classes} = {math.log(classes):.3f}: a constant answer)" if r["collapsed"]
                else "") for r in rows]
    paper_clean = paper.TABLE2_DEFENCES.get(dataset, {}).get("pgd-at", {}).get("clean")
    fp = have.get(settings.member_id(dataset, 32, 32, 1))
    original = [r for r in rows if r["recipe"] == "original"]
    if paper_clean is not None and fp and original:
        o = original[0]
        lines.append(f"The paper's PGD-trained network: {paper_clean:.2f}% clean; our plain FP member "
                     f"({fp['epochs']} epochs): {100 * fp['test_accuracy']:.2f}%; the original recipe "
                     f"(eps = {o['eps']:.4g}): {o['accuracy']:.2f}%, "
                     f"{o['accuracy'] - paper_clean:+.2f} points against the paper's"
                     + (" (it collapsed too)." if o["collapsed"] else "."))
    elif paper_clean is not None:
        lines.append("The original code's recipe is not trained yet: "
                     f"empir zoo build --dataset {dataset} --defended")
    return lines
