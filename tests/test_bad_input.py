"""Bad input across the library and the CLI: one clear message naming the value and the fix.

Other files hold more cases next to the code they test (test_attacks, test_cli,
test_data, test_ensemble, test_evaluate, test_train, test_zoo); these are the
cross-cutting ones.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, ensemble, models, quantize, zoo
from empir_lib.studies import evaluate, results


@pytest.fixture(scope="module")
def fp():
    return ensemble.baseline("mnist")


@pytest.mark.parametrize("make,msg", [
    (lambda x: np.where(x > 0.5, np.inf, x).astype(np.float32), "NaN or Inf"),
    (lambda x: (x * 255).astype(np.uint8), "integers .* divide by 255"),
    (lambda x: x.astype(str), "dtype <U"),
    (lambda x: x.reshape(-1, 784), r"shape \(4, 784\); this model expects \(N, 28, 28, 1\)"),
    (lambda x: np.repeat(x, 3, -1), "expects"),
    (lambda x: x - 0.5, r"pixels must lie in \[0, 1\]"),
])
def test_bad_images_are_named(fp, make, msg):
    x, _ = data.load_sample("mnist", 4)
    with pytest.raises(EmpirError, match=msg):
        ensemble.predict(fp, make(x))


@pytest.mark.parametrize("call,msg", [
    (lambda: models.build("resnet"), "unknown architecture 'resnet'"),
    (lambda: models.mnist_conv(wbits=[2, 2]), "wbits has 2 entries; this network has 3"),
    (lambda: models.alexnet(width=0), "width=0"),
    (lambda: models.mnist_conv(abits=2.5), "abits=2.5 is not an integer"),
    (lambda: quantize.levels(32), "bits=32 is full precision"),
    (lambda: quantize.levels(2, "bias"), "unknown kind 'bias'"),
    (lambda: quantize.quantize_k(np.zeros(3, np.float32), 17), "bits=17 is out of range"),
    (lambda: data.load_sample("svhn"), "unknown dataset 'svhn'"),
    (lambda: data.load_sample("mnist", n=-1), "n=-1"),
    (lambda: ensemble.predict(ensemble.baseline("mnist"), np.zeros((1, 28, 28, 1), np.float32), 0),
     "batch_size=0"),
    (lambda: ensemble.empir("svhn"), "unknown dataset 'svhn'"),
    (lambda: results.require("mnist", "table2/nothing-here"), "empir reproduce mnist --only"),
    (lambda: results.paper_table2("svhn"), "unknown dataset 'svhn'"),
])
def test_bad_arguments_are_named(call, msg):
    with pytest.raises(EmpirError, match=msg):
        call()


def test_corrupted_manifest_and_results_files(tmp_path):
    (tmp_path / "manifest.json").write_text('{"members": {')
    with pytest.raises(EmpirError, match="not valid JSON.*git checkout"):
        zoo.read_manifest(tmp_path)
    (tmp_path / "r.json").write_text("{oops")
    with pytest.raises(EmpirError, match="not valid JSON"):
        evaluate.read_result(tmp_path / "r.json")
    with pytest.raises(EmpirError, match="no results file"):
        evaluate.read_result(tmp_path / "missing.json")


def test_a_finished_job_is_kept_only_when_its_file_holds_the_same_configuration(tmp_path):
    path = tmp_path / "job.json"
    cfg = {"members": ["a", "b"], "n": 100, "params": {"eps": 0.3, "steps": (1, 2)}}
    assert results.done(path, cfg) is None  # no file yet
    path.write_text(json.dumps({**cfg, "robust_accuracy": 0.5}))
    assert results.done(path, cfg)["robust_accuracy"] == 0.5  # a tuple equals the list JSON stored
    for changed in ({"n": 200}, {"members": ["a"]}, {"params": {"eps": 0.1, "steps": (1, 2)}}, {"rule": "vote"}):
        assert results.done(path, {**cfg, **changed}) is None
    path.write_text("{oops")
    with pytest.raises(EmpirError, match="not valid JSON"):
        results.done(path, cfg)


def _cli(*args, cwd=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "empir_lib.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd)


@pytest.mark.parametrize("args,msg", [
    (["reproduce", "svhn"], "unknown dataset 'svhn'; choose one of: mnist, cifar10"),
    (["reproduce", "mnist", "--n", "0"], "n=0 must be an integer >= 1"),
    (["evaluate", "--dataset", "svhn", "--attack", "pgd"], "unknown dataset 'svhn'"),
    (["evaluate", "--dataset", "mnist", "--attack", "pgd", "--quick", "--rule", "median"],
     "unknown combination rule 'median'"),
    (["evaluate", "--dataset", "mnist", "--attack", "cw", "--quick", "--max-iterations", "0"],
     "max_iterations=0"),
    (["evaluate", "--dataset", "mnist", "--attack", "pgd", "--quick", "--objective", "member:9"], "names no member"),
    (["train", "--dataset", "mnist", "--run-dir", "/proc/empir-run"], "empir: error:"),
])
def test_cli_bad_input_is_one_line_without_traceback(args, msg, tmp_path):
    r = _cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert msg in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_tampered_manifest_hash_refuses_the_member(tmp_path):
    src = zoo.ZOO_DIR / "mnist-fp-s1.keras"
    (tmp_path / "m.keras").write_bytes(src.read_bytes())
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"members": {"m": {"file": "m.keras", "sha256": "0" * 64, "command": "empir train ..."}}}))
    with pytest.raises(EmpirError, match="truncated or tampered"):
        ensemble.from_zoo(["m"], zoo_dir=tmp_path)
