"""The results files in ``data/results``: writing one with provenance, reading them back as tables.

Every measured number a chapter shows comes from a results file written by
``empir reproduce`` / ``empir evaluate`` (see :mod:`empir_lib.studies.reproduce`), or
from a live computation.  A results file is JSON, written atomically, with
full provenance (README, "Data").  The paper's own numbers live in
:mod:`empir_lib.core.paper` and are always labelled as the paper's.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..core import files, paper, provenance
from ..core.errors import EmpirError, check_choice
from ..core.files import write_json
from ..nets import data

RESULTS_DIR = files.REPO / "data" / "results"
ATTACK_COLUMNS = ("cw", "fgsm", "bim", "pgd")

ROWS = {"baseline (FP)": "baseline-paper", "EMPIR, paper protocol": "empir-paper",
        "EMPIR, adaptive protocol": "empir-adaptive"}


# Where a row's results live: the paper's two rows (EMPIR and its FP baseline) in table2/ and suite/, every
# other defence of Table 2 in defences/ (the one owner of these paths: reproduce writes, chapters read).
DEFENCES_FOLDER = "defences"
PAPER_ROWS = ("baseline", "empir")


def paper_protocol_stem(row: str) -> str:
    """The results-file stem of a row under the paper protocol (``<stem>-<attack>``)."""
    return f"table2/{row}-paper" if row in PAPER_ROWS else f"{DEFENCES_FOLDER}/{row}-paper"


def suite_name(row: str, threat: str) -> str:
    """The results file of a row's worst-case suite at one of the suite's threat models."""
    return f"suite/{row}-{threat}" if row in PAPER_ROWS else f"{DEFENCES_FOLDER}/{row}-suite-{threat}"


def results_dir(dataset: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of one dataset's results files."""
    return Path(root or RESULTS_DIR) / dataset


def load(dataset: str, name: str, root: str | os.PathLike | None = None) -> dict:
    """One results file, e.g. ``load('mnist', 'table2/empir-paper-pgd')``."""
    return read_result(results_dir(dataset, root) / f"{name}.json")


def find(dataset: str, name: str, root: str | os.PathLike | None = None) -> dict | None:
    """Like :func:`load`, or None while the file is missing (for tables that show what is there)."""
    path = results_dir(dataset, root) / f"{name}.json"
    return read_result(path) if path.is_file() else None


def names(dataset: str, prefix: str = "", root: str | os.PathLike | None = None) -> list[str]:
    """The results present for ``dataset`` whose name starts with ``prefix`` (e.g. 'fig4/')."""
    base = results_dir(dataset, root)
    return sorted(str(p.relative_to(base).with_suffix("")) for p in base.rglob("*.json")
                  if p.name != "timing.json" and str(p.relative_to(base)).startswith(prefix))


def table2(dataset: str, root: str | os.PathLike | None = None, prefix: str = "table2") -> dict:
    """Our Table 2: {row: {clean, cw, fgsm, bim, pgd, average, n}} in %, from the results files.

    A cell whose file is missing is ``None`` (and then so is the average).
    """
    out = {}
    for row, stem in ROWS.items():
        cells, clean, ns = {}, None, set()
        for a in ATTACK_COLUMNS:
            path = results_dir(dataset, root) / prefix / f"{stem}-{a}.json"
            if path.is_file():
                r = read_result(path)
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
    check_choice(dataset, tuple(paper.TABLE2), "dataset")
    return paper.TABLE2[dataset]


def worst_objective(tried: dict[str, float]) -> str:
    """The adaptive protocol's choice: the objective that left the lowest accuracy, ties to the first name.

    ``tried`` maps each objective tried on the selection images to the
    accuracy it left.  :func:`empir_lib.studies.reproduce.adaptive_jobs` runs this
    objective on the whole test set for the adaptive Table 2 row, and the
    chapters show the same choice in bold.
    """
    if not tried:
        raise EmpirError("no adaptive objective was tried, so there is none to select; "
                         "run the selection first (empir reproduce DATASET --only adaptive-select/).")
    return min(tried, key=lambda k: (tried[k], k))


def require(dataset: str, name: str, root: str | os.PathLike | None = None) -> dict:
    """Like :func:`load`, with a message that says which command produces the file."""
    try:
        return load(dataset, name, root)
    except EmpirError:
        raise EmpirError(f"results {dataset}/{name} are missing; produce them with "
                         f"'empir reproduce {dataset} --only {name}'.") from None


def write_result(path: str | os.PathLike, result: dict, dataset: str, command: str | None = None,
                 extra: dict | None = None, prov: dict | None = None) -> dict:
    """Write a results file atomically: the summary, provenance and data description.

    Per-image arrays are dropped (the confusion matrix stays); time and
    provenance sit under their own keys so that two runs of the same
    configuration differ only there.  ``prov`` is a provenance record taken
    when the run started (so a commit made meanwhile is not misattributed).
    """
    summary = {k: v for k, v in result.items() if not isinstance(v, np.ndarray)}
    wall = summary.pop("wall_time_s", None)
    record = {"dataset": dataset,
              "data": {"split": "test", "first_n": summary["n"], **data.describe_source(dataset)},
              **summary, **(extra or {}),
              "timing": {"wall_time_s": wall, "written": provenance.now()},
              "provenance": prov or provenance.record(command)}
    write_json(path, record)
    return record


def done(path: str | os.PathLike, config: dict) -> dict | None:
    """The results file at ``path`` when it holds ``config`` (every key equal, as JSON stores it), else None.

    Every study's resumable job asks this before it runs: a finished job is
    kept, and a changed configuration (another n, attack, member) runs again.
    """
    if not Path(path).is_file():
        return None
    old = read_result(path)
    return old if all(old.get(k) == json.loads(json.dumps(v)) for k, v in config.items()) else None


def read_result(path: str | os.PathLike) -> dict:
    """One results file, or a message that says which command writes it."""
    path = Path(path)
    if not path.is_file():
        raise EmpirError(f"no results file at {path}; produce it with 'empir reproduce' or 'empir evaluate'.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EmpirError(f"{path} is not valid JSON ({e}); restore it with git or rerun its command.") from None
