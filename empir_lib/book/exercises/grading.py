"""The exercise checks as an autograder's tests.

Two ways to run a check call such as ``"exercises.check_levels(answer_3_2, bits=3)"``:

* :func:`require`, in the notebook's own process (Otter's test cells, and a
  student's self-check): a failed check raises ``AssertionError`` with its
  hint.  It trusts the notebook, which can patch anything it reaches, so it
  is **not** what grades.
* :func:`run_check`, in the grader's process: the call is evaluated with this
  process's checks (no student code ever ran here), and every other name in
  it is looked up in the student's process through ``lookup``
  (:meth:`empir_lib.book.sandbox.Sandbox.lookup`): a value arrives as plain
  data, a function as a stub that calls the student's process with data.
  The checks' random inputs are drawn from a hidden seed
  (:func:`.verdict.hidden`).  A check returns True / False, or a number in
  [0, 1] for partial credit (the attack tasks).
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import io
import math
import sys
from collections.abc import Callable, Mapping

from .verdict import NO, hidden


def require(env: Mapping[str, object], call: str) -> None:
    """Evaluate one check call, e.g. ``"exercises.check_levels(answer_3_2, bits=3)"``, in ``env``.

    ``env`` is the graded notebook's global namespace; the name ``exercises``
    always means this package, whatever the notebook did with it.  Returns
    quietly when the check passes and raises ``AssertionError`` with the
    verdict line (or the exception the check raised) when it does not.
    """
    checks = sys.modules[__package__]  # empir_lib.book.exercises, loaded before any of its modules
    namespace = {**env, "exercises": checks}
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            ok = eval(call, namespace)
    except Exception as e:  # a missing answer (NameError) is a failed test with a reason, not a crash
        raise AssertionError(f"{checks.NO} {call} raised {type(e).__name__}: {e}") from None
    verdict = printed.getvalue().strip()
    if ok is not True:
        raise AssertionError(verdict or f"{checks.NO} {call} returned {ok!r}")


def free_names(call: str) -> list[str]:
    """The names a check call reads besides ``exercises``: the student's answers (and modules)."""
    tree = ast.parse(call, mode="eval")
    return sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
                  - {"exercises"} - set(dir(builtins)))


def credit(ok: object) -> float:
    """A check's return as a share of the points: True 1, False 0, a number in [0, 1] itself."""
    if ok is True or ok is False:
        return float(ok)
    if isinstance(ok, (int, float)) and math.isfinite(ok):
        return min(1.0, max(0.0, float(ok)))
    return 0.0


def run_check(call: str, lookup: Callable[[str], object], seed: int) -> tuple[float, str]:
    """``(share of the points, the verdict)`` of one check call, evaluated in this process.

    ``lookup(name)`` fetches each of the call's other names from the
    student's process; the checks are this package's, never the student's;
    random test inputs come from ``seed`` (hidden from the student).
    """
    checks = sys.modules[__package__]
    namespace: dict[str, object] = {"exercises": checks}
    for name in free_names(call):
        try:
            namespace[name] = lookup(name)
        except NameError:
            return 0.0, f"{NO} {name} is not defined: answer the exercise in the cell left for it."
        except Exception as e:  # an answer that cannot be read as data is a failed test with a reason
            return 0.0, f"{NO} {name} could not be read: {e}"
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), hidden(seed):
            ok = eval(compile(call, "<check>", "eval"), {"__builtins__": builtins}, namespace)
    except Exception as e:  # a check that fails on the student's answer is a failed test, not a crash
        return 0.0, f"{NO} {call} raised {type(e).__name__}: {e}"
    lines = printed.getvalue().strip().splitlines()
    share = credit(ok)
    return share, (lines[-1] if lines else f"{'' if share else NO + ' '}{call} returned {ok!r}")
