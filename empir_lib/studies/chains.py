"""A suite row's evaluations re-run on more images, built beside the quoted ones and landed whole.

A row's new stages and its re-check rounds continue one another: each file
names the per-image file it continues (:func:`suite_checks.evaluations`
refuses a stale link).  So the chain cannot be re-run on more images (issue
30, item 8: 10,000 instead of the first 1,000) file by file in place.  A new
stages file would orphan the old rounds, and the book would quote nothing
for the sessions the new rounds take.

The new chain is built in a results root of its own instead,
``data/partial/chains/<dataset>/suite/`` (committed, like every resume
state: it outlasts the session that started it).  It begins with a
byte-for-byte copy of the row's suite file (:func:`begin`).  Once its
verdict is final (:func:`final`), :func:`promote` moves it over the quoted
chain in one step.  A verdict is final when its last re-check round moved
the row by less than the tolerance, or when the last allowed round
(:data:`suite_checks.ROUNDS`) still moved it (an upper bound).  A chain
that keeps an image the quoted one broke (:func:`lost_breaks`: a re-run's
random starts can miss a break) lands with that break carried in
(:func:`carry`): a valid break is never discarded.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..attack import diagnostics, outcomes
from ..core import provenance
from ..core.errors import EmpirError
from ..core.files import write_json
from . import results, suite_checks

FOLDER = "chains"  # under the committed resume folder (scripts/attack_stages.py's data/partial)
_FILES = (".json", ".npz")  # a results file and its per-image arrays


def _file(folder: Path, name: str, ext: str) -> Path:
    # Not Path.with_suffix: a row's name may hold a dot (an eps such as 0.5) that is not a suffix.
    return folder / f"{name}{ext}"


def root(partial_dir: str | os.PathLike) -> Path:
    """The results root new chains are built in, under the committed resume folder ``partial_dir``."""
    return Path(partial_dir) / FOLDER


def begin(dataset: str, name: str, chain_root: str | os.PathLike,
          results_root: str | os.PathLike | None = None) -> None:
    """Start the chain of suite row ``name`` (e.g. ``suite/empir-l2``): copy its suite file into ``chain_root``.

    A copy already there must equal the quoted file byte for byte: a suite
    row re-run since the chain began leaves the chain continuing nothing.
    """
    src, dst = (results.results_dir(dataset, r) for r in (results_root, chain_root))
    if not _file(src, name, ".json").is_file():
        raise EmpirError(f"{dataset} has no suite row {name}; run 'empir reproduce {dataset} --only {name}' first.")
    for ext in _FILES:
        a, b = _file(src, name, ext), _file(dst, name, ext)
        if not b.is_file():
            b.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(a, b)
        elif a.read_bytes() != b.read_bytes():
            raise EmpirError(f"{b} differs from the quoted {a}: the suite row was re-run after this chain began; "
                             f"remove this row's files from {b.parent} and start the chain again.")


def final(evals: list[tuple[str, dict]]) -> str | None:
    """Why a chain's verdict is final ('converged' or 'upper bound'), or None while a round or stage is due.

    ``evals``: a row's :func:`suite_checks.evaluations`.  A row with nothing
    robust is converged; late stages end a chain whatever they found (a
    row they moved is an upper bound, no round re-checks them).
    """
    if not evals:
        return None
    last, record = evals[-1]
    if record.get("robust_after", record.get("robust_accuracy")) == 0:
        return "converged"
    checked = last.endswith(suite_checks.LATE) or last.endswith(suite_checks.RECHECKS)
    if checked and suite_checks.converged(evals):
        return "converged"
    if last.endswith(suite_checks.LATE) or last.endswith(suite_checks.RECHECKS[-1]):
        return "upper bound"
    return None


def status(dataset: str, chain_root: str | os.PathLike) -> list[dict]:
    """Every chain begun for ``dataset``: its row, evaluations present, images, and :func:`final` verdict."""
    out = []
    base = results.results_dir(dataset, chain_root) / suite_checks.FOLDER
    for path in sorted(base.glob("*.json")) if base.is_dir() else []:
        name = f"{suite_checks.FOLDER}/{path.stem}"
        if not any(name.endswith(s) for s in suite_checks.SUFFIXES[1:]):
            evals = suite_checks.evaluations(dataset, name, chain_root)
            last = evals[-1][1]
            out.append({"row": name, "evaluations": [n.removeprefix(name) or "suite" for n, _ in evals],
                        "n": last["n"], "robust": last.get("robust_after"), "final": final(evals)})
    return out


def lost_breaks(dataset: str, old: list[tuple[str, dict]], new: list[tuple[str, dict]], chain_root: str | os.PathLike,
                results_root: str | os.PathLike | None = None) -> list[tuple[int, str]]:
    """(image, stage) for each image the quoted chain ``old`` broke and the new chain ``new`` keeps robust.

    Both are :func:`suite_checks.evaluations`, compared per image on the
    images both cover, each from its last (strongest) evaluation.  Two
    runs of the same stage differ in their random starts, so a re-run can
    miss a break the earlier run found.
    """
    if not old or not new:
        return []
    (a_name, a), (b_name, b) = old[-1], new[-1]
    was = outcomes.load(results.results_dir(dataset, results_root) / f"{a_name}.json", a)["broken_by"]
    now = outcomes.load(results.results_dir(dataset, chain_root) / f"{b_name}.json", b)["broken_by"]
    k = min(len(was), len(now))
    stages = ["clean", *(s["name"] for s in a["attacks"])]
    lost = np.flatnonzero((was[:k] != outcomes.ROBUST) & (now[:k] == outcomes.ROBUST))
    return [(int(i), stages[int(was[i])]) for i in lost]


def carry(dataset: str, old: list[tuple[str, dict]], new: list[tuple[str, dict]], chain_root: str | os.PathLike,
          results_root: str | os.PathLike | None = None, command: str | None = None) -> dict:
    """Write the breaks of the quoted chain ``old`` that the new chain ``new`` missed into ``new``'s last evaluation.

    Each stage of ``old`` that found some becomes a stage of its own at the
    end of the cascade, ``carried-<stage>``, of kind :data:`outcomes.CARRIED`:
    it ran nothing, and names the file its breaks come from (results name
    and per-image sha256; that stage validated them when it found them).
    Each carried image keeps its norm from there.  The record's robust count
    and interval include them; its ``change_points`` and ``converged`` stay
    the round's own (what doubling the budget moved), and ``carried`` says
    what was added, by which command.  Returns the rewritten record.
    """
    lost = lost_breaks(dataset, old, new, chain_root, results_root)
    (a_name, a), (name, rec) = old[-1], new[-1]
    was = outcomes.load(results.results_dir(dataset, results_root) / f"{a_name}.json", a)
    folder = results.results_dir(dataset, chain_root)
    path = _file(folder, name, ".json")
    arrays = outcomes.load(path, rec)
    broken, norm = arrays["broken_by"].copy(), arrays["norm"].copy()
    attacks, stats = list(rec["attacks"]), dict(rec.get("stats", {}))
    source = {"name": a_name, "sha256": a["per_image"]["sha256"]}
    order = ["clean", *(s["name"] for s in a["attacks"])]
    if any(s == "clean" for _, s in lost):  # both chains start from the same suite file: this cannot be a re-run's
        raise EmpirError(f"{dataset} {name}: the chains disagree on which images are classified correctly.")
    for stage in sorted({s for _, s in lost}, key=order.index):  # in the order the quoted chain's stages ran
        idx = [i for i, s in lost if s == stage]
        attacks.append({"name": f"carried-{stage}", "kind": outcomes.CARRIED, "stage": stage, "from": source})
        broken[idx], norm[idx] = len(attacks), was["norm"][idx]
        stats[attacks[-1]["name"]] = {"attacked": len(idx), "broken": len(idx), "seconds": 0.0, "images": idx}
    after, n = int(np.sum(broken == outcomes.ROBUST)), len(broken)
    lo, hi = outcomes.wilson_interval(after, n)
    rec = {**rec, "attacks": attacks, "stats": stats, "robust_after": after, "robust_accuracy": round(after / n, 6),
           "robust_ci95": [round(lo, 6), round(hi, 6)],
           "broken_by": outcomes.counts(broken, [s["name"] for s in attacks]),
           "transfer_check": diagnostics.transfer_check(attacks, broken),
           "per_image": outcomes.save(_file(folder, name, ".npz"), broken, norm),
           "carried": {"images": len(lost), "from": {**source, "n": a["n"]}, "provenance": provenance.record(command)}}
    write_json(path, rec)
    return rec


def promote(dataset: str, name: str, chain_root: str | os.PathLike,
            results_root: str | os.PathLike | None = None) -> list[str]:
    """Land the finished chain of suite row ``name``: it replaces the row's quoted evaluations in one step.

    Refused while its verdict is not :func:`final`, when the suite row was
    re-run since it began (:func:`begin`), or when it covers fewer images
    than the chain it replaces.  Images the quoted chain broke and the new
    one keeps (:func:`lost_breaks`) are carried in first (:func:`carry`: a
    valid break is never discarded).  Returns the names moved in.
    """
    new = suite_checks.evaluations(dataset, name, chain_root)
    if len(new) < 2 or new[0][0] != name:  # without its suite file's copy, nothing ties it to the quoted row
        raise EmpirError(f"{dataset} {name}: no chain begun in {chain_root} (its stages and the copy of its suite "
                         "file, chains.begin).")
    begin(dataset, name, chain_root, results_root)  # the suite file it continues is still the quoted one
    if final(new) is None:
        raise EmpirError(f"{dataset} {name}: the chain's last evaluation is {new[-1][0]}, and its verdict is not "
                         "final yet (run the next round: scripts/attack_stages.py ... recheck ... --chain).")
    old = suite_checks.evaluations(dataset, name, results_root)
    if old and old[-1][1]["n"] > new[-1][1]["n"]:
        raise EmpirError(f"{dataset} {name}: the chain covers {new[-1][1]['n']} images, the quoted one "
                         f"{old[-1][1]['n']}; a chain on fewer images replaces nothing.")
    if lost_breaks(dataset, old, new, chain_root, results_root):
        carry(dataset, old, new, chain_root, results_root)
        new = suite_checks.evaluations(dataset, name, chain_root)
        if lost := lost_breaks(dataset, old, new, chain_root, results_root):  # carry's own check: none left
            raise EmpirError(f"{dataset} {name}: {len(lost)} break(s) of the quoted chain were not carried in.")
    dst = results.results_dir(dataset, results_root)
    for n, _ in old[1:]:
        for ext in _FILES:
            _file(dst, n, ext).unlink(missing_ok=True)
    src = results.results_dir(dataset, chain_root)
    for n, _ in new[1:]:
        for ext in _FILES:
            shutil.move(_file(src, n, ext), _file(dst, n, ext))
    for ext in _FILES:  # the copy of the suite file goes: the quoted one is the same bytes
        _file(src, name, ext).unlink()
    suite_checks.evaluations(dataset, name, results_root)  # the landed chain links up
    return [n for n, _ in new[1:]]
