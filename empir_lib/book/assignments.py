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
solutions, no outputs) and an autograder zip per chapter, plus
``grading.json``, each question's points and check call.  :func:`grade`
(:mod:`empir_lib.book.grader`) runs every notebook in a folder of
submissions in a worker process and grades it from this process, which no
student code enters, into a scores table (``scores.csv``) and one feedback
file per submission.  Otter's own tests (``otter run``) run the checks inside
the student's process: a notebook can patch them, so they are for a
student's self-check, never for marks.  Otter-Grader is the ``classroom``
extra.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..core import files
from ..core.errors import EmpirError
from .grader import MANIFEST, Score, grade, grade_one, questions, write_scores

# The grading half lives in grader.py; its names are this module's too (the CLI and the guide use them here).
__all__ = ["MANIFEST", "Exercise", "Score", "autograder_zip", "chapter_path", "chapters", "generate", "grade",
           "grade_one", "manifest", "questions", "read_chapter", "source_notebook", "write_scores"]

BOOK = files.REPO / "book"
OUT_DIR = files.REPO / "_build" / "assignments"
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
            f"    from empir_lib.book import exercises\n\n"
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


def manifest(chapter: str | Path) -> dict:
    """What the grader needs of a chapter's assignment (``grading.json``): each question's points and check."""
    path = chapter_path(chapter)
    return {"chapter": path.stem, "questions": [
        {"name": e.name, "number": e.number, "points": e.points, "manual": e.manual, "check": e.check}
        for e in read_chapter(path)[1]]}


def _need_otter() -> None:
    if importlib.util.find_spec("otter") is None:
        raise EmpirError(f"Otter-Grader is not installed; {INSTALL_HINT}.")


def _otter(args: Sequence[str], timeout_s: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
    _need_otter()
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
    _need_otter()  # before anything in out_dir is replaced
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
        (folder / MANIFEST).write_text(json.dumps(manifest(path), indent=1) + "\n", encoding="utf-8")
        done[path.stem] = folder
    return done


def autograder_zip(assignment: str | Path) -> Path:
    """The autograder zip in an assignment folder written by :func:`generate`."""
    found = sorted((Path(assignment) / "autograder").glob("*.zip"))
    if not found:
        raise EmpirError(f"no autograder zip under {Path(assignment) / 'autograder'}; run 'make assignments' "
                         "(or empir assignments build) first.")
    return found[-1]
