"""Chapter 11, "Beyond EMPIR", part 1: attack strength against precision.

Two follow-up studies, read back from ``empir reproduce`` results files:

* **Gorsline, Smith and Merkel (2021)**: quantisation can help or hurt
  against simple gradient attacks depending on attack strength.
  :mod:`empir_lib.studies.sweeps` writes ``sweeps/`` (accuracy against eps per
  precision, white-box and transferred from the FP member, and the share of
  quantised codes a perturbation flips).  Here: the curves
  (:func:`sweep_panels`), the eps where each precision stops beating the FP
  member (:func:`crossover`, :func:`crossover_table`) and the mechanism
  (:func:`flip_panels`, :func:`mechanism_table`).
* **Farkya, Raghavan and Ziskind (2023)**: the stochastic-quantiser
  ensemble; its helpers are in :mod:`empir_lib.book.chapters.stochastic`.

Every function takes ``root`` (default ``data/results``); a missing file is
a dash and a line naming the command that writes it.
"""
from __future__ import annotations

import numpy as np

from ...core import settings
from ...core.errors import check_choice
from ...core.tables import DASH, markdown_table
from ...nets import zoo
from ...nets.metrics import crossover
from ...studies import results, sweeps
from .committed import Root

MODES = ("white-box", "transfer from FP")


def _precision(member: str) -> str:
    """'cifar10-a2w4-s1' -> 'a2w4'; the FP member -> 'FP'."""
    tag = member.split("-")[1]
    return "FP" if tag == "fp" else tag


def _read_each(dataset: str, names: dict[str, str], root: Root) -> tuple[dict[str, dict], list[str]]:
    """``{key: record}`` for each ``{key: results name}`` present, and the names missing."""
    found = {k: results.find(dataset, name, root) for k, name in names.items()}
    return {k: r for k, r in found.items() if r is not None}, [names[k] for k, r in found.items() if r is None]


# --- accuracy against eps ------------------------------------------------------------------------


def sweep_panels(dataset: str, attack: str, root: Root = None) -> tuple[dict, list[str]]:
    """Accuracy (%) against eps per precision, white-box and transferred from FP, and the missing files.

    Returns ``({mode: {"x": eps, "series": {precision: [% per eps]}}}, missing)``
    in :data:`MODES` order; the FP member's white-box curve is in both panels
    (transfer from FP to FP is the white-box attack).
    """
    check_choice(dataset, sweeps.DATASETS, "dataset with a precision grid")
    check_choice(attack, sweeps.ATTACKS, "sweep attack")
    found, missing = _read_each(dataset, {m: f"{sweeps.FOLDER}/whitebox-{m}-{attack}" for m in sweeps.members(dataset)},
                                root)
    white = {_precision(m): [100 * a for a in r["accuracy"][m]] for m, r in found.items()}
    eps = next((r["eps"] for r in found.values()), None)
    transfer = {}
    name = f"{sweeps.FOLDER}/transfer-{attack}"
    r = results.find(dataset, name, root)
    if r is None:
        missing.append(name)
    else:
        eps = r["eps"]
        if "FP" in white:
            transfer["FP"] = white["FP"]
        transfer.update({_precision(m): [100 * a for a in acc] for m, acc in r["accuracy"].items()})
    eps = eps or sweeps.eps_grid(dataset)
    return {MODES[0]: {"x": eps, "series": white}, MODES[1]: {"x": eps, "series": transfer}}, missing


def crossover_text(c: dict | None) -> str:
    """A table cell for :func:`crossover`: 'never beats FP', 'beats FP from 0.075', 'beats FP to 0.15, not at 0.188'."""
    if c is None:
        return DASH
    if c["status"] == "never":
        return "never beats FP"
    if c["status"] == "always":
        return "beats FP at every eps"
    if c["status"] == "overtakes":
        return f"beats FP from {c['start']:.3g}"
    head = "beats FP" if c["start"] is None else f"beats FP from {c['start']:.3g}"
    return f"{head}, stops at {c['stop']:.3g}"


def crossovers(dataset: str, root: Root = None) -> tuple[dict, list[str]]:
    """``{precision: {(mode, attack): crossover}}`` for every precision measured, and the missing files."""
    out, missing = {}, []
    for attack in sweeps.ATTACKS:
        panels, gone = sweep_panels(dataset, attack, root)
        missing += gone
        for mode, p in panels.items():
            fp = p["series"].get("FP")
            if fp is None:
                continue
            for prec, acc in p["series"].items():
                if prec != "FP":
                    out.setdefault(prec, {})[(mode, attack)] = crossover(p["x"], acc, fp)
    return out, missing


def crossover_table(dataset: str, root: Root = None) -> str:
    """Markdown: per precision, the eps where it stops beating FP (white-box and transfer, FGSM and PGD)."""
    found, _ = crossovers(dataset, root)
    cols = [(mode, a) for mode in MODES for a in sweeps.ATTACKS]
    rows = []
    for prec in sorted(found, key=lambda p: settings.parse_precision(p)[::-1]):
        row = {"precision": prec}
        for c in cols:
            row[f"{c[0]} {c[1]}"] = crossover_text(found[prec].get(c))
        rows.append(row)
    keys = [f"{m} {a}" for m, a in cols]
    return markdown_table(rows, ["precision", *keys], ["precision", *[f"{m}, {a.upper()}" for m, a in cols]])


# --- the mechanism -------------------------------------------------------------------------------


def flip_panels(dataset: str, root: Root = None) -> tuple[dict, list[str]]:
    """The share (%) of quantised codes an eps perturbation changes, and the missing files.

    Panels: input pixels quantised to k bits along the FGSM direction and a
    random sign (from the FP member's flips file: the pixels do not depend on
    the network but the FGSM direction does), and the quantised layers'
    inputs along the FGSM direction, averaged over every layer of every
    member with the same abits.
    """
    found, missing = _read_each(dataset, {m: f"{sweeps.FOLDER}/flips-{m}" for m in sweeps.members(dataset)}, root)
    panels = {"pixels, FGSM direction": {}, "pixels, random sign": {}, "layer inputs, FGSM direction": {}}
    eps, per_abits = next((r["eps"] for r in found.values()), None), {}
    for m, r in found.items():
        if _precision(m) == "FP":
            for d, title in (("fgsm", "pixels, FGSM direction"), ("random", "pixels, random sign")):
                panels[title] = {f"{b}-bit pixels": [100 * v for v in f] for b, f in r[d]["pixels"].items()}
        for layer in r["fgsm"]["layers"].values():
            per_abits.setdefault(layer["abits"], []).append(layer["fraction"])
    panels["layer inputs, FGSM direction"] = {f"abits = {a}": (100 * np.mean(v, 0)).tolist()
                                              for a, v in sorted(per_abits.items())}
    eps = eps or sweeps.eps_grid(dataset)
    return {t: {"x": eps, "series": s} for t, s in panels.items()}, missing


def steepest_rise(eps: list[float], share: list[float]) -> float | None:
    """The eps that ends the largest rise of ``share`` between two neighbouring eps (None when it never rises).

    A quantiser changes codes in steps, when the perturbation reaches a
    rounding boundary; this is where the largest step lands on the eps grid.
    """
    rise = np.diff(np.asarray(share, float))
    return None if not len(rise) or rise.max() <= 0 else float(eps[int(rise.argmax()) + 1])


def mechanism_table(dataset: str, root: Root = None) -> str:
    """Markdown: per abits, where the layer-input codes change most, beside where those members stop beating FP
    (white-box and transfer, FGSM and PGD)."""
    panels, _ = flip_panels(dataset, root)
    layer = panels["layer inputs, FGSM direction"]
    found, _ = crossovers(dataset, root)
    columns = [(mode, attack) for attack in sweeps.ATTACKS for mode in MODES]
    rows = []
    for label, share in layer["series"].items():
        abits = int(label.split("=")[1])
        e = steepest_rise(layer["x"], share)
        row = {"abits": abits, "rise": DASH if e is None else f"{e:.3g}"}
        for key in columns:
            stops = sorted({v[key]["stop"] for p, v in found.items()
                            if settings.parse_precision(p)[1] == abits and key in v and v[key]["stop"] is not None})
            row[key] = ", ".join(f"{e:.3g}" for e in stops) or DASH
        rows.append(row)
    return markdown_table(rows, ["abits", "rise", *columns],
                          ["abits", "eps ending the steepest rise of layer-input codes changed (FGSM direction)",
                           *(f"stop beating FP: {'white-box' if m == MODES[0] else 'transfer'} {a.upper()}"
                             for m, a in columns)])


# --- live measurements on the embedded sample ----------------------------------------------------


def uniform_flip_share(eps: float, bits: int) -> float:
    """The share of k-bit codes a move of ``eps`` changes when values sit uniformly inside their bins.

    A code changes when the move crosses the rounding boundary ahead of the
    value; for a value uniformly placed in an interior bin that boundary is
    uniformly between 0 and one bin width ``1 / (2^k - 1)`` away, so the
    share is ``min(1, eps (2^k - 1))``.  Real pixels are not uniform: a pixel
    at 0 or 1 that the move pushes out of [0, 1] is clipped back and keeps its
    code, which is why MNIST's measured shares sit below this line.
    """
    return float(min(1.0, eps * (2**sweeps.quantize_bits(bits) - 1)))


def live_flips(member: str, x: np.ndarray, y: np.ndarray, eps: list[float]) -> dict:
    """Flip panels (%) for one zoo member on ``(x, y)``: pixels along a random sign beside the uniform formula,
    and the member's quantised layer inputs along the FGSM direction
    (:func:`empir_lib.studies.sweeps.flip_fractions`)."""
    model = zoo.load(member)
    rnd = sweeps.flip_fractions(model, x, y, eps, "random")
    fg = sweeps.flip_fractions(model, x, y, eps, "fgsm")
    pixels = {}
    for b, f in rnd["pixels"].items():
        pixels[f"{b}-bit pixels"] = [100 * v for v in f]
        pixels[f"{b}-bit, min(1, eps (2^k - 1))"] = [100 * uniform_flip_share(e, int(b)) for e in eps]
    layers = {f"{name} (abits = {v['abits']})": [100 * f for f in v["fraction"]] for name, v in fg["layers"].items()}
    return {"pixels, random sign": {"x": eps, "series": pixels},
            f"{_precision(member)} layer inputs, FGSM direction": {"x": eps, "series": layers}}
