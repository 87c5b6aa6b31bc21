"""Reading the committed results files (``data/results``) for a chapter.

A chapter shows the full-test-set results that ``empir reproduce`` wrote and
committed.  Where a file is missing it says so in one line, naming the
command that writes it, and shows a dash in its table cell.  Every function
takes ``root`` (default: ``data/results``) so tests can point it elsewhere.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence

from ...attack import attacks
from ...core import settings
from ...core.tables import DASH
from ...studies import results
from .. import plots

Root = str | os.PathLike | None  # where the results files are; None: data/results


def counts(ns: Iterable[int]) -> str:
    """The image counts of a set of results files, e.g. '1,000, 10,000', or a dash when there are none."""
    return ", ".join(f"{v:,}" for v in sorted(set(ns))) or DASH


def missing_note(dataset: str, missing: Iterable[str], what: str | None = None) -> str:
    """One Markdown line naming the command that writes the ``missing`` files ('' when none is missing)."""
    return plots.missing_line(what or f"{dataset} results file(s)", missing, f"empir reproduce {dataset}")


def committed(dataset: str, names: Iterable[str], only: str, root: Root = None) -> dict:
    """The committed results among ``names``, as {name: results dict}.

    For the missing ones, prints one line naming the command that writes them
    (``empir reproduce <dataset> --only <only>``).
    """
    names = list(names)
    have = set(results.names(dataset, root=root))
    found = {n: results.load(dataset, n, root) for n in names if n in have}
    missing = [n for n in names if n not in have]
    if missing:
        print(f"{len(missing)} of {len(names)} results files not yet in data/results/{dataset}/ "
              f"(e.g. {missing[0]}.json); produce them with: empir reproduce {dataset} --only {only}")
    return found


def table2_missing(dataset: str, root: Root = None) -> list[str]:
    """The Table 2 results files (all three rows, four attacks) not yet written for ``dataset``."""
    have = set(results.names(dataset, "table2/", root))
    return [f"table2/{stem}-{a}" for stem in results.ROWS.values() for a in results.ATTACK_COLUMNS
            if f"table2/{stem}-{a}" not in have]


# --- the adaptive selection (chapters 8 and 9) --------------------------------------------------


def worst_objective(tried: dict[str, float]) -> str | None:
    """:func:`empir_lib.studies.results.worst_objective`, the rule `empir reproduce` selects by.

    None if none was tried.
    """
    return results.worst_objective(tried) if tried else None


def adaptive_selection(dataset: str, root: Root = None) -> dict:
    """The committed adaptive selection: every attack under every adaptive objective.

    Returns ``{"objectives": [...], "accuracy": {attack: {objective: %}},
    "worst": {attack: objective or None}, "n": [image counts], "missing": [names]}``.
    The files are ``adaptive-select/<attack>-<objective without ':'>``.
    """
    objectives = attacks.adaptive_objectives(len(settings.EMPIR_MEMBERS[dataset]))
    present = set(results.names(dataset, "adaptive-select/", root))
    accuracy, worst, ns, missing = {}, {}, set(), []
    for att in attacks.ATTACKS:
        accuracy[att] = {}
        for obj in objectives:
            name = f"adaptive-select/{att}-{obj.replace(':', '')}"
            if name in present:
                r = results.load(dataset, name, root)
                accuracy[att][obj] = 100 * r["adversarial_accuracy"]
                ns.add(r["n"])
            else:
                missing.append(name)
        worst[att] = worst_objective(accuracy[att])
    return {"objectives": objectives, "accuracy": accuracy, "worst": worst, "n": sorted(ns), "missing": missing}


def selection_table(dataset: str, root: Root = None) -> str:
    """The adaptive selection as Markdown: one row per attack, the worst objective in bold.

    A member objective's header names the member; a missing file is a dash,
    and a last line names the command that writes the missing ones.
    """
    sel = adaptive_selection(dataset, root)
    members = settings.EMPIR_MEMBERS[dataset]
    rows = []
    for att, accs in sel["accuracy"].items():
        row = {"attack": att.upper()}
        for obj in sel["objectives"]:
            value = accs.get(obj)
            row[obj] = DASH if value is None else (f"**{value:.1f}**" if obj == sel["worst"][att] else f"{value:.1f}")
        rows.append(row)
    heads = [f"{o} ({members[int(o[7:])]})" if o.startswith("member:") else o for o in sel["objectives"]]
    parts = [f"**{dataset}**, adversarial accuracy in % on {counts(sel['n'])} images",
             plots.markdown_table(rows, ["attack", *sel["objectives"]], ["attack", *heads]),
             missing_note(dataset, sel["missing"], f"{dataset} selection files")]
    return "\n\n".join(p for p in parts if p)


# --- single results files shown as table rows ---------------------------------------------------


def pgd_rows_table(dataset: str, folder: str, eps_label: str, root: Root = None) -> str:
    """The three Table 2 rows under PGD at a second epsilon (``<folder>/<row>-pgd``, e.g. ``eps8/``)."""
    present = set(results.names(dataset, f"{folder}/", root))
    rows, missing = [], []
    for row, stem in results.ROWS.items():
        name = f"{folder}/{stem}-pgd"
        if name not in present:
            rows.append({"row": row, "clean": DASH, "pgd": DASH, "n": DASH, "objective": DASH, "params": DASH})
            missing.append(name)
            continue
        r = results.load(dataset, name, root)
        p = r["params"]
        rows.append({"row": row, "clean": plots.percent_cell(100 * r["clean_accuracy"]),
                     "pgd": plots.percent_cell(100 * r["adversarial_accuracy"]), "n": f"{r['n']:,}",
                     "objective": f"`{r['objective']}`",
                     "params": f"eps={255 * p['eps']:.0f}/255, eps_iter={p['eps_iter']:.4g}, nb_iter={p['nb_iter']}"})
    parts = [f"**{dataset}**, ours (accuracy in %)",
             plots.markdown_table(rows, ["row", "clean", "pgd", "n", "objective", "params"],
                                  ["", "clean", f"PGD at {eps_label}", "images", "objective", "attack parameters"]),
             missing_note(dataset, missing)]
    return "\n\n".join(p for p in parts if p)


def members_attack_table(dataset: str, members: Iterable[str], root: Root = None) -> str:
    """Each member alone under the four attacks (``members/<member>-<attack>``), accuracy in %."""
    present = set(results.names(dataset, "members/", root))
    rows, missing = [], []
    for mid in members:
        row, ns = {"member": mid, "clean": DASH}, set()
        for att in results.ATTACK_COLUMNS:
            name = f"members/{mid}-{att}"
            if name in present:
                r = results.load(dataset, name, root)
                row[att], row["clean"] = (plots.percent_cell(100 * r["adversarial_accuracy"]),
                                          plots.percent_cell(100 * r["clean_accuracy"]))
                ns.add(r["n"])
            else:
                row[att] = DASH
                missing.append(name)
        rows.append({**row, "n": counts(ns)})
    parts = [plots.markdown_table(rows, ["member", "clean", *results.ATTACK_COLUMNS, "n"],
                                  ["member", "clean", "CW", "FGSM", "BIM", "PGD", "images"]),
             missing_note(dataset, missing)]
    return "\n\n".join(p for p in parts if p)


def provenance_table(datasets: Sequence[str], prefix: str = "table2/", root: Root = None) -> str:
    """Where each results file came from: images, objective, labels, parameters, commit, date, wall time."""
    rows = []
    for ds in datasets:
        for name in results.names(ds, prefix, root):
            r = results.load(ds, name, root)
            rows.append({"file": f"{ds}/{name}", "n": f"{r['n']:,}", "objective": r["objective"],
                         "labels": r["labels"], "params": ", ".join(f"{k}={v}" for k, v in r["params"].items()),
                         "commit": r["provenance"]["git_commit"][:7], "written": r["timing"]["written"][:16],
                         "seconds": f"{r['timing']['wall_time_s']:,.0f}"})
    table = plots.markdown_table(
        rows, ["file", "n", "objective", "labels", "params", "commit", "written", "seconds"],
        ["results file", "images", "objective", "labels", "attack parameters", "git commit", "written (UTC)",
         "wall time, s"])
    missing = [f"no {ds} {prefix.rstrip('/')} results yet: run `empir reproduce {ds}`"
               for ds in datasets if not results.names(ds, prefix, root)]
    return "\n\n".join([table, *missing])


def job_hours(dataset: str, root: Root = None) -> tuple[dict, str]:
    """Hours of job time per results folder, from ``timing.json`` (or, before it exists, the files' own times).

    Returns ``({folder: (jobs, seconds)}, source)``.
    """
    path = results.results_dir(dataset, root) / "timing.json"
    if path.is_file():
        steps, source = json.loads(path.read_text())["steps"], "timing.json"
    else:
        steps = {n: results.load(dataset, n, root)["timing"]["wall_time_s"] or 0.0
                 for n in results.names(dataset, root=root)}
        source = "files present (timing.json not written yet)"
    folders = defaultdict(lambda: [0, 0.0])
    for name, secs in steps.items():
        folders[name.split("/")[0]][0] += 1
        folders[name.split("/")[0]][1] += secs
    return {k: tuple(v) for k, v in sorted(folders.items())}, source


def timing_table(datasets: Sequence[str], root: Root = None) -> str:
    """How long ``empir reproduce`` took, per dataset and results folder, and on what hardware."""
    rows, lines = [], []
    for ds in datasets:
        folders, source = job_hours(ds, root)
        for folder, (jobs, secs) in folders.items():
            rows.append({"ds": ds, "folder": f"{folder}/", "jobs": jobs, "hours": f"{secs / 3600:.2f}",
                         "source": source})
        total = sum(s for _, s in folders.values())
        rows.append({"ds": ds, "folder": "**total**", "jobs": sum(j for j, _ in folders.values()),
                     "hours": f"**{total / 3600:.2f}**", "source": source})
        names = results.names(ds, root=root)
        if names:
            hw = results.load(ds, names[0], root)["provenance"]["hardware"]
            lines.append(f"{ds}: {hw['cores']} CPU cores ({hw['cpu']}), GPUs: {', '.join(hw['gpus']) or 'none'}")
    table = plots.markdown_table(rows, ["ds", "folder", "jobs", "hours", "source"],
                                 ["dataset", "results", "jobs", "hours", "from"])
    return "\n\n".join([table, *lines])


# --- Figure 5: accuracy against attack strength (chapter 7) -------------------------------------

FIG5 = {"fgsm": ([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], "eps{:.1f}", "FGSM $\\epsilon$"),
        "cw": (list(range(10, 100, 10)), "iter{}", "CW iterations")}


def strength_sweeps(dataset: str = "mnist", root: Root = None) -> tuple[dict, list[str]]:
    """Figure 5's panels for ``plots.strength_sweeps`` from ``fig5/<row>-<attack>-<strength>``, and the missing files.

    A missing point is ``None`` in its series.
    """
    present = set(results.names(dataset, "fig5/", root))
    panels, missing = {}, []
    for attack, (xs, tag, xlabel) in FIG5.items():
        series, ns = {}, set()
        for row, label in (("baseline", "baseline FP"), ("empir", "EMPIR, paper protocol")):
            ys = []
            for v in xs:
                name = f"fig5/{row}-{attack}-{tag.format(v)}"
                if name in present:
                    r = results.load(dataset, name, root)
                    ys.append(100 * r["adversarial_accuracy"])
                    ns.add(r["n"])
                else:
                    ys.append(None)
                    missing.append(name)
            series[label] = ys
        panels[f"{attack.upper()} (n = {counts(ns)} images per point)"] = {"x": xs, "xlabel": xlabel,
                                                                            "series": series}
    return panels, missing


def above_baseline(panels: dict) -> list[str]:
    """Per Figure 5 panel: at how many measured strengths EMPIR keeps more accuracy than the baseline."""
    lines = []
    for title, p in panels.items():
        pairs = [(b, e) for b, e in zip(*p["series"].values()) if b is not None and e is not None]
        lines.append(f"{title.split(' ')[0]}: EMPIR above the baseline at {sum(e > b for b, e in pairs)} "
                     f"of {len(pairs)} measured strengths")
    return lines
