"""The stochastic ensemble under EOT (empir_lib.studies.eot_study): its jobs, the S it picks, and a small real run."""
import json

import pytest

from empir_lib.core import paper, settings
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, diversity, ensemble, stochastic, zoo
from empir_lib.studies import eot_study, reproduce, results


@pytest.mark.parametrize("bad", [[], [0], [2, 1], [1, 1], [1, 2.5], "abc", None, [True]])
def test_bad_eot_sample_lists_are_refused(bad):
    with pytest.raises(EmpirError, match="EOT samples"):
        eot_study.check_samples(bad)


def test_jobs_run_the_curve_first_and_compare_three_rows():
    jobs = eot_study.jobs("cifar10", 10000, 1000)
    assert jobs[0] == {"name": "stochastic/eot-samples", "kind": "eot-samples",
                       "members": diversity.joint_ids("cifar10"), "samples": list(eot_study.EOT_SAMPLES), "n": 1000}
    assert [j["kind"] for j in jobs[-3:]] == ["expected-suite", "expected-converge", "expected-aa-rand"]
    jobs = jobs[:-3]  # the expected-accuracy jobs (issue 29): tests/test_expected.py
    names = [j["name"] for j in jobs[1:]]
    rows = ("joint", "empir", "baseline", "pgdat")
    assert names == [f"stochastic/{k}-5-255-{r}" for k in ("pgd", "suite") for r in rows
                     ] + ["stochastic/pgd-0-joint"] + [f"stochastic/suite-5-255-joint-eot{s}" for s in (8, 16)]
    assert [j["n"] for j in jobs[1:]] == [10000] * 4 + [1000] * 4 + [10000, 500, 500]
    assert [eot_study.threat(j)["eps"] for j in jobs] == [paper.FARKYA_EPS] * 9 + [0.0] + [paper.FARKYA_EPS] * 2
    assert jobs[4]["members"] == ["cifar10-fp-s1-pgdat-e0.0313725"]
    assert eot_study.row_samples(jobs[-1], "/nonexistent") == 16  # its own S, no curve needed
    # The joint run's ids are those 'empir joint --zoo' registers.
    assert diversity.joint_ids("cifar10") == [
        settings.member_id("cifar10", 2, 2, 1, diversity.joint_tag(k, diversity.DIVERSITY_WEIGHT)) for k in range(3)]
    assert jobs[2]["members"] == settings.get("cifar10").empir_ids


@pytest.mark.parametrize("acc, tol, chosen", [([0.6, 0.4, 0.3, 0.295, 0.29], 0.01, 4),
                                              ([0.6, 0.4, 0.3, 0.2, 0.1], 0.01, 16),
                                              ([0.3, 0.3, 0.3, 0.3, 0.3], 0.01, 1),
                                              ([0.6, 0.4, 0.3, 0.295, 0.29], 0.2, 2)])
def test_enough_samples_is_the_smallest_within_the_tolerance_of_the_lowest(acc, tol, chosen):
    assert eot_study.enough_samples({"samples": [1, 2, 4, 8, 16], "robust_accuracy": acc}, tol) == chosen


def test_the_stochastic_row_needs_its_curve_and_deterministic_rows_use_one_sample(tmp_path):
    jobs = {j["name"]: j for j in eot_study.jobs("cifar10", 100, 10)}
    assert eot_study.row_samples(jobs["stochastic/pgd-5-255-empir"], tmp_path) == 1
    with pytest.raises(EmpirError, match="eot-samples"):
        eot_study.row_samples(jobs["stochastic/pgd-5-255-joint"], tmp_path)
    (tmp_path / "stochastic").mkdir()
    (tmp_path / "stochastic" / "eot-samples.json").write_text(
        json.dumps({"samples": [1, 2, 4], "robust_accuracy": [0.5, 0.2, 0.195]}))
    assert eot_study.row_samples(jobs["stochastic/pgd-5-255-joint"], tmp_path) == 2


def test_pgd_spec_adds_eot_only_above_one_sample():
    assert eot_study.pgd_spec(1) == [eot_study.PGD]
    assert eot_study.pgd_spec(4)[0] == {**eot_study.PGD, "eot_samples": 4, "decision": "draw"}
    with pytest.raises(EmpirError):
        eot_study.pgd_spec(0)


@pytest.fixture()
def small(monkeypatch):
    """A stochastic MNIST ensemble, a few images and a 3-step PGD (the study's code, a smaller attack)."""
    monkeypatch.setattr(eot_study, "PGD", {**eot_study.PGD, "n_iter": 3})
    monkeypatch.setattr(eot_study, "THREAT", {"name": "linf-0.3", "norm": "linf", "eps": 0.3})
    x, y = data.load_sample("mnist", 12)
    ens = ensemble.make([stochastic.to_stochastic(zoo.load("mnist-a4w2-s1"), seed=3),
                         stochastic.to_stochastic(zoo.load("mnist-a4w2-s2"), seed=4)], names=["s1", "s2"])
    return ens, x, y


def test_the_eot_curve_runs_resumes_and_feeds_the_pgd_row(small, tmp_path):
    ens, x, y = small
    job = {"name": "stochastic/eot-samples", "kind": "eot-samples", "members": ["s1", "s2"], "samples": [1, 2],
           "n": 12}
    rec, ran = eot_study.run_job(job, "mnist", ens, x, y, tmp_path / "out", tmp_path / "part", progress=False)
    assert ran and rec["samples"] == [1, 2] and len(rec["robust_accuracy"]) == 2
    assert rec["chosen"] in (1, 2) and rec["chosen"] == eot_study.enough_samples(rec)
    assert all(0 <= a <= c for a, c in zip(rec["robust_accuracy"], rec["clean_accuracy"]))
    assert 0.0 <= rec["randomness"] <= 1.0 and "provenance" in rec
    assert not list((tmp_path / "part").glob("*"))  # the partial files are gone once the record is written
    again, ran = eot_study.run_job(job, "mnist", ens, x, y, tmp_path / "out", tmp_path / "part", progress=False)
    assert not ran and again["robust_accuracy"] == rec["robust_accuracy"]
    # The stochastic row's PGD uses the curve's S; its record holds the per-image outcomes.
    pgd = {"name": "stochastic/pgd-5-255-joint", "kind": "pgd", "row": "joint", "members": ["s1", "s2"], "n": 12}
    out, ran = eot_study.run_job(pgd, "mnist", ens, x, y, tmp_path / "out", tmp_path / "part", progress=False)
    assert ran and out["eot_samples"] == rec["chosen"] and out["n"] == 12
    assert (tmp_path / "out" / "stochastic" / "pgd-5-255-joint.npz").is_file()
    assert 0 <= out["robust_accuracy"] <= out["clean_accuracy"] and 0 <= out["randomness"] <= 1


def test_the_curve_stops_once_no_image_is_left(small, tmp_path, monkeypatch):
    # With the whole pixel range as budget the images break within a few S; once none is left, a larger
    # S cannot do better and is not run.
    ens, x, y = small
    monkeypatch.setattr(eot_study, "THREAT", {"name": "linf-1", "norm": "linf", "eps": 1.0})
    planned = [1, 2, 4, 8, 16, 32]
    job = {"name": "stochastic/eot-samples", "kind": "eot-samples", "members": ["s1", "s2"], "samples": planned,
           "n": 12}
    rec, ran = eot_study.run_job(job, "mnist", ens, x, y, tmp_path / "out", tmp_path / "part", progress=False)
    acc = rec["robust_accuracy"]
    assert ran and acc[-1] == 0.0 and all(a > 0 for a in acc[:-1]), acc
    assert len(acc) < len(planned) and rec["samples"] == planned[:len(acc)]
    assert rec["stopped_at_zero"] and rec["plateau"] and rec["chosen"] == rec["samples"][-1]


def test_the_noise_only_control_breaks_only_what_the_randomness_breaks(small, tmp_path):
    # Seeded stochastic members: eps = 0 leaves the images as they are, so a "break" is a wrong draw,
    # confirmed on a fresh one; a deterministic ensemble loses nothing to it.
    ens, x, y = small
    (tmp_path / "out" / "stochastic").mkdir(parents=True)
    (tmp_path / "out" / "stochastic" / "eot-samples.json").write_text(json.dumps(
        {"samples": [1, 2], "robust_accuracy": [0.5, 0.5]}))
    job = {"name": "stochastic/pgd-0-joint", "kind": "pgd", "row": "joint", "members": ["s1", "s2"], "n": 12,
           "noise_only": True}
    rec, ran = eot_study.run_job(job, "mnist", ens, x, y, tmp_path / "out", tmp_path / "part", progress=False)
    assert ran and rec["threat"]["eps"] == 0.0 and rec["eot_samples"] == 1
    assert 0 <= rec["robust_accuracy"] <= rec["clean_accuracy"]
    fixed = ensemble.make([zoo.load("mnist-a4w2-s1"), zoo.load("mnist-a4w2-s2")], names=["d1", "d2"])
    det = {**job, "name": "stochastic/pgd-0-det", "row": "empir", "members": ["d1", "d2"]}
    rec, ran = eot_study.run_job(det, "mnist", fixed, x, y, tmp_path / "out", tmp_path / "part", progress=False)
    assert ran and rec["robust_accuracy"] == rec["clean_accuracy"] and rec["randomness"] == 0


def test_a_partial_curve_of_another_configuration_is_refused(small, tmp_path):
    ens, x, y = small
    (tmp_path / "mnist-stochastic-eot-samples.json").write_text(json.dumps({"config": {"n": 3}, "points": []}))
    job = {"name": "stochastic/eot-samples", "kind": "eot-samples", "members": ["s1", "s2"], "samples": [1],
           "n": 12}
    with pytest.raises(EmpirError, match="another configuration"):
        eot_study.run_job(job, "mnist", ens, x, y, tmp_path / "out", tmp_path, progress=False)


def test_reproduce_skips_the_study_until_the_joint_run_is_in_the_zoo(capsys, tmp_path, data_dir, monkeypatch):
    # A zoo without the joint run (the committed one has it): the deterministic rows need none; the curve,
    # the stochastic rows, the control and the suite checks wait for it.
    joint, real = set(diversity.joint_ids("cifar10")), zoo.members
    monkeypatch.setattr(zoo, "members", lambda *a, **k: {m: v for m, v in real(*a, **k).items() if m not in joint})
    for only in ("stochastic/eot", "stochastic/pgd-5-255-joint", "stochastic/suite-5-255-joint", "stochastic/pgd-0"):
        reproduce.reproduce("cifar10", n=5, select_n=5, data_dir=data_dir, out_dir=tmp_path,
                            partial_dir=tmp_path / "p", only=only, progress=False)
    out = capsys.readouterr().out
    # The suite prefix also names the two suite checks (S = 8, 16): six jobs in all.
    assert out.count("skipped") == 6 and out.count("empir joint --dataset cifar10 --zoo") == 6
    assert not list(tmp_path.glob("stochastic/*"))


def test_a_resumed_curve_that_reached_zero_runs_no_further_s(small, tmp_path):
    ens, x, y = small
    job = {"name": "stochastic/eot-samples", "kind": "eot-samples", "members": ["s1", "s2"], "samples": [1, 2, 4],
           "n": 12}
    cfg = eot_study.config(job, ens, 12)
    point = {"samples": 1, "robust_accuracy": 0.0, "robust_ci95": [0.0, 0.2], "clean_accuracy": 0.9, "seconds": 1.0}
    (tmp_path / "part").mkdir()
    (tmp_path / "part" / "mnist-stochastic-eot-samples.json").write_text(json.dumps({"config": cfg,
                                                                                     "points": [point]}))
    rec, ran = eot_study.run_job(job, "mnist", ens, x, y, tmp_path / "out", tmp_path / "part", progress=False)
    assert ran and rec["samples"] == [1] and rec["stopped_at_zero"] and rec["chosen"] == 1


def test_read_returns_none_while_a_file_is_missing(tmp_path):
    assert eot_study.read("cifar10", "eot-samples", tmp_path) is None
    results.write_result(tmp_path / "cifar10" / "stochastic" / "eot-samples.json", {"robust_accuracy": 0.5, "n": 4},
                        "cifar10")
    assert eot_study.read("cifar10", "eot-samples", tmp_path)["robust_accuracy"] == 0.5
