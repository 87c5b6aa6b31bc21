"""What every exercise check shares: the verdict line, and reading an answer as numbers."""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import numpy as np

OK, NO = "\u2713", "\u2717"  # tick, cross


def verdict(ok: bool, message: str) -> bool:
    """Print one verdict line (a tick or a cross, then ``message``) and return ``ok``."""
    print(f"{OK if ok else NO} {message}")
    return ok


def call_student(student_fn: Callable, *args: object) -> tuple[object, str | None]:
    """``(result, None)``, or ``(None, a message)`` when the student's function raised: an answer to report."""
    try:
        return student_fn(*args), None
    except Exception as e:  # the student's code failing is an answer to report, not a crash
        return None, f"your function raised {type(e).__name__}: {e}"


def first_wrong_class(student_fn: Callable, args: tuple,
                      expected: np.ndarray) -> tuple[np.ndarray | None, int | None, str]:
    """Call a student's function that returns one class per image (column) and compare with ``expected``.

    Returns ``(the classes, the first wrong image or None, "")``, or ``(None,
    None, a message)`` when the function raised or returned the wrong number.
    """
    got, error = call_student(student_fn, *args)
    if error:
        return None, None, error
    got = np.asarray(got).reshape(-1)
    if got.shape != expected.shape:
        return None, None, (f"for {expected.size} images you returned {got.size} classes; return one class per "
                            "image (column).")
    bad = np.flatnonzero(got != expected)
    return got, (int(bad[0]) if bad.size else None), ""


def as_float_array(answer: object, what: str) -> tuple[np.ndarray | None, str]:
    """The answer as a 1-D float array, or a message saying why it is not one."""
    try:
        arr = np.asarray(answer, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None, f"{what} should be a list of numbers; got {answer!r}."
    if not np.all(np.isfinite(arr)):
        return None, f"{what} contains NaN or Inf: {answer!r}."
    return arr, ""


def points_verdict(answer: object, expected: float, correct: str, sign_hint: str) -> tuple[float | None, bool | None]:
    """(the answer as a float, a verdict) for a difference in percentage points.

    The verdict is None when the answer is a number but none of the usual
    slips (a fraction, the wrong sign) explains it: the caller says more.
    """
    try:
        got = float(answer)
    except (TypeError, ValueError):
        return None, verdict(False, f"give one number (percentage points); got {answer!r}.")
    if math.isclose(got, expected, abs_tol=0.01):
        return got, verdict(True, correct)
    if math.isclose(100 * got, expected, abs_tol=0.01):
        return got, verdict(False, "that looks like a fraction; multiply by 100 for percentage points.")
    if math.isclose(-got, expected, abs_tol=0.01):
        return got, verdict(False, "right size, wrong sign: " + sign_hint)
    return got, None


def call_for_number(student_fn: Callable, *args: object) -> tuple[float | None, str | None]:
    """``(the student's function's result as a float, None)``, or ``(None, a message)`` when it raised or
    returned something that is not one number."""
    result, error = call_student(student_fn, *args)
    if error:
        return None, error
    try:
        return float(result), None
    except (TypeError, ValueError):
        return None, f"your function should return one number; it returned {result!r}."


def fraction_verdict(answer: object, expected: float, correct: str,
                     what: str = "a fraction") -> tuple[float | None, bool | None]:
    """(the answer as a float, a verdict) for an answer that is a fraction.

    The verdict is None when the answer is a number but neither right nor
    the usual slip (a percentage): the caller says more.
    """
    try:
        got = float(answer)
    except (TypeError, ValueError):
        return None, verdict(False, f"give one number, {what}; got {answer!r}.")
    if math.isclose(got, expected, abs_tol=1e-3):
        return got, verdict(True, correct)
    if math.isclose(got, 100 * expected, abs_tol=0.1):
        return got, verdict(False, f"that looks like a percentage; give {what}.")
    return got, None


# --- hidden test values -------------------------------------------------------------------
# A check that draws its test inputs at random takes its seed from test_seed(public): the public seed in
# the reader's notebook, the grader's hidden seed while `hidden(seed)` is active (grading.run_check).
_HIDDEN: list[int] = []


@contextlib.contextmanager
def hidden(seed: int) -> Iterator[None]:
    """While active, :func:`test_seed` returns ``seed``: the grader's inputs, not the notebook's."""
    _HIDDEN.append(int(seed))
    try:
        yield
    finally:
        _HIDDEN.pop()


def test_seed(public: int) -> int:
    """The seed a check draws its inputs from: ``public`` in a notebook, the hidden one while grading."""
    return _HIDDEN[-1] if _HIDDEN else public


def grading() -> bool:
    """True while the grader runs the checks (hidden seed set): a check then uses its hidden inputs."""
    return bool(_HIDDEN)
