"""The benchmark code (not its numbers: those live in benchmarks/results.json)."""
from empir_lib import bench


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
