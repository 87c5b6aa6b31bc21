"""The attacks' progress bars: a stage's bar in image-steps, a loop's bar in chunks (shown only when asked).

tqdm is imported only when a bar is shown: ``tqdm.auto`` warns in a notebook
without ipywidgets, and a quiet run (a test, a chapter) has no bar to draw.
"""
from __future__ import annotations

from collections.abc import Iterable


def steps_bar(total: int, desc: str, progress: bool) -> object | None:
    """A stage's bar in image-steps (a re-check's stage can run an hour on one chunk), or None."""
    if not progress:
        return None
    from tqdm.auto import tqdm  # noqa: PLC0415  (module docstring)

    return tqdm(total=total, desc=desc, unit="image-step", unit_scale=True, mininterval=2)


def chunk_bar(it: Iterable, desc: str, progress: bool) -> Iterable:
    """A loop with a progress bar in chunks (the expected suite's, CW's minimal L2), or the loop itself."""
    if not progress:
        return it
    from tqdm.auto import tqdm  # noqa: PLC0415  (module docstring)

    return tqdm(it, desc=desc, unit="chunk", mininterval=2)
