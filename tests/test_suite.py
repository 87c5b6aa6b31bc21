"""The worst-case suite: APGD's schedule, judging on the vote, strength against ART, diagnostics, bad input."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from empir_lib.attack import apgd, art_bridge, attacks, diagnostics, objectives, outcomes, suite, validate
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, ensemble, steps
from empir_lib.studies import worstcase


def test_checkpoints_follow_the_reference_schedule():
    check, window = apgd.checkpoints(100)
    # Reference (autopgd_base.py): first window 22, each next 3 shorter, never below 6.
    assert np.flatnonzero(check).tolist() == [21, 40, 56, 69, 79, 86, 92, 98]
    assert window[check].tolist() == [22, 19, 16, 13, 10, 7, 6, 6]
    with pytest.raises(EmpirError):
        apgd.checkpoints(0)


def test_compaction_looks_early_then_every_segment():
    assert apgd.segments(100) == [0, 2, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert apgd.segments(100, 100) == [0, 100]  # no compaction
    assert apgd.segments(30) == [0, 2, 5, 10, 20, 30]


def test_projection_keeps_the_ball_and_the_box():
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 1, (4, 5, 5, 1)).astype(np.float32))
    far = x + tf.constant(rng.normal(0, 3, (4, 5, 5, 1)).astype(np.float32))
    p = steps.project(x, far, 0.1, "linf").numpy()
    assert np.abs(p - x.numpy()).max() <= 0.1 + 1e-6 and p.min() >= 0 and p.max() <= 1
    q = steps.project(x, far, 0.5, "l2").numpy()
    assert np.sqrt(((q - x.numpy()) ** 2).sum((1, 2, 3))).max() <= 0.5 + 1e-5 and q.min() >= 0 and q.max() <= 1


def test_every_reported_break_fools_the_vote_and_stays_in_the_ball(empir_mnist):
    ens, x, y = empir_mnist
    x, y = x[:40], y[:40]
    out = apgd.run(objectives.loss_fn(ens, "ce_mean_prob"), x, y, 0.15, n_iter=30)
    assert out.broken.any() and not out.broken.all()
    pred = ensemble.predict(ens, out.x_adv)
    assert np.all(pred[out.broken] != y[out.broken])
    assert np.abs(out.x_adv - x).max() <= 0.15 + 1e-6


def test_a_single_image_batch_runs(empir_mnist):
    # Compaction can leave one image in a batch; the traced loop must accept any batch size.
    ens, x, y = empir_mnist
    for n in (1, 3):
        out = apgd.run(objectives.loss_fn(ens, "dlr_mean_logits"), x[:n], y[:n], 0.05, n_iter=12)
        assert out.x_adv.shape == x[:n].shape


def test_adaptive_cw_flips_the_vote_on_every_image_it_reports_broken(empir_mnist):
    ens, x, y = empir_mnist
    x, y = x[:20], y[:20]
    spec = {"name": "cw-l2", "kind": "cw", **suite.CW_SEARCH, "binary_search_steps": 3, "max_iterations": 40}
    xa, _ = suite.run_attack(ens, spec, {"norm": "l2", "eps": 100.0}, x, y)
    reported = np.abs(xa - x).reshape(len(x), -1).max(1) > 0   # CW returns the input where it found nothing
    assert reported.sum() >= 10  # CW_SEARCH found all of the first 40 at 5 x 100 steps
    assert np.all(ensemble.predict(ens, xa)[reported] != y[reported])


def test_cw_beyond_the_budget_is_no_attack_not_an_invalid_output(empir_mnist):
    ens, x, y = empir_mnist
    x, y = x[:20], y[:20]
    spec = {"name": "cw-l2", "kind": "cw", **suite.CW_SEARCH, "binary_search_steps": 3, "max_iterations": 40}
    unbounded, _ = suite.run_attack(ens, spec, {"norm": "l2", "eps": 100.0}, x, y)
    d = validate.norms(x, unbounded, "l2")
    budget = float(np.median(d[d > 0]))  # some of CW's finds are within it, some beyond
    xa, _ = suite.run_attack(ens, spec, {"norm": "l2", "eps": budget}, x, y)
    assert validate.valid(x, xa, {"norm": "l2", "eps": budget}).all()
    moved = validate.norms(x, xa, "l2") > 0
    assert 0 < moved.sum() < len(x) and np.all(ensemble.predict(ens, xa)[moved] != y[moved])
    res = suite.cascade(ens, x, y, {"norm": "l2", "eps": budget}, [spec], progress=False)
    assert res["stats"]["cw-l2"]["invalid"] == 0


def test_cw_judged_on_the_vote_from_one_pass_matches_a_separate_vote(empir_mnist):
    # The suite's CW reads the vote off the same member logits as its scores (one pass, not two):
    # it must return exactly what a separate call to the vote returns, and differ from judging
    # success on the objective's own argmax (so that this comparison can fail).
    ens, x, y = empir_mnist
    x, y = x[:20], y[:20].astype(np.int32)
    cw = dict(num_classes=10, max_iterations=30, learning_rate=0.1, confidence=0.0, abort_early=True)
    p = {**suite.CW_SEARCH, "binary_search_steps": 2, "max_iterations": 30}
    mean = objectives.mean_logits_fn(ens)
    steps = {"joint": lambda a, b, c: attacks.cw_l2(objectives.mean_logits_and_decision_fn(ens), a, b, c,
                                                    joint=True, **cw),
             "separate": lambda a, b, c: attacks.cw_l2(mean, a, b, c, decide=objectives.decision_fn(ens), **cw),
             "objective": lambda a, b, c: attacks.cw_l2(mean, a, b, c, **cw)}
    out = {k: attacks.cw_search(tf.function(f), x, y, p) for k, f in steps.items()}
    assert np.array_equal(out["joint"], out["separate"])
    assert not np.array_equal(out["joint"], out["objective"])


def test_suite_is_at_least_as_strong_as_arts_apgd_ce(empir_mnist):
    # Same images, same model, same eps: ART's APGD-CE on the log mean probability
    # (the reference) against our cascade, both scored by the deployed vote.
    ens, x, y = empir_mnist
    x, y, eps = x[:40], y[:40], 0.1
    art_robust = ensemble.predict(ens, art_bridge.apgd_ce(ens, x, y, eps)) == y
    res = suite.cascade(ens, x, y, {"norm": "linf", "eps": eps}, progress=False)
    ours = outcomes.robust_mask(res["broken_by"])
    assert 0 < art_robust.sum() < len(y)
    assert ours.sum() <= art_robust.sum()
    # And our APGD-CE alone is no weaker than ART's on these images.
    assert res["counts"]["apgd-ce"] >= (~art_robust).sum() - (y != ensemble.predict(ens, x)).sum() - 2


def _masked_ensemble():
    # A model whose input is rounded: its gradient is exactly zero everywhere (gradient masking).
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Lambda(lambda t: tf.round(t * 2.0) / 2.0)(inp)
    out = keras.layers.Dense(10)(keras.layers.Flatten()(h))
    return ensemble.make([keras.Model(inp, out)], names=["masked"])


def test_diagnostics_flag_a_masked_model():
    ens = _masked_ensemble()
    x, y = data.load_sample("mnist", 30)
    y = ensemble.predict(ens, x)  # every image "correct", so each one is attacked
    specs = [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 10, "restarts": 1},
             {"name": "square", "kind": "square", "queries": 200, "restarts": 1}]
    threat = {"norm": "linf", "eps": 0.3}
    res = suite.cascade(ens, x, y, threat, specs, progress=False)
    diag = diagnostics.run(ens, x, y, threat, res, diag_n=10)
    assert diag["values"]["zero_gradient_share"] == 1.0
    assert diag["suspicious"] and any(f.startswith("zero_gradients") for f in diag["flags"])
    assert any(f.startswith("black_box_beats_white_box") for f in diag["flags"])


def test_diagnostics_pass_a_clean_evaluation(empir_mnist):
    ens, x, y = empir_mnist
    x, y = x[:20], y[:20]
    threat = {"norm": "linf", "eps": 0.3}
    specs = [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 20, "restarts": 1}]
    res = suite.cascade(ens, x, y, threat, specs, progress=False)
    diag = diagnostics.run(ens, x, y, threat, res, diag_n=10)
    assert diag["flags"] == [] and diag["values"]["unbounded_robust"] == 0.0


def test_cascade_resumes_and_refuses_another_configuration(empir_mnist, tmp_path):
    ens, x, y = empir_mnist
    x, y = x[:30], y[:30]
    threat = {"norm": "linf", "eps": 0.2}
    specs = [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 10, "restarts": 1},
             {"name": "pgd-margin", "kind": "pgd", "loss": "margin_mean_logits", "n_iter": 10, "restarts": 1,
              "step_frac": 0.1}]
    state = tmp_path / "state.npz"
    full = suite.cascade(ens, x, y, threat, specs, chunk=10, state_path=state, progress=False)
    again = suite.cascade(ens, x, y, threat, specs, chunk=10, state_path=state, progress=False)
    assert np.array_equal(full["broken_by"], again["broken_by"])  # finished state: nothing reruns
    with pytest.raises(EmpirError, match="another configuration"):
        suite.cascade(ens, x, y, {"norm": "linf", "eps": 0.25}, specs, chunk=10, state_path=state, progress=False)


@pytest.mark.parametrize("threat", [{"norm": "l1", "eps": 0.1}, {"norm": "linf", "eps": 1.5},
                                    {"norm": "linf", "eps": -0.1}, {"norm": "linf"}, "linf"])
def test_bad_threat_models_are_refused(empir_mnist, threat):
    ens, x, y = empir_mnist
    with pytest.raises(EmpirError):
        suite.attack_suite(ens, threat)


def test_bad_suites_and_objectives_are_refused(empir_mnist):
    ens, x, y = empir_mnist
    threat = {"norm": "linf", "eps": 0.1}
    with pytest.raises(EmpirError, match="at least one attack"):
        suite.cascade(ens, x[:2], y[:2], threat, [], progress=False)
    with pytest.raises(EmpirError, match="attack kind"):
        suite.cascade(ens, x[:2], y[:2], threat, [{"name": "fab", "kind": "fab"}], progress=False)
    with pytest.raises(EmpirError, match="unique"):
        suite.check_suite([{"name": "a", "kind": "apgd"}, {"name": "a", "kind": "pgd"}])
    with pytest.raises(EmpirError, match="objective"):
        objectives.loss_fn(ens, "ce_of_everything")
    with pytest.raises(EmpirError, match="names no member"):
        objectives.loss_fn(ens, "ce_member:7")
    with pytest.raises(EmpirError, match="threat models"):
        suite.threats("imagenet")
    with pytest.raises(EmpirError, match="threat model for mnist"):
        suite.threat("mnist", "linf-8-255")


def test_per_image_file_must_match_its_json(tmp_path):
    broken_by = np.array([-1, 0, 1, 2, 1, -1], np.int8)
    desc = outcomes.save(tmp_path / "r.npz", broken_by, np.linspace(0, 1, 6))
    record = {"n": 6, "attacks": [{"name": "a"}, {"name": "b"}], "per_image": desc,
              "broken_by": outcomes.counts(broken_by, ["a", "b"])}
    (tmp_path / "r.json").write_text(json.dumps(record))
    arrays = outcomes.load(tmp_path / "r.json", record)
    assert arrays["broken_by"].tolist() == broken_by.tolist()
    assert record["broken_by"] == {"clean": 1, "a": 2, "b": 1, "robust": 2}
    with pytest.raises(EmpirError, match="counts"):
        outcomes.load(tmp_path / "r.json", {**record, "broken_by": {**record["broken_by"], "a": 3}})
    with pytest.raises(EmpirError, match="holds 6 images"):
        outcomes.load(tmp_path / "r.json", {**record, "n": 7, "per_image": {**desc, "n": 7}})
    outcomes.save(tmp_path / "r.npz", broken_by[::-1], np.zeros(6))   # replaced behind the JSON's back
    with pytest.raises(EmpirError, match="sha256"):
        outcomes.load(tmp_path / "r.json", record)
    (tmp_path / "r.npz").unlink()
    with pytest.raises(EmpirError, match="missing"):
        outcomes.load(tmp_path / "r.json", record)


def test_wilson_interval_and_union():
    lo, hi = outcomes.wilson_interval(0, 10000)
    assert lo == 0.0 and 0 < hi < 0.001
    lo, hi = outcomes.wilson_interval(50, 100)
    assert lo < 0.5 < hi
    a, b = np.array([-1, -1, 2, 0]), np.array([-1, 3, -1, -1])
    assert outcomes.union_robust(a, b).tolist() == [True, False, False, False]
    with pytest.raises(EmpirError):
        outcomes.wilson_interval(0, 0)


def test_the_jobs_cover_every_threat_model():
    names = [j["name"] for j in worstcase.jobs("cifar10", 100, 10)]
    rows = ["suite/empir-linf-table1", "suite/baseline-linf-table1", "suite/empir-linf-8-255",
            "suite/baseline-linf-8-255", "suite/empir-l2", "suite/baseline-l2"]
    assert names == rows + [f"{r}-recheck" for r in rows] + ["suite/empir-min-l2", "suite/empir-min-norm"]
    assert suite.threats("tiny-imagenet")["linf-4-255"]["eps"] == pytest.approx(4 / 255)
