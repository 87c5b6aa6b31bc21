"""What produced a result: command, commit, date, versions, hardware.

Every results file and every zoo entry carries this record (README, "Data"),
so a number in the book can be traced to the run that made it.
"""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

import keras
import numpy
import tensorflow as tf

from . import files


def git_commit() -> str:
    """The commit of this checkout, with '+dirty' when empir_lib has uncommitted changes."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=files.REPO, capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "empir_lib"],
                               cwd=files.REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_model() -> str:
    """The CPU's model name."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware() -> dict:
    """CPU, cores, GPUs and platform of this machine."""
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "gpus": gpus, "platform": platform.platform()}


def versions() -> dict:
    """Versions of Python and the libraries a result depends on."""
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": numpy.__version__}


def now() -> str:
    """The UTC time, to the second, in ISO 8601."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def record(command: str | None = None) -> dict:
    """The provenance block: command, commit, date, versions and hardware."""
    return {"command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "git_commit": git_commit(), "date": now(), "versions": versions(), "hardware": hardware()}
