"""The benchmark code (not its numbers: those live in benchmarks/results.json)."""
import json

import pytest

from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, ensemble
from empir_lib.studies import attack_speed, bench


def test_training_speed_rows_are_ratios_against_the_first_precision():
    rows = bench.training_speed(batches=2, batch_size=16,
                                configs=[("alexnet_tiny", {"width": 0.125}, (64, 64, 3), 200, ((32, 32), (2, 2)))])
    assert [r["precision"] for r in rows] == ["fp", "a2w2"]
    assert all(r["network"] == "alexnet_tiny width=0.125" for r in rows)
    assert rows[0]["cost_vs_fp"] == 1.0 and rows[1]["cost_vs_fp"] > 0
    assert all(r["images_per_s"] > 0 for r in rows)


def test_end_to_end_gathers_the_committed_reproduce_times():
    e2e = bench.end_to_end()
    assert "empir reproduce mnist" in e2e  # data/results/mnist/timing.json is committed
    assert e2e["empir reproduce mnist"]["total_s"] > 0 and e2e["empir reproduce mnist"]["steps"] > 50


def test_apgd_speed_row_compares_ours_with_art_and_the_floor():
    x, y = data.load_sample("mnist", 8)
    row = attack_speed.apgd_speed(ensemble.empir("mnist"), "MNIST EMPIR", x, y, eps=0.1, n_iter=5, repeats=1)
    for k in ("ours_no_compaction_image_steps_per_s", "art_image_steps_per_s", "floor_image_steps_per_s"):
        assert row[k] > 0
    assert row["ours_vs_art"] > 0 and row["ours_cost_vs_floor"] > 0 and row["n"] == 8


def test_suite_cw_speed_row_times_both_ways_of_judging_on_the_vote():
    x, y = data.load_sample("mnist", 8)
    row = attack_speed.suite_cw_speed(ensemble.empir("mnist"), "MNIST EMPIR", x, y, iterations=3, repeats=1)
    for k in ("one_pass_image_steps_per_s", "separate_vote_image_steps_per_s", "floor_image_steps_per_s"):
        assert row[k] > 0
    assert row["one_pass_vs_separate"] > 0 and row["n"] == 8 and row["iterations"] == 3


def test_square_speed_row_compares_ours_with_arts_on_the_same_queries():
    x, y = data.load_sample("mnist", 6)
    ens = ensemble.empir("mnist")
    row = attack_speed.square_speed(ens, "MNIST EMPIR", x, ensemble.predict(ens, x), queries=5, repeats=1)
    assert row["art_image_queries_per_s"] > 0 and row["ours_image_queries_per_s"] > 0
    assert row["ours_vs_art"] == pytest.approx(row["ours_image_queries_per_s"] / row["art_image_queries_per_s"],
                                               rel=0.02)
    assert row["n"] == 6 and row["queries"] == 5


def test_an_unknown_benchmark_part_is_refused(tmp_path):
    with pytest.raises(EmpirError, match="benchmark part"):
        bench.run(tmp_path, n=4, only="everything")


def test_the_readme_of_a_part_run_into_a_new_folder_has_that_part_only():
    # `empir bench --only apgd --out-dir <new folder>` has no earlier parts to keep: its README must not need them.
    committed = json.loads((bench.BENCH_DIR / "results.json").read_text())
    text = bench.readme({"machine": committed["machine"], "apgd": committed["apgd"]})
    assert "## APGD-CE" in text and "## Attacks" not in text and "## Training" not in text
    assert bench.readme(committed) == (bench.BENCH_DIR / "README.md").read_text()  # the whole README is unchanged
