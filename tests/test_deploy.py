"""Members deployed in ONNX Runtime with integer kernels (empir_lib/deploy.py): same predictions as Keras."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO

from empir_lib import data, deploy, models, quantize, settings, zoo
from empir_lib.errors import EmpirError

MNIST_EMPIR = settings.get("mnist").empir_ids


def test_weight_codes_are_eq5_levels_times_n():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 2, 4)).astype(np.float32)
    for bits in (1, 2, 4, 7):
        codes = deploy.weight_codes(kernel, bits)
        n = 2**bits - 1
        assert codes.dtype == np.int8 and np.abs(codes).max() <= n and np.all((codes + n) % 2 == 0)
        np.testing.assert_allclose(codes / n, quantize.quantize_weights(kernel, bits), atol=1e-6)


def test_mnist_low_precision_member_runs_on_integer_kernels():
    _, kinds = deploy.to_onnx(zoo.load("mnist-a4w2-s1"))
    assert kinds == {"conv1": "int8 QLinearConv", "conv2": "int8 QLinearConv", "conv3": "int8 MatMulInteger",
                     "logits": "float MatMul"}  # the original keeps the last layer in full precision
    assert deploy.integer_share("mnist-a4w2-s1") > 0.99
    _, fp_kinds = deploy.to_onnx(zoo.load("mnist-fp-s1"))
    assert all(k.startswith("float") for k in fp_kinds.values())


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "tiny-imagenet"])
def test_deployed_empir_matches_keras_on_the_sample(dataset, tmp_path):
    x, _ = data.load_sample(dataset, 100)
    result = deploy.compare(settings.get(dataset).empir_ids, x, deploy_dir=tmp_path)
    assert result["n"] == 100
    assert {m: r["differ"] for m, r in result["members"].items()} == dict.fromkeys(result["members"], 0)
    assert result["vote_differ"] == 0


def test_deployed_mnist_empir_matches_keras_on_the_full_test_set(data_dir, tmp_path):
    x, _ = data.load("mnist", "test", data_dir)
    result = deploy.compare(MNIST_EMPIR, x, deploy_dir=tmp_path)
    assert result["n"] == 10000
    assert all(r["differ"] == 0 for r in result["members"].values()), result["members"]
    assert result["vote_differ"] == 0


def test_committed_equivalence_counts():
    """The full-test-set comparison behind chapter 6: no member and no vote differs."""
    path = REPO / "data" / "results" / "deploy" / "equivalence.json"
    if not path.is_file():
        pytest.skip("data/results/deploy/equivalence.json is not written yet")
    result = json.loads(path.read_text())
    for ds in ("mnist", "cifar10", "tiny-imagenet"):
        assert result["datasets"][ds]["n"] == 10000
        assert result["datasets"][ds]["vote_differ"] == 0
        assert all(r["differ"] == 0 for r in result["datasets"][ds]["members"].values())


def test_deploy_writes_a_file_and_load_checks_its_hash(tmp_path):
    entry = deploy.deploy("mnist-a4w2-s1", tmp_path)
    path = tmp_path / entry["file"]
    assert path.is_file() and entry["size_bytes"] == path.stat().st_size
    again = deploy.deploy("mnist-a4w2-s1", tmp_path)
    assert again["sha256"] == entry["sha256"]  # deterministic: the same zoo member gives the same bytes
    member = deploy.load("mnist-a4w2-s1", tmp_path)
    x, _ = data.load_sample("mnist", 10)
    assert deploy.logits(member, x).shape == (10, 10)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(EmpirError, match="truncated or tampered"):
        deploy.load("mnist-a4w2-s1", tmp_path)


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(EmpirError, match="not deployed"):
        deploy.load("mnist-a4w2-s1", tmp_path)
    with pytest.raises(EmpirError, match="unknown zoo member"):
        deploy.deploy("mnist-a3w3-s9", tmp_path)
    with pytest.raises(EmpirError, match="do not fit"):
        deploy.to_onnx(models.mnist_conv(8, 8))
    deploy.deploy("mnist-fp-s1", tmp_path)
    with pytest.raises(EmpirError, match="shape"):
        deploy.logits(deploy.load("mnist-fp-s1", tmp_path), np.zeros((2, 32, 32, 3), np.float32))


def test_cli_deploy(tmp_path):
    def run(*args):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        return subprocess.run([sys.executable, "-m", "empir_lib.cli", *args], capture_output=True, text=True,
                              env=env)

    r = run("deploy", "mnist-a4w2-s1", "--out-dir", str(tmp_path))
    assert r.returncode == 0 and "mnist-a4w2-s1.onnx" in r.stdout
    assert "mnist-a4w2-s1" in deploy.read_manifest(tmp_path)["members"]
    r = run("deploy", "nope", "--out-dir", str(tmp_path))
    assert r.returncode == 2 and "unknown zoo member" in r.stderr
    assert "Traceback" not in r.stderr
