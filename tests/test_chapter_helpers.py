"""The chapters' helpers (empir_lib.book.chapters): each is checked on a small, hand-made case.

Results files are written to a temporary ``root`` so the expected tables are
known exactly; the landscape and rules helpers run on a few embedded MNIST
images with zoo members.
"""
import json
import time

import numpy as np
import pytest

from empir_lib.attack import attacks
from empir_lib.book.chapters import committed, landscape, members, rules, storage, table2, warning_signs
from empir_lib.core import settings, tables, timing
from empir_lib.core.errors import EmpirError
from empir_lib.nets import ensemble, zoo
from empir_lib.studies import results


def write(root, dataset, name, acc, clean=0.9, n=100, objective="mean_prob", **extra):
    path = root / dataset / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"adversarial_accuracy": acc, "clean_accuracy": clean, "n": n,
                                "objective": objective, "params": {"eps": 0.3, "eps_iter": 0.01, "nb_iter": 40},
                                **extra}))


def write_table2(root, dataset, values):
    """values: {stem: {attack: accuracy fraction}}"""
    for stem, cells in values.items():
        for attack, acc in cells.items():
            write(root, dataset, f"table2/{stem}-{attack}", acc)


# --- committed ----------------------------------------------------------------------------------


def test_committed_returns_present_and_names_the_command_for_missing(tmp_path, capsys):
    write(tmp_path, "mnist", "grid/a-fgsm", 0.5)
    found = committed.committed("mnist", ["grid/a-fgsm", "grid/b-fgsm"], "grid/", root=tmp_path)
    assert list(found) == ["grid/a-fgsm"] and found["grid/a-fgsm"]["adversarial_accuracy"] == 0.5
    out = capsys.readouterr().out
    assert "1 of 2" in out and "grid/b-fgsm.json" in out and "empir reproduce mnist --only grid/" in out
    assert committed.committed("mnist", ["grid/a-fgsm"], "grid/", root=tmp_path) and not capsys.readouterr().out


def test_missing_note_is_empty_when_nothing_is_missing():
    assert committed.missing_note("mnist", []) == ""
    line = committed.missing_note("cifar10", ["table2/x", "table2/y"])
    assert "2 cifar10 results file(s)" in line and "`table2/x`" in line and "empir reproduce cifar10" in line


def test_table2_missing_lists_the_twelve_cells(tmp_path):
    assert len(committed.table2_missing("mnist", tmp_path)) == 12
    write(tmp_path, "mnist", "table2/empir-paper-cw", 0.5)
    missing = committed.table2_missing("mnist", tmp_path)
    assert len(missing) == 11 and "table2/empir-paper-cw" not in missing


def test_worst_objective_uses_reproduces_tie_break():
    assert committed.worst_objective({"mean_prob": 0.0, "mean_logits": 0.0, "temperature": 1.0}) == "mean_logits"
    assert committed.worst_objective({"b": 2.0, "a": 3.0}) == "b"
    assert committed.worst_objective({}) is None


def test_worst_objective_is_the_cores_rule():
    tried = {"mean_prob": 0.2, "member:2": 0.1, "member:0": 0.1}
    assert results.worst_objective(tried) == committed.worst_objective(tried) == "member:0"
    with pytest.raises(EmpirError, match="no adaptive objective was tried"):
        results.worst_objective({})


def test_selection_table_bolds_the_worst_objective_and_notes_missing(tmp_path):
    write(tmp_path, "mnist", "adaptive-select/pgd-mean_prob", 0.10, n=1000)
    write(tmp_path, "mnist", "adaptive-select/pgd-member2", 0.05, n=1000)
    sel = committed.adaptive_selection("mnist", tmp_path)
    assert sel["worst"]["pgd"] == "member:2" and sel["worst"]["fgsm"] is None and sel["n"] == [1000]
    assert sel["accuracy"]["pgd"] == {"mean_prob": pytest.approx(10.0), "member:2": pytest.approx(5.0)}
    md = committed.selection_table("mnist", tmp_path)
    pgd_row = next(line for line in md.splitlines() if line.startswith("| PGD"))
    assert "**5.0**" in pgd_row and "| 10.0 |" in pgd_row
    assert f"member:2 ({settings.EMPIR_MEMBERS['mnist'][2]})" in md
    assert "on 1,000 images" in md and "selection files not produced yet" in md


def test_pgd_rows_table(tmp_path):
    write(tmp_path, "mnist", "eps8/empir-paper-pgd", 0.25, clean=0.99, n=500, objective="x",
          params={"eps": 8 / 255, "eps_iter": 0.002, "nb_iter": 100})
    md = committed.pgd_rows_table("mnist", "eps8", "8/255", tmp_path)
    row = next(line for line in md.splitlines() if line.startswith("| EMPIR, paper protocol"))
    assert "99.00" in row and "25.00" in row and "eps=8/255" in row and "nb_iter=100" in row
    assert "PGD at 8/255" in md and "`eps8/baseline-paper-pgd`" in md


def test_members_attack_table(tmp_path):
    write(tmp_path, "x", "members/m1-cw", 0.4, clean=0.8, n=50)
    md = committed.members_attack_table("x", ["m1", "m2"], tmp_path)
    m1 = next(line for line in md.splitlines() if line.startswith("| m1"))
    assert "80.00" in m1 and "40.00" in m1 and "| 50 |" in m1
    assert "7 x results file(s)" in md  # three attacks of m1 and four of m2


def test_job_hours_and_timing_table(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "timing.json").write_text(json.dumps({"steps": {"grid/a": 3600.0, "grid/b": 1800.0,
                                                                          "table2/c": 360.0}}))
    folders, source = committed.job_hours("mnist", tmp_path)
    assert folders == {"grid": (2, 5400.0), "table2": (1, 360.0)} and source == "timing.json"
    md = committed.timing_table(["mnist"], tmp_path)
    assert "| mnist | grid/ | 2 | 1.50 |" in md and "**1.60**" in md


def test_strength_sweeps_and_above_baseline(tmp_path):
    write(tmp_path, "mnist", "fig5/baseline-fgsm-eps0.1", 0.2)
    write(tmp_path, "mnist", "fig5/empir-fgsm-eps0.1", 0.6)
    write(tmp_path, "mnist", "fig5/baseline-fgsm-eps0.2", 0.5)
    write(tmp_path, "mnist", "fig5/empir-fgsm-eps0.2", 0.1)
    panels, missing = committed.strength_sweeps("mnist", tmp_path)
    fgsm = next(v for k, v in panels.items() if k.startswith("FGSM"))
    assert fgsm["series"]["EMPIR, paper protocol"][:3] == [pytest.approx(60.0), pytest.approx(10.0), None]
    assert len(missing) == 2 * (8 + 9) - 4
    assert committed.above_baseline(panels)[0] == "FGSM: EMPIR above the baseline at 1 of 2 measured strengths"


# --- table2 -------------------------------------------------------------------------------------


def full_table(root, dataset="mnist", adaptive=0.05):
    write_table2(root, dataset, {"baseline-paper": dict.fromkeys(results.ATTACK_COLUMNS, 0.10),
                                 "empir-paper": dict.fromkeys(results.ATTACK_COLUMNS, 0.50),
                                 "empir-adaptive": dict.fromkeys(results.ATTACK_COLUMNS, adaptive)})


def test_gain_and_cells():
    a = {c: 10.0 for c in table2.COLUMNS}
    b = {**a, "cw": None}
    g = table2.gain(a, b)
    assert g["cw"] is None and g["fgsm"] == 0.0
    assert table2.cells(g, True)["cw"] == tables.DASH and table2.cells(g, True)["pgd"] == "+0.00"


def test_comparison_and_protocols_tables(tmp_path):
    full_table(tmp_path)
    md = table2.comparison("mnist", tmp_path)
    diff = [line for line in md.splitlines() if line.startswith("| difference")]
    assert len(diff) == 2 and f"| {10 - 14.32:+.2f} |" in diff[0]  # ours 10% under FGSM, the paper's baseline 14.32%
    assert f"| {50 - 67.06:+.2f} |" in diff[1]  # ours 50% under FGSM, the paper's EMPIR 67.06%
    assert "not produced yet" not in md
    md = table2.protocols("mnist", tmp_path)
    drop = next(line for line in md.splitlines() if line.startswith("| drop"))
    assert drop.count("+45.00") == 5  # four attacks and the average


def test_gain_summary_and_surviving_share(tmp_path):
    full_table(tmp_path)
    line = table2.gain_summary("mnist", root=tmp_path)
    assert "40.00 points above the baseline's" in line and "5.00 points below under the adaptive" in line
    assert "+42.56" in line  # the paper's gain, 47.48 - 4.92
    assert line.endswith("EMPIR is above the baseline under every attack.")
    assert "-12%" in table2.surviving_share("mnist", tmp_path)  # (5 - 10) / (50 - 10)
    empty = tmp_path / "empty"
    assert "not complete yet" in table2.gain_summary("mnist", root=empty)
    assert "not all available" in table2.surviving_share("mnist", empty)


def test_bars_and_gains_across(tmp_path):
    full_table(tmp_path)
    bars = table2.bars("mnist", root=tmp_path)
    assert [b.get("paper", False) for b in bars] == [True, True, False, False, False]
    assert bars[2]["values"]["fgsm"] == pytest.approx(10.0)
    md = table2.gains_across([("mnist", "mnist")], tmp_path)
    assert "+40.00" in md and "-5.00" in md and "+42.56" in md


def test_bim_versus_fgsm(tmp_path):
    write_table2(tmp_path, "mnist", {"empir-paper": {"bim": 0.3, "fgsm": 0.2}})
    lines = table2.bim_versus_fgsm("mnist", tmp_path)
    assert lines[0].endswith("<- iterative weaker than one step") and "not available" in lines[1]


# --- warning signs ------------------------------------------------------------------------------


def test_warning_signs(tmp_path):
    assert warning_signs.iterative_weaker(2.0, 1.0) and not warning_signs.iterative_weaker(None, 1.0)
    assert warning_signs.warning_signs("mnist", tmp_path) == []  # the paper's MNIST row shows no sign
    write_table2(tmp_path, "cifar10", {"empir-paper": {"bim": 0.3, "fgsm": 0.2, "pgd": 0.2}})
    fp = next(i for i, m in enumerate(settings.EMPIR_MEMBERS["cifar10"]) if "-fp-" in m)
    write(tmp_path, "cifar10", f"adaptive-select/pgd-member{fp}", 0.1)
    signs = warning_signs.warning_signs("cifar10", tmp_path)
    assert any(s.startswith("ours, EMPIR, paper protocol: BIM 30.00 > FGSM 20.00") for s in signs)
    assert any(s.startswith("*paper*") for s in signs)  # the paper's CIFAR-10 BIM 24.59 > FGSM 20.45
    assert any("PGD crafted on the FP member alone leaves 10.00%" in s for s in signs)
    assert "no warning sign" in warning_signs.report(["mnist"], tmp_path)


# --- members, storage ---------------------------------------------------------------------------


def test_precision_and_train_command():
    assert members.precision(32, 32) == "FP" and members.precision(2, 4) == "a4w2"
    assert members.train_command("tiny-imagenet-a2w4-s1") == (
        "empir train --dataset tiny-imagenet --wbits 4 --abits 2 --seed 1 --zoo")
    assert "--wbits 32 --abits 32 --seed 3" in members.train_command("mnist-fp-s3")
    with pytest.raises(ValueError):
        members.train_command("mnist")
    # Ids are read by settings.parse_member_id: per-layer precisions come back as the CLI's lists.
    per_layer = settings.member_id("mnist", [2, 4, 4, 2], 4, 1)
    assert "--wbits 2,4,4,2 --abits 4 --seed 1" in members.train_command(per_layer)
    assert members.precision(settings.FULL_PRECISION, settings.FULL_PRECISION) == "FP"


def test_grid_summary():
    grid = {(w, a): f"m{w}{a}" for w in (1, 2) for a in (1, 2)}
    live = {m: {"adversarial_accuracy": v} for m, v in zip([*grid.values(), "fp"], [0.5, 0.1, 0.3, 0.3, 0.2])}
    manifest = {m: {"test_accuracy": 0.9} for m in grid.values()} | {"fp": {"test_accuracy": 0.95}}
    text = members.grid_summary(grid, "fp", live, manifest)
    assert "3 of 4 low-precision members keep more" in text and "4 of 4 low-precision members are less" in text
    assert "abits=1: mean live FGSM accuracy over wbits 1, 2 = 40.0%" in text


def test_zoo_table_and_accuracy_gaps():
    md = members.zoo_table(["mnist-fp-s1", "mnist-a9w9-s1"])
    entry = zoo.members()["mnist-fp-s1"]
    assert f"{100 * entry['test_accuracy']:.2f} (n = 10,000)" in md
    assert "`empir train --dataset mnist --wbits 9 --abits 9 --seed 1 --zoo`" in md
    md = members.accuracy_gaps(["mnist"])
    lp = settings.EMPIR_MEMBERS["mnist"][0]
    m = zoo.members()
    assert f"{100 * (m['mnist-fp-s1']['test_accuracy'] - m[lp]['test_accuracy']):.2f}" in md
    # One row per low-precision member (settings' empir_lp), each against the FP member (empir_fp).
    md = members.accuracy_gaps(["cifar10"])
    assert all(f"| {lp} |" in md for lp in settings.get("cifar10").empir_lp) and "| cifar10-fp-s1 |" not in md


def test_overhead_verdicts():
    from empir_lib.book.chapters import scale
    lines = scale.overhead_verdicts({"eq6_storage": 1.1, "layer_storage": 1.3, "eq6_time": 1.1, "layer_time": 1.2},
                                    "FP AlexNet")
    assert lines == ["storage overhead over one FP AlexNet: Eq. 6 10.0%, layer by layer 30.0% (above the paper's <25%)",
                     "time overhead over one FP AlexNet: Eq. 6 10.0%, layer by layer 20.0% (within the paper's <25%)"]


def test_storage_configurations_and_macs():
    md = storage.configurations_table()
    assert md.count("\n") >= 4 and "a4w2 + a4w2 + FP" in md
    from empir_lib.nets import models
    md = storage.macs_table(models.mnist_conv(2, 4), "m")
    assert "layer (m)" in md and "100.00%" not in md


def test_rules_example_top_confusion_and_better_rule():
    probs = [[[0.7, 0.3]], [[0.6, 0.4]], [[0.1, 0.9]]]
    md = rules.rule_example(probs, np.array([2, 0, 1]))
    assert "| A | 0 0 1 | 0 | 1 | (0.65, 0.35) | (0.47, 0.53) |" in md  # the rules disagree
    assert rules.top_confusion([[5, 1], [3, 7]]) == (12, 16, 1, 0, 3)
    assert rules.better_rule([{"size": 2, "rule": "vote", "live": 0.5}, {"size": 2, "rule": "average", "live": 0.6},
                              {"size": 3, "rule": "vote", "live": 0.5}, {"size": 3, "rule": "average", "live": 0.5}]
                             ) == {2: "average", 3: "neither (a tie)"}
    panels, notes = rules.count_panels({(0, 3): {"clean_accuracy": 0.9, "adversarial_accuracy": 0.5}}, "live")
    assert list(panels) == ["clean accuracy, live", "FGSM accuracy, live"]
    assert notes["FGSM accuracy, live"][(0, 3)] == "paper 56.9"


# --- timing.best_time ---------------------------------------------------------------------------


def test_best_time_is_the_minimum_after_a_warm_up():
    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.05 if len(calls) == 1 else 0.001)  # the warm-up call is slow and must not count

    t = timing.best_time(fn, repeats=3)
    assert len(calls) == 4 and t < 0.04


def test_chapters_6_and_9_do_not_load_art():
    """What the first cells of chapters 6 and 9 import never reaches the benchmarks or ART (parsed, not imported)."""
    from test_imports import import_graph
    graph, _ = import_graph()
    first_cells = {"", "nets.data", "nets.ensemble", "book.exercises", "hardware.overhead", "book.plots",
                   "nets.quantize", "core.timing", "nets.zoo", "book.setup", "book.chapters", "book.chapters.storage",
                   "book.chapters.committed", "book.chapters.members", "book.chapters.scale", "book.chapters.table2"}
    seen, todo = set(), list(first_cells)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    assert not {"studies.bench", "studies.attack_speed", "attack.art_bridge"} & seen
    assert graph["core.timing"] == set()


# --- landscape (real members, a few images) -----------------------------------------------------


@pytest.fixture(scope="module")
def small():
    from empir_lib.nets import data
    x, y = data.load_sample("mnist", 16)
    return ensemble.empir("mnist", "average"), x, y


def test_loss_along_path_matches_the_attack_loss(small):
    ens, x, y = small
    labels = attacks.attack_labels(ens, x, y, "adaptive")
    loss0, _ = attacks.loss_and_gradient(ens, "mean_prob", x, labels)
    direction = landscape.gradient_sign(ens, "mean_prob", x, labels)
    assert set(np.unique(direction)) <= {-1.0, 0.0, 1.0} and direction.shape == x.shape
    curve = landscape.along_path(ens, "mean_prob", x, labels, [0.0, 0.3], direction, y)
    assert curve["loss"][0] == pytest.approx(float(np.median(loss0)), rel=1e-5)
    assert curve["loss"][1] > curve["loss"][0]  # one step along its own gradient sign raises the loss
    assert curve["acc"][1] <= curve["acc"][0]
    assert np.all(landscape.point(x, 5.0, direction) <= 1.0)


def test_compare_on_path_rows(small):
    ens, x, y = small
    labels = ensemble.predict(ens, x).astype(np.int32)
    direction = landscape.gradient_sign(ens, "original_attack_prob_as_logits", x, labels)
    curves, rows = landscape.compare_on_path(
        ens, {"paper": "original_attack_prob_as_logits", "nll": "mean_prob"}, x, labels, [0.0, 0.1], direction)
    assert list(curves) == ["paper", "nll"] and len(rows) == 2
    assert rows[0]["ratio"] < 1  # the paper's objective is flatter than the ensemble's own cross-entropy
    assert 0 <= rows[0]["sign"] <= 1 and 0 < rows[0]["p"] <= 1
    with pytest.raises(ValueError):
        landscape.compare_on_path(ens, {"a": "mean_prob"}, x, labels, [0.0], direction)


def test_own_paths_gives_one_curve_per_objective(small):
    ens, x, y = small
    paths = landscape.own_paths(ens, {"p": ("paper", "original_attack_prob_as_logits"),
                                      "m": ("adaptive", "mean_prob")}, x, y, [0.0, 0.3])
    assert set(paths) == {"p", "m"} and all(len(c["acc"]) == 2 for c in paths.values())


# --- four attacks (chapter 2) -------------------------------------------------------------------


def test_describe_and_parameters_table():
    from empir_lib.book.chapters import four_attacks
    assert four_attacks.describe({"eps": 0.3, "nb_iter": 40, "other": 1}) == "ε = 0.3, iterations = 40, other = 1"
    md = four_attacks.parameters_table()
    assert "| mnist |" in md and "CW-L2" in md and "ε = 0.3" in md


def test_bound_checks_and_summary(small):
    from empir_lib.book.chapters import four_attacks
    ens, x, y = small
    far = {"fgsm": np.clip(x + 0.5, 0, 1), "cw": x}
    lines = four_attacks.bound_checks(x, far, "mnist")
    assert lines[0].endswith("eps = 0.3: False") and lines[1].endswith("no eps (L2 attack)")
    md = four_attacks.summary_table(ens, x, y, {"cw": x}, "mnist")
    cw = next(line for line in md.splitlines() if line.startswith("| CW"))
    assert "| 0.00 | 0.000 |" in cw and "3.69%" in cw  # no change; the paper's baseline under CW


def test_manifest_and_live(small):
    _, x, y = small
    md = members.manifest_and_live(["mnist-fp-s1"], x, y, "quick")
    row = md.splitlines()[-1]
    assert row.startswith("| mnist-fp-s1 | FP | 99.00% | 10000 |") and row.endswith(f"| {len(y)} |")


# --- the rest of each module, on small cases ----------------------------------------------------


def test_counts_and_provenance_table(tmp_path):
    assert committed.counts([10000, 1000, 1000]) == "1,000, 10,000" and committed.counts([]) == tables.DASH
    write(tmp_path, "mnist", "table2/empir-paper-pgd", 0.2, n=10000, labels="clean prediction",
          provenance={"git_commit": "abcdef123456", "hardware": {"cores": 2, "cpu": "x", "gpus": []}},
          timing={"written": "2026-11-20T10:00:00+00:00", "wall_time_s": 3600.0})
    md = committed.provenance_table(["mnist", "cifar10"], root=tmp_path)
    assert "| mnist/table2/empir-paper-pgd | 10,000 | mean_prob | clean prediction |" in md
    assert "| abcdef1 | 2026-11-20T10:00 | 3,600 |" in md
    assert "no cifar10 table2 results yet: run `empir reproduce cifar10`" in md
    # Without timing.json, the files' own wall times are summed.
    folders, source = committed.job_hours("mnist", tmp_path)
    assert folders == {"table2": (1, 3600.0)} and source.startswith("files present")


def test_committed_grid_and_points(tmp_path, capsys):
    a4w2 = zoo.find("mnist", 2, 4)
    write(tmp_path, "mnist", f"grid/{a4w2}-cw", 0.6, n=1000)
    write(tmp_path, "mnist", "table2/baseline-paper-cw", 0.05, n=10000, members=["mnist-fp-s1"])
    acc, ns = members.committed_grid("mnist", "cw", tmp_path)
    assert acc == {(2, 4): 0.6} and ns == [1000]
    points, ns = members.committed_points("mnist", "cw", tmp_path)
    assert [p["kind"] for p in points] == ["lp", "fp"] and points[0]["label"] == "a4w2" and ns == [1000, 10000]
    assert "empir reproduce mnist --only grid/" in capsys.readouterr().out


def test_rules_live_fgsm_tables_and_counts(small, tmp_path):
    _, x, y = small
    live = rules.LiveFGSM(x[:8], y[:8])
    fp, lp = "mnist-fp-s1", "mnist-a4w2-s1"
    assert live([fp]) is live([fp])  # run once, remembered
    table, rows = rules.rules_table(live, {1: [fp]}, root=tmp_path)
    assert [r["rule"] for r in rows] == list(ensemble.RULES) and "not yet run" in table
    sweep = rules.member_count_sweep(live, [lp], [fp], n_max=1)
    assert set(sweep) == {(0, 1), (1, 0), (1, 1)} and sweep[(1, 0)] is live([fp])
    write(tmp_path, "mnist", "fig4/fp1-lp0", 0.4)
    assert list(rules.committed_counts(sweep, root=tmp_path)) == [(1, 0)]


def test_members_attacks_and_transfer(small):
    ens, x, y = small
    x, y = x[:8], y[:8]
    models = {m: zoo.load(m) for m in ("mnist-fp-s1", "mnist-a4w2-s1")}
    live = members.fgsm_accuracies(models, x, y, "mnist")
    assert set(live) == set(models) and all(0 <= r["adversarial_accuracy"] <= 1 for r in live.values())
    table, rows = members.transfer_table(models, {(2, 4): "mnist-a4w2-s1"}, "mnist-fp-s1", live, x, y, "mnist")
    assert len(rows) == 1 and rows[0]["stronger"] in ("transfer", "white-box") and "| mnist-a4w2-s1 | a4w2 |" in table
    md = members.members_under_attack(ens, x, y, {"again": x})
    vote = next(line for line in md.splitlines() if line.startswith("| **EMPIR vote**"))
    assert vote.split("|")[2] == vote.split("|")[3]  # the same images twice give the same accuracy


def test_tradeoff_points_with_fgsm(small):
    _, x, y = small
    points = members.tradeoff_points("mnist", x[:4], y[:4], attack="fgsm")
    assert [p["kind"] for p in points] == ["lp"] * len(settings.GRID) + ["fp", "empir"]
    assert all(0 <= p["adv"] <= 1 and 0 < p["clean"] <= 1 for p in points)


def test_four_attacks_run_all(small):
    from empir_lib.book.chapters import four_attacks
    _, x, y = small
    adversarial, seconds = four_attacks.run_all(ensemble.baseline("mnist"), x[:2], y[:2], "mnist")
    assert list(adversarial) == list(attacks.ATTACKS) and all(s > 0 for s in seconds.values())
    assert all(line.split(";")[0].endswith("True") for line in four_attacks.bound_checks(x[:2], adversarial, "mnist"))


def test_scale_networks_and_costs():
    from empir_lib.book.chapters import scale
    from empir_lib.nets import models
    assert scale.net("mnist", 2, 4) is scale.net("mnist", 2, 4)
    fp, lp = scale.net("mnist"), scale.net("mnist", 2, 4)
    assert scale.conv1(fp) == "8×8, stride 2, 64 filters" and scale.macs(fp) == scale.macs(lp) > 0
    assert scale.fp_mac_share(fp) == 1.0 and 0 <= scale.fp_mac_share(lp) < 0.01  # only the small FC layer
    costs = scale.ensemble_costs({"m": ("mnist", [(2, 4), (32, 32)])})
    c = costs["m"]
    assert c["members"] == "a4w2 + FP" and c["eq6_storage"] == pytest.approx(1 + 2 / 32)
    assert c["eq6_storage"] <= c["layer_storage"] == pytest.approx(c["packed"], abs=1e-3)
    assert "| m | a4w2 + FP |" in scale.costs_table(costs)
    assert scale.cost_panels(costs)["storage"]["m"]["Eq. 6"] == c["eq6_storage"]
    assert scale.train_rate(models.mnist_conv(32, 32), batch=4, repeats=1, dataset="mnist") > 0


def test_scale_settings_table():
    from empir_lib.book.chapters import scale
    md = scale.settings_table()
    assert "| classes | 1000 | 200 |" in md and "| width multiplier | 1 | 0.25 |" in md


def test_storage_measured_and_reports():
    fp, lp = "mnist-fp-s1", "mnist-a4w2-s1"
    measured = storage.measured_storage([fp], [lp])
    assert set(measured) == {(1, 0), (0, 1), (1, 1)}
    assert measured[(1, 0)] == pytest.approx(1.0, abs=1e-3)  # an FP member packs to its float32 size
    assert measured[(0, 1)] == pytest.approx(2 / 32, abs=0.01)  # a 2-bit member to a sixteenth
    assert measured[(1, 1)] == pytest.approx(measured[(1, 0)] + measured[(0, 1)])
    assert storage.packed_size(lp) < storage.packed_size(fp)
    reports = storage.storage_reports(("mnist",))
    assert len(reports) == 1 + len(settings.GRID) and storage.largest_layerwise_gap(reports) < 10
    assert "| mnist-a4w2-s1 | 2 |" in storage.storage_table(reports)
    assert "| mnist | a4w2 + a4w2 + FP |" in storage.ensembles_table(reports | storage.storage_reports(("mnist",)))


def test_beside_paper_versus_and_live_check(small, tmp_path):
    full_table(tmp_path, "tiny-imagenet")
    md = table2.beside_paper("tiny-imagenet", "imagenet", tmp_path)
    assert "baseline (FP), *paper (ImageNet)*" in md and "**EMPIR, paper protocol**, ours (Tiny ImageNet)" in md
    assert md.count("+40.00") == 5  # our paper-protocol gain in the four attacks and the average
    assert table2.versus(9.15) == "9.15 points above" and table2.versus(-4.75) == "4.75 points below"
    _, x, y = small
    md, live = table2.live_check([("baseline (FP)", ensemble.baseline("mnist"), "paper")], x[:8], y[:8], "mnist",
                                 attacks=("fgsm",), root=tmp_path)
    assert list(live) == [("baseline (FP)", "fgsm")] and "| baseline (FP) | FGSM | `member:0` |" in md


def test_width_rates():
    from empir_lib.book.chapters import scale
    table, summary = scale.width_rates(widths=(0.25,), batch=2)
    assert table.splitlines()[-1].startswith("| 0.25 |") and summary.startswith("width 0.25 costs 1.0x")
