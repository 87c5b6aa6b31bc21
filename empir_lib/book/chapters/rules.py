"""Ensembling rules and member counts (chapter 5): the vote against averaging, Figure 4's sweep.

Every live number here is FGSM under the paper protocol on the embedded
sample; :class:`LiveFGSM` runs each (members, rule) pair once and remembers it,
because several figures of the chapter share the same ensembles.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from ...nets import ensemble, zoo
from ...studies import evaluate
from .. import plots
from .committed import Root, committed

# The paper's section 5.4 quotes two points of Figure 4 in its text (the rest is only drawn):
# (M FP members, N LP members) -> accuracy in %.
PAPER_FIG4 = {(0, 3): {"clean": 98.8, "fgsm": 56.9}, (3, 0): {"clean": 99.2, "fgsm": 31.0}}


def rule_example(probs: ArrayLike, order: ArrayLike) -> str:
    """Votes, the two rules' classes and their probabilities for a few hand-made images, as Markdown.

    ``probs`` has shape (members, images, classes); ``order`` is the tie-break order.
    """
    probs = np.asarray(probs, np.float32)
    out = {rule: ensemble.combine(np.log(probs), order, rule) for rule in ensemble.RULES}

    def fmt(v):
        return "(" + ", ".join(f"{p:.2f}" for p in v) + ")"

    rows = [{"image": chr(ord("A") + i), "votes": " ".join(str(int(c)) for c in probs[:, i].argmax(-1)),
             "vote": int(out["vote"]["pred"][i]), "average": int(out["average"]["pred"][i]),
             "voters": fmt(out["vote"]["voter_mean_prob"][i]), "mean": fmt(out["average"]["mean_prob"][i])}
            for i in range(probs.shape[1])]
    return plots.markdown_table(
        rows, ["image", "votes", "vote", "average", "voters", "mean"],
        ["image", "votes (LP1 LP2 FP)", "max vote", "averaging", "voters' mean probability", "mean probability"])


class LiveFGSM:
    """FGSM (paper protocol) on the embedded sample, once per (members, rule); call it with member ids."""

    def __init__(self, x: np.ndarray, y: np.ndarray, dataset: str = "mnist"):
        self.x, self.y, self.dataset = x, y, dataset
        self.models, self.results = {}, {}

    def __call__(self, ids: Sequence[str], rule: str = "vote") -> dict:
        key = (tuple(ids), rule)
        if key not in self.results:
            for m in ids:
                if m not in self.models:
                    self.models[m] = zoo.load(m)
            ens = ensemble.make([self.models[m] for m in ids], rule, names=list(ids))
            self.results[key] = evaluate.adversarial_accuracy(ens, "fgsm", self.x, self.y, dataset=self.dataset,
                                                              progress=False)
        return self.results[key]


def top_confusion(matrix: ArrayLike) -> tuple[int, int, int, int, int]:
    """(images on the diagonal, all images, true class, predicted class, count) of the most frequent confusion."""
    m = np.asarray(matrix)
    off = m - np.diag(np.diag(m))
    i, j = np.unravel_index(off.argmax(), off.shape)
    return int(np.trace(m)), int(m.sum()), int(i), int(j), int(off[i, j])


def rules_table(live: LiveFGSM, sizes: dict, dataset: str = "mnist", root: Root = None) -> tuple[str, list[dict]]:
    """Vote against average for each ensemble size: live FGSM, and committed FGSM/PGD from ``rules/``.

    ``sizes`` maps an ensemble size to its member ids.  Returns the Markdown table and its rows.
    """
    names = [f"rules/{s}-{r}-{a}" for s in sizes for r in ensemble.RULES for a in ("fgsm", "pgd")]
    full = committed(dataset, names, "rules/", root)
    rows = []
    for size, ids in sizes.items():
        for rule in ensemble.RULES:
            r = live(ids, rule)
            row = {"size": size, "members": " + ".join(ids), "rule": rule,
                   "clean": r["clean_accuracy"], "live": r["adversarial_accuracy"]}
            for a in ("fgsm", "pgd"):
                f = full.get(f"rules/{size}-{rule}-{a}")
                row[a] = f"{f['adversarial_accuracy']:.1%} (n={f['n']})" if f else "not yet run"
            rows.append(row)
    table = plots.markdown_table(
        rows, ["size", "members", "rule", "clean", "live", "fgsm", "pgd"],
        ["size", "members", "rule", "clean (live)", f"FGSM (live, {len(live.y)} images)", "FGSM (committed)",
         "PGD (committed)"], {"clean": ".1%", "live": ".1%"})
    return table, rows


def better_rule(rows: Iterable[dict]) -> dict:
    """Per ensemble size, the rule with the higher live FGSM accuracy (or 'neither (a tie)')."""
    out = {}
    for size in dict.fromkeys(r["size"] for r in rows):
        acc = {r["rule"]: r["live"] for r in rows if r["size"] == size}
        out[size] = max(acc, key=acc.get) if len(set(acc.values())) > 1 else "neither (a tie)"
    return out


def member_count_sweep(live: LiveFGSM, lp_ids: Sequence[str], fp_ids: Sequence[str], n_max: int = 3) -> dict:
    """Figure 4: every (M FP, N LP) with M, N <= n_max and M + N >= 1, live: {(M, N): result}."""
    return {(f, n): live(list(lp_ids[:n]) + list(fp_ids[:f]))
            for f in range(n_max + 1) for n in range(n_max + 1) if f + n}


def count_panels(cells: dict, where: str) -> tuple[dict, dict]:
    """The two panels of ``plots.member_count_panels`` (clean, FGSM) and the paper's two quoted points."""
    titles = (f"clean accuracy, {where}", f"FGSM accuracy, {where}")
    panels = {titles[0]: {k: r["clean_accuracy"] for k, r in cells.items()},
              titles[1]: {k: r["adversarial_accuracy"] for k, r in cells.items()}}
    notes = {t: {k: f"paper {v[key]:.1f}" for k, v in PAPER_FIG4.items()} for t, key in zip(titles, ("clean", "fgsm"))}
    return panels, notes


def committed_counts(keys: Iterable[tuple[int, int]], dataset: str = "mnist", root: Root = None) -> dict:
    """Figure 4's committed cells (``fig4/fp<M>-lp<N>``) among ``keys``: {(M, N): results}."""
    found = committed(dataset, [f"fig4/fp{f}-lp{n}" for f, n in keys], "fig4/", root)
    return {(f, n): found[f"fig4/fp{f}-lp{n}"] for f, n in keys if f"fig4/fp{f}-lp{n}" in found}
