"""The reproduce plan: which jobs each dataset gets, and a small real run."""
import json

import pytest

from empir_lib.core import settings
from empir_lib.core.errors import EmpirError
from empir_lib.studies import reproduce, worstcase


@pytest.mark.parametrize("dataset", reproduce.DATASETS)
def test_plan_names_are_unique_and_sized(dataset):
    first, later = reproduce.plan(dataset, n=10000, select_n=1000)
    names = [j["name"] for j in first + later]
    assert len(names) == len(set(names))
    for j in first + later:
        # Table 2 runs on every image; the selection on the first select_n.
        if j["name"].startswith("table2/"):
            assert j["n"] == 10000
        if j["name"].startswith(("adaptive-select/", "members/")):
            assert j["n"] == 1000
    folder, eps, full = settings.SECOND_EPS[dataset]
    second = [j for j in later if j["name"].startswith(folder + "/")]
    assert {j["name"] for j in second} == {f"{folder}/baseline-paper-pgd", f"{folder}/empir-paper-pgd"}
    assert all(j["params"] == {"eps": eps} and j["n"] == (10000 if full else 1000) for j in second)


def test_tiny_imagenet_plan_is_table2_members_and_eps4_only():
    first, later = reproduce.plan("tiny-imagenet", n=10000, select_n=1000)
    groups = {j["name"].split("/")[0] for j in first + later}
    assert groups == {"table2", "adaptive-select", "members", "eps4"}
    assert settings.SECOND_EPS["tiny-imagenet"][1] == pytest.approx(4 / 255)


def test_adaptive_jobs_pick_the_worst_objective(tmp_path):
    sel = tmp_path / "adaptive-select"
    sel.mkdir()
    from empir_lib.studies import evaluate
    for obj, acc in (("mean_prob", 0.30), ("member:0", 0.10), ("mean_logits", 0.20)):
        result = {"members": settings.EMPIR_MEMBERS["mnist"], "rule": "vote", "attack": "pgd", "protocol": "adaptive",
                  "objective": obj, "params": {}, "n": 1000, "clean_accuracy": 0.99, "adversarial_accuracy": acc,
                  "seed": 0, "batch_size": 500, "wall_time_s": 1.0}
        evaluate.write_result(sel / f"pgd-{obj.replace(':', '')}.json", result, "mnist")
    jobs = reproduce.adaptive_jobs("mnist", 10000, 1000, tmp_path)
    assert [j["name"] for j in jobs] == ["table2/empir-adaptive-pgd", "eps8/empir-adaptive-pgd"]
    assert all(j["objective"] == "member:0" for j in jobs)
    assert jobs[0]["n"] == 10000 and jobs[1]["n"] == 1000  # MNIST's 8/255 row runs on the selection size
    assert jobs[0]["extra"]["selected_from"] == {"mean_prob": 0.30, "member:0": 0.10, "mean_logits": 0.20}


def test_adaptive_jobs_break_ties_by_name_like_the_chapters(tmp_path):
    """A tie goes to the first name in sorted order: results.worst_objective, the rule the chapters show."""
    from empir_lib.book.chapters import committed
    from empir_lib.studies import evaluate, results
    sel = tmp_path / "adaptive-select"
    sel.mkdir()
    tried = {"mean_prob": 0.10, "mean_logits": 0.10, "temperature": 0.30}
    for obj, acc in tried.items():
        result = {"members": settings.EMPIR_MEMBERS["mnist"], "rule": "vote", "attack": "fgsm", "protocol": "adaptive",
                  "objective": obj, "params": {}, "n": 1000, "clean_accuracy": 0.99, "adversarial_accuracy": acc,
                  "seed": 0, "batch_size": 500, "wall_time_s": 1.0}
        evaluate.write_result(sel / f"fgsm-{obj}.json", result, "mnist")
    [job] = reproduce.adaptive_jobs("mnist", 10000, 1000, tmp_path)
    assert job["objective"] == "mean_logits" == results.worst_objective(tried) == committed.worst_objective(tried)


def test_small_real_run_writes_results_and_keeps_them(tmp_path, data_dir, capsys):
    out = tmp_path / "res"
    log = reproduce.reproduce("mnist", n=20, select_n=10, out_dir=out, partial_dir=tmp_path / "p",
                              only="table2/baseline-paper-fgsm", progress=False)
    assert [e["name"] for e in log] == ["table2/baseline-paper-fgsm"] and log[0]["ran"]
    record = json.loads((out / "table2" / "baseline-paper-fgsm.json").read_text())
    assert record["n"] == 20 and record["members"] == ["mnist-fp-s1"]
    assert "table2/baseline-paper-fgsm" in json.loads((out / "timing.json").read_text())["steps"]
    again = reproduce.reproduce("mnist", n=20, select_n=10, out_dir=out, partial_dir=tmp_path / "p",
                                only="table2/baseline-paper-fgsm", progress=False)
    assert not again[0]["ran"]  # same configuration: kept, not recomputed


def test_unknown_dataset_is_refused():
    with pytest.raises(EmpirError, match="dataset"):
        reproduce.reproduce("svhn", n=10)



@pytest.fixture
def offline_plan(monkeypatch):
    """reproduce() with no dataset and every member taken as present: for tests that replace run_job."""
    monkeypatch.setattr(reproduce.data, "load", lambda *a, **k: (None, None))
    monkeypatch.setattr(reproduce.zoo, "members", lambda d: reproduce._all_members(d))


def test_jobs_run_one_attack_at_a_time_table2_column_first(tmp_path, monkeypatch, offline_plan):
    """Each attack's paper rows, selection, adaptive row and sweeps finish before the next attack starts."""
    from empir_lib.studies import evaluate
    ran = []

    def fake_run_job(job, dataset, x, y, out_dir, partial_dir, progress, prov):
        ran.append(job["name"])
        if job["name"].startswith("adaptive-select/"):  # adaptive_jobs reads the selection from disk
            result = {"members": job["members"], "rule": "vote", "attack": job["attack"], "protocol": "adaptive",
                      "objective": job["objective"], "params": {}, "n": 10, "clean_accuracy": 0.9,
                      "adversarial_accuracy": 0.5, "seed": 0, "batch_size": 10, "wall_time_s": 0.0}
            evaluate.write_result(out_dir / f"{job['name']}.json", result, dataset)
        return {"adversarial_accuracy": 0.5}, True

    suite_ran = []

    def fake_suite_job(job, dataset, ens, x, y, out_dir, partial_dir, progress, prov):
        suite_ran.append(job["name"])
        return {"robust_accuracy": 0.1}, True

    monkeypatch.setattr(reproduce, "run_job", fake_run_job)
    monkeypatch.setattr(reproduce.worstcase, "run_job", fake_suite_job)
    monkeypatch.setattr(reproduce, "_ensemble", lambda members, rule: None)
    reproduce.reproduce("tiny-imagenet", n=10, select_n=10, out_dir=tmp_path, partial_dir=tmp_path / "p",
                        progress=False)
    first, later = reproduce.plan("tiny-imagenet", 10, 10)
    jobs = {j["name"]: j for j in first + later + reproduce.adaptive_jobs("tiny-imagenet", 10, 10, tmp_path)}
    assert sorted(ran) == sorted(jobs)  # every job once, the adaptive rows included
    # The worst-case suite runs last, every one of its jobs once.
    assert suite_ran == [j["name"] for j in worstcase.jobs("tiny-imagenet", 10, 10)]
    attacks_in_order = [jobs[r]["attack"] for r in ran]
    blocks = [a for i, a in enumerate(attacks_in_order) if i == 0 or attacks_in_order[i - 1] != a]
    assert blocks == list(reproduce.ATTACK_ORDER)  # one contiguous block per attack, cheapest first

    def stage(name):  # inside a block: paper rows, selection, adaptive row, then the sweeps
        if name.startswith("table2/empir-adaptive"):
            return 2
        return {"table2": 0, "adaptive-select": 1}.get(name.split("/")[0], 3)

    for a in reproduce.ATTACK_ORDER:
        block = [r for r in ran if jobs[r]["attack"] == a]
        assert [stage(r) for r in block] == sorted(stage(r) for r in block), block
    assert len(jobs) == len(first) + len(later) + 5  # four adaptive Table 2 rows and the 4/255 one


def test_a_resumed_job_is_timed_with_its_earlier_invocations(tmp_path, monkeypatch, offline_plan):
    """timing.json takes a job's attack time across invocations from its results file, not just the last one."""
    def fake_run_job(job, dataset, x, y, out_dir, partial_dir, progress, prov):
        # As if 16 of 20 batches had run before an interruption: the results file holds the whole time.
        return {"adversarial_accuracy": 0.5, "timing": {"wall_time_s": 566.3}}, True

    monkeypatch.setattr(reproduce, "run_job", fake_run_job)
    log = reproduce.reproduce("tiny-imagenet", n=10, select_n=10, out_dir=tmp_path, partial_dir=tmp_path / "p",
                              only="table2/baseline-paper-bim", progress=False)
    assert [e["seconds"] for e in log] == [566.3]
    steps = json.loads((tmp_path / "timing.json").read_text())["steps"]
    assert steps == {"table2/baseline-paper-bim": 566.3}
