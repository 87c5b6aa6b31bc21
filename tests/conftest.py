import os
import subprocess
import sys
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


@pytest.fixture(scope="session")
def empir_mnist():
    """The MNIST EMPIR ensemble and the committed sample (no datasets needed), shared by the attack tests."""
    from empir_lib.nets import data, ensemble  # imported here: conftest must not load TensorFlow for every test
    x, y = data.load_sample("mnist")
    x.setflags(write=False), y.setflags(write=False)  # shared by every test: a test that writes to it fails
    return ensemble.empir("mnist"), x, y


def device_usage(script: str) -> str:
    """A device runner's usage (it exits 2 without arguments), from a fresh interpreter in which importing it
    loaded neither TensorFlow nor Keras: the GPU machine has JAX and neither of them."""
    code = (f"import sys; sys.path.insert(0, 'scripts'); import {script} as r; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, sorted(sys.modules); "
            "sys.exit(r.main([]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 2, out.stderr
    return out.stderr
