"""Single members: the precision grid, clean against adversarial accuracy, transfer (chapter 4),
and the zoo tables of chapters 7 and 9.

A member is one network of the zoo (``data/models``), named like
``mnist-a4w2-s1``.  Live numbers come from attacks run here on the embedded
sample; committed ones from the results files under ``grid/`` and ``table2/``.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ...attack import attacks
from ...core import settings
from ...core.tables import DASH
from ...nets import ensemble, zoo
from ...studies import evaluate, results
from .. import plots
from .committed import Root, committed


def precision(wbits: int, abits: int) -> str:
    """'FP' for a full-precision member, else the paper's 'a4w2' naming."""
    return "FP" if settings.is_full_precision(wbits, abits) else f"a{abits}w{wbits}"


def train_command(member: str) -> str:
    """The command that trains a zoo member and adds it to the zoo, e.g. for 'tiny-imagenet-a2w2-s1'."""
    dataset, wbits, abits, seed = settings.parse_member_id(member)  # an EmpirError (a ValueError) if not an id

    def bits(b: int | list[int]) -> str:
        return ",".join(map(str, b)) if isinstance(b, list) else str(b)

    return f"empir train --dataset {dataset} --wbits {bits(wbits)} --abits {bits(abits)} --seed {seed} --zoo"


def fgsm_accuracies(models: dict, x: np.ndarray, y: np.ndarray, dataset: str) -> dict:
    """FGSM (paper preset) on each model alone: {id: evaluate.adversarial_accuracy result}."""
    return {m: evaluate.adversarial_accuracy(ensemble.make([model], names=[m]), "fgsm", x, y,
                                             dataset=dataset, progress=False)
            for m, model in models.items()}


def grid_summary(grid: dict, fp: str, live: dict, manifest: dict) -> str:
    """How many low-precision members beat the FP member under FGSM, how many are less accurate, per abits."""
    fp_adv = live[fp]["adversarial_accuracy"]
    more_robust = [m for m in grid.values() if live[m]["adversarial_accuracy"] > fp_adv]
    less_accurate = [m for m in grid.values() if manifest[m]["test_accuracy"] < manifest[fp]["test_accuracy"]]
    n = len(grid)
    lines = [f"live FGSM: {len(more_robust)} of {n} low-precision members keep more accuracy than the FP member",
             f"manifest:  {len(less_accurate)} of {n} low-precision members are less accurate on clean images"]
    ws = sorted({w for w, _ in grid})
    for a in sorted({a for _, a in grid}):
        row = [live[grid[(w, a)]]["adversarial_accuracy"] for w in ws]
        lines.append(f"abits={a}: mean live FGSM accuracy over wbits {', '.join(map(str, ws))} "
                     f"= {sum(row) / len(row):.1%}")
    return "\n".join(lines)


def committed_grid(dataset: str, attack: str, root: Root = None) -> tuple[dict, list[int]]:
    """The committed grid results for ``attack``: ({(wbits, abits): adversarial accuracy}, image counts)."""
    ids = {wa: zoo.find(dataset, *wa) for wa in settings.GRID}
    found = committed(dataset, [f"grid/{m}-{attack}" for m in ids.values()], "grid/", root)
    acc = {wa: found[f"grid/{m}-{attack}"]["adversarial_accuracy"] for wa, m in ids.items()
           if f"grid/{m}-{attack}" in found}
    return acc, sorted({r["n"] for r in found.values()})


def tradeoff_points(dataset: str, x: np.ndarray, y: np.ndarray, attack: str = "cw") -> list[dict]:
    """Clean (manifest) against live adversarial accuracy: the grid, the FP member and EMPIR (Figure 3a).

    EMPIR is skipped, with a printed line naming the command, while one of its members is missing.
    """
    entries = zoo.members(dataset)
    points = []
    for w, a in [*settings.GRID, (settings.FULL_PRECISION, settings.FULL_PRECISION)]:
        mid = zoo.find(dataset, w, a)
        r = evaluate.adversarial_accuracy(ensemble.from_zoo([mid]), attack, x, y, dataset=dataset, progress=False)
        points.append({"label": precision(w, a), "clean": entries[mid]["test_accuracy"],
                       "adv": r["adversarial_accuracy"], "kind": "fp" if settings.is_full_precision(w, a) else "lp",
                       "id": mid})
    missing = [m for m in settings.EMPIR_MEMBERS[dataset] if m not in entries]
    if missing:
        print(f"{dataset}: EMPIR point skipped, the zoo lacks {', '.join(missing)} "
              f"(train with: empir zoo build --dataset {dataset})")
        return points
    r = evaluate.adversarial_accuracy(ensemble.empir(dataset), attack, x, y, dataset=dataset, progress=False)
    clean_full = results.table2(dataset)["EMPIR, paper protocol"]["clean"]
    clean = clean_full / 100 if clean_full is not None else r["clean_accuracy"]
    source = "committed Table 2 results" if clean_full is not None else f"{len(y)} sample images"
    print(f"{dataset}: EMPIR clean accuracy {clean:.1%} from {source}; {attack.upper()} accuracy "
          f"{r['adversarial_accuracy']:.1%} on {len(y)} sample images")
    points.append({"label": "EMPIR", "clean": clean, "adv": r["adversarial_accuracy"], "kind": "empir",
                   "id": "EMPIR"})
    return points


def committed_points(dataset: str, attack: str = "cw", root: Root = None) -> tuple[list[dict], list[int]]:
    """Figure 3a from the committed files: the grid members, the FP baseline and EMPIR; and the image counts."""
    entries = zoo.members(dataset)
    ids = [zoo.find(dataset, w, a) for w, a in settings.GRID]
    grid = committed(dataset, [f"grid/{m}-{attack}" for m in ids], "grid/", root)
    base, emp = f"table2/baseline-paper-{attack}", f"table2/empir-paper-{attack}"
    table2 = committed(dataset, [base, emp], "table2/", root)
    points = [{"label": precision(entries[m]["wbits"], entries[m]["abits"]), "clean": entries[m]["test_accuracy"],
               "adv": grid[f"grid/{m}-{attack}"]["adversarial_accuracy"], "kind": "lp"}
              for m in ids if f"grid/{m}-{attack}" in grid]
    if base in table2:
        r = table2[base]
        points.append({"label": "FP", "clean": entries[r["members"][0]]["test_accuracy"],
                       "adv": r["adversarial_accuracy"], "kind": "fp"})
    if emp in table2:
        r = table2[emp]
        points.append({"label": "EMPIR", "clean": r["clean_accuracy"], "adv": r["adversarial_accuracy"],
                       "kind": "empir"})
    return points, sorted({r["n"] for r in [*grid.values(), *table2.values()]})


def transfer_table(models: dict, grid: dict, fp: str, live: dict, x: np.ndarray, y: np.ndarray,
                   dataset: str) -> tuple[str, list[dict]]:
    """FGSM on each grid member itself (``live``) against FGSM crafted on the FP member and transferred.

    Returns the Markdown table and its rows (``stronger``: which attack left less accuracy).
    """
    manifest = zoo.members()
    x_from_fp = attacks.generate(ensemble.make([models[fp]], names=[fp]), "fgsm", x, dataset=dataset)
    rows = []
    for (w, a), m in grid.items():
        white = live[m]["adversarial_accuracy"]
        transfer = evaluate.accuracy(models[m], x_from_fp, y)
        rows.append({"id": m, "precision": precision(w, a), "clean": manifest[m]["test_accuracy"],
                     "white": white, "transfer": transfer, "stronger": "transfer" if transfer < white else "white-box"})
    table = plots.markdown_table(
        rows, ["id", "precision", "clean", "white", "transfer", "stronger"],
        ["member", "precision", "clean (manifest)", "FGSM on itself (live)", "FGSM from the FP member (live)",
         "stronger attack"], {"clean": ".1%", "white": ".1%", "transfer": ".1%"})
    return table, rows


def zoo_table(members: Iterable[str], zoo_dir: zoo.ZooDir = None) -> str:
    """The members as trained: precision, seed, epochs, clean accuracy and training time, as Markdown.

    A member not in the zoo yet gets dashes and the command that trains it.
    """
    manifest = zoo.members(zoo_dir=zoo_dir)
    rows = []
    for mid in members:
        e = manifest.get(mid)
        if e is None:
            rows.append({"id": mid, "precision": DASH, "seed": DASH, "epochs": DASH, "acc": DASH,
                         "time": f"not in the zoo yet: `{train_command(mid)}`"})
            continue
        acc = f"{100 * e['test_accuracy']:.2f} (n = {e['n_test']:,})"
        if "test_accuracy_float32" in e:  # stored as float16: the accuracy before rounding too
            acc += f"; {100 * e['test_accuracy_float32']:.2f} before rounding to float16"
        width = e.get("arch_kwargs", {}).get("width")
        rows.append({"id": mid, "precision": precision(e["wbits"], e["abits"]), "seed": e["seed"],
                     "epochs": e["epochs"], "acc": acc,
                     "time": f"{e['train_time_s'] / 60:.1f} min" + (f", width {width}" if width else "")})
    return plots.markdown_table(rows, ["id", "precision", "seed", "epochs", "acc", "time"],
                                ["member", "precision", "seed", "epochs", "clean accuracy, %", "training"])


def accuracy_gaps(datasets: Iterable[str], zoo_dir: zoo.ZooDir = None) -> str:
    """Each EMPIR low-precision member's clean accuracy against its FP member's, per dataset, as Markdown."""
    manifest = zoo.members(zoo_dir=zoo_dir)
    rows = []
    for ds in datasets:
        fp = settings.get(ds).empir_fp
        for lp in settings.get(ds).empir_lp:
            acc = {m: 100 * manifest[m]["test_accuracy"] if m in manifest else None for m in (lp, fp)}
            rows.append({"ds": ds, "member": lp, "lp": plots.percent_cell(acc[lp]), "fp": plots.percent_cell(acc[fp]),
                         "gap": plots.percent_cell(None if None in acc.values() else acc[fp] - acc[lp])})
    return plots.markdown_table(rows, ["ds", "member", "lp", "fp", "gap"],
                                ["dataset", "low-precision member", "its clean accuracy, %", "FP member's, %",
                                 "FP \u2212 LP, points"])


def members_under_attack(ens: ensemble.Ensemble, x: np.ndarray, y: np.ndarray, adversarial: dict,
                         decimals: int = 0) -> str:
    """Each member's accuracy and the ensemble vote's, clean and on each set of adversarial images, in %.

    ``adversarial`` maps a column header to adversarial images (crafted against ``ens``).
    """
    columns = {"clean": x, **adversarial}
    vote = {c: float((ensemble.predict(ens, xs) == y).mean()) for c, xs in columns.items()}
    rows = [{"model": f"{name} ({'FP' if fp else 'low precision'})",
             **{c: f"{100 * evaluate.accuracy(m, xs, y):.{decimals}f}" for c, xs in columns.items()}}
            for name, m, fp in zip(ens.names, ens.members, ens.fp)]
    rows.append({"model": "**EMPIR vote**", **{c: f"{100 * v:.{decimals}f}" for c, v in vote.items()}})
    heads = [f"clean accuracy, % ({len(y)} images)" if c == "clean" else c for c in columns]
    return plots.markdown_table(rows, ["model", *columns], ["", *heads])


def manifest_and_live(ids: Iterable[str], x: np.ndarray, y: np.ndarray, profile: str) -> str:
    """Each member's clean accuracy as the manifest records it (full test set) beside a live recomputation."""
    manifest = zoo.members()
    rows = []
    for member in ids:
        entry = manifest[member]
        rows.append({"id": member, "precision": precision(entry["wbits"], entry["abits"]),
                     "full": entry["test_accuracy"], "n_full": entry["n_test"],
                     "live": evaluate.accuracy(zoo.load(member), x, y), "n_live": len(y)})
    return plots.markdown_table(
        rows, ["id", "precision", "full", "n_full", "live", "n_live"],
        ["member", "precision", "manifest accuracy", "images", f"live accuracy ({profile})", "images"],
        {"full": ".2%", "live": ".2%"})
