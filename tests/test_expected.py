"""The expected accuracy of a randomised ensemble (issue 29): the estimator, its interval, the lottery,
frozen noise draws, the stages, and the study's jobs and results files."""
import json
import warnings

import numpy as np
import pytest

from empir_lib.attack import expected, expected_suite, validate
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, diversity, ensemble, stochastic, zoo
from empir_lib.studies import eot_study, expected_study


@pytest.fixture(scope="module")
def small():
    """Two seeded stochastic MNIST members, and a few sample images."""
    x, y = data.load_sample("mnist", 16)
    ens = ensemble.make([stochastic.to_stochastic(zoo.load("mnist-a4w2-s1"), seed=3),
                         stochastic.to_stochastic(zoo.load("mnist-a4w2-s2"), seed=4)], names=["s1", "s2"])
    return ens, x, y


@pytest.mark.parametrize("bad", [0, -3, 2.5, "8", None, True])
def test_r_below_one_is_one_clear_error(bad):
    with pytest.raises(EmpirError, match="R \\(fresh draws"):
        expected.check_draws(bad)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "x"])
def test_s_below_one_is_one_clear_error(bad):
    with pytest.raises(EmpirError, match="S \\(EOT samples"):
        expected.check_samples(bad)
    with pytest.raises(EmpirError, match="S \\(EOT samples"):
        expected_suite.suite(ensemble.empir("mnist"), bad, 10)


def test_a_deterministic_model_given_r_above_one_gets_a_note_not_an_error():
    ens = ensemble.empir("mnist")
    x, y = data.load_sample("mnist", 20)
    with pytest.warns(expected.DeterministicNote, match="deterministic"):
        p = expected.correct_rate(ens, x, y, 8)
    np.testing.assert_array_equal(p, (ensemble.predict(ens, x) == y).astype(float))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # R = 1 on a deterministic model: no note
        expected.correct_rate(ens, x, y, 1)


def test_the_interval_covers_the_draws_and_the_images():
    # A known population: per-image probabilities p_i, R Bernoulli draws each.  The standard error of the
    # mean of the estimates must match the spread of that mean over repeated experiments.
    rng = np.random.default_rng(0)
    n, r = 200, 32
    true = rng.beta(0.6, 0.6, n)
    means, ses, se_draws = [], [], []
    for _ in range(300):
        imgs = rng.integers(0, n, n)  # image sampling
        p = rng.binomial(r, true[imgs]) / r  # draw sampling
        e = expected.estimate(p, r)
        means.append(e["mean"])
        ses.append(e["se"])
        se_draws.append(e["se_draws"])
    assert np.std(means) == pytest.approx(np.mean(ses), rel=0.15)
    # The draws' part alone is the binomial one: mean(p (1 - p)) / R / n.
    assert np.mean(se_draws) == pytest.approx(np.sqrt(np.mean(true * (1 - true)) / r / n), rel=0.1)
    assert np.mean(se_draws) < np.mean(ses)
    e = expected.estimate(np.array([0.0, 1.0, 0.5, 0.25]), 4)
    assert e["lo"] <= e["mean"] <= e["hi"] and e["mean"] == 0.4375
    with pytest.raises(EmpirError):
        expected.estimate(np.array([0.5, 1.5]), 4)


def test_paired_differences_use_the_per_image_spread():
    a = np.array([0.5, 0.25, 1.0, 0.0])
    d = expected.paired(a, a - 0.25 * np.array([1, 0, 1, 0]))
    assert d["diff"] == pytest.approx(-0.125) and d["n"] == 4 and d["lo"] < d["diff"] < d["hi"]
    assert expected.paired(a, a)["se"] == 0.0
    with pytest.raises(EmpirError):
        expected.paired(a, a[:3])


def test_the_lottery_falls_with_q_on_a_random_ensemble_and_not_on_a_deterministic_one(small):
    ens, x, y = small
    out = expected.lottery(ens, x, y, [1, 2, 5, 20])
    assert out["survive"] == sorted(out["survive"], reverse=True) and out["survive"][-1] <= out["survive"][0]
    assert all(0 <= v <= 1 for v in out["survive"] + out["mean_p_power"])
    det = ensemble.empir("mnist")
    with pytest.warns(expected.DeterministicNote):
        flat = expected.lottery(det, x, y, [1, 5])["survive"]
    assert flat[0] == flat[1]
    with pytest.raises(EmpirError):
        expected.lottery(ens, x, y, [5, 2])


def test_a_frozen_draw_is_deterministic_and_half_noise_is_nearest_rounding(small):
    ens, x, _ = small
    m = ens.members[0]
    a = stochastic.fixed_draw(m, 1)
    np.testing.assert_array_equal(a.predict(x, verbose=0), a.predict(x, verbose=0))
    b = stochastic.fixed_draw(m, 2)
    assert not np.array_equal(a.predict(x, verbose=0), b.predict(x, verbose=0))
    near = stochastic.with_inference(m, "nearest")
    np.testing.assert_allclose(stochastic.fixed_draw(m, 0, noise=0.5).predict(x, verbose=0),
                               near.predict(x, verbose=0), atol=1e-5)
    with pytest.raises(EmpirError, match="deterministically"):
        stochastic.fixed_draw(zoo.load("mnist-a4w2-s1"), 0)


def test_points_outside_the_ball_or_not_finite_are_invalid():
    x = np.full((3, 2, 2, 1), 0.5, np.float32)
    xa = x.copy()
    xa[1] += 0.2
    xa[2, 0, 0, 0] = np.nan
    assert validate.valid(x, xa, {"norm": "linf", "eps": 0.1}).tolist() == [True, False, False]


def test_the_stages_report_expected_accuracy_and_the_worst_case_is_fresh(small, tmp_path):
    ens, x, y = small
    specs = expected_suite.suite(ens, 2, 3, square_queries=3, square_samples=2, fixed=2)
    assert [s["name"] for s in specs] == ["apgd-ce", "apgd-dlr", "pgd-margin", "member-0", "member-1", "nearest",
                                          "fixed-draws", "square"]
    state = tmp_path / "state.npz"
    res = expected_suite.evaluate(ens, x, y, 0.3, specs, draws=4, state_path=state, progress=False)
    per = res["per_stage"]
    assert per.shape == (16, len(specs) + 1) and np.all(np.isfinite(per[:, 0]))
    # The chosen stage is the lowest estimate per image, clean (0) included; attacked images only above 0.
    low = np.nanmin(per, 1)
    np.testing.assert_array_equal(per[np.arange(16), res["best_stage"]], low)
    assert low.mean() <= per[:, 0].mean() and res["robust"].shape == (16,)
    assert np.isnan(per[per[:, 0] == 0, 1]).all()  # an image at 0 already is not attacked
    assert all(v["invalid"] == 0 for v in res["stats"].values())
    # A finished state resumes to the same answer; another configuration is refused.
    again = expected_suite.evaluate(ens, x, y, 0.3, specs, draws=4, state_path=state, progress=False)
    np.testing.assert_array_equal(again["best_stage"], res["best_stage"])
    with pytest.raises(EmpirError, match="another configuration"):
        expected_suite.evaluate(ens, x, y, 0.2, specs, draws=4, state_path=state, progress=False)
    with pytest.raises(EmpirError):
        expected_suite.evaluate(ens, x, y, 0.3, [], draws=4)


def test_converged_quotes_the_first_doubling_that_moves_less_than_the_tolerance():
    pts = [{"samples": s, "n_iter": n, "robust": r} for s, n, r in
           [(8, 25, 0.30), (16, 25, 0.28), (8, 50, 0.27), (16, 50, 0.25), (32, 50, 0.248), (32, 100, 0.2465)]]
    assert expected_study.converged(pts) == {"samples": 32, "n_iter": 100, "converged": True, "from": [16, 50]}
    pts[-1]["robust"] = 0.2
    assert expected_study.converged(pts) == {"samples": 32, "n_iter": 100, "converged": False, "from": None}


def test_the_study_registers_three_jobs_after_the_old_ones():
    jobs = eot_study.jobs("cifar10", 10000, 1000)
    names = [j["name"] for j in jobs[-3:]]
    assert names == ["stochastic/expected-suite-joint", "stochastic/expected-converge", "stochastic/expected-aa-rand"]
    assert (jobs[-3]["samples"], jobs[-3]["n_iter"]) == expected_study.HEADLINE
    assert all(j["draws"] == expected.DRAWS and j["members"] == diversity.joint_ids() for j in jobs[-3:])
    assert jobs[-1]["samples"] == 20 and jobs[-1]["n_iter"] == 100  # AutoAttack's rand protocol


def test_a_results_file_whose_r_or_s_is_not_its_jobs_is_refused(tmp_path):
    job = expected_study.jobs(["a"], 100)[2]  # AutoAttack's rand: S = 20
    expected_study.check_record({"draws": 32, "samples": 20}, job)
    with pytest.raises(EmpirError, match="R \\(fresh draws per point\\) = 8"):
        expected_study.check_record({"draws": 8, "samples": 20}, job)
    with pytest.raises(EmpirError, match="S \\(EOT samples\\) = 4"):
        expected_study.check_record({"draws": 32, "samples": 4}, job)
    folder = tmp_path / "cifar10" / "stochastic"
    folder.mkdir(parents=True)
    (folder / "expected-aa-rand.json").write_text(json.dumps({"members": ["a"], "draws": 16, "samples": 20}))
    with pytest.raises(EmpirError, match="R \\(fresh draws"):
        expected_study.read("expected-aa-rand", "cifar10", tmp_path)
    assert expected_study.read("expected-converge", "cifar10", tmp_path) is None


def test_the_jobs_run_end_to_end_and_resume(small, tmp_path, monkeypatch):
    ens, x, y = small
    monkeypatch.setattr(expected_study, "EPS", 0.3)
    monkeypatch.setattr(expected_study, "GRID", ((1, 2), (2, 2), (1, 4), (2, 4)))
    monkeypatch.setattr(expected_study, "QUERIES", (1, 3))
    monkeypatch.setattr(expected_study, "SQUARE", {"square_queries": 2, "square_samples": 2})
    monkeypatch.setattr(expected_study, "HEADLINE", (2, 3))
    out, part = tmp_path / "out", tmp_path / "part"
    recs = {}
    for job in expected_study.jobs(["s1", "s2"], 8):
        job["draws"] = 4
        if job["kind"] == "expected-aa-rand":
            job.update(samples=2, n_iter=2)
        if job["kind"] == "expected-suite":
            assert (job["samples"], job["n_iter"]) == (2, 3)
        recs[job["kind"]], ran = expected_study.run_job(job, "mnist", ens, x, y, out, part, progress=False)
        assert ran and "provenance" in recs[job["kind"]]
        again, ran = expected_study.run_job(job, "mnist", ens, x, y, out, part, progress=False)
        assert not ran
    conv = recs["expected-converge"]
    assert [(p["samples"], p["n_iter"]) for p in conv["points"]] == [(1, 2), (2, 2), (1, 4), (2, 4)]
    assert "doubled" in conv["points"][0] and conv["chosen"]["samples"] in (1, 2)
    head = recs["expected-suite"]
    assert (head["samples"], head["n_iter"]) == (2, 3)
    assert sum(head["lowest_by_stage"].values()) == 8 and len(head["lottery"]["attack"]) == 2
    assert 0 <= head["robust"] <= 1 and head["robust_ci95"][0] <= head["robust"] <= head["robust_ci95"][1]
    assert not list(part.glob("*"))
    # A longer grid whose start is the finished one runs only its new settings.
    monkeypatch.setattr(expected_study, "GRID", ((1, 2), (2, 2), (1, 4), (2, 4), (4, 2)))
    job = expected_study.jobs(["s1", "s2"], 8)[1]
    job["draws"] = 4
    longer, ran = expected_study.run_job(job, "mnist", ens, x, y, out, part, progress=False)
    assert ran and [p["robust"] for p in longer["points"][:4]] == [p["robust"] for p in conv["points"]]
    assert (longer["points"][-1]["samples"], longer["points"][-1]["n_iter"]) == (4, 2)
