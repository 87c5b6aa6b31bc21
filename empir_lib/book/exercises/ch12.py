"""Exercise checks, chapter 12: attack it yourself (the attack tasks of :mod:`empir_lib.book.attack_tasks`)."""
from __future__ import annotations

from collections.abc import Callable

from ..attack_runs import run
from ..attack_tasks import task
from .verdict import grading, test_seed


def check_attack(student_fn: Callable, name: str) -> float:
    """Run ``student_fn(defence, x, y, eps)`` on attack task ``name`` and judge it; return the credit (0..1).

    In the chapter it runs on a few public images in the notebook's own
    process, as a self-check; the grader runs it on the task's hidden images
    (chosen by its hidden seed), with the student's function in a worker
    process, the budget counted and the time limit enforced there.  It prints
    the verdict: the robust accuracy against the target, the credit, and the
    budget used, or why the answer scores zero.
    """
    out = run(task(name), student_fn, hidden=grading(), seed=test_seed(0))
    print(out.message)
    return out.credit
