"""The empir command: bad input gives one clear line, exit 2, and no traceback."""
import os
import subprocess
import sys

import pytest


def run(*args, env_extra=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "empir_lib.cli", *args], capture_output=True, text=True, env=env)


@pytest.mark.parametrize("args,msg", [
    (["train", "--dataset", "mnist", "--wbits", "0"], "wbits=0 is out of range; use 1..16"),
    (["train", "--dataset", "mnist", "--abits", "33"], "abits=33 is out of range"),
    (["train", "--dataset", "mnist", "--wbits", "two"], "wbits='two' is not an integer"),
    (["train", "--dataset", "svhn"], "unknown dataset 'svhn'; choose one of: mnist, cifar10"),
    (["zoo", "build"], "needs --dataset"),
    (["samples", "svhn"], "unknown dataset 'svhn'"),
    (["train", "--dataset", "mnist", "--batch-size", "0"], "batch_size=0 must be an integer >= 1"),
    (["train", "--dataset", "imagenet"], "EMPIR_IMAGENET_DIR"),
    (["train", "--dataset", "mnist", "--defence", "bogus"], "unknown defence 'bogus'"),
    (["train", "--dataset", "mnist", "--defence", "igr", "--lam", "-1"], "lambda (lam)=-1.0 must be >= 0"),
    (["train", "--dataset", "mnist", "--defence", "fgsm-at", "--eps", "2"], "eps=2.0 must lie in [0.0, 1.0]"),
    (["joint", "--members", "a2w2,fp"], "the stochastic quantiser takes 1..16 bits"),
    (["joint", "--members", "a2w2,a2w2", "--lam", "-1"], "lam"),
])
def test_bad_input_is_one_clear_line(args, msg):
    r = run(*args, env_extra={"EMPIR_DATA_DIR": "", "EMPIR_IMAGENET_DIR": ""})
    assert r.returncode == 2
    assert msg in r.stderr
    assert "Traceback" not in r.stderr


def test_missing_data_names_where_it_looked(tmp_path):
    r = run("train", "--dataset", "tiny-imagenet", "--run-dir", str(tmp_path / "r"),
            env_extra={"EMPIR_DATA_DIR": str(tmp_path)})
    assert r.returncode == 2 and str(tmp_path) in r.stderr and "Traceback" not in r.stderr


def test_debug_shows_the_traceback():
    r = run("--debug", "train", "--dataset", "mnist", "--wbits", "0")
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_zoo_list_and_verify():
    r = run("zoo", "verify")
    assert r.returncode == 0 and "zoo OK" in r.stdout
    assert "mnist-fp-s1" in run("zoo", "list").stdout
