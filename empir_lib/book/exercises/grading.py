"""The exercise checks as an autograder's tests: a failed check raises, with its hint as the message.

A check prints its verdict and returns a bool, so that a student's notebook
keeps running.  A grader (Otter-Grader, see ``empir_lib.book.assignments``) counts
a test as failed when it raises; :func:`require` runs the chapter's own check
call in the graded notebook's namespace and turns a cross into an
``AssertionError`` whose message is the check's hint.
"""
from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Mapping


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
