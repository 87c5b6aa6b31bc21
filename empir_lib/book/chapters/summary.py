"""The table at the start of the results part (chapter 7): every published figure beside ours, from the cards.

One row per number a reader may have seen: the paper's own (Table 2's PGD
column, its protocol), Tramer et al.'s and the public ART reproduction's
(CIFAR-10 EMPIR at 8/255), Farkya et al.'s (their stochastic-quantiser
ensemble at 5/255), and ours, the worst case of the book's suite with its 95%
interval, read from the stored cards (:mod:`empir_lib.studies.cards`).
"""
from __future__ import annotations

from ...core import paper, settings, threats
from ...core.tables import DASH, markdown_table
from ...studies import cards
from .committed import Root
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
