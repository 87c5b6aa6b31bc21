"""Evaluation: accuracy bookkeeping, resume after an interruption, determinism, results files, CLI."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from empir_lib.attack import attacks
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, ensemble
from empir_lib.studies import evaluate


@pytest.fixture(scope="module")
def setup():
    x, y = data.load_sample("mnist", 60)
    return ensemble.empir("mnist"), x, y


def _pgd():
    return attacks.preset("mnist", "pgd", nb_iter=3)


def test_accuracy_counts_clean_mistakes_as_failures(setup):
    ens, x, y = setup
    wrong = (y + 1) % 10
    r = evaluate.adversarial_accuracy(ens, "fgsm", x, wrong, params={"eps": 0.0}, progress=False)
    assert r["adversarial_accuracy"] == pytest.approx(np.mean(ensemble.predict(ens, x) == wrong))
    assert r["attack_success_rate"] == 0.0


def test_interrupted_evaluation_resumes_without_redoing_batches(setup, tmp_path, monkeypatch):
    ens, x, y = setup
    whole = evaluate.adversarial_accuracy(ens, "pgd", x, y, params=_pgd(), batch_size=20, progress=False)
    partial = tmp_path / "p.npz"
    real = attacks.compile_attack
    calls = {"n": 0}

    def dying(*a, **k):
        run = real(*a, **k)

        def wrapped(*b, **kw):
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt  # as a Ctrl-C in the third batch would
            return run(*b, **kw)
        return wrapped

    monkeypatch.setattr(attacks, "compile_attack", dying)
    with pytest.raises(KeyboardInterrupt):
        evaluate.adversarial_accuracy(ens, "pgd", x, y, params=_pgd(), batch_size=20, progress=False,
                                      partial_path=partial)
    with np.load(partial) as f:
        assert int(f["batches"]) == 2
    calls["n"] = -100  # no more interruptions; count the batches the rerun attacks
    resumed = evaluate.adversarial_accuracy(ens, "pgd", x, y, params=_pgd(), batch_size=20, progress=False,
                                            partial_path=partial)
    assert calls["n"] == -99, "the rerun should attack only the one unfinished batch"
    np.testing.assert_array_equal(resumed["adv_pred"], whole["adv_pred"])
    np.testing.assert_allclose(resumed["l2"], whole["l2"], rtol=1e-6)
    assert resumed["adversarial_accuracy"] == whole["adversarial_accuracy"]


def test_partial_file_of_another_configuration_is_refused(setup, tmp_path):
    ens, x, y = setup
    partial = tmp_path / "p.npz"
    evaluate.adversarial_accuracy(ens, "fgsm", x, y, params={"eps": 0.1}, batch_size=20, progress=False,
                                  partial_path=partial)
    with pytest.raises(EmpirError, match="another configuration"):
        evaluate.adversarial_accuracy(ens, "fgsm", x, y, params={"eps": 0.2}, batch_size=20, progress=False,
                                      partial_path=partial)


def test_same_seed_gives_identical_results_files(setup, tmp_path):
    ens, x, y = setup
    texts = []
    for name in ("a.json", "b.json"):
        r = evaluate.adversarial_accuracy(ens, "pgd", x, y, params=_pgd(), seed=3, progress=False)
        rec = evaluate.write_result(tmp_path / name, r, "mnist")
        assert rec["provenance"]["git_commit"] and rec["provenance"]["versions"]["tensorflow"]
        d = json.loads((tmp_path / name).read_text())
        d.pop("timing"), d.pop("provenance")
        texts.append(json.dumps(d, sort_keys=True))
    assert texts[0] == texts[1]
    other = evaluate.adversarial_accuracy(ens, "pgd", x, y, params=_pgd(), seed=4, progress=False)
    assert not np.array_equal(other["l2"], r["l2"])


def _cli(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return [sys.executable, "-m", "empir_lib.cli", *args], env


def test_cli_evaluate_writes_a_results_file(tmp_path):
    out = tmp_path / "r.json"
    cmd, env = _cli("evaluate", "--dataset", "mnist", "--attack", "fgsm", "--quick", "--n", "50",
                    "--out", str(out))
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    rec = json.loads(out.read_text())
    assert rec["n"] == 50 and rec["objective"] == "original_attack_prob_as_logits"
    assert rec["data"]["source"].startswith("embedded sample")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


@pytest.mark.parametrize("args,msg", [
    (["--attack", "deepfool"], "unknown attack 'deepfool'"),
    (["--attack", "pgd", "--protocol", "robust"], "unknown protocol 'robust'"),
    (["--attack", "pgd", "--eps", "-0.1"], "eps=-0.1 is negative"),
    (["--attack", "pgd", "--eps", "2"], "eps=2.0 must lie in"),
    (["--attack", "pgd", "--members", "mnist-fp-s1,cifar10-fp-s1"], "inputs of shape"),
    (["--attack", "pgd", "--members", "mnist-a9w9-s1"], "unknown zoo member"),
    (["--attack", "fgsm", "--out", "/proc/empir/r.json"], "not writable"),
])
def test_cli_evaluate_bad_input(args, msg, tmp_path):
    cmd, env = _cli("evaluate", "--dataset", "mnist", "--quick", "--n", "10", *args)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_cli_evaluation_killed_then_rerun_equals_uninterrupted(tmp_path):
    args = ("evaluate", "--dataset", "mnist", "--attack", "pgd", "--quick", "--n", "500", "--nb-iter", "10",
            "--batch-size", "50")
    cmd, env = _cli(*args, "--out", str(tmp_path / "whole.json"))
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    killed = tmp_path / "killed.json"
    cmd, env = _cli(*args, "--out", str(killed))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    partial = tmp_path / "killed.json.partial.npz"
    while not partial.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not killed.exists(), "the run finished before the kill; the test proves nothing"
    with np.load(partial) as f:
        assert 1 <= int(f["batches"]) < 10
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    assert not partial.exists()
    a, b = (json.loads(p.read_text()) for p in (tmp_path / "whole.json", killed))
    for d in (a, b):
        d.pop("timing"), d.pop("provenance")
    assert a == b
