"""Files the library writes and checks: atomic writes, sha256 checksums, the cache folder.

Every file the library writes (results, checkpoints, the zoo's manifest, the
decoded-data cache) goes through :func:`atomic_write`, so a crash or a kill
never leaves half a file behind; every file it trusts is checked with
:func:`sha256` first.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from .errors import EmpirError

# The repository root: empir_lib/core/files.py is two folders below it.
REPO = Path(__file__).resolve().parents[2]


def sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """Where decoded datasets are cached: ``$EMPIR_CACHE_DIR``, else ``~/.cache/empir``."""
    return Path(os.environ.get("EMPIR_CACHE_DIR") or Path.home() / ".cache" / "empir")


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> None:
    """Write through ``write(tmp_path)`` then rename: a crash leaves no half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, obj: dict) -> None:
    """Write ``obj`` atomically as the repository's JSON files are kept: sorted keys, indent 1, a final newline."""
    atomic_write(path, lambda p: Path(p).write_text(json.dumps(obj, indent=1, sort_keys=True) + "\n"))


def read_manifest(path: str | os.PathLike, fix: str) -> dict:
    """A JSON manifest (``{'members': {}}`` when there is none yet); invalid JSON names ``fix``."""
    path = Path(path)
    if not path.exists():
        return {"members": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise EmpirError(f"{path} is not valid JSON ({e}); {fix}.") from None
