"""Wall time of a call, with nothing else loaded: the timer of the benchmarks and of chapters 6 and 9.

:mod:`empir_lib.studies.bench` re-exports :func:`best_time`; a chapter that only times
a call imports it from here, so it does not load what ``bench`` needs
(ART, cleverhans' attacks).
"""
from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["best_time"]


def best_time(fn: Callable[[], object], repeats: int = 5) -> float:
    """Best wall time in seconds of ``repeats`` calls of ``fn()`` after one warm-up (tracing) call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
