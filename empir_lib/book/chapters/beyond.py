"""Chapter 11, "Beyond EMPIR": attack strength against precision, and a stochastic ensemble under EOT.

Two follow-up studies, read back from ``empir reproduce`` results files:

* **Gorsline, Smith and Merkel (2021)**: quantisation can help or hurt
  against simple gradient attacks depending on attack strength.
  :mod:`empir_lib.studies.sweeps` writes ``sweeps/`` (accuracy against eps per
  precision, white-box and transferred from the FP member, and the share of
  quantised codes a perturbation flips).  Here: the curves
  (:func:`sweep_panels`), the eps where each precision stops beating the FP
  member (:func:`crossover`, :func:`crossover_table`) and the mechanism
  (:func:`flip_panels`, :func:`mechanism_table`).
* **Farkya, Raghavan and Ziskind (2023)**: over 50% under PGD at 5/255 on
  CIFAR-10 for a jointly trained stochastic-quantiser ensemble.
  :mod:`empir_lib.studies.eot_study` writes ``stochastic/``; here: the curve of robust
  accuracy against EOT samples (:func:`eot_curve`), the rows beside
  deterministic EMPIR and the FP baseline (:func:`stochastic_table`) and the
  claim checked against them (:func:`claim_lines`).

Every function takes ``root`` (default ``data/results``); a missing file is
a dash and a line naming the command that writes it.
"""
from __future__ import annotations

import numpy as np

from ...attack import outcomes
from ...core import paper, settings
from ...core.errors import check_choice
from ...core.tables import DASH, markdown_table, percent_cell
from ...nets import ensemble as ens_mod
from ...nets import stochastic, zoo
from ...nets.metrics import crossover
from ...studies import eot_study, results, sweeps
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


# --- the stochastic ensemble under EOT -----------------------------------------------------------


def eot_curve(dataset: str = "cifar10", root: Root = None) -> dict | None:
    """The EOT-samples curve in %: ``{samples, robust, lo, hi, chosen, plateau, n, seconds}``, or None."""
    r = eot_study.read(dataset, "eot-samples", root)
    if r is None:
        return None
    return {"samples": r["samples"], "robust": [100 * a for a in r["robust_accuracy"]],
            "lo": [100 * c[0] for c in r["robust_ci95"]], "hi": [100 * c[1] for c in r["robust_ci95"]],
            "chosen": r["chosen"], "plateau": r["plateau"], "n": r["n"], "seconds": r["seconds"]}


ROW_NAMES = {"joint": "stochastic ensemble (joint training, EOT)", "empir": "EMPIR (deterministic)",
             "baseline": "FP baseline", "pgdat": "PGD adversarial training (8/255, chapter 10)",
             "noise": "stochastic ensemble, noise only (the PGD's queries at eps = 0)"}


def stochastic_rows(dataset: str = "cifar10", root: Root = None) -> tuple[list[dict], list[str]]:
    """Per row: clean and robust (%) under PGD at 5/255 (all n) and the suite (select_n), EOT samples, randomness.

    The last row, ``'noise'``, is the noise-only control (:mod:`empir_lib.studies.eot_study`, item 4): its
    "PGD" column is the same PGD at eps = 0, and it has no suite column.
    """
    rows, missing = [], []
    for row in (*eot_study.rows(dataset), "noise"):
        out = {"row": row, "name": ROW_NAMES[row]}
        for kind in ("pgd", "suite"):
            if row == "noise" and kind == "suite":
                out.update({"suite_robust": None, "suite_n": None})
                continue
            name = "pgd-0-joint" if row == "noise" else f"{kind}-5-255-{row}"
            r = eot_study.read(dataset, name, root)
            if r is None:
                missing.append(f"{eot_study.FOLDER}/{name}")
                out.update({f"{kind}_robust": None, f"{kind}_n": None})
                continue
            out.update({f"{kind}_robust": 100 * r["robust_accuracy"], f"{kind}_n": r["n"],
                        f"{kind}_clean": 100 * r["clean_accuracy"]})
            # The row's clean accuracy, S and randomness: from PGD's run on all n images where there is one.
            for key, value in (("clean", 100 * r["clean_accuracy"]), ("eot_samples", r["eot_samples"]),
                               ("randomness", 100 * r["randomness"])):
                out.setdefault(key, value)
        rows.append(out)
    return rows, missing


def curve_references(rows: list[dict]) -> dict[str, float | None]:
    """The horizontal lines beside the EOT curve (%), from :func:`stochastic_rows`.

    The stochastic ensemble under the whole suite, every other row under the same PGD, and the
    noise-only control (PGD's queries at eps = 0).
    """
    out = {}
    for r in rows:
        if r["row"] == "joint":
            n = "" if r["suite_n"] is None else f", {r['suite_n']:,} images"
            out[f"{r['name']}, worst-case suite{n}"] = r["suite_robust"]
        else:
            out[r["name"] if r["row"] == "noise" else f"{r['name']}, PGD 5/255"] = r["pgd_robust"]
    return out


SHORT_NAMES = {"joint": "stochastic ensemble", "empir": "EMPIR", "baseline": "FP baseline",
               "pgdat": "PGD-AT 8/255"}


def suite_cascades(dataset: str = "cifar10", root: Root = None) -> dict[str, dict]:
    """``{label: per-stage counts}`` of the study's suite files, for :func:`empir_lib.book.plots.cascade_bars`.

    Stages in cascade order (:func:`empir_lib.attack.outcomes.stage_counts`).
    """
    names = {f"suite-5-255-{row}": SHORT_NAMES[row] for row in eot_study.rows(dataset)}
    for samples in eot_study.CHECK_SAMPLES:
        names[f"suite-5-255-joint-eot{samples}"] = SHORT_NAMES["joint"]
    out = {}
    for name, label in names.items():
        r = eot_study.read(dataset, name, root)
        if r is not None:
            out[f"{label}, S = {r['eot_samples']} ({r['n']:,} images)"] = outcomes.stage_counts(r)
    return out


def stochastic_table(dataset: str = "cifar10", root: Root = None) -> str:
    """Markdown: the three rows and Farkya et al.'s reported number (a lower bound: "over 50%")."""
    rows, _ = stochastic_rows(dataset, root)
    body = []
    for r in rows:
        body.append({"name": r["name"], "clean": percent_cell(r.get("clean")),
                     "pgd": percent_cell(r["pgd_robust"]) + ("" if r["pgd_n"] is None else f" ({r['pgd_n']:,})"),
                     "suite": percent_cell(r["suite_robust"]) + ("" if r["suite_n"] is None else
                                                                 f" ({r['suite_n']:,})"),
                     "S": r.get("eot_samples", DASH), "rand": percent_cell(r.get("randomness"))})
    body.append({"name": "*Farkya et al. 2023 (abstract)*", "clean": DASH,
                 "pgd": f"*> {paper.FARKYA_PGD_5_255:.0f}*", "suite": DASH, "S": DASH, "rand": DASH})
    return markdown_table(body, ["name", "clean", "pgd", "suite", "S", "rand"],
                          ["row", "clean %", "PGD 5/255 robust % (n)", "suite 5/255 robust % (n)", "EOT samples",
                           "images whose class changes between draws, %"])


def claim_lines(dataset: str = "cifar10", root: Root = None) -> list[str]:
    """Farkya et al.'s claim against our stochastic row, one sentence per measured comparison."""
    rows, _ = stochastic_rows(dataset, root)
    joint = next(r for r in rows if r["row"] == "joint")
    lines = [f"Claim (Farkya et al. 2023, abstract): over {paper.FARKYA_PGD_5_255:.0f}% accuracy under PGD at "
             "5/255 on CIFAR-10 without adversarial training, with the attacker differentiating the stochastic "
             "quantiser."]
    for kind, what in (("pgd", "PGD at 5/255 with EOT"), ("suite", "the worst-case suite at 5/255 with EOT")):
        v = joint[f"{kind}_robust"]
        if v is None:
            lines.append(f"Ours, {what}: not yet measured (`empir reproduce {dataset} --only "
                         f"{eot_study.FOLDER}/{kind}-5-255-joint`).")
            continue
        word = "holds" if v > paper.FARKYA_PGD_5_255 else "does not hold"
        lines.append(f"Ours, {what} ({joint['eot_samples']} samples, {joint[f'{kind}_n']:,} images): "
                     f"{v:.2f}% robust, {100 * v / joint[f'{kind}_clean']:.0f}% of its clean accuracy on those "
                     f"images; the claim {word} for our ensemble.")
        noise = next(r for r in rows if r["row"] == "noise")
        if kind == "pgd" and noise["pgd_robust"] is not None:
            u, c = noise["pgd_robust"], noise["clean"]
            lines.append(f"Noise alone (the same PGD's queries at eps = 0, judged the same way): {u:.2f}% of the "
                         f"images stay correct, against {c:.2f}% clean in that run: the deployed randomness alone "
                         f"takes {c - u:.2f} points, and PGD's perturbation {u - v:.2f} more.")
    for check in suite_checks(dataset, root):
        lines.append(f"The suite again with {check['samples']} EOT samples on the first {check['n']:,} images: "
                     f"{check['robust']:.2f}% robust (95% interval {check['lo']:.2f} to {check['hi']:.2f}), "
                     f"against {check['main_robust']:.2f}% with {check['main_samples']} samples on the same "
                     "images.")
    clean = joint.get("clean")
    if clean is not None and clean <= paper.FARKYA_PGD_5_255:
        # Robust accuracy cannot exceed clean accuracy: the number alone then says nothing about the method.
        lines.append(f"Our ensemble's clean accuracy ({clean:.2f}%) is itself not above "
                     f"{paper.FARKYA_PGD_5_255:.0f}%, so no attack result on it could reach the claimed number: "
                     "what it can test is how much of its clean accuracy survives, and whether the suite's "
                     "stronger attacks take away what PGD leaves.")
    return lines


def suite_checks(dataset: str = "cifar10", root: Root = None) -> list[dict]:
    """The joint suite with more EOT samples, each beside the main suite on the same images (%).

    One ``{samples, n, robust, lo, hi, main_samples, main_robust}`` per measured S of
    :data:`empir_lib.studies.eot_study.CHECK_SAMPLES`: ``main_robust`` is the main suite's robust accuracy on
    the check's images (the first ``n``), read from its per-image outcomes.
    """
    main = eot_study.read(dataset, "suite-5-255-joint", root)
    if main is None:
        return []
    path = results.results_dir(dataset, root) / eot_study.FOLDER / "suite-5-255-joint.json"
    main_broken = outcomes.load(path, main)["broken_by"]
    out = []
    for samples in eot_study.CHECK_SAMPLES:
        check = eot_study.read(dataset, f"suite-5-255-joint-eot{samples}", root)
        if check is None:
            continue
        n = check["n"]
        out.append({"samples": check["eot_samples"], "n": n, "robust": 100 * check["robust_accuracy"],
                    "lo": 100 * check["robust_ci95"][0], "hi": 100 * check["robust_ci95"][1],
                    "main_samples": main["eot_samples"],
                    "main_robust": 100 * float(outcomes.robust_mask(main_broken[:n]).mean())})
    return out


def members_line(dataset: str = "cifar10") -> str:
    """Which joint members the zoo holds, with their deployed and nearest-rounding accuracy."""
    have = zoo.members(dataset)
    ids = eot_study.joint_ids(dataset)
    if not all(m in have for m in ids):
        return (f"The joint run ({', '.join(ids)}) is not in the zoo yet; "
                f"`empir joint --dataset {dataset} --zoo` trains it.")
    parts = [f"`{m}`: {100 * have[m]['test_accuracy']:.2f}% deployed, "
             f"{100 * have[m]['test_accuracy_nearest']:.2f}% with nearest rounding" for m in ids]
    return "; ".join(parts) + "."


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


def live_randomness(member: str, x: np.ndarray, y: np.ndarray, draws: int = 10, seed: int = 1) -> dict:
    """One zoo member made stochastic (:func:`empir_lib.nets.stochastic.to_stochastic`) on ``(x, y)``.

    Returns the accuracy of each of ``draws`` forward passes, the accuracy of
    the member with nearest rounding, and the share of images whose class
    changes between draws (the randomness diagnostic).
    """
    model = stochastic.to_stochastic(zoo.load(member), seed=seed)
    ens = ens_mod.make([model], names=[member])
    out = stochastic.disagreement(ens, x, draws)
    accs = [float(np.mean(ens_mod.predict(ens, x) == y)) for _ in range(draws)]
    nearest = ens_mod.make([stochastic.with_inference(model, "nearest")], names=[member])
    return {"draw_accuracy": accs, "nearest_accuracy": float(np.mean(ens_mod.predict(nearest, x) == y)),
            "share": out["share"], "draws": draws, "n": int(len(y))}
