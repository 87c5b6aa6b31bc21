"""Grading a folder of submitted notebooks, without trusting them.

Each submission runs from the top in a fresh worker process
(:class:`empir_lib.book.sandbox.Sandbox`: its own interpreter, its own
session, killed afterwards); then every auto-graded question's check call
(from the assignment's ``grading.json``, written by ``empir assignments
build``, never from the submission) is evaluated in *this* process with its
own checks (:func:`empir_lib.book.exercises.grading.run_check`).  The
student's answers reach it only as plain data, or as functions called in the
worker with the check's inputs, drawn from a hidden seed.  Nothing the
notebook does to its own modules, to NumPy, or to files reaches the checks:
the grader reads no file the notebook could write.

The hidden seed is ``EMPIR_GRADER_SEED`` when set (an instructor keeps it
secret), else :data:`DEFAULT_SEED`.
"""
from __future__ import annotations

import csv
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import EmpirError
from .exercises import grading
from .exercises.verdict import NO
from .sandbox import Sandbox, WorkerError

MANIFEST = "grading.json"
DEFAULT_SEED = 20261201


def hidden_seed() -> int:
    """The grader's hidden seed: ``EMPIR_GRADER_SEED``, or :data:`DEFAULT_SEED`."""
    text = os.environ.get("EMPIR_GRADER_SEED", str(DEFAULT_SEED))
    if not text.isdigit():
        raise EmpirError(f"EMPIR_GRADER_SEED must be a non-negative integer; got {text!r}.")
    return int(text)


def questions(assignment: str | Path) -> list[dict]:
    """The questions of a built assignment: name, number, points, manual, check (``grading.json``)."""
    path = Path(assignment) / MANIFEST
    if not path.is_file():
        raise EmpirError(f"no {MANIFEST} under {assignment}; run 'make assignments' (or empir assignments "
                         "build) first.")
    return json.loads(path.read_text(encoding="utf-8"))["questions"]


@dataclass
class Score:
    """One graded submission: points per auto-graded question, and what each failed test said."""

    submission: str
    points: dict[str, float]
    messages: dict[str, str]
    error: str = ""
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return sum(self.points.values())


def code_cells(notebook: str | Path) -> list[str]:
    """A notebook's code cells, in order (the submission is only read)."""
    try:
        nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
        cells = [c for c in nb["cells"] if c.get("cell_type") == "code"]
        return ["".join(c["source"]) if isinstance(c["source"], list) else str(c["source"]) for c in cells]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EmpirError(f"{notebook} is not a notebook this grader can read ({e}).") from None


def grade_one(assignment: str | Path, submission: str | Path, out_dir: str | Path,
              timeout_s: float = 1200) -> Score:
    """Run one notebook in a worker, then grade each question here; the worker's output goes to ``run.log``."""
    submission, out_dir = Path(submission), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    auto = [q for q in questions(assignment) if not q["manual"]]
    seed, start = hidden_seed(), time.monotonic()
    try:
        cells = code_cells(submission)
    except EmpirError as e:
        return Score(submission.stem, {q["name"]: 0.0 for q in auto}, {q["name"]: str(e) for q in auto}, str(e))
    points, messages, error = {}, {}, ""
    # The worker runs in an empty folder of its own: the submission's folder is never its working directory.
    with tempfile.TemporaryDirectory() as tmp:
        box = None
        try:
            for q in auto:
                if not error and (box is None or box.proc.poll() is not None):
                    # A fresh worker (again, after a question's code killed or timed out the last one).
                    if box is not None:
                        box.close()
                    box, error = _start(cells, tmp, out_dir, timeout_s)
                if error:
                    share, message = 0.0, f"{NO} not graded: {error}"
                else:
                    share, message = grading.run_check(q["check"], box.lookup, seed)
                points[q["name"]] = share * q["points"]
                if share < 1:
                    messages[q["name"]] = message
        finally:
            if box is not None:
                box.close()
    return Score(submission.stem, points, messages, error, time.monotonic() - start)


def _start(cells: list[str], cwd: str, out_dir: Path, timeout_s: float) -> tuple[Sandbox, str]:
    """A worker that has run the notebook's cells, and '' or why running them failed."""
    box = Sandbox(cwd, out_dir / "run.log")
    (out_dir / "cell-errors.txt").unlink(missing_ok=True)  # a previous grading's, not this one's
    try:
        failed = box.run_cells(cells, timeout_s)
        if failed:
            (out_dir / "cell-errors.txt").write_text("\n".join(failed) + "\n", encoding="utf-8")
        return box, ""
    except WorkerError as e:
        return box, f"running the notebook failed: it {e}; see {out_dir / 'run.log'}"


def grade(assignment: str | Path, submissions: str | Path, out_dir: str | Path | None = None,
          timeout_s: float = 1200) -> list[Score]:
    """Grade every ``*.ipynb`` in ``submissions``; write ``scores.csv`` and ``feedback/<name>.md`` to ``out_dir``.

    ``out_dir`` defaults to ``<assignment>/graded``.  Manually graded
    questions appear in the table with an empty cell for the instructor.
    """
    assignment, submissions = Path(assignment), Path(submissions)
    notebooks = sorted(submissions.glob("*.ipynb")) if submissions.is_dir() else [submissions]
    if not notebooks or not all(nb.is_file() for nb in notebooks):
        raise EmpirError(f"no submissions (*.ipynb) in {submissions}.")
    out = Path(out_dir) if out_dir else assignment / "graded"
    qs = questions(assignment)
    scores = [grade_one(assignment, nb, out / "runs" / nb.stem, timeout_s) for nb in notebooks]
    write_scores(scores, qs, out)
    return scores


def write_scores(scores: Sequence[Score], qs: Sequence[dict], out_dir: str | Path) -> Path:
    """``scores.csv`` (one row per submission, one column per question) and one feedback file each."""
    out = Path(out_dir)
    (out / "feedback").mkdir(parents=True, exist_ok=True)
    auto = [q for q in qs if not q["manual"]]
    manual = [q for q in qs if q["manual"]]
    header = (["submission"] + [f"{q['name']} (/{q['points']:g})" for q in auto]
              + [f"{q['name']} (/{q['points']:g}, manual)" for q in manual]
              + [f"auto total (/{sum(q['points'] for q in auto):g})", "failed", "error"])
    with open(out / "scores.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        for s in scores:
            w.writerow([s.submission] + [f"{s.points[q['name']]:.3g}" if q["name"] in s.points else ""
                                         for q in auto]
                       + [""] * len(manual) + [f"{s.total:.3g}", " ".join(sorted(s.messages)), s.error])
    for s in scores:
        lines = [f"# Feedback: {s.submission}", "",
                 f"Auto-graded: {s.total:.3g} of {sum(q['points'] for q in auto):g} points.", ""]
        if s.error:
            lines += [f"**Not graded:** {s.error}", ""]
        for q in auto:
            got = s.points.get(q["name"])
            mark = "✓" if q["name"] not in s.messages and got is not None else "✗"
            lines.append(f"- {mark} {q['name']}: {'—' if got is None else f'{got:.3g}'} / {q['points']:g}"
                         + (f": {s.messages[q['name']]}" if q["name"] in s.messages else ""))
        lines += [f"- {q['name']}: written answer, graded by hand (/{q['points']:g})" for q in manual]
        (out / "feedback" / f"{s.submission}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "scores.csv"
