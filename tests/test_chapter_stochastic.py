"""Chapter 11's helpers, part 2 (empir_lib.book.chapters.stochastic, and stochastic_gpu for the GPU run): the
expected accuracy read back from results files written here, the worked example, the claim, and the figures."""
import json

import numpy as np
import pytest
from conftest import REPO
from matplotlib.figure import Figure

from empir_lib.book import plots
from empir_lib.book.chapters import stochastic as ch
from empir_lib.book.chapters import stochastic_gpu as gch
from empir_lib.core import paper
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, diversity
from empir_lib.studies import expected_study

S, N = expected_study.HEADLINE

MEMBERS = diversity.joint_ids()


def write(root, name, record):
    path = root / "cifar10" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"members": MEMBERS, "draws": 32, **record}))


def est(v, se=0.02):
    return {"": v, "_se": se, "_ci95": [v - 2 * se, v + 2 * se], "_se_draws": se / 3}


def fields(name, v, se=0.02):
    return {f"{name}{k}": x for k, x in est(v, se).items()}


def write_all(root):
    pts = [{"samples": s, "n_iter": n, **fields("robust", r), "seconds": 10.0 * s}
           for s, n, r in ((8, 25, 0.30), (S, N, 0.28), (16, 50, 0.27), (32, 50, 0.268))]
    pts[0]["doubled"] = {"diff": -0.03, "se": 0.01, "lo": -0.05, "hi": -0.01}
    write(root, "stochastic/expected-converge", {"points": pts, "chosen": {"samples": 16, "n_iter": 50,
                                                                           "converged": False, "from": None},
                                                 "n": 40, "tolerance": 0.005, "timing": {"wall_time_s": 600},
                                                 **fields("clean", 0.5)})
    write(root, "stochastic/expected-suite-joint", {
        "samples": S, "n_iter": N, "n": 100, **fields("robust", 0.21), **fields("clean", 0.49),
        "robust_majority": 0.18, "timing": {"wall_time_s": 900},
        "lottery": {"queries": [1, 10, 100], "attack": [0.2, 0.1, 0.03], "control": [0.5, 0.3, 0.2]},
        "stats": {"apgd-ce": {"attacked": 80, "seconds": 100.0, "invalid": 0}},
        "lowest_by_stage": {"apgd-ce": 70, "clean": 30}, "stages": [{"name": "apgd-ce"}],
        "stage_expected": {"clean": 0.49, "apgd-ce": 0.25}})


def test_the_worked_example_computes_both_rules():
    ex = ch.worked_example([29, 16, 0], 32, 10)
    assert ex["expected"] == pytest.approx(100 * 45 / 96)
    assert ex["any_query"] == pytest.approx(100 * ((29 / 32) ** 10 + 0.5 ** 10) / 3)
    assert "| A | 29 of 32 | 90.62 |" in ex["table"]
    with pytest.raises(EmpirError):
        ch.worked_example([33], 32, 10)


def test_missing_files_give_dashes_and_a_line_naming_the_command(tmp_path):
    assert ch.convergence(tmp_path) is None and ch.headline(tmp_path) is None and ch.lottery(tmp_path) is None
    assert ch.convergence_table(tmp_path) == "\u2014" and ch.stage_table(tmp_path) == "\u2014"
    assert "not yet measured" in ch.claim_lines(tmp_path)[-1]
    assert isinstance(plots.convergence_curve(None), Figure) and isinstance(plots.lottery_curve(None), Figure)


def test_the_tables_the_claim_and_the_figures(tmp_path):
    write_all(tmp_path)
    md = ch.convergence_table(tmp_path)
    assert "| 8 | 25 | 30.00 (26.00 to 34.00) | -3.00 (-5.00 to -1.00) | 80 |" in md
    rows = ch.comparison_rows(tmp_path)
    assert rows[0]["robust"]["value"] == pytest.approx(21.0) and f"S = {S}, N = {N}" in rows[0]["name"]
    assert [r["robust"]["value"] for r in rows[1:3]] == pytest.approx([3.0, 20.0])  # Q = 100 and its control
    assert f"*> {paper.FARKYA_PGD_5_255:.0f}*" in ch.comparison_table(tmp_path)
    lines = ch.claim_lines(tmp_path)
    assert lines[1].startswith("Ours, best estimate: a robust expected accuracy of 21.00% (95% interval 17.00 to "
                               "25.00) on 100 images") and "does not hold" in lines[1]
    assert "not converged by the half-point rule" in lines[2] and "28.00% there" in lines[2]
    assert "3.00% at the attack's points, 20.00% at the clean images" in lines[3]
    assert "clean expected accuracy (49.00%) is itself not above 50%" in lines[4]
    md = ch.stage_table(tmp_path)
    assert "| (the clean image) | 100 | 49.00 | 30 | \u2014 |\n| apgd-ce | 80 | 25.00 | 70 | 100 |" in md
    fig = plots.convergence_curve(ch.convergence(tmp_path))
    assert np.allclose(fig.axes[0].get_xticks(), [8, 16, 32])
    lot = ch.lottery(tmp_path)
    assert lot["attack"] == pytest.approx([20, 10, 3]) and lot["expected_attack"] == pytest.approx(21)
    assert isinstance(plots.lottery_curve(lot), Figure)


def test_paired_lines_read_the_per_image_estimates(tmp_path):
    write_all(tmp_path)
    folder = tmp_path / "cifar10" / "stochastic"
    a = np.array([0.5, 0.25, 1.0, 0.0])
    np.savez(folder / "expected-converge.npz", clean=a, robust_s8_n25=a, **{f"robust_s{S}_n{N}": a - 0.125},
             robust_s16_n50=a, robust_s32_n50=a - 0.25)
    lines = ch.paired_lines(tmp_path)
    assert lines[0] == f"N = 25, S = 8 to {S}: -12.50 points (paired 95% interval -12.50 to -12.50)."
    assert lines[1].startswith("N = 50, S = 16 to 32: -25.00 points")
    assert lines[2] == ("S = 8, N = 25 to S = 16, N = 50: -3.00 points (paired 95% interval -5.00 to -1.00), "
                        "outside the half-point rule.")


def test_a_file_whose_r_is_not_its_jobs_is_refused_when_read(tmp_path):
    write_all(tmp_path)
    path = tmp_path / "cifar10" / "stochastic" / "expected-suite-joint.json"
    rec = json.loads(path.read_text())
    path.write_text(json.dumps({**rec, "draws": 8}))
    with pytest.raises(EmpirError, match="R \\(fresh draws per point\\) = 8"):
        ch.headline(tmp_path)
    path.write_text(json.dumps({**rec, "samples": 2 * S}))
    with pytest.raises(EmpirError, match=f"S \\(EOT samples\\) = {2 * S}"):
        ch.headline(tmp_path)


def test_the_old_rule_table_reads_the_earlier_files(tmp_path):
    write(tmp_path, "stochastic/pgd-0-joint", {"eot_samples": 2, "n": 10000, "robust_accuracy": 0.43})
    assert "| noise only: the same PGD at eps = 0 | 2 | 10,000 | 43.00 |" in ch.old_rule_table(tmp_path)


def test_members_line_and_live_randomness():
    line = ch.members_line("cifar10")
    assert MEMBERS[0] in line or "deployed" in line
    x, y = data.load_sample("mnist", 40)
    r = ch.live_randomness("mnist-a2w2-s1", x, y, draws=3)
    assert len(r["draw_accuracy"]) == 3 and 0 <= r["share"] <= 1 and r["n"] == 40


def write_gpu(root):
    """An expected-gpu.json as expected_gpu.ingest writes it: two suites, AutoAttack rand and a lottery."""
    units = [{"name": f"suite-s{s}-n{n}", "kind": "suite", "samples": s, "n_iter": n, "seconds": 5.0 * s,
              "stages": ["apgd-ce", "nearest"], "stats": {"apgd-ce": {"attacked": 700}, "nearest": {"attacked": 300}},
              "lowest_by_stage": {"nearest": 1, "clean": 300, "apgd-ce": 699}, "robust_gpu": r + 0.002,
              **fields("robust", r)} for s, n, r in ((32, 100, 0.214), (64, 200, 0.211))]
    units[0]["doubled"] = {"diff": -0.003, "se": 0.002, "lo": -0.007, "hi": 0.001}
    units += [{"name": "aa-rand-s20-n100", "kind": "aa-rand", "samples": 20, "n_iter": 100, "robust_gpu": 0.235,
               "seconds": 20.0},
              {"name": "lottery-s64-n200", "kind": "lottery", "samples": 64, "n_iter": 200, "queries": [1, 100],
               "attack": [0.2, 0.07], "control": [0.5, 0.25], "seconds": 1.0}]
    write(root, "stochastic/expected-gpu", {
        "n": 1000, "units": units, "chosen": {"samples": 64, "n_iter": 200, "converged": True, "from": [32, 100]},
        "tolerance": 0.005, **fields("clean", 0.51), **fields("robust", 0.211), "robust_majority": 0.19,
        "device": {"jax_device": "cuda:0", "jax": "0.11.2", "wall_s": 326.4}, "device_draws": 32,
        "worst_of_runs": {"from_runs": {"S=32, N=100": 400, "S=64, N=200": 600}, **fields("robust", 0.2105)},
        "with_square": {"queries": 100, "samples": 4, "attacked": 580, "lowest": 30, **fields("robust", 0.2101)}})


def test_the_gpu_run_leads_the_tables_and_the_claim(tmp_path):
    write_all(tmp_path)
    write_gpu(tmp_path)
    assert "| 32 | 100 | 21.40 (17.40 to 25.40) | 21.60 | -0.30 (-0.70 to +0.10) | 160 |" in gch.gpu_table(tmp_path)
    assert "| 64 | 200 | 21.10 (17.10 to 25.10) | 21.30 | \u2014 | 320 |" in gch.gpu_table(tmp_path)
    # The stages in the order they ran, the clean image first.
    assert gch.gpu_stage_table(tmp_path).splitlines()[2:] == ["| (the clean image) | 1000 | 300 |",
                                                             "| apgd-ce | 700 | 699 |", "| nearest | 300 | 1 |"]
    rows = ch.comparison_rows(tmp_path)
    assert "converged (S = 64, N = 200; GPU)" in rows[0]["name"] and rows[0]["robust"]["value"] == pytest.approx(21.1)
    assert rows[1]["robust"]["value"] == pytest.approx(23.5) and "GPU-judged" in rows[1]["name"]
    assert "CPU" in rows[2]["name"]
    lines = ch.claim_lines(tmp_path)
    assert lines[1].startswith("Ours, best estimate: a robust expected accuracy of 21.10% (95% interval 17.10 to "
                               "25.10) on the first 1,000 images, every stage but Square at S = 64, N = 200")
    assert "Converged by the half-point rule; from S = 32, N = 100 the doubling moved it -0.30 points" in lines[1]
    assert lines[2].startswith("On a 2-core CPU, with Square: a robust expected accuracy of 21.00%")
    lot = ch.lottery(tmp_path)  # the GPU's lottery, at the chosen points
    assert lot["n"] == 1000 and lot["attack"] == pytest.approx([20, 7])
    assert lot["expected_attack"] == pytest.approx(21.1)
    assert gch.gpu(tmp_path / "none") is None and gch.gpu_table(tmp_path / "none") == "\u2014"
    lines = gch.gpu_lines(tmp_path)
    assert lines[0].startswith("Points chosen on R = 32 draws on the GPU, judged on R = 32 fresh")
    assert lines[1] == ("Last doubling: -0.30 points (paired 95% interval -0.70 to +0.10): within the half-point "
                        "rule.")
    assert lines[2] == ("Square on the CPU (100 queries of the mean over 4 draws) on the 580 images still above "
                        "zero: lower for 30; with it, judged again, 21.01% (95% interval 17.01 to 25.01).")
    assert lines[3].startswith("Per image the lowest of the 2 runs, judged again on fresh draws: 21.05%")
    assert gch.gpu_lines(tmp_path / "none") == []
    fig = plots.convergence_curve(gch.gpu_convergence(tmp_path))  # one line, N written at each point
    assert len(fig.axes[0].lines) >= 1 and [t.get_text() for t in fig.axes[0].texts] == ["N = 100", "N = 200"]
    assert "1,000 images, R = 32 (GPU)" in fig.axes[0].get_title() and gch.gpu_convergence(tmp_path / "none") is None


def test_a_further_doubling_gets_its_line(tmp_path):
    write_gpu(tmp_path)
    path = tmp_path / "cifar10" / "stochastic" / "expected-gpu.json"
    record = json.loads(path.read_text())
    for hi, tail in ((0.0015, "the interval holds zero."), (-0.001, "still falling.")):
        record["further"] = {"samples": 128, "n_iter": 400, "n": 400, "before": fields("robust", 0.2088),
                             "after": fields("robust", 0.2061),
                             "doubled": {"diff": -0.0027, "se": 0.002, "lo": -0.0069, "hi": hi}}
        path.write_text(json.dumps(record))
        line = next(x for x in gch.gpu_lines(tmp_path) if x.startswith("A further doubling"))
        assert line.startswith("A further doubling (S = 128, N = 400, its own seed) on the first 400 images: "
                               "20.88% -> 20.61%, -0.27 points (paired 95% interval -0.69 to ")
        assert line.endswith(f"within the half-point rule; {tail}")


def test_chapter_13_says_of_the_further_doubling_what_its_file_says():
    # The prose says the last doubling moved it "within chance": the committed interval must hold zero.
    text = "".join("".join(c["source"]) for c in json.loads(
        (REPO / "book" / "13_randomised_ensembles.ipynb").read_text())["cells"] if c["cell_type"] == "markdown")
    further = json.loads((REPO / "data" / "results" / "cifar10" / "stochastic" / "expected-gpu.json").read_text())
    d = further["further"]["doubled"]
    assert "on 400 images, did not" in text and further["further"]["n"] == 400
    assert d["lo"] <= 0 <= d["hi"] and abs(d["diff"]) < further["tolerance"]
