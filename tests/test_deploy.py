"""Members deployed in ONNX Runtime with integer kernels (empir_lib/hardware/deploy.py): same predictions as Keras."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO

from empir_lib.book import exercises
from empir_lib.book.chapters import hardware
from empir_lib.core import settings
from empir_lib.core.errors import EmpirError
from empir_lib.hardware import deploy, deploy_bench, overhead
from empir_lib.nets import data, ensemble, models, quantize, zoo

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


# Batch norm between a quantised layer and the next (AlexNet) puts continuous values in front of a
# quantiser, so float sums accumulated in another order can move one across a rounding boundary: a few
# of 10,000 predictions differ (5 and 13 of 10,000 measured).  Without batch norm nothing can (module
# docstring of empir_lib.hardware.deploy), so MNIST and CIFAR-10 must match on every image.
BOUND = {"mnist": 0, "cifar10": 0, "tiny-imagenet": 30, "tiny-imagenet+nbits": 30}


def test_committed_equivalence_counts():
    """The full-test-set comparison behind chapter 6, per member and for the vote."""
    path = REPO / "data" / "results" / "deploy" / "equivalence.json"
    if not path.is_file():
        pytest.skip("data/results/deploy/equivalence.json is not written yet")
    result = json.loads(path.read_text())
    assert set(result["datasets"]) == set(BOUND)
    for ds, bound in BOUND.items():
        row = result["datasets"][ds]
        assert row["n"] == 10000
        assert row["vote_differ"] <= bound
        for member, r in row["members"].items():
            assert r["differ"] <= (0 if settings.is_full_precision(*settings.parse_precision(member.split("+")[0]))
                                   else bound), member


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


def test_numpy_vote_is_the_ensemble_vote_with_ties():
    rng = np.random.default_rng(0)
    logits = rng.integers(0, 3, size=(3, 400, 3)).astype(np.float32)  # many ties and three-way splits
    logits += rng.normal(scale=1e-3, size=logits.shape).astype(np.float32)
    for fp in ([False, False, True], [True, False, False], [False, False, False]):
        order = np.concatenate([np.flatnonzero(fp), np.flatnonzero(~np.array(fp))]).astype(np.int32)
        want = ensemble.vote(tf.constant(logits), order)[0].numpy()
        np.testing.assert_array_equal(deploy.vote(logits, fp), want)


def test_nbits_variant_stores_small_fc_weights_and_predicts_the_same(tmp_path):
    x, _ = data.load_sample("tiny-imagenet", 50)
    result = deploy.compare(settings.get("tiny-imagenet").empir_ids, x, deploy_dir=tmp_path, nbits=True)
    assert result["vote_differ"] == 0 and all(r["differ"] == 0 for r in result["members"].values())
    kinds = result["members"]["tiny-imagenet-a2w2-s1+nbits"]["kernels"]
    assert kinds["ip1"] == kinds["ip2"] == "2-bit MatMulNBits (float compute)"
    entries = deploy.read_manifest(tmp_path)["members"]
    assert entries["tiny-imagenet-a2w2-s1+nbits"]["size_bytes"] < entries["tiny-imagenet-a4w4-s1+nbits"]["size_bytes"]
    with pytest.raises(EmpirError, match="only deployment variant"):
        deploy.deploy("tiny-imagenet-a2w2-s1+int3", tmp_path)


def test_measured_rate_prices_eq6():
    fn = deploy_bench.ops_per_sec(0.5)
    assert overhead.ensemble_overheads([(2, 4), (2, 4), (32, 32)], fn)["time"] == pytest.approx(2.0)
    with pytest.raises(EmpirError):
        deploy_bench.ops_per_sec(0)


def test_committed_timing_and_memory_files_are_complete():
    for name in ("timing", "memory", "runtimes"):
        if not (REPO / "data" / "results" / "deploy" / f"{name}.json").is_file():
            pytest.skip(f"data/results/deploy/{name}.json is not written yet")
    timing = deploy_bench.load("timing")
    for ds in ("mnist", "cifar10", "tiny-imagenet"):
        row = timing["datasets"][ds]
        assert {*settings.get(ds).empir_ids, "EMPIR"} <= set(row["measured"])
        assert len(row["measured"]["EMPIR"]["latency_s"]["runs"]) == timing["rounds"] >= 5
        assert row["eq6_paper"] == pytest.approx(overhead_time(ds))
    assert "| mnist |" in hardware.eq6_table(timing)
    memory = deploy_bench.load("memory")
    assert set(memory["datasets"]) == {"mnist", "cifar10", "tiny-imagenet"}
    assert "EMPIR+nbits" in hardware.memory_table(memory)
    assert len(hardware.latency_figure(timing).axes) == 2
    assert "| int8 | 100 |" in hardware.runtimes_table(deploy_bench.load("runtimes"))


def overhead_time(dataset):
    return overhead.ensemble_overheads([(w, a) for w, a, _ in settings.get(dataset).empir])["time"]


def test_exercise_6_4_check_accepts_eq6_with_the_measured_rate(capsys):
    config = [(2, 4), (2, 4), (32, 32)]
    assert exercises.check_overheads({"time": 1 + 2 * 0.3, "storage": 1.125}, config, deploy_bench.ops_per_sec(0.3))
    assert not exercises.check_overheads({"time": 1.25, "storage": 1.125}, config, deploy_bench.ops_per_sec(0.3))
    assert "not quite" in capsys.readouterr().out


def test_committed_deployed_files_load_and_are_what_deploy_writes(tmp_path):
    entries = deploy.read_manifest()["members"]
    assert {*MNIST_EMPIR, *settings.get("tiny-imagenet").empir_ids} <= set(entries)
    for member in entries:
        assert deploy.load(member).member == member  # every committed file matches its sha256
    again = deploy.deploy("mnist-a4w2-s1", tmp_path)
    assert again["sha256"] == entries["mnist-a4w2-s1"]["sha256"]  # regenerated from the zoo, byte for byte
