"""The house in numbers (issue 28's record): modules per folder, lines, import floors, literal counts.

    python scripts/house_stats.py [--root DIR] [--out FILE]

``--root`` is a checkout to measure (default: this one), so the same code
measures an older commit checked out with ``git worktree add``.  The import
graph is the one ``tests/test_imports.py`` builds (parsed, not imported).
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "tests"))
from test_imports import import_graph  # noqa: E402  (the test owns the graph)

# Issue 28's two literals with more than one writer: a threat's results name, and eps in 255ths as a name.
PATTERNS = {"'linf-table1' literals": r"[\"']linf-table1[\"']",
            "f'linf-{round(eps*255)}-255' patterns": r"linf-\{round\("}


def floors(graph: dict[str, set[str]]) -> int:
    """The longest import chain, in modules (a module importing nothing is floor 1)."""
    depth: dict[str, int] = {}

    def d(m: str) -> int:
        if m not in depth:
            depth[m] = 0  # the graph has no cycle (tests/test_imports.py); this only guards the recursion
            depth[m] = 1 + max((d(t) for t in graph.get(m, ()) if t != m), default=0)
        return depth[m]

    return max(d(m) for m in graph)


def notebook_widths(root: Path) -> dict[str, int]:
    """Each chapter's longest code line, in characters."""
    out = {}
    for nb in sorted((root / "book").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        lines = [ln for c in cells if c["cell_type"] == "code" for ln in "".join(c["source"]).splitlines()]
        out[nb.stem] = max((len(ln) for ln in lines), default=0)
    return out


def measure(root: Path) -> dict:
    lib = root / "empir_lib"
    graph, _ = import_graph(lib)
    modules = {m: len((lib / (m.replace(".", "/") + ".py")).read_text().splitlines())
               for m in graph if m and (lib / (m.replace(".", "/") + ".py")).is_file()}
    folders: dict[str, list[int]] = {}
    for m, n in modules.items():
        folders.setdefault(m.split(".")[0] if "." in m else ".", []).append(n)
    text = "\n".join(p.read_text() for p in lib.rglob("*.py"))
    commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {
        "commit": commit,
        "modules": len(modules),
        "folders": {f: {"modules": len(ns), "lines": sum(ns), "largest": max(ns)} for f, ns in sorted(folders.items())},
        "over_400_lines": sorted(m for m, n in modules.items() if n > 400),
        "import_floors": floors(graph),
        "literal_counts": {k: len(re.findall(p, text)) for k, p in PATTERNS.items()},
        "notebook_longest_code_line": notebook_widths(root),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, default=HERE)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    record = measure(args.root.resolve())
    text = json.dumps(record, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
