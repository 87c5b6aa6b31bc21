import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def data_dir():
    """The offline datasets; CI sets EMPIR_DATA_DIR=../shared/datasets."""
    d = os.environ.get("EMPIR_DATA_DIR")
    if not d or not (Path(d) / "mnist.npz").is_file():
        pytest.skip("EMPIR_DATA_DIR does not hold the offline datasets")
    return Path(d)
