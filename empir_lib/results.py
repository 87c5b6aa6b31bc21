"""Reading the committed results (``data/results``) and the paper's own figures.

Every measured number a chapter shows comes from a results file written by
``empir reproduce`` / ``empir evaluate`` (see :mod:`empir_lib.reproduce`), or
from a live computation.  The paper's numbers live here, in ``PAPER_TABLE2``,
copied from the paper's Table 2 and always labelled as the paper's.
"""
from __future__ import annotations

from pathlib import Path

from . import evaluate
from .errors import EmpirError, check_choice

ATTACK_COLUMNS = ("cw", "fgsm", "bim", "pgd")

# The paper's Table 2 (accuracy in %; "average" is the mean of the four attacks).
PAPER_TABLE2 = {
    "mnist": {"baseline": {"clean": 98.87, "cw": 3.69, "fgsm": 14.32, "bim": 0.90, "pgd": 0.77, "average": 4.92},
              "empir": {"clean": 98.89, "cw": 86.73, "fgsm": 67.06, "bim": 18.61, "pgd": 17.51, "average": 47.48}},
    "cifar10": {"baseline": {"clean": 74.54, "cw": 13.38, "fgsm": 10.28, "bim": 11.97, "pgd": 10.69,
                             "average": 11.58},
                "empir": {"clean": 72.56, "cw": 48.51, "fgsm": 20.45, "bim": 24.59, "pgd": 13.55,
                          "average": 26.78}},
    "imagenet": {"baseline": {"clean": 53.23, "cw": 9.94, "fgsm": 10.29, "bim": 10.81, "pgd": 10.30,
                              "average": 10.34},
                 "empir": {"clean": 55.09, "cw": 29.36, "fgsm": 21.65, "bim": 20.67, "pgd": 11.76,
                           "average": 20.86}},
}

ROWS = {"baseline (FP)": "baseline-paper", "EMPIR, paper protocol": "empir-paper",
        "EMPIR, adaptive protocol": "empir-adaptive"}


def results_dir(dataset: str, root=None) -> Path:
    return Path(root or evaluate.RESULTS_DIR) / dataset


def load(dataset: str, name: str, root=None) -> dict:
    """One results file, e.g. ``load('mnist', 'table2/empir-paper-pgd')``."""
    return evaluate.read_result(results_dir(dataset, root) / f"{name}.json")


def names(dataset: str, prefix: str = "", root=None) -> list[str]:
    """The results present for ``dataset`` whose name starts with ``prefix`` (e.g. 'fig4/')."""
    base = results_dir(dataset, root)
    return sorted(str(p.relative_to(base).with_suffix("")) for p in base.rglob("*.json")
                  if p.name != "timing.json" and str(p.relative_to(base)).startswith(prefix))


def table2(dataset: str, root=None, prefix: str = "table2") -> dict:
    """Our Table 2: {row: {clean, cw, fgsm, bim, pgd, average, n}} in %, from the results files.

    A cell whose file is missing is ``None`` (and then so is the average).
    """
    out = {}
    for row, stem in ROWS.items():
        cells, clean, ns = {}, None, set()
        for a in ATTACK_COLUMNS:
            path = results_dir(dataset, root) / prefix / f"{stem}-{a}.json"
            if path.is_file():
                r = evaluate.read_result(path)
                cells[a] = 100 * r["adversarial_accuracy"]
                clean = 100 * r["clean_accuracy"]
                ns.add(r["n"])
            else:
                cells[a] = None
        vals = [cells[a] for a in ATTACK_COLUMNS]
        cells["average"] = None if None in vals else sum(vals) / len(vals)
        out[row] = {"clean": clean, **cells, "n": sorted(ns)}
    return out


def paper_table2(dataset: str) -> dict:
    """The paper's Table 2 rows for ``dataset`` (labelled as the paper's wherever shown)."""
    check_choice(dataset, tuple(PAPER_TABLE2), "dataset")
    return PAPER_TABLE2[dataset]


def require(dataset: str, name: str, root=None) -> dict:
    """Like :func:`load`, with a message that says which command produces the file."""
    try:
        return load(dataset, name, root)
    except EmpirError:
        raise EmpirError(f"results {dataset}/{name} are missing; produce them with "
                         f"'empir reproduce {dataset} --only {name}'.") from None
