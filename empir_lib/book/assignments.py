"""Classroom assignments from the chapters, graded by Otter-Grader.

A chapter's exercises follow one layout (``book/exercises/README.md``): the
task in Markdown under ``### Exercise N.M``, a code cell tagged ``exercise``
(the student's stub, ending in ``ok = exercises.check_...(...)``), and cells
tagged ``solution`` (the worked code, or a written answer in Markdown).
:func:`source_notebook` reads a chapter (never writing it) and turns that
layout into an Otter Assign source notebook: every exercise becomes a
question; its stub is what students get, its solution what the autograder's
notebook holds, and the chapter's own check call becomes the question's test
(``empir_lib.book.exercises.require`` raises with the check's hint when it fails),
so the grader and the reader run the same check.  Written answers become
manually graded questions.

:func:`generate` runs ``otter assign`` on it: a student notebook (no
solutions, no outputs) and an autograder zip per chapter.  :func:`grade` runs
``otter run`` (local, no Docker) on every notebook in a folder of
submissions and writes a scores table (``scores.csv``) and one feedback file
per submission.  Otter-Grader is the ``classroom`` extra.
"""
from __future__ import annotations

import ast
import csv
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core import provenance
from ..core.errors import EmpirError

REPO = provenance.REPO
BOOK = REPO / "book"
OUT_DIR = REPO / "_build" / "assignments"
INSTALL_HINT = "install Otter-Grader with the classroom extra: pip install -e '.[classroom]' (or: make setup)"

# Points: an exercise that asks for a function, a value, or a written answer.
POINTS = {"function": 2, "value": 1, "written": 2}

_HEADING = re.compile(r"^###\s+Exercise\s+(\d+\.\d+)\b", re.M)


@dataclass
class Exercise:
    """One exercise of a chapter, as its cells give it."""

    number: str                                          # "3.1"
    prompt: list[str] = field(default_factory=list)      # Markdown: the task
    stub: str | None = None                              # the student's code cell (tag ``exercise``)
    solution: list[str] = field(default_factory=list)    # worked code (tag ``solution``)
    answer: str | None = None                            # the written answer (Markdown, tag ``solution``)
    check: str | None = None                             # the check call, e.g. "exercises.check_pack(my_pack)"

    @property
    def name(self) -> str:
        return "exercise_" + self.number.replace(".", "_")

    @property
    def manual(self) -> bool:
        return self.check is None

    @property
    def worked(self) -> str:
        """The solution as it runs in place of the stub.

        In the chapter the solution runs after the stub, and may use what the
        stub defined (an import, the data it prepares); those statements of the
        stub come first, the stub's placeholder answer and check do not.
        """
        code = "\n\n".join(self.solution)
        try:
            stub, solution = ast.parse(self.stub or ""), ast.parse(code)
        except SyntaxError:
            return code
        used = {n.id for n in ast.walk(solution) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        used -= {name for node in solution.body for name in _binds(node)}
        needed = [ast.get_source_segment(self.stub, n) for n in stub.body if _binds(n) & used]
        return "\n".join(needed) + "\n\n" + code if needed and code else code

    @property
    def points(self) -> int:
        if self.manual:
            return POINTS["written"]
        return POINTS["function" if re.search(r"^def ", self.stub or "", re.M) else "value"]


def _binds(node: ast.stmt) -> set[str]:
    """The names a top-level statement binds: assignments, definitions, imports."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
    return {n.id for t in targets if t is not None for n in ast.walk(t) if isinstance(n, ast.Name)}


def chapters() -> list[Path]:
    """The chapter notebooks, ``book/NN_*.ipynb``, in order."""
    return sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))


def chapter_path(chapter: str | Path) -> Path:
    """A chapter by path, by stem (``03_dorefa``) or by number (``3``, ``03``)."""
    path = Path(chapter)
    if path.suffix == ".ipynb":
        if not path.is_file():
            raise EmpirError(f"no notebook {path}.")
        return path
    text = str(chapter)
    found = [p for p in chapters() if p.stem == text or (text.isdigit() and p.stem[:2] == f"{int(text):02d}")]
    if not found:
        names = ", ".join(p.stem for p in chapters())
        raise EmpirError(f"unknown chapter {text!r}; give a number (3) or one of: {names}.")
    return found[0]


def _source(cell: Mapping) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell: Mapping) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def check_call(code: str) -> str | None:
    """The first ``exercises.check_...(...)`` call in ``code``, as source text, or None."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr.startswith("check_")
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "exercises"):
            return ast.get_source_segment(code, node)
    return None


def _unfold(markdown: str) -> str:
    """A written answer without its MyST dropdown (``:::{admonition}``), which JupyterLab shows as text."""
    lines = [ln for ln in markdown.strip().splitlines() if not re.match(r"^:::(\{admonition\}.*)?\s*$|^:class:", ln)]
    return "**Solution.** " + "\n".join(lines).strip()


def read_chapter(path: str | Path) -> tuple[list[dict], list[Exercise]]:
    """A chapter's cells before its first exercise, and its exercises (the notebook is only read)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    body: list[dict] = []
    exercises: list[Exercise] = []
    for cell in nb["cells"]:
        src, tags = _source(cell), _tags(cell)
        if cell["cell_type"] == "markdown" and _HEADING.search(src) and "solution" not in tags:
            starts = [m.start() for m in _HEADING.finditer(src)]
            before = src[:starts[0]].strip()  # e.g. the chapter's last paragraph and "## Exercises"
            if before:
                (exercises[-1].prompt if exercises else body).append(before if exercises else _markdown(before))
            for a, b in zip(starts, [*starts[1:], len(src)]):
                exercises.append(Exercise(_HEADING.match(src, a).group(1), [src[a:b].strip()]))
            continue
        if not exercises:
            body.append(cell)
            continue
        ex = exercises[-1]
        if "exercise" in tags:
            ex.stub = src.strip()
        elif "solution" in tags and cell["cell_type"] == "code":
            ex.solution.append(src.strip())
        elif "solution" in tags:
            ex.answer = _unfold(src)
        elif cell["cell_type"] == "markdown":
            ex.prompt.append(src.strip())
        else:
            ex.solution.append(src.strip())  # an untagged code cell among the exercises: context for the answer
    for ex in exercises:
        ex.check = check_call(ex.stub) if ex.stub else None
        if ex.stub and ex.check is None:
            raise EmpirError(f"{path}: exercise {ex.number}'s cell tagged 'exercise' calls no "
                             "exercises.check_...(); the grader needs that call as its test.")
        if ex.stub is None and ex.answer is None:
            raise EmpirError(f"{path}: exercise {ex.number} has neither a cell tagged 'exercise' nor a written "
                             "answer tagged 'solution'.")
    return body, exercises


def _markdown(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def _code(text: str) -> dict:
    return {"cell_type": "code", "metadata": {}, "source": text, "outputs": [], "execution_count": None}


def _raw(text: str) -> dict:
    return {"cell_type": "raw", "metadata": {}, "source": text}


def _config_cell(name: str) -> dict:
    # Otter Assign's settings: no Otter cells in the student notebook (the chapter's own checks stay in it),
    # exception-based tests stored in the notebook, an autograder zip, no PDFs.
    return _raw(f"""# ASSIGNMENT CONFIG
name: {name}
init_cell: false
check_all_cell: false
export_cell: false
run_tests: false
solutions_pdf: false
show_question_points: true
generate:
  pdf: false
tests:
  files: false
  ok_format: false""")


def _intro(title: str, exercises: Sequence[Exercise]) -> dict:
    auto = [e for e in exercises if not e.manual]
    written = [e for e in exercises if e.manual]
    return _markdown(
        f"**Assignment: {title}.**  Read the chapter and run its cells, then answer the exercises at the end "
        "in the cells left for you.  The check under each coding exercise prints ✓ or ✗ with a hint; the "
        f"autograder runs the same checks ({_count(auto)}).  Written answers ({_count(written)}) are graded "
        "by hand.  Before you hand the notebook in, restart the kernel and run all cells.")


def _count(exercises: Sequence[Exercise]) -> str:
    n, points = len(exercises), sum(e.points for e in exercises)
    return f"{n} exercise{'s' * (n != 1)}, {points} point{'s' * (points != 1)}"


def _question(ex: Exercise) -> list[dict]:
    # No Otter check cell: the student's cell already runs the chapter's check, and needs no `grader` object.
    config = (f"# BEGIN QUESTION\nname: {ex.name}\npoints: {ex.points}\ncheck_cell: false"
              + ("\nmanual: true" if ex.manual else ""))
    cells = [_raw(config), *map(_markdown, ex.prompt)]
    if ex.manual:
        cells += [_raw("# BEGIN SOLUTION"), _markdown(ex.answer or "**Solution.**")]
        cells += [_code(f"# BEGIN SOLUTION NO PROMPT\n{code}\n# END SOLUTION") for code in ex.solution]
        cells.append(_raw("# END SOLUTION"))
    else:
        if '"""' in ex.stub:
            raise EmpirError(f"exercise {ex.number}: its stub holds a triple-quoted string, which Otter's "
                             "prompt block cannot carry; use single or double quotes.")
        # One cell: students get the stub (Otter's prompt), the autograder's notebook the solution.
        body = ex.worked or ex.stub
        cells += [_raw("# BEGIN SOLUTION"),
                  _code(f'r""" # BEGIN PROMPT\n{ex.stub}\n"""; # END PROMPT\n'
                        f"# BEGIN SOLUTION NO PROMPT\n{body}\n# END SOLUTION"),
                  _raw("# END SOLUTION"), _raw("# BEGIN TESTS"), _code(_test(ex)), _raw("# END TESTS")]
    return [*cells, _raw("# END QUESTION")]


def _test(ex: Exercise) -> str:
    # An exception-based Otter test: `env` is the graded notebook's namespace, the call the chapter's own check.
    return (f'""" # BEGIN TEST CONFIG\npoints: {ex.points}\nsuccess_message: "{ex.number}: the check passes"\n'
            f'""" # END TEST CONFIG\ndef test_{ex.name}(env):\n'
            f"    from empir_lib import exercises\n\n"
            f"    exercises.require(env, {ex.check!r})\n")


def source_notebook(chapter: str | Path) -> dict:
    """The Otter Assign source notebook of one chapter (nbformat 4 JSON, as a dict)."""
    path = chapter_path(chapter)
    nb = json.loads(path.read_text(encoding="utf-8"))
    body, exercises = read_chapter(path)
    if not exercises:
        raise EmpirError(f"{path.name} has no '### Exercise N.M' headings: nothing to assign.")
    title = next((m.group(1) for c in body if c["cell_type"] == "markdown"
                  for m in [re.search(r"^#\s+(.+)$", _source(c), re.M)] if m), path.stem)
    cells = [_config_cell(f"empir-{path.stem}"), _intro(title, exercises)]
    for c in body:
        cells.append(_code(_source(c)) if c["cell_type"] == "code" else
                     _markdown(_source(c)) if c["cell_type"] == "markdown" else _raw(_source(c)))
    for ex in exercises:
        cells += _question(ex)
    for i, c in enumerate(cells):
        c["id"] = f"cell-{i}"
    return {"cells": cells, "metadata": {"kernelspec": nb["metadata"].get("kernelspec", {
        "display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}),
        "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}


def _otter(args: Sequence[str], timeout_s: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("otter") is None:
        raise EmpirError(f"Otter-Grader is not installed; {INSTALL_HINT}.")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    return subprocess.run([sys.executable, "-m", "otter", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout_s, cwd=cwd, env=env)


def generate(chapter_list: Iterable[str | Path] | None = None, out_dir: str | Path = OUT_DIR,
             timeout_s: float = 600) -> dict[str, Path]:
    """Write each chapter's assignment into ``out_dir/<chapter>/``; return {chapter: its folder}.

    Each folder holds ``source/<chapter>.ipynb`` (the Otter Assign source),
    ``student/<chapter>.ipynb`` (the handout: stubs, no solutions, no outputs),
    and ``autograder/`` (the solutions notebook and the autograder zip).
    """
    paths = [chapter_path(c) for c in chapter_list] if chapter_list else chapters()
    done = {}
    for path in paths:
        folder = Path(out_dir) / path.stem
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "source").mkdir(parents=True)
        source = folder / "source" / path.name
        source.write_text(json.dumps(source_notebook(path), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        run = _otter(["assign", "--no-run-tests", "--no-pdfs", source, folder], timeout_s)
        if run.returncode != 0:
            raise EmpirError(f"otter assign failed on {source}:\n{(run.stdout + run.stderr)[-3000:]}")
        done[path.stem] = folder
    return done


def autograder_zip(assignment: str | Path) -> Path:
    """The autograder zip in an assignment folder written by :func:`generate`."""
    found = sorted((Path(assignment) / "autograder").glob("*.zip"))
    if not found:
        raise EmpirError(f"no autograder zip under {Path(assignment) / 'autograder'}; run 'make assignments' "
                         "(or empir assignments build) first.")
    return found[-1]


def questions(assignment: str | Path) -> list[dict]:
    """The questions of an assignment, from its source notebook: name, points, manual."""
    source = next((Path(assignment) / "source").glob("*.ipynb"), None)
    if source is None:
        raise EmpirError(f"no source notebook under {Path(assignment) / 'source'}; run 'make assignments' first.")
    found = []
    for cell in json.loads(source.read_text(encoding="utf-8"))["cells"]:
        src = _source(cell)
        if cell["cell_type"] == "raw" and src.startswith("# BEGIN QUESTION"):
            conf = dict(line.split(": ", 1) for line in src.splitlines()[1:])
            found.append({"name": conf["name"], "points": float(conf["points"]), "manual": "manual" in conf})
    return found


@dataclass
class Score:
    """One graded submission: points per auto-graded question, and what each failed test said."""

    submission: str
    points: dict[str, float]
    messages: dict[str, str]
    error: str = ""

    @property
    def total(self) -> float:
        return sum(self.points.values())


def grade_one(assignment: str | Path, submission: str | Path, out_dir: str | Path,
              timeout_s: float = 1200) -> Score:
    """Grade one notebook with ``otter run`` (locally, no Docker); keep Otter's ``results.json`` in ``out_dir``."""
    submission, out_dir = Path(submission), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # otter run reads the submission from its own folder; a copy keeps the student's folder untouched.
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / submission.name
        shutil.copy(submission, copy)
        run = _otter(["run", "--no-logo", "-a", autograder_zip(assignment).resolve(), "-o", out_dir.resolve(), copy],
                     timeout_s, cwd=Path(tmp))
    (out_dir / "otter-run.log").write_text(run.stdout + run.stderr, encoding="utf-8")
    results = out_dir / "results.json"
    if run.returncode != 0 or not results.is_file():
        return Score(submission.stem, {}, {}, f"otter run failed (exit {run.returncode}); see {out_dir}/otter-run.log")
    # Otter writes Gradescope's format: one entry per question with its score, plus a summary entry.
    tests = [t for t in json.loads(results.read_text(encoding="utf-8"))["tests"] if "score" in t]
    points = {t["name"]: float(t["score"]) for t in tests}
    messages = {t["name"]: _failure(t.get("output", "")) for t in tests if float(t["score"]) < float(t["max_score"])}
    return Score(submission.stem, points, messages)


def _failure(output: str) -> str:
    """The check's hint (the AssertionError's text) out of Otter's test output."""
    lines = [ln.strip() for ln in output.strip().splitlines()]
    hints = [ln.removeprefix("AssertionError: ") for ln in lines if ln.startswith("AssertionError: ")]
    return hints[-1] if hints else (lines[-1] if lines else "failed")


def grade(assignment: str | Path, submissions: str | Path, out_dir: str | Path | None = None,
          timeout_s: float = 1200) -> list[Score]:
    """Grade every ``*.ipynb`` in ``submissions``; write ``scores.csv`` and ``feedback/<name>.md`` to ``out_dir``.

    ``out_dir`` defaults to ``<assignment>/graded``.  Manually graded
    questions appear in the table with an empty cell for the instructor.
    """
    assignment, submissions = Path(assignment), Path(submissions)
    notebooks = sorted(submissions.glob("*.ipynb")) if submissions.is_dir() else [submissions]
    if not notebooks:
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
            w.writerow([s.submission] + [f"{s.points[q['name']]:g}" if q["name"] in s.points else "" for q in auto]
                       + [""] * len(manual) + [f"{s.total:g}", " ".join(sorted(s.messages)), s.error])
    for s in scores:
        lines = [f"# Feedback: {s.submission}", "",
                 f"Auto-graded: {s.total:g} of {sum(q['points'] for q in auto):g} points.", ""]
        if s.error:
            lines += [f"**Not graded:** {s.error}", ""]
        for q in auto:
            got = s.points.get(q["name"])
            mark = "✓" if q["name"] not in s.messages and got is not None else "✗"
            lines.append(f"- {mark} {q['name']}: {'—' if got is None else f'{got:g}'} / {q['points']:g}"
                         + (f": {s.messages[q['name']]}" if q["name"] in s.messages else ""))
        lines += [f"- {q['name']}: written answer, graded by hand (/{q['points']:g})" for q in manual]
        (out / "feedback" / f"{s.submission}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out / "scores.csv"
