"""The small embedded test subsets in ``data/samples`` (quick profile, no data dir).

Each file holds the first images of a test split as uint8, so the quick
profile can run anywhere, offline.  Rewritten by ``empir samples``; the
number of images per dataset is ``settings.DATASETS[name].sample_size``.
"""
from __future__ import annotations

import os

import numpy as np

from ..core import settings
from ..core.errors import check_choice
from ..core.files import atomic_write
from . import data


def write_samples(names: list[str] | None = None, data_dir: str | os.PathLike | None = None) -> list[str]:
    """Write ``data/samples/<name>-test-sample.npz`` for each dataset named (default: all)."""
    written = []
    for name in names or settings.SAMPLE_SIZES:
        n = settings.SAMPLE_SIZES[check_choice(name, tuple(settings.SAMPLE_SIZES), "dataset")]
        x, y = data.load(name, "test", data_dir, n)
        x8 = np.round(x * 255).astype(np.uint8)
        path = data.sample_path(name)
        atomic_write(path, lambda p, x8=x8, y=y: np.savez_compressed(open(p, "wb"), x=x8, y=y))
        written.append(str(path))
    return written
