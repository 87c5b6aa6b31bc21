"""The "any of Q queries" rule's bookkeeping, shared by the TensorFlow and the JAX expected accuracy.

:func:`empir_lib.attack.expected.lottery` (its docstring says what the rule
is and why it is a lottery) and :func:`empir_lib.attack.expected_jax.lottery`
differ only in how one draw of the deployed vote is made; the counting is here,
without TensorFlow, so that both use it.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..core.errors import EmpirError, check_positive_int


def check_queries(queries: list[int]) -> list[int]:
    """``queries`` as an increasing list of integers >= 1, or one EmpirError."""
    queries = [check_positive_int(q, "Q (queries)") for q in queries]
    if not queries or any(b <= a for a, b in zip(queries, queries[1:])):
        raise EmpirError(f"queries {queries!r}: pass an increasing list of integers >= 1.")
    return queries


def count(right: Callable[[int], np.ndarray], n: int, queries: list[int]) -> dict:
    """Per Q, the share of ``n`` images right on every one of the first Q draws (``right(q)``: draw q's hits).

    Also ``mean_p_power``, the same share predicted from the per-image shares
    ``p_i`` of all ``max(queries)`` draws, ``mean(p_i ** Q)``.
    """
    queries = check_queries(queries)
    alive, hits, out = np.ones(n, bool), np.zeros(n), []
    for q in range(1, queries[-1] + 1):
        ok = np.asarray(right(q), bool)
        alive &= ok
        hits += ok
        if q in queries:
            out.append(float(alive.mean()))
    p = hits / queries[-1]
    return {"queries": queries, "survive": out, "mean_p_power": [float(np.mean(p ** q)) for q in queries]}
