"""The seed study in the chapters: how much of each number is the training seed (chapters 4, 7 and 8).

Reads the zoo's manifest (members' clean accuracy per seed) and the seed
study's results files (:mod:`empir_lib.studies.seeds`); every value comes
from a file, a missing one is a dash and a line naming the command that
writes it.
"""
from __future__ import annotations

import os

from ...attack import suite
from ...core import settings
from ...core.errors import check_choice
from ...core.tables import DASH, markdown_table, missing_line
from ...nets import zoo
from ...studies import seeds, suite_checks

Root = str | os.PathLike | None


def _pm(s: dict, digits: int = 2) -> str:
    """'47.68 ± 0.42' (mean ± sample sd over seeds), the mean alone with one value, a dash with none."""
    if s["mean"] is None:
        return DASH
    return f"{s['mean']:.{digits}f}" + ("" if s["sd"] is None else f" ± {s['sd']:.{digits}f}")


def _cell(v: float | None, digits: int = 2) -> str:
    return DASH if v is None else f"{v:.{digits}f}"


def member_seeds(dataset: str, tag: str, zoo_dir: Root = None, epochs: int | None = None) -> dict:
    """Clean test accuracy (%) of every zoo member of one precision, trained for ``epochs``, per seed.

    ``tag`` is a precision tag ('a4w2', 'fp'); ``epochs`` defaults to the
    recipe's (CIFAR-10's EMPIR members train for 40).  Members trained for
    other epochs or with a defence are left out, so the seeds differ in
    nothing else.
    """
    epochs = settings.get(dataset).recipe["epochs"] if epochs is None else epochs
    found = {}
    for mid, e in zoo.members(dataset, zoo_dir).items():
        if settings.defence_tag(mid) or e["epochs"] != epochs:
            continue
        _, w, a, seed = settings.parse_member_id(mid)
        if settings.precision_tag(w, a) == tag:
            found[seed] = 100 * e["test_accuracy"]
    values = [found[k] for k in sorted(found)]
    return {"seeds": sorted(found), "accuracy": values, **seeds.spread(values)}


def member_seed_lines(dataset: str, tags: tuple[str, ...], zoo_dir: Root = None,
                      epochs: int | None = None) -> list[str]:
    """One line per precision: its clean accuracy per seed, the mean ± sd and the range (``epochs``: as above)."""
    lines = []
    for tag in tags:
        m = member_seeds(dataset, tag, zoo_dir, epochs)
        if not m["seeds"]:
            trained = "the recipe's epochs" if epochs is None else f"{epochs} epochs"
            lines.append(f"{dataset} {tag}: no member trained for {trained} in the zoo.")
            continue
        if epochs is not None:
            tag = f"{tag}, {epochs} epochs"
        per = ", ".join(f"seed {s}: {v:.2f}%" for s, v in zip(m["seeds"], m["accuracy"]))
        count = f"{len(m['seeds'])} seed" + "s" * (len(m["seeds"]) > 1)
        lines.append(f"{dataset} {tag} ({count}): {per}; mean ± sd {_pm(m)}%, "
                     f"range {min(m['accuracy']):.2f} to {max(m['accuracy']):.2f}%.")
    return lines


def seed_table(dataset: str, root: Root = None) -> str:
    """Per seed set and as mean ± sd: clean accuracy, the paper protocol's average and the suite per threat (%)."""
    values = seeds.seed_values(dataset, root=root)
    threats = list(suite.threats(dataset))
    cols = ["row", "set", "clean", "paper_average", *threats]
    heads = ["row", "seed set", "clean", "paper protocol, average of CW, FGSM, BIM, PGD" + _n_text(values, "paper"),
             *[f"suite, {t}" + _n_text(values, t) for t in threats]]
    rows = []
    for row in seeds.ROWS:
        for v in values:
            rows.append({"row": "EMPIR" if row == "empir" else "FP baseline", "set": str(v["set"]),
                         **{k: _cell(v[row][k]) for k in ["clean", "paper_average", *threats]}})
        rows.append({"row": "", "set": "**mean ± sd**",
                     **{k: "**" + _pm(seeds.spread([v[row][k] for v in values])) + "**"
                        for k in ["clean", "paper_average", *threats]}})
    md = markdown_table(rows, cols, heads)
    missing = [f"{seeds.FOLDER}/set{v['set']}" for v in values if v["set"] > 1 and v["empir"]["paper_average"] is None]
    absent = [m for rows_ in seeds.sets(dataset) for m in rows_["empir"] if m not in zoo.members(dataset)]
    notes = [missing_line(f"{dataset} seed-set member(s)", absent, f"empir zoo build --dataset {dataset} --seed-sets"),
             missing_line(f"{dataset} seed-set results", missing, f"empir reproduce {dataset} --only seeds/")]
    return "\n\n".join([md, *[n for n in notes if n]])


def _n_text(values: list[dict], measure: str) -> str:
    # measure: a threat's name, or 'paper' for the paper protocol (its n is 'paper_n').
    ns = {v["empir"].get(f"{measure}_n") for v in values} - {None}
    return f" (first {min(ns):,} images)" if ns and min(ns) < 10000 else ""


def verdict_lines(dataset: str, root: Root = None, measures: tuple[str, ...] | None = None) -> list[str]:
    """The book's comparisons decided against the seed spread: EMPIR against its FP baseline per measure,
    and our paper-protocol averages against the paper's.

    ``measures`` (``'paper_average'`` or threat names) keeps those comparisons
    only, without the paper's: chapter 8 asks its L2 question of the seed sets.
    """
    values = seeds.seed_values(dataset, root=root)
    every = ("paper_average", *suite.threats(dataset))
    for m in measures or ():
        check_choice(m, every, "seed-study measure")
    lines = []
    for measure in measures or every:
        e = [v["empir"][measure] for v in values]
        b = [v["baseline"][measure] for v in values]
        if all(x is None for x in e):
            continue
        key = "paper_n" if measure == "paper_average" else f"{measure}_n"
        n = values[0]["empir"].get(key) or 10000
        c = seeds.compare(e, b, n)
        per = ", ".join(DASH if d is None else f"{d:+.2f}" for d in c["values"])
        apart = c["intervals_apart"] or []
        tested = [a for a in apart if a is not None]
        interval = ("" if not tested else
                    f"; the 95% test-set intervals ({n:,} images) are apart in {sum(tested)} of {len(tested)} sets")
        lines.append(f"{dataset}, {measure.replace('_', ' ')}: EMPIR minus FP per seed set {per} points "
                     f"(mean {_pm(c)}): {c['verdict']}{interval}.")
        lines += recheck_lines(dataset, measure, root)
    for row, r in seeds.versus_paper(dataset, values).items() if measures is None else ():
        if r["mean"] is None:
            continue
        where = ("not decided (one seed set)" if r["within_two_sd"] is None else
                 "within two seed sds of ours" if r["within_two_sd"] else "outside two seed sds of ours")
        lines.append(f"{dataset}, {'EMPIR' if row == 'empir' else 'FP baseline'} paper-protocol average: ours "
                     f"{_pm(r)} over {r['k']} seed set(s), the paper's {r['paper']:.2f}: {where}.")
    return lines


def spread_of(values: list[float | None]) -> str:
    """``mean ± sd`` of a list of values (a dash when empty): for a chapter's sentence."""
    return _pm(seeds.spread(values))





def recheck_lines(dataset: str, measure: str, root: Root = None) -> list[str]:
    """One line per row whose seed sets were re-checked at ``measure`` (a threat's name), round by round.

    Each set's chain reads its robust count before the first round, then after
    each round (round r: 2**r times the budget, seed r); the row has stopped
    moving only when every set's last round did.
    """
    lines = []
    for row in seeds.ROWS:
        found = []
        for k in range(1, len(seeds.sets(dataset)) + 1):
            evals = suite_checks.evaluations(dataset, f"{seeds.FOLDER}/set{k}/{row}-{measure}", root)
            rounds = [r for name, r in evals if name.endswith(suite_checks.RECHECKS)]
            if rounds:
                found.append((k, rounds))
        if not found:
            continue
        moved = ", ".join(f"set {k} " + " -> ".join(str(v) for v in [rs[0]["robust_before"],
                                                                      *(r["robust_after"] for r in rs)])
                          + f" of {rs[-1]['n']:,}" for k, rs in found)
        most = max(len(rs) for _, rs in found)
        moving = [k for k, rs in found if not rs[-1]["converged"]]
        settled = [k for k, rs in found if rs[-1]["converged"]]
        how = ("a doubled budget and a new seed" if most == 1 else
               f"up to {most} rounds (round r: 2^r times the budget, seed r)")
        verdict = ("converged." if not moving else
                   (f"{_set_names(settled)} converged; " if settled else "")
                   + f"{_set_names(moving)} not converged (a last round moved 0.1 point or more), so "
                   + ("its value is an upper bound." if len(moving) == 1 else "their values are upper bounds."))
        lines.append(f"{dataset}, {measure}, {'EMPIR' if row == 'empir' else 'FP baseline'} re-checked with "
                     f"{how}: {moved}; {verdict}")
    return lines


def _set_names(ks: list[int]) -> str:
    """'set 1', 'sets 2 and 3', 'sets 1, 2 and 3'."""
    if len(ks) == 1:
        return f"set {ks[0]}"
    return "sets " + ", ".join(str(k) for k in ks[:-1]) + f" and {ks[-1]}"
