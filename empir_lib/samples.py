"""The small embedded test subsets in ``data/samples`` (quick profile, no data dir).

Each file holds the first images of a test split as uint8, so the quick
profile can run anywhere, offline.  Rewritten by ``empir samples``.
"""
from __future__ import annotations

import numpy as np

from . import data
from .errors import check_choice

SAMPLE_SIZES = {"mnist": 500, "cifar10": 500, "tiny-imagenet": 200}


def write_samples(names=None, data_dir=None) -> list[str]:
    """Write ``data/samples/<name>-test-sample.npz`` for each dataset named (default: all)."""
    written = []
    for name in names or SAMPLE_SIZES:
        n = SAMPLE_SIZES[check_choice(name, tuple(SAMPLE_SIZES), 'dataset')]
        x, y = data.load(name, "test", data_dir, n)
        x8 = np.round(x * 255).astype(np.uint8)
        path = data.sample_path(name)
        data.atomic_write(path, lambda p: np.savez_compressed(open(p, "wb"), x=x8, y=y))
        written.append(str(path))
    return written
