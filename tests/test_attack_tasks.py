"""Attack it yourself: the tasks, the defence the grader serves, and the judge.

Every submission here is *source code* run in a worker process by
:func:`empir_lib.book.attack_runs.grade_source`, exactly as the grader runs a
student's: the reference solution passes every task; plain FGSM fails the
EMPIR and distillation tasks and plain PGD fails the distillation task
(on the EMPIR votes plain PGD comes close, as measured: the paper's vote gradient
rule is a working objective there, ending a few images short of the
reference; the record says so); an identity attack
scores zero; an answer over eps, with NaN, of the wrong dtype, an attack that
loops forever, overruns its budget, raises, or tries to change the model
scores zero with a message saying which.  The slow part (the reference and
the plain attacks on every task's hidden images) takes a few minutes on a
2-core CPU.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from empir_lib.book import attack_runs, attack_solutions, attack_tasks, exercises, grader
from empir_lib.core.errors import EmpirError

SOLUTIONS = Path(attack_solutions.__file__).read_text()
SEED = grader.DEFAULT_SEED


def _grade(body: str, name: str = "mnist-distill", n: int = 10, **changes: object) -> attack_tasks.Outcome:
    t = dataclasses.replace(attack_tasks.task(name), **changes)
    return attack_runs.grade_source("import numpy as np\n\n" + body, "attack", t, SEED, n)


# --- the tasks ----------------------------------------------------------------------------


def test_tasks_are_ordered_and_read_their_targets_from_committed_results():
    assert list(attack_tasks.TASKS) == ["mnist-empir", "mnist-distill", "cifar10-empir", "cifar10-stochastic"]
    for t in attack_tasks.TASKS.values():
        record = json.loads((attack_tasks.RESULTS / t.result).read_text())
        assert t.committed == record["robust_accuracy"] and t.target == round(t.committed + t.margin, 4)
        assert list(t.members) == record["members"]
    assert attack_tasks.task("cifar10-stochastic").stochastic and attack_tasks.DRAWS >= 32


def test_the_random_ensembles_target_is_a_stable_expected_accuracy_with_a_two_standard_error_margin():
    t = attack_tasks.task("cifar10-stochastic")
    record = json.loads((attack_tasks.RESULTS / t.result).read_text())
    runs = [np.array(r["per_image"]) for r in record["runs"]]
    worst = np.minimum(*runs)
    assert record["stable"] and record["moved_by_doubling"] <= record["tolerance"]
    assert abs(worst.mean() - record["robust_accuracy"]) < 1e-9 and record["draws_judged"] == attack_tasks.DRAWS
    assert t.margin >= 2 * worst.std(ddof=1) / np.sqrt(t.n_hidden)


@pytest.mark.parametrize("name", ["mnist-empir", "mnist-distill", "cifar10-empir"])
def test_each_margin_is_two_binomial_standard_errors_and_at_least_one_image(name):
    t = attack_tasks.task(name)
    p = t.committed
    assert t.margin >= max(2 * np.sqrt(p * (1 - p) / t.n_hidden), 1 / t.n_hidden) - 1e-9
    assert t.margin <= max(2 * np.sqrt(p * (1 - p) / t.n_hidden), 1 / t.n_hidden) + 0.005
    with pytest.raises(EmpirError, match="attack task"):
        attack_tasks.task("nope")


def test_hidden_images_are_never_the_public_ones_and_follow_the_seed():
    t = attack_tasks.task("mnist-empir")
    public, _ = attack_tasks.images(t, hidden=False, n=attack_tasks.PUBLIC)
    hidden, _ = attack_tasks.images(t, hidden=True, seed=SEED)
    assert len(hidden) == t.n_hidden
    flat = {p.tobytes() for p in public}
    assert not any(h.tobytes() in flat for h in hidden)
    assert np.array_equal(attack_tasks.images(t, True, SEED)[0], hidden)
    assert not np.array_equal(attack_tasks.images(t, True, SEED + 1)[0], hidden)


def test_defence_counts_every_pass_and_refuses_past_the_budget():
    t = dataclasses.replace(attack_tasks.task("mnist-distill"), forward_per_image=3, backward_per_image=1)
    x, y = attack_tasks.images(t, hidden=False, n=4)
    d = attack_tasks.Defence(t, attack_tasks.ensemble(t), len(x))
    assert d.predict(x).shape == (4,) and d.used == {"forward": 4, "backward": 0}
    loss, grad = d.loss_gradient(x, y, "margin_mean_logits")
    assert loss.shape == (4,) and grad.shape == x.shape and d.used == {"forward": 8, "backward": 4}
    with pytest.raises(attack_tasks.BudgetError, match="over budget"):
        d.loss_gradient(x, y)
    assert d.exceeded and d.budget_left() == {"forward": 4, "backward": 0}
    with pytest.raises(EmpirError, match="labels must be"):
        d.loss_gradient(x, y.astype(float))
    with pytest.raises(EmpirError, match="out of|range|NaN"):
        d.predict(np.full_like(x, np.nan))


def test_validate_names_each_fault():
    t = attack_tasks.task("mnist-empir")
    x = np.full((2, 28, 28, 1), 0.5, np.float32)
    cases = {"NumPy array": [1], "shape": x[:1], "dtype float64": x.astype(np.float64),
             "NaN": np.where(x > 0, np.nan, x).astype(np.float32), "clip them": x + 0.6,
             "exceeds eps": x + np.float32(0.31)}
    for fault, answer in cases.items():
        assert attack_tasks.validate(t, x, answer)[0] is None and fault in attack_tasks.validate(t, x, answer)[1]
    assert attack_tasks.validate(t, x, x + np.float32(0.3))[0] is not None  # eps itself, to float32 rounding


# --- hostile and broken submissions, each in a worker ------------------------------------------


@pytest.mark.parametrize("body, fault", [
    ("def attack(defence, x, y, eps):\n    return x", "robust accuracy of the vote"),
    ("def attack(defence, x, y, eps):\n    return np.clip(x + 2 * eps, 0, 1).astype(np.float32)", "exceeds eps"),
    ("def attack(defence, x, y, eps):\n    return x * np.nan", "NaN"),
    ("def attack(defence, x, y, eps):\n    return x.astype(np.float64)", "dtype float64"),
    ("def attack(defence, x, y, eps):\n    raise ValueError('boom')", "raised ValueError: boom"),
    ("def attack(defence, x, y, eps):\n    while True:\n        pass", "limit and was stopped"),
    ("def attack(defence, x, y, eps):\n    while True:\n        try:\n            defence.loss_gradient(x, y)\n"
     "        except Exception:\n            return x", "over budget"),
    ("def attack(defence, x, y, eps):\n    defence.ens = None\n    return x", "read-only"),
    ("def attack(defence, x, y, eps):\n    defence.members[0].set_weights([])\n    return x", "raised"),
    ("def attack(defence, x, y, eps):\n    return defence.secret", "has no attribute 'secret'"),
    ("import os\n\ndef attack(defence, x, y, eps):\n    os._exit(3)", "process failed"),
])
def test_a_broken_or_hostile_attack_scores_zero_with_a_clear_message(body, fault):
    out = _grade(body, seconds=8, backward_per_image=2)
    print(out.message)
    assert out.credit == 0.0 and fault in out.message, out.message
    assert out.message.startswith(exercises.NO)


def test_the_defence_the_judge_uses_is_the_one_it_loaded():
    t = attack_tasks.task("mnist-distill")
    ens = attack_tasks.ensemble(t)
    before = attack_tasks.fingerprint(ens)
    x, y = attack_tasks.images(t, hidden=False, n=4)
    d = attack_tasks.Defence(t, ens, len(x))
    w = ens.members[0].get_weights()
    ens.members[0].set_weights([v * 0 for v in w])
    try:
        out = attack_tasks.judge(t, d, x, y, x.copy(), 1.0, before=before)
    finally:
        ens.members[0].set_weights(w)
    assert out.credit == 0 and "weights changed" in out.message
    assert attack_tasks.fingerprint(ens) == before


def test_self_check_runs_the_function_in_this_process_on_public_images(capsys):
    credit = exercises.check_attack(attack_solutions.plain_fgsm, "mnist-distill")
    assert credit == 0.0 and f"on {attack_runs.PUBLIC_N['mnist']} public images" in capsys.readouterr().out


# --- the reference and the plain attacks on every task (slow) ---------------------------------


@pytest.fixture(scope="module")
def measured():
    """{(task, attack): Outcome} for the reference and the two plain attacks, graded as a submission is."""
    return {(t.name, label): attack_runs.grade_source(SOLUTIONS, fn, t, SEED)
            for t in attack_tasks.TASKS.values() for label, fn in attack_runs.SOLUTIONS.items()}


@pytest.mark.parametrize("name", list(attack_tasks.TASKS))
def test_reference_solution_passes_every_task(measured, name):
    out = measured[(name, "reference")]
    print(out.message)
    assert out.credit == 1.0 and out.robust <= out.target and not out.error
    assert out.n == attack_tasks.task(name).n_hidden


@pytest.mark.parametrize("name", ["mnist-empir", "mnist-distill", "cifar10-empir"])
def test_plain_fgsm_fails_the_empir_and_distillation_tasks(measured, name):
    out = measured[(name, "plain FGSM")]
    print(out.message)
    assert out.credit < 1.0 and out.robust > out.target


def test_plain_pgd_fails_distillation_and_comes_close_on_the_empir_votes(measured):
    out = measured[("mnist-distill", "plain PGD")]
    assert out.credit < 0.1 and out.robust > out.target, out.message
    # Measured, not wished: the paper's vote gradient rule (vote_ce) is a working objective for the EMPIR
    # votes; plain PGD ends a few images short of the reference (which breaks them all), and on some hidden
    # seeds within the target (the record and the report say so).
    for name in ("mnist-empir", "cifar10-empir"):
        pgd, ref = measured[(name, "plain PGD")], measured[(name, "reference")]
        print(pgd.message)
        assert ref.robust <= pgd.robust <= ref.robust + 0.1, pgd.message


def test_identity_attack_scores_zero_on_every_task():
    for t in attack_tasks.TASKS.values():
        out = _grade("def attack(defence, x, y, eps):\n    return x.copy()", t.name, n=10)
        assert out.credit == 0.0, out.message
