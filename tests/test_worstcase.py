"""The suite's results files read back: tables, per-image files, gains and times, on a synthetic results tree
(and chapter 8's L2 answers from them, empir_lib.book.chapters.adaptive)."""
import json

import numpy as np
import pytest

from empir_lib.attack import outcomes, suite
from empir_lib.book import plots
from empir_lib.book.chapters import adaptive
from empir_lib.core.errors import EmpirError
from empir_lib.studies import results, worstcase

NAMES = ["apgd-ce", "apgd-dlr", "square"]


def _write(root, dataset, name, broken_by, norm, extra=None):
    path = root / dataset / "suite" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    broken_by = np.asarray(broken_by, np.int8)
    n = len(broken_by)
    record = {"n": n, "attacks": [{"name": a} for a in NAMES], "broken_by": outcomes.counts(broken_by, NAMES),
              "clean_accuracy": float(np.mean(broken_by != 0)), "robust_accuracy": float(np.mean(broken_by == -1)),
              "stats": {a: {"attacked": n, "broken": int(np.sum(broken_by == i + 1)), "seconds": 1.0,
                            "image_steps": 10} for i, a in enumerate(NAMES)},
              "per_image": outcomes.save(path.with_suffix(".npz"), broken_by, norm), **(extra or {})}
    results.write_result(path, record, dataset, command="test")
    return path


@pytest.fixture
def tree(tmp_path):
    diag = {"diagnostics": {"values": {"zero_gradient_share": 0.0, "no_progress_share": 0.0,
                                       "square_broke_after_white_box": 0, "unbounded_robust": 0.0},
                            "flags": [], "suspicious": False}}
    _write(tmp_path, "mnist", "empir-linf-table1", [-1, 1, 1, 2, 0, -1, 1, 1, 1, 3], np.full(10, 0.3), diag)
    _write(tmp_path, "mnist", "baseline-linf-table1", [1] * 9 + [0], np.full(10, 0.3), diag)
    _write(tmp_path, "mnist", "empir-min-l2", [1, 1, 1, -1, 0], np.array([1.0, 2.0, 3.0, np.inf, 0.0]),
           {"median_l2": 2.0})
    (tmp_path / "mnist" / "timing.json").write_text(json.dumps({"steps": {
        "suite/empir-linf-table1": 10.0, "suite/baseline-linf-table1": 4.0,
        "adaptive-select/pgd-mean_prob": 30.0, "table2/empir-adaptive-pgd": 20.0,
        "table2/empir-paper-pgd": 5.0}}))
    return tmp_path


def test_threat_rows_and_table(tree):
    rows = {r["row"]: r for r in worstcase.threat_rows("mnist", tree)}
    assert rows["EMPIR"]["linf-table1"] == pytest.approx(20.0)
    assert rows["EMPIR"]["clean"] == pytest.approx(90.0)
    assert rows["baseline (FP)"]["linf-table1"] == 0.0
    assert rows["EMPIR"]["l2"] is None and rows["EMPIR"]["median_l2"] == 2.0
    text = worstcase.threat_table("mnist", tree)
    assert "| EMPIR | 90.00 | 20.00 | \u2014 | 2.00 (CW) |" in text
    assert "eps = 0.3" in text
    # The minimal L2 that always succeeds replaces CW's figure once it exists (CW's file stays).
    _write(tree, "mnist", "empir-min-norm", [1, 1, 1, 1, 0], np.array([1.0, 1.5, 2.0, 2.5, 0.0]),
           {"median_l2": 1.75, "median_ci95": [1.0, 2.5]})
    assert "| EMPIR | 90.00 | 20.00 | \u2014 | 1.75 [1.00, 2.50] |" in worstcase.threat_table("mnist", tree)
    d, attack = worstcase.minimal_l2("mnist", tree)  # the per-image minimal L2 now comes from it too
    assert attack == "minimal-norm attack" and d.tolist() == [1.0, 1.5, 2.0, 2.5, 0.0]


def test_gains_counts_curves_diagnostics_and_times(tree):
    lines = worstcase.gain_lines("mnist", tree)
    assert lines[0].endswith("EMPIR 20.00% robust, its FP member alone 0.00% (+20.00 points)")
    assert "\u2014" in lines[1]  # no L2 files yet: the command that writes them is named
    counts = worstcase.cascade_counts("mnist", tree)
    assert counts["EMPIR, L-inf, Table 1 eps (eps = 0.3)"] == {"clean": 1, "apgd-ce": 5, "apgd-dlr": 1,
                                                               "square": 1, "robust": 2}
    # In cascade order (the file stores its keys sorted, 'clean' among the attacks).
    assert list(counts["EMPIR, L-inf, Table 1 eps (eps = 0.3)"]) == ["clean", *NAMES, "robust"]
    d, attack = worstcase.minimal_l2("mnist", tree)
    assert d.tolist() == [1.0, 2.0, 3.0, np.inf, 0.0] and attack == "CW"  # CW's, while no min-norm file exists
    assert worstcase.minimal_l2("cifar10", tree) is None
    assert "none" in worstcase.diagnostics_table("mnist", tree)
    assert "not produced yet" in worstcase.diagnostics_table("cifar10", tree)
    times = worstcase.job_times("mnist", tree)
    # Like for like: the FP baseline's suite job is summed apart (the old protocol attacked EMPIR alone).
    assert times == {"suite_s": 10.0, "suite_jobs": 1, "baseline_s": 4.0, "baseline_jobs": 1,
                     "old_adaptive_s": 50.0, "old_adaptive_jobs": 2}


def test_job_time_figure_draws_each_dataset_like_for_like(tree):
    times = {"mnist": worstcase.job_times("mnist", tree),
             "other": {"suite_s": 120.0, "baseline_s": 60.0, "old_adaptive_s": 30.0}}
    ax = plots.job_time_bars(times).axes[0]
    widths = sorted(round(p.get_width(), 4) for p in ax.patches)
    # mnist: 10 s EMPIR, 4 s baseline, 50 s old; other: 2 min, 1 min, 0.5 min.
    assert widths == sorted(round(v, 4) for v in (10 / 60, 4 / 60, 50 / 60, 2.0, 1.0, 0.5))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["mnist", "other"]


def test_stage_table_keeps_the_cascade_order(tree):
    record, _ = worstcase.load("mnist", "empir-linf-table1", tree)
    text = worstcase.stage_table(record)
    assert text.index("apgd-ce") < text.index("apgd-dlr") < text.index("square")


def test_a_tampered_per_image_file_is_refused(tree):
    path = tree / "mnist" / "suite" / "empir-linf-table1.npz"
    outcomes.save(path, np.full(10, -1, np.int8), np.zeros(10))
    with pytest.raises(EmpirError, match="sha256"):
        worstcase.load("mnist", "empir-linf-table1", tree)


def test_gain_lines_add_the_strongest_evaluations_on_the_same_images(tree):
    # The suite alone: EMPIR keeps 3 of 5, FP 1 of 5.  A re-check round breaks 2 of EMPIR's and still moved.
    _write(tree, "mnist", "empir-l2", [-1, -1, -1, 1, 0], np.full(5, 1.0))
    _write(tree, "mnist", "baseline-l2", [-1, 1, 1, 1, 1], np.full(5, 1.0))
    line = worstcase.gain_lines("mnist", tree)[1]
    assert line.endswith("the suite alone, EMPIR 60.00% robust, its FP member alone 20.00% (+40.00 points)")
    _write(tree, "mnist", "empir-l2-recheck", [-1, 2, 2, 1, 0], np.full(5, 1.0),
           {"robust_after": 1, "converged": False})
    line = worstcase.gain_lines("mnist", tree)[1]
    assert line.endswith("the strongest evaluations, on 5 images: EMPIR 20.00%, its FP member 20.00% "
                         "(+0.00 points), EMPIR still moving, baseline (FP) not re-checked: upper bounds")


def test_unknown_suite_job_names_are_refused():
    assert worstcase.check_job_name("mnist", "suite/empir-l2") == "suite/empir-l2"
    with pytest.raises(EmpirError, match="unknown suite job"):
        worstcase.check_job_name("mnist", "suite/empir-linf-8-255")  # 8/255 is CIFAR-10's
    assert "linf-8-255" not in suite.threats("mnist")


def test_an_evaluation_on_fewer_images_says_so(tree):
    _write(tree, "mnist", "empir-l2", [-1, 1, 1, 0, 1], np.full(5, 1.0))
    row = {r["row"]: r for r in worstcase.threat_rows("mnist", tree)}["EMPIR"]
    assert row["n"] == {"linf-table1": 10, "l2": 5} and row["l2"] == pytest.approx(20.0)
    assert row["clean"] == pytest.approx(90.0)  # from the evaluation on the most images
    assert "20.00 (first 5 images)" in worstcase.threat_table("mnist", tree)


def test_the_minimal_l2_against_the_suite_at_the_budget(tree):
    assert "\u2014" in adaptive.minimal_versus_suite("mnist", tree)  # no L2 cascade yet
    _write(tree, "mnist", "empir-l2", [-1, 1, 1, 0, 1], np.full(5, 1.0))
    line = adaptive.minimal_versus_suite("mnist", tree)
    # minimal L2 [1, 2, 3, inf, 0] against the budget 2.0: 3.0 and inf exceed it.
    assert "first 5 images: the CW's minimal L2 alone leaves 40.0% robust" in line
    assert "suite (empir-l2) leaves 20.0%." in line
    # The suite's strongest evaluation, on the images both cover: new stages on the first 4 broke the survivor.
    _write(tree, "mnist", "empir-l2-stages", [-1, 1, 1, 0], np.full(4, 1.0))
    _write(tree, "mnist", "empir-l2-recheck", [1, 1, 1, 0], np.full(4, 1.0), {"converged": True})
    line = adaptive.minimal_versus_suite("mnist", tree)
    assert "first 4 images: the CW's minimal L2 alone leaves 50.0% robust" in line
    assert "suite (empir-l2-recheck) leaves 0.0%." in line


def test_stage_counts_follow_the_cascade_and_keep_every_stage():
    record = {"attacks": [{"name": "b"}, {"name": "a"}],
              "broken_by": {"a": 2, "b": 1, "clean": 3, "extra": 1, "robust": 4}}
    assert list(outcomes.stage_counts(record).items()) == [("clean", 3), ("b", 1), ("a", 2), ("robust", 4),
                                                           ("extra", 1)]


def test_the_l2_answer_is_paired_on_each_rows_strongest_evaluation(tree):
    assert "\u2014" in adaptive.l2_answer("mnist", tree)  # no L2 cascades yet
    r, b = outcomes.ROBUST, 1
    _write(tree, "mnist", "empir-l2", [r, r, r, r, b, b, 0, 1, 1, 1], np.full(10, 1.0))
    _write(tree, "mnist", "baseline-l2", [r, b, b, b, r, b, 0, 1, 1, 1], np.full(10, 1.0))
    line = adaptive.l2_answer("mnist", tree)
    assert "EMPIR keeps 4, its FP member 2; 1 survive both, 3 only EMPIR" in line and "1 only the FP" in line
    assert "not re-checked yet" in line and "upper bounds" in line
    # EMPIR's new stages break two of its survivors: the answer reads them, not the weaker suite file.
    _write(tree, "mnist", "empir-l2-stages", [r, r, b, b, b, b, 0, 1, 1, 1], np.full(10, 1.0))
    line = adaptive.l2_answer("mnist", tree)
    assert "EMPIR keeps 2, its FP member 2" in line and line.startswith("mnist, L2 2, 10 images:")  # all of them
    # The FP row settles, EMPIR's still moves: only EMPIR's figure is an upper bound.
    _write(tree, "mnist", "baseline-l2-recheck", [r, b, b, b, r, b, 0, 1, 1, 1], np.full(10, 1.0),
           {"robust_after": 2, "converged": True})
    _write(tree, "mnist", "empir-l2-recheck", [r, r, b, b, b, b, 0, 1, 1, 1], np.full(10, 1.0),
           {"robust_after": 2, "converged": False, "change_points": 0.1})
    line = adaptive.l2_answer("mnist", tree)
    assert line.endswith("EMPIR still moved 0.1 points when re-checked, so EMPIR's is an upper bound.")
    # The new stages on the first 8 only: the pair is compared on those, and the line says so.
    _write(tree, "mnist", "baseline-l2-recheck", [r, b, b, b, r, b, 0, 1], np.full(8, 1.0), {"converged": True})
    assert adaptive.l2_answer("mnist", tree).startswith("mnist, L2 2, first 8 images:")


def test_mcnemar_exact():
    assert outcomes.mcnemar_p(0, 0) == 1.0
    assert outcomes.mcnemar_p(5, 5) == 1.0
    assert outcomes.mcnemar_p(10, 0) == pytest.approx(2 / 2 ** 10)
    assert outcomes.mcnemar_p(49, 26) == pytest.approx(outcomes.mcnemar_p(26, 49))
    assert outcomes.mcnemar_p(49, 26) < 0.05 < outcomes.mcnemar_p(30, 26)
