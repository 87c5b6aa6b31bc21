"""A chapter's set-up in one visible call: ``PROFILE = setup.chapter()``.

Every chapter opened with the same dozen lines (TensorFlow's log level, the
inline figure backend, the profile); they live here once.  Importing this
module before anything that loads TensorFlow quiets TensorFlow's C++ start-up
log, which only reads ``TF_CPP_MIN_LOG_LEVEL`` when TensorFlow first loads.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# After the environment variable above, on purpose: TensorFlow reads it when it loads.
import tensorflow as tf  # noqa: E402
from IPython import get_ipython  # noqa: E402

from ..core.errors import check_choice  # noqa: E402

PROFILES = ("quick", "full")


def chapter(profile: str = "quick") -> str:
    """Set a chapter up and return its profile.

    Quiets TensorFlow's Python logger (no retracing notices in the outputs),
    shows matplotlib Figures inline in a notebook, and checks the profile:
    ``'quick'`` runs the live cells on the embedded samples in ``data/samples``
    (seconds to minutes on two cores), ``'full'`` on the test sets in
    ``EMPIR_DATA_DIR``.
    """
    profile = check_choice(profile, PROFILES, "profile")
    tf.get_logger().setLevel("ERROR")
    shell = get_ipython()
    if shell is not None:  # a notebook or IPython; a plain script has no inline backend
        shell.run_line_magic("matplotlib", "inline")
    return profile
