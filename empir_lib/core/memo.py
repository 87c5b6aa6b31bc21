"""One owner for the library's per-process caches: named, bounded, emptied together.

Loading a member hash-checks its file, and tracing an attack's loop costs
seconds, so the library keeps ensembles, models and traced functions for
reuse across jobs and chunks.  Every such cache lives here, under a name, as
a least-recently-used table with a size bound: a long ``empir reproduce`` run
over dozens of ensembles cannot grow without limit, and :func:`clear` empties
them all at once (a test, or a notebook that wants its memory back).

An entry may hold ``keep``, an object kept alive with it: a key made of
``id(member)`` is only safe while that member lives, since Python reuses ids.
An evicted entry drops both together, so an id can never match a stale entry.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from .errors import EmpirError, check_positive_int

_TABLES: dict[str, OrderedDict] = {}
_BOUNDS: dict[str, int] = {}


def get(cache: str, key: Hashable, make: Callable[[], Any], maxsize: int, keep: object = None) -> Any:
    """The value cached under ``key`` in the cache named ``cache``, made by ``make()`` on a miss.

    At most ``maxsize`` entries are kept; past that the least recently used is
    dropped.  ``keep`` is held alive beside the value (module docstring).
    A cache's bound is fixed by its first use: another bound is an error, so
    two callers cannot silently share a name with different intents.
    """
    maxsize = check_positive_int(maxsize, "maxsize")
    table = _TABLES.setdefault(cache, OrderedDict())
    bound = _BOUNDS.setdefault(cache, maxsize)
    if bound != maxsize:
        raise EmpirError(f"cache {cache!r} is bounded at {bound} entries; a caller asked for {maxsize}.")
    if key in table:
        table.move_to_end(key)
        return table[key][1]
    value = make()
    table[key] = (keep, value)
    while len(table) > bound:
        table.popitem(last=False)
    return value


def clear(cache: str | None = None) -> None:
    """Forget the cache named ``cache`` (its entries and its bound), or every cache when ``None``."""
    for name in [cache] if cache is not None else list(_TABLES):
        _TABLES.pop(name, None)
        _BOUNDS.pop(name, None)


def sizes() -> dict[str, tuple[int, int]]:
    """``{cache: (entries, bound)}`` for every cache used so far in this process."""
    return {name: (len(table), _BOUNDS[name]) for name, table in _TABLES.items()}
