"""The library's caches: one bounded owner (core.memo), and no cache kept anywhere else."""
import ast
import gc
from pathlib import Path

import pytest

from empir_lib.core import memo
from empir_lib.core.errors import EmpirError

LIB = Path(__file__).resolve().parents[1] / "empir_lib"
# Module-level tables that are registries (filled once at import, by name), not caches.
REGISTRIES = {("core/defences.py", "REGISTRY"), ("nets/defence_losses.py", "LOSSES")}


@pytest.fixture(autouse=True)
def _empty():
    memo.clear("test.a")
    memo.clear("test.b")
    yield
    memo.clear("test.a")
    memo.clear("test.b")


def test_a_cache_makes_once_and_drops_the_least_recently_used():
    made = []

    def make(k):
        return lambda: made.append(k) or k * 10

    assert memo.get("test.a", 1, make(1), 2) == 10
    assert memo.get("test.a", 2, make(2), 2) == 20
    assert memo.get("test.a", 1, make(1), 2) == 10  # a hit: 1 is now the most recently used
    assert memo.get("test.a", 3, make(3), 2) == 30  # evicts 2, not 1
    assert made == [1, 2, 3]
    memo.get("test.a", 1, make(1), 2)
    memo.get("test.a", 2, make(2), 2)
    assert made == [1, 2, 3, 2]
    assert memo.sizes()["test.a"] == (2, 2)


def test_clear_empties_one_cache_or_all_of_them():
    memo.get("test.a", 1, lambda: 1, 4)
    memo.get("test.b", 1, lambda: 1, 4)
    memo.clear("test.a")
    assert "test.a" not in memo.sizes() and memo.sizes()["test.b"] == (1, 4)
    memo.get("test.a", 1, lambda: 1, 8)  # a forgotten cache takes its next caller's bound
    memo.clear()
    assert memo.sizes() == {}


def test_keep_lives_as_long_as_its_entry_and_no_longer():
    class Net:
        pass

    net = Net()
    probe = memo.get("test.a", id(net), lambda: "traced", 1, keep=net)
    ident = id(net)
    del net
    gc.collect()
    # Still cached, so the id cannot have been reused by another object.
    assert memo.get("test.a", ident, lambda: "stale", 1) == probe
    memo.get("test.a", "other", lambda: 0, 1)  # evicts it, and the object it kept
    assert memo.get("test.a", ident, lambda: "fresh", 1) == "fresh"


def test_bad_bounds_are_refused():
    memo.get("test.a", 1, lambda: 1, 3)
    with pytest.raises(EmpirError, match="bounded at 3"):
        memo.get("test.a", 2, lambda: 2, 4)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(EmpirError, match="maxsize"):
            memo.get("test.b", 1, lambda: 1, bad)


def _module_tables(path: Path) -> list[str]:
    """Names bound at module level to an empty dict, ``dict()`` or ``OrderedDict()``."""
    out = []
    for node in ast.parse(path.read_text()).body:
        target, value = (node.target, node.value) if isinstance(node, ast.AnnAssign) else (
            (node.targets[0], node.value) if isinstance(node, ast.Assign) else (None, None))
        empty = isinstance(value, ast.Dict) and not value.keys or (
            isinstance(value, ast.Call) and getattr(value.func, "id", None) in ("dict", "OrderedDict")
            and not value.args and not value.keywords)
        if empty and isinstance(target, ast.Name):
            out.append(target.id)
    return out


def test_no_module_keeps_a_cache_of_its_own():
    found = {(str(p.relative_to(LIB)), name) for p in LIB.rglob("*.py") if p.name != "memo.py"
             for name in _module_tables(p)}
    assert found - REGISTRIES == set(), "cache through empir_lib.core.memo, not a module-level dict"
    assert REGISTRIES <= found  # the scan sees module tables at all, so this test can fail


def test_the_scan_finds_a_planted_cache(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("from collections import OrderedDict\n_A: dict = {}\n_B = dict()\n_C = OrderedDict()\n"
                       "TABLE = {'x': 1}\n")
    assert _module_tables(planted) == ["_A", "_B", "_C"]
