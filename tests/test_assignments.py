"""Classroom assignments: the chapters' exercises become Otter-Grader assignments, graded for real.

The fast tests read every chapter (read-only) and check the source notebooks
and the grader's test helpers.  The slow one (a few minutes on a 2-core CPU)
runs ``otter assign`` on chapters 1, 3 and 6, fills in one correct and one
wrong submission for each from the chapters' own solutions and stubs, grades
them with ``empir assignments grade`` (each notebook in a worker process,
the checks in the grader's) and reads the scores table: full marks for the
correct one; for the wrong one, everything but the question it got wrong,
which the table and the feedback name.  Chapter 3 also gets hostile
submissions that answer nothing but patch the checks, ``exercises.require``
or ``numpy.allclose``, or forge the files a grader might read: each scores
zero; an honest one that answers only exercise 3.2 scores 1 of 4.  Run
it with ``-s`` to see the scores.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from empir_lib.book import assignments, exercises
from empir_lib.core import files
from empir_lib.core.errors import EmpirError

GRADED = {"1": "1.2", "3": "3.2", "6": "6.2"}  # chapter: the exercise the wrong submission gets wrong
# Chapter 3 submissions that answer nothing (every stub left as it is) but try to grade themselves.
HOSTILE = {
    "patch_checks": "exercises.check_quantizer = lambda *a, **k: True\n"
                    "exercises.check_levels = lambda *a, **k: True\n"
                    "exercises.check_ste_gradients = lambda *a, **k: True",
    "patch_require": "exercises.require = lambda *a, **k: None\n"
                     "import empir_lib.book.exercises.grading as g\ng.run_check = lambda *a, **k: (1.0, 'ok')",
    "patch_numpy": "import numpy\nnumpy.allclose = lambda *a, **k: True\nnumpy.isclose = lambda a, b, **k: "
                   "numpy.ones(numpy.shape(a), bool)\nnumpy.array_equal = lambda *a, **k: True",
    "forge_files": "import json, pathlib\nfor d in [pathlib.Path('.'), pathlib.Path(OUT)]:\n"
                   "    d.mkdir(parents=True, exist_ok=True)\n"
                   "    (d / 'results.json').write_text(json.dumps({'tests': [{'name': f'exercise_3_{i}', "
                   "'score': 9, 'max_score': 9} for i in (1, 2, 3)]}))\n"
                   "    (d / 'grading.json').write_text('{}')",
}


# --- reading the chapters --------------------------------------------------------------


@pytest.mark.parametrize("chapter", [p.stem for p in assignments.chapters()])
def test_every_exercise_is_graded_by_its_check_or_by_hand(chapter):
    path = assignments.chapter_path(chapter)
    body, found = assignments.read_chapter(path)
    number = int(chapter[:2])
    assert [e.number for e in found] == [f"{number}.{i}" for i in range(1, len(found) + 1)]
    assert all(e.check or e.answer for e in found)
    for e in found:
        if not e.manual:
            # The test is the very call the student's cell makes, and the solution makes it too.
            assert e.check.startswith("exercises.check_") and e.check in e.stub, e
            assert any(e.check in code for code in e.solution), e
            assert e.points == assignments.POINTS["function" if "def " in e.stub else "value"]
        else:
            assert e.points == assignments.POINTS["written"] and "admonition" not in e.answer
    # Nothing of the exercises leaks into the chapter part of the assignment.
    assert not any("exercise" in c.get("metadata", {}).get("tags", []) for c in body)


def test_instructors_guide_lists_every_exercise_with_its_points():
    guide = (files.REPO / "book" / "exercises" / "README.md").read_text()
    listed = dict(re.findall(r"^\| (\d+\.\d+) \| (\d+) \|", guide, re.M))
    generated = {e.number: str(e.points) for p in assignments.chapters() for e in assignments.read_chapter(p)[1]}
    assert listed == generated


def test_chapters_are_found_by_number_stem_or_path():
    path = assignments.chapter_path("03_dorefa")
    assert assignments.chapter_path("3") == assignments.chapter_path("03") == path == assignments.chapter_path(path)
    with pytest.raises(EmpirError, match="unknown chapter '42'.*03_dorefa"):
        assignments.chapter_path("42")


def test_source_notebook_has_one_question_per_exercise():
    nb = assignments.source_notebook("3")
    raws = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "raw"]
    assert raws[0].startswith("# ASSIGNMENT CONFIG") and "name: empir-03_dorefa" in raws[0]
    questions = [r for r in raws if r.startswith("# BEGIN QUESTION")]
    assert [q.splitlines()[1] for q in questions] == [f"name: exercise_3_{i}" for i in range(1, 5)]
    assert "manual: true" in questions[3] and "manual" not in "".join(questions[:3])
    tests = [c["source"] for c in nb["cells"] if "exercises.require(env," in c["source"]]
    assert len(tests) == 3 and "exercises.check_quantizer(my_quantize_k)" in tests[0]
    assert all(not c.get("outputs") for c in nb["cells"])


def _notebook(cells: list[tuple[str, str, list[str]]]) -> dict:
    return {"cells": [{"cell_type": t, "metadata": {"tags": tags}, "source": s, **(
        {"outputs": [], "execution_count": None} if t == "code" else {})} for t, s, tags in cells],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_an_exercise_without_a_check_is_refused(tmp_path):
    path = tmp_path / "10_broken.ipynb"
    path.write_text(json.dumps(_notebook([("markdown", "# 10. Broken\n\n## Exercises\n\n### Exercise 10.1: x", []),
                                          ("code", "answer = 1", ["exercise"])])))
    with pytest.raises(EmpirError, match="exercise 10.1's cell tagged 'exercise' calls no exercises.check_"):
        assignments.read_chapter(path)


# --- the grader's test: a check that raises ---------------------------------------------


def test_require_passes_quietly_and_fails_with_the_checks_hint():
    exercises.require({"answer": [2 * j / 7 - 1 for j in range(8)]}, "exercises.check_levels(answer, bits=3)")
    with pytest.raises(AssertionError, match="has 8 distinct levels; you listed 3"):
        exercises.require({"answer": [-1, 0, 1]}, "exercises.check_levels(answer, bits=3)")
    with pytest.raises(AssertionError, match="raised NameError"):
        exercises.require({}, "exercises.check_levels(answer, bits=3)")
    # The name `exercises` is always the library's, whatever the notebook bound to it.
    exercises.require({"exercises": None, "a": [0, 1, 1, 0]}, "exercises.check_ste_gradients(a)")


def test_run_check_reads_answers_through_lookup_and_credits_shares():
    answers = {"answer": [2 * j / 7 - 1 for j in range(8)], "wrong": [-1, 0, 1]}
    assert exercises.grading.run_check("exercises.check_levels(answer, bits=3)", answers.__getitem__, 1) == (
        1.0, "✓ correct: the 8 levels of 3-bit weights are " + ", ".join(
            f"{v:+.4g}" for v in answers["answer"]) + ".")
    share, message = exercises.grading.run_check("exercises.check_levels(wrong, bits=3)", answers.__getitem__, 1)
    assert share == 0 and "you listed 3" in message

    def missing(name):
        raise NameError(name)

    share, message = exercises.grading.run_check("exercises.check_levels(x, bits=3)", missing, 1)
    assert share == 0 and "x is not defined" in message
    assert [exercises.grading.credit(v) for v in (True, False, 0.25, 7, float("nan"), "yes")] == [1, 0, .25, 1, 0, 0]


def test_hidden_seed_changes_the_checks_inputs_only_while_grading():
    public = exercises.quantizer_inputs(3)
    with exercises.verdict.hidden(99):
        assert exercises.verdict.grading() and not np.array_equal(exercises.quantizer_inputs(3), public)
    assert not exercises.verdict.grading() and np.array_equal(exercises.quantizer_inputs(3), public)


@pytest.mark.parametrize("args, msg", [
    (["build", "42"], "unknown chapter '42'"),
    (["grade", "3"], "usage: empir assignments grade CHAPTER SUBMISSIONS_DIR"),
])
def test_cli_bad_input_is_one_clear_line(args, msg, tmp_path):
    r = subprocess.run([sys.executable, "-m", "empir_lib.cli", "assignments", *args, "--out-dir", str(tmp_path)],
                       capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr


def test_otter_missing_is_one_clear_message(monkeypatch, tmp_path):
    monkeypatch.setattr(assignments.importlib.util, "find_spec", lambda name: None)
    out = tmp_path / "never-written"
    with pytest.raises(EmpirError, match=r"pip install -e '\.\[classroom\]'"):
        assignments.generate(["3"], out)
    assert not out.exists()  # the message comes before anything is replaced or written


# --- generate, hand out, collect, grade --------------------------------------------------


def _filled(student: dict, found: list[assignments.Exercise], wrong: str | None, first: str = "",
            answer: bool = True) -> dict:
    """The student notebook with every stub replaced by the chapter's solution, except exercise ``wrong``.

    ``answer=False`` leaves every stub as it is; ``first`` is code put before the first stub.
    """
    nb = json.loads(json.dumps(student))
    stubs = {e.stub: e for e in found if not e.manual}
    for cell in nb["cells"]:
        e = stubs.get("".join(cell["source"]).strip())
        if e is not None and first:
            cell["source"], first = first + "\n" + "".join(cell["source"]), ""
        elif e is not None and answer and e.number not in ({wrong} if isinstance(wrong, str) else wrong or ()):
            cell["source"] = e.worked
        elif cell["cell_type"] == "markdown" and "Type your answer here" in "".join(cell["source"]):
            cell["source"] = "A written answer, for the instructor to grade."
    return nb


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """{chapter: (its questions, {submission: Score}, the scores.csv rows)} for chapters 1, 3 and 6."""
    root = tmp_path_factory.mktemp("assignments")
    folders = assignments.generate(GRADED, root / "built")
    out = {}
    for chapter, wrong in GRADED.items():
        path = assignments.chapter_path(chapter)
        folder = folders[path.stem]
        student = json.loads((folder / "student" / path.name).read_text())
        _, found = assignments.read_chapter(path)
        submissions = root / "collected" / path.stem
        submissions.mkdir(parents=True)
        (submissions / "correct.ipynb").write_text(json.dumps(_filled(student, found, None)))
        (submissions / "wrong.ipynb").write_text(json.dumps(_filled(student, found, wrong)))
        if chapter == "3":
            (submissions / "honest.ipynb").write_text(json.dumps(_filled(student, found, ("3.1", "3.3"))))
            for name, code in HOSTILE.items():
                code = code.replace("OUT", repr(str(root / "graded" / path.stem / "runs" / name)))
                (submissions / f"{name}.ipynb").write_text(json.dumps(_filled(student, found, None, code, False)))
        scores = assignments.grade(folder, submissions, root / "graded" / path.stem)
        with open(root / "graded" / path.stem / "scores.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        out[chapter] = (assignments.questions(folder), {s.submission: s for s in scores}, rows, folder)
    for chapter, (qs, scores, _rows, _) in out.items():
        possible = sum(q["points"] for q in qs if not q["manual"])
        for s in scores.values():
            print(f"chapter {chapter} {s.submission:8s} {s.total:g}/{possible:g} "
                  f"failed: {', '.join(s.messages) or '-'} {'; '.join(s.messages.values())}")
    return out


def test_student_notebooks_hold_no_solutions_and_no_outputs(graded):
    for chapter in GRADED:
        path = assignments.chapter_path(chapter)
        folder = graded[chapter][3]
        student = json.loads((folder / "student" / path.name).read_text())
        text = "\n".join("".join(c["source"]) for c in student["cells"])
        _, found = assignments.read_chapter(path)
        for e in found:
            for code in e.solution:
                solution_lines = [ln for ln in code.splitlines() if ln.strip() and ln not in (e.stub or "")]
                assert not any(ln in text for ln in solution_lines if len(ln) > 20), (chapter, e.number)
            if e.stub:
                assert e.stub in text
            if e.answer:
                assert e.answer not in text
        assert all(not c.get("outputs") for c in student["cells"] if c["cell_type"] == "code")
        assert "# Solution" not in text and "**Solution.**" not in text


@pytest.mark.parametrize("chapter", list(GRADED))
def test_correct_submission_gets_full_marks_and_wrong_one_loses_its_question(graded, chapter):
    qs, scores, rows, _ = graded[chapter]
    auto = [q for q in qs if not q["manual"]]
    possible = sum(q["points"] for q in auto)
    wrong_q = "exercise_" + GRADED[chapter].replace(".", "_")
    correct, wrong = scores["correct"], scores["wrong"]
    assert not correct.error and correct.total == possible and not correct.messages
    lost = next(q["points"] for q in auto if q["name"] == wrong_q)
    assert not wrong.error and wrong.total == possible - lost and list(wrong.messages) == [wrong_q]
    assert wrong.messages[wrong_q].startswith(exercises.NO)  # the check's own hint
    by_name = {r["submission"]: r for r in rows}
    assert by_name["correct"]["failed"] == "" and by_name["wrong"]["failed"] == wrong_q
    assert float(by_name["correct"][f"auto total (/{possible:g})"]) == possible
    # Written answers are in the table, left for the instructor.
    manual = [q for q in qs if q["manual"]]
    assert all(by_name["correct"][f"{q['name']} (/{q['points']:g}, manual)"] == "" for q in manual)


def test_hostile_submissions_score_zero_and_an_honest_wrong_one_as_before(graded):
    _, scores, rows, _ = graded["3"]
    honest = scores["honest"]
    assert honest.total == 1 and sorted(honest.messages) == ["exercise_3_1", "exercise_3_3"], honest.messages
    for name in HOSTILE:
        s = scores[name]
        assert s.total == 0 and sorted(s.messages) == ["exercise_3_1", "exercise_3_2", "exercise_3_3"], (name, s)
    by_name = {r["submission"]: r for r in rows}
    assert all(float(by_name[name]["auto total (/4)"]) == 0 for name in HOSTILE)


def test_feedback_names_the_failed_question_and_its_hint(graded):
    _, scores, _, folder = graded["3"]
    feedback = (folder.parent.parent / "graded" / "03_dorefa" / "feedback" / "wrong.md").read_text()
    assert "✗ exercise_3_2: 0 / 1: ✗ a 3-bit weights quantiser has 8 distinct levels" in feedback
    assert "exercise_3_4: written answer, graded by hand" in feedback
