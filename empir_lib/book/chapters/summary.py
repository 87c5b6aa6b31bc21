"""The table at the start of the results part (chapter 7): every published figure beside ours, from the cards.

One row per number a reader may have seen: the paper's own (Table 2's PGD
column, its protocol), Tramer et al.'s and the public ART reproduction's
(CIFAR-10 EMPIR at 8/255), Farkya et al.'s (their stochastic-quantiser
ensemble at 5/255), and ours, the worst case of the book's suite with its 95%
interval, read from the stored cards (:mod:`empir_lib.studies.cards`).
"""
from __future__ import annotations

from ...attack import outcomes
from ...core import paper, settings, threats
from ...core.tables import DASH, markdown_table
from ...studies import cards, results, suite_checks
from .committed import Root
from .defence_rows import label
from .table2 import LABELS

ROWS = ("empir", "stochastic")  # the rows the summary compares: the paper's defence and its randomised cousin


def _threat(card: dict) -> str:
    return f"{'L-inf' if card['threat_model'] == 'Linf' else 'L2'} {card['eps']}"


def _order(dataset: str, card: dict) -> tuple[int, int]:
    # The chapters' order: EMPIR before the randomised ensemble, threats as chapter 8 lists them.
    names = list(threats.of(dataset))
    return (ROWS.index(card["row"]), names.index(card["threat"]) if card["threat"] in names else len(names))


def summary_rows(root: Root = None) -> list[dict]:
    """The summary's rows, per dataset and threat the published figures first then ours, from the stored cards."""
    out = []
    for dataset in settings.DATASETS:
        stored = [c for c in cards.read(dataset, root).values() if c["row"] in ROWS]
        for card in sorted(stored, key=lambda c: _order(dataset, c)):
            empir = card["row"] == "empir"
            where = {"dataset": LABELS.get(dataset, dataset), "threat": _threat(card),
                     "defence": "EMPIR" if empir else "stochastic-quantiser ensemble"}
            if card["reported"] is not None:
                out.append({**where, "by": "the paper (Table 2, its PGD protocol)",
                            "clean": f"{paper.TABLE2[dataset]['empir']['clean']:.2f}", "robust": card["reported"],
                            "n": "10,000", "moved": DASH})
            for ext in card["external"]:
                value = f"{'>' if ext.get('bound') == 'lower' else '≈'}{ext['robust_acc']:g}"
                out.append({**where, "by": ext["by"], "clean": DASH, "robust": value, "n": DASH, "moved": DASH})
            lo, hi = card["robust_ci95"]
            moved = {True: "no", False: "yes: an upper bound", None: "not measured: an upper bound"}
            by = "this book: worst case of the suite" if empir else "this book: lowest expected accuracy"
            out.append({**where, "by": by, "clean": card["clean_acc"], "robust": f"{card['robust_acc']} ({lo}-{hi})",
                        "n": f"{card['n']:,}", "moved": moved[card["converged"]]})
    return out


def summary_table(root: Root = None) -> str:
    """Markdown: :func:`summary_rows` with its headers (robust accuracy in %, 95% interval for ours)."""
    rows = summary_rows(root)
    if not rows:
        return DASH
    return markdown_table(rows, ["dataset", "threat", "defence", "by", "clean", "robust", "n", "moved"],
                          ["dataset", "threat", "defence", "figure by", "clean %", "robust % (95% interval)",
                           "images", "still moving when re-checked?"])


# A row's evaluations, in order (suite_checks.SUFFIXES): "late" is stages run after a converged round.
STEPS = ("suite", "stages", *(f"r{r}" for r in range(1, suite_checks.ROUNDS + 1)), "late")


def _settled(root: Root) -> tuple[list[tuple[str, dict, dict]], int]:
    """(dataset, card, :func:`~empir_lib.studies.suite_checks.settling`) of every suite row the suite alone left
    above zero, in the chapters' order, and how many rows it already left at zero."""
    out, zero = [], 0
    for dataset in settings.DATASETS:
        stored = cards.read(dataset, root)
        if not stored:
            continue
        names = list(threats.of(dataset))
        order = {"empir": 0, "baseline": 1}
        for card in sorted(stored.values(), key=lambda c: (
                order.get(c["row"], 2), c["row"], names.index(c["threat"]) if c["threat"] in names else 0)):
            name = card["sources"][0]["file"].removeprefix(f"{dataset}/").removesuffix(".json")
            s = suite_checks.settling(dataset, name, root) if card["row"] != "stochastic" else None
            if s is None:
                continue
            if s["steps"][0]["robust"] == 0:
                zero += 1
                continue
            out.append((dataset, card, s))
    return out, zero


def _key(step: dict) -> str:
    return step["kind"] if step["kind"] != "round" else f"r{step['round']}"


def _by_step(s: dict) -> dict[str, int]:
    return {_key(st): st["robust"] for st in s["steps"]}


def _cell(s: dict, k: str, by_step: dict[str, int]) -> str:
    if k not in by_step:
        return DASH
    st = next(st for st in s["steps"] if _key(st) == k)
    # A stages job cut to some new stages says which: its count is not the whole suite's.  A count
    # holding breaks an earlier run on fewer images found and this one missed says how many.
    notes = ([f"{', '.join(st['only'])} only"] if st.get("only") else []) + \
        ([f"{st['carried']} carried in"] if st.get("carried") else [])
    return f"{by_step[k]:,}" + (f" ({'; '.join(notes)})" if notes else "")


def _constant(card: dict) -> bool:
    return any(f.startswith("constant classifier") for f in card["flags"])


def settling_rows(root: Root = None) -> tuple[list[dict], int]:
    """Per suite row that the suite alone left above zero: its robust images after each evaluation.

    Read from the cards' first source (the suite's file) with
    :func:`empir_lib.studies.suite_checks.settling`, every step counted on
    the strongest evaluation's images.  Also returns how many rows the suite
    alone already left at zero (nothing to re-check there).
    """
    settled, zero = _settled(root)
    out = []
    for dataset, card, s in settled:
        by_step = _by_step(s)
        verdict = {True: "yes", False: "no: an upper bound", None: "not re-checked: an upper bound"}[s["converged"]]
        if _constant(card):
            verdict = "— (a constant classifier: not a defence)"
        out.append({"dataset": LABELS.get(dataset, dataset), "defence": label(dataset, card["row"]),
                    "threat": _threat(card), "n": f"{s['n']:,}" + ("" if s["n"] == s["suite_n"] else
                                                                     f" (of {s['suite_n']:,})"),
                    **{k: _cell(s, k, by_step) for k in STEPS}, "converged": verdict})
    return out, zero


def settling_curves(root: Root = None, least: int = 10) -> dict[str, dict]:
    """For :func:`empir_lib.book.plots.settling_lines`: each row's robust images after each evaluation, as a
    share (%) of what the suite alone left, for the rows with at least ``least`` such images and a later
    evaluation (fewer images make a share too coarse to read); constant classifiers are left out."""
    settled, _ = _settled(root)
    out = {}
    for dataset, card, s in settled:
        by_step = _by_step(s)
        first = by_step["suite"]
        if _constant(card) or first < least or len(by_step) < 2:
            continue
        # The table names each row in full; a legend line keeps defence rows to their file name.
        row = label(dataset, card["row"]) if card["row"] in ("empir", "baseline") else card["row"]
        key = f"{LABELS.get(dataset, dataset)}, {row}, {_threat(card)}"
        out[key] = {"steps": [k for k in STEPS if k in by_step],
                    "share": [100 * by_step[k] / first for k in STEPS if k in by_step],
                    "robust": [by_step[k] for k in STEPS if k in by_step], "converged": s["converged"]}
    return out


def settling_table(root: Root = None) -> str:
    """Markdown: :func:`settling_rows` with its headers, and a line on the rows already at zero."""
    rows, zero = settling_rows(root)
    table = markdown_table(rows, ["dataset", "defence", "threat", "n", *STEPS, "converged"],
                           ["dataset", "defence", "threat", "images", "suite alone", "+ new stages",
                            *(f"round {r} ({2 ** r}x)" for r in range(1, suite_checks.ROUNDS + 1)),
                            "+ late stages", "stopped moving?"]) if rows else DASH
    return table + (f"\n\n{zero} more row{'' if zero == 1 else 's'}: the suite alone left no image robust, so "
                    "there is nothing to re-check.")



def spread_line(dataset: str, row: str, threat: str, block: int = 1000, root: Root = None) -> str:
    """Where a row's robust images sit in the test set, block by block, at its strongest evaluation.

    Why: a figure on "the first 1,000 images" is quoted with a 95% interval
    (Wilson), which assumes a random sample.  The test set's order is not
    random, so the first block's interval need not cover the whole set's
    figure; this line says whether it does.
    """
    t = threats.get(dataset, threat)
    what = f"{LABELS.get(dataset, dataset)}, {label(dataset, row)}, {t.label} {threats.eps_text(t.norm, t.eps)}"
    evals = suite_checks.evaluations(dataset, f"suite/{row}-{threat}", root)
    if not evals:
        return f"{what}: {DASH}"
    name, rec = evals[-1]
    robust = outcomes.load(results.results_dir(dataset, root) / f"{name}.json", rec)["broken_by"] == outcomes.ROBUST
    n = len(robust)
    if n < 2 * block:
        return f"{what} ({name}): on the first {n:,} images only, fewer than two blocks of {block:,}."
    per = [int(robust[i:i + block].sum()) for i in range(0, n - n % block, block)]
    lo, hi = outcomes.wilson_interval(per[0], block)
    whole = robust.mean()
    covers = "covers" if lo <= whole <= hi else "does not cover"
    return (f"{what} ({name}): robust images per {block:,} in test-set order {', '.join(map(str, per))}. The first "
            f"{block:,} give {100 * per[0] / block:.2f}% ({100 * lo:.2f}-{100 * hi:.2f}), the {n:,} together "
            f"{100 * whole:.2f}%: the first block's interval {covers} the whole set's figure.")
