"""Cards in RobustBench's layout (empir_lib.studies.cards) and the summary table of chapter 7."""
import json

import numpy as np
import pytest

from empir_lib.attack import outcomes
from empir_lib.book.chapters import summary
from empir_lib.core import paper, settings
from empir_lib.core.errors import EmpirError
from empir_lib.studies import cards, suite_checks

# RobustBench's model_info keys that keep their meaning here ('autoattack_acc' becomes 'robust_acc').
ROBUSTBENCH = {"name", "link", "authors", "venue", "additional_data", "number_forward_passes", "dataset",
               "architecture", "eps", "clean_acc", "reported", "external", "unreliable", "footnote"}
OURS = {"robust_acc", "robust_ci95", "n", "members", "broken_by", "converged", "flags", "flags_answered",
        "sources", "threat_model", "row", "threat"}


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "tiny-imagenet"])
def test_the_stored_cards_are_those_the_committed_results_give(dataset):
    # A results file that changes without 'empir cards' (or reproduce, which rewrites them) fails here.
    stored, made = cards.read(dataset), cards.build(dataset)
    assert stored == json.loads(json.dumps(made))
    for card in stored.values():
        assert set(card) == ROBUSTBENCH | OURS
        lo, hi = (float(v) for v in card["robust_ci95"])
        assert lo <= float(card["robust_acc"]) <= hi and card["number_forward_passes"] == len(card["members"])


def _suite_file(root, name, broken_by, **extra):
    path = root / "cifar10" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    attacks = [{"name": "apgd-ce"}, {"name": "apgd-t"}]
    record = {"n": len(broken_by), "clean_accuracy": float(np.mean(broken_by != outcomes.CLEAN)),
              "robust_accuracy": float(np.mean(broken_by == outcomes.ROBUST)), "attacks": attacks,
              "broken_by": outcomes.counts(broken_by, [a["name"] for a in attacks]),
              "members": ["cifar10-a2w4-s2", "cifar10-a2w2-s2", "cifar10-fp-s1"], **extra}
    path.write_text(json.dumps(record))


def test_a_card_quotes_the_rows_strongest_evaluation(tmp_path):
    broken = np.array([outcomes.CLEAN] * 20 + [1] * 60 + [outcomes.ROBUST] * 20)
    _suite_file(tmp_path, "suite/empir-linf-8-255", broken, diagnostics={"flags": []})
    card = cards.suite_card("cifar10", "empir", "linf-8-255", "suite/empir-linf-8-255", tmp_path)
    # The suite alone: 20 of 100, convergence not measured, so RobustBench's 'unreliable' is set.
    assert card["robust_acc"] == "20.00" and card["converged"] is None and card["unreliable"]
    assert card["external"][0]["robust_acc"] == paper.TRAMER_CIFAR10_EPS8 and card["eps"] == "8/255"
    # The new stages broke 5 more, and the doubled budget moved nothing: the card quotes 15, converged.
    stages = broken.copy()
    stages[-20:-15] = 2
    _suite_file(tmp_path, "suite/empir-linf-8-255-stages", stages, robust_after=15, converged=False)
    card = cards.suite_card("cifar10", "empir", "linf-8-255", "suite/empir-linf-8-255", tmp_path)
    # New stages are not a re-check: only a doubled budget and a new seed say the number stopped moving.
    assert card["robust_acc"] == "15.00" and card["converged"] is None and card["unreliable"]
    _suite_file(tmp_path, "suite/empir-linf-8-255-recheck", stages, robust_after=15, converged=True)
    card = cards.suite_card("cifar10", "empir", "linf-8-255", "suite/empir-linf-8-255", tmp_path)
    assert card["converged"] is True and not card["unreliable"]
    assert card["broken_by"] == {"clean": 20, "apgd-ce": 60, "apgd-t": 5, "robust": 15}
    assert [s["file"] for s in card["sources"]] == ["cifar10/suite/empir-linf-8-255.json",
                                                    "cifar10/suite/empir-linf-8-255-stages.json",
                                                    "cifar10/suite/empir-linf-8-255-recheck.json"]
    assert "with a doubled budget and a new seed: moved less than 0.1 point" in card["footnote"]
    assert "carried in" not in card["footnote"]
    carried = {"images": 1, "from": {"name": "suite/empir-linf-8-255-recheck", "n": 1000},
               "provenance": {"git_commit": "0d6896e" * 6}}
    _suite_file(tmp_path, "suite/empir-linf-8-255-recheck", stages, robust_after=15, converged=True, carried=carried)
    card = cards.suite_card("cifar10", "empir", "linf-8-255", "suite/empir-linf-8-255", tmp_path)
    assert "1 break(s) carried in from the 1,000-image evaluation it replaced (suite/empir-linf-8-255-recheck at " \
        "commit 0d6896e)" in card["footnote"]  # chains.carry: a re-run on more images missed it


def test_a_row_that_moved_is_quoted_from_its_last_recheck_round(tmp_path):
    broken = np.array([outcomes.CLEAN] * 20 + [1] * 60 + [outcomes.ROBUST] * 20)
    _suite_file(tmp_path, "suite/empir-l2", broken, diagnostics={"flags": []})
    moved = broken.copy()
    moved[-20:-17] = 2
    _suite_file(tmp_path, "suite/empir-l2-recheck", moved, robust_after=17, converged=False)
    card = cards.suite_card("cifar10", "empir", "l2", "suite/empir-l2", tmp_path)
    assert card["robust_acc"] == "17.00" and card["converged"] is False and card["unreliable"]
    assert "doubled budget: it still moved" in card["footnote"]
    _suite_file(tmp_path, "suite/empir-l2-recheck2", moved, robust_after=17, converged=True)
    card = cards.suite_card("cifar10", "empir", "l2", "suite/empir-l2", tmp_path)
    assert card["converged"] is True and not card["unreliable"] and len(card["sources"]) == 3
    assert "in 2 rounds, the last with 4 times the budget and a new seed: moved less" in card["footnote"]
    assert "no round follows" not in card["footnote"]
    for r in range(2, suite_checks.ROUNDS + 1):  # still moving after the last round the book runs
        _suite_file(tmp_path, f"suite/empir-l2-recheck{r}", moved, robust_after=17, converged=False)
    card = cards.suite_card("cifar10", "empir", "l2", "suite/empir-l2", tmp_path)
    assert card["converged"] is False and card["footnote"].endswith(
        f"the last with {2 ** suite_checks.ROUNDS} times the budget: it still moved, so this is an upper bound, "
        f"and no round follows ({suite_checks.ROUNDS} at most).")


def test_a_constant_classifier_and_an_empty_row_are_said_so(tmp_path):
    broken = np.array([outcomes.CLEAN] * 90 + [outcomes.ROBUST] * 10)
    _suite_file(tmp_path, "defences/pgd-at-suite-linf-table1", broken, diagnostics={"flags": []})
    confusion = np.zeros((10, 10), int)
    confusion[:, 3] = 100  # every image answered "cat"
    (tmp_path / "cifar10" / "defences" / "pgd-at-paper-pgd.json").write_text(
        json.dumps({"confusion": confusion.tolist(), "n": 1000}))
    card = cards.build("cifar10", tmp_path)["pgd-at-linf-table1"]
    assert card["flags"][0].startswith("constant classifier") and card["unreliable"]
    # Nothing survives: no attack can lower 0%, so there is nothing to re-check.
    _suite_file(tmp_path, "suite/empir-linf-table1", np.array([1] * 100), diagnostics={"flags": []})
    card = cards.build("cifar10", tmp_path)["empir-linf-table1"]
    assert card["robust_acc"] == "0.00" and card["converged"] is True
    assert card["reported"] == f"{paper.TABLE2['cifar10']['empir']['pgd']:.2f}"
    with pytest.raises(EmpirError, match="no results file"):
        cards.suite_card("cifar10", "empir", "l2", "suite/empir-l2", tmp_path)


def test_another_defences_recheck_is_read_into_its_card_not_taken_for_a_threat(tmp_path):
    broken = np.array([outcomes.CLEAN] * 20 + [1] * 70 + [outcomes.ROBUST] * 10)
    _suite_file(tmp_path, "defences/pgd-at_original-suite-linf-8-255", broken, diagnostics={"flags": []})
    again = broken.copy()
    again[-1] = 1
    _suite_file(tmp_path, "defences/pgd-at_original-suite-linf-8-255-recheck", again, robust_after=9,
                converged=True)
    made = cards.build("cifar10", tmp_path)
    assert list(made) == ["pgd-at_original-linf-8-255"]
    card = made["pgd-at_original-linf-8-255"]
    assert card["robust_acc"] == "9.00" and card["converged"] is True


def test_write_replaces_stale_cards(tmp_path):
    _suite_file(tmp_path, "suite/empir-linf-table1", np.array([1] * 10), diagnostics={"flags": []})
    stale = cards.cards_dir("cifar10", tmp_path) / "gone-l2.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    assert [p.name for p in cards.write("cifar10", tmp_path)] == ["empir-linf-table1.json"]
    assert not stale.exists() and list(cards.read("cifar10", tmp_path)) == ["empir-linf-table1"]
    assert cards.rows("imagenet") == []  # the paper's ImageNet: not evaluated by the suite


def test_the_summary_puts_every_published_figure_beside_ours():
    rows = summary.summary_rows()
    by = {(r["dataset"], r["threat"], r["by"].split(" ")[0]): r for r in rows}
    assert by[("CIFAR-10", "L-inf 0.1", "the")]["robust"] == f"{paper.TABLE2['cifar10']['empir']['pgd']:.2f}"
    assert by[("CIFAR-10", "L-inf 8/255", "Tramer")]["robust"] == f"≈{paper.TRAMER_CIFAR10_EPS8:g}"
    assert by[("CIFAR-10", "L-inf 5/255", "Farkya")]["robust"] == f">{paper.FARKYA_PGD_5_255:g}"
    ours = by[("CIFAR-10", "L-inf 8/255", "this")]
    card = cards.read("cifar10")["empir-linf-8-255"]
    assert ours["robust"].startswith(card["robust_acc"]) and ours["n"] == f"{card['n']:,}"
    assert {r["dataset"] for r in rows} == {"MNIST", "CIFAR-10", "Tiny ImageNet"}
    assert all(settings.get(d) for d in ("mnist", "cifar10", "tiny-imagenet"))


def test_a_transfer_flag_is_stated_once_with_its_count_from_the_last_evaluation(tmp_path):
    broken = np.array([outcomes.CLEAN] * 20 + [1] * 60 + [outcomes.ROBUST] * 20)
    _suite_file(tmp_path, "suite/empir-l2", broken, diagnostics={"flags": []})
    # Every later file repeats the cumulative check; the last one has the latest count.
    for name, k in (("stages", 3), ("recheck", 4)):
        _suite_file(tmp_path, f"suite/empir-l2-{name}", broken, robust_after=20, converged=True,
                    transfer_check={"flag": True, "images": k, "share": k / 100})
    card = cards.suite_card("cifar10", "empir", "l2", "suite/empir-l2", tmp_path)
    assert card["flags"] == ["transfer-only breaks: 4 images (4.0%) broken only by a single-member or "
                             "transfer stage"] and card["unreliable"]


def test_a_black_box_flag_is_answered_only_once_the_new_stages_settled_the_row(tmp_path):
    broken = np.array([outcomes.CLEAN] * 20 + [1] * 70 + [outcomes.ROBUST] * 10)
    flags = ["black_box_beats_white_box: Square broke 30 images every gradient attack missed",
             "zero_gradients: 3 of 9 attacked images had a zero gradient at the start"]
    _suite_file(tmp_path, "suite/empir-linf-8-255", broken, diagnostics={"flags": flags})
    _suite_file(tmp_path, "suite/empir-linf-8-255-recheck", broken, robust_after=10, converged=True)

    def card():
        return cards.suite_card("cifar10", "empir", "linf-8-255", "suite/empir-linf-8-255", tmp_path)

    # A converged re-check without the targeted and long Square stages answers nothing ...
    assert card()["flags"] == flags and card()["flags_answered"] == [] and card()["unreliable"]
    short = [{"name": "apgd-ce", "kind": "apgd"}, {"name": "square", "kind": "square", "queries": 1000},
             {"name": "apgd-t", "kind": "apgd-t"}]
    # ... nor new stages cut to APGD-T: no Square ran at AutoAttack's budget.
    _suite_file(tmp_path, "suite/empir-linf-8-255-stages", broken, robust_after=10, attacks=short,
                only=["apgd-t"])
    assert card()["flags"] == flags and card()["flags_answered"] == []
    _suite_file(tmp_path, "suite/empir-linf-8-255-stages", broken, robust_after=10,
                attacks=[*short, {"name": "square-5000", "kind": "square", "queries": 5000}])
    # With them, the black-box flag is answered; the blind-gradient flag is not, so it stays unreliable.
    assert card()["flags"] == flags[1:] and card()["flags_answered"] == flags[:1] and card()["unreliable"]
    _suite_file(tmp_path, "suite/empir-linf-8-255-recheck", broken, robust_after=10, converged=False)
    assert card()["flags"] == flags and card()["flags_answered"] == []
    _suite_file(tmp_path, "suite/empir-linf-8-255-recheck", broken, robust_after=10, converged=True)
    _suite_file(tmp_path, "suite/empir-linf-8-255", broken, diagnostics={"flags": flags[:1]})
    assert card()["flags"] == [] and not card()["unreliable"]


def test_late_stages_after_a_converged_round_answer_the_flag_only_if_they_do_not_move_it(tmp_path):
    broken = np.array([outcomes.CLEAN] * 20 + [1] * 70 + [outcomes.ROBUST] * 10)
    flag = ["black_box_beats_white_box: Square broke 30 images every gradient attack missed"]
    short = [{"name": "apgd-ce", "kind": "apgd"}, {"name": "square", "kind": "square", "queries": 1000},
             {"name": "apgd-t", "kind": "apgd-t"}]
    _suite_file(tmp_path, "suite/empir-linf-8-255", broken, diagnostics={"flags": flag})
    _suite_file(tmp_path, "suite/empir-linf-8-255-stages", broken, robust_after=10, attacks=short,
                only=["apgd-t"])
    _suite_file(tmp_path, "suite/empir-linf-8-255-recheck", broken, robust_after=10, converged=True)

    def card():
        return cards.suite_card("cifar10", "empir", "linf-8-255", "suite/empir-linf-8-255", tmp_path)

    assert card()["flags"] == flag and card()["converged"] is True
    late = [*short, {"name": "square-5000", "kind": "square", "queries": 5000}]
    # The 5,000-query Square ran late and moved nothing: the flag is answered, the row stays converged.
    _suite_file(tmp_path, "suite/empir-linf-8-255-late-stages", broken, robust_after=10, converged=True,
                attacks=late)
    assert card()["flags"] == [] and card()["flags_answered"] == flag and card()["converged"] is True
    # It broke images beyond the tolerance: the number moved again, so it is an upper bound once more.
    moved = broken.copy()
    moved[-3:] = 4
    _suite_file(tmp_path, "suite/empir-linf-8-255-late-stages", moved, robust_after=7, converged=False,
                attacks=late)
    c = card()
    assert c["converged"] is False and c["unreliable"] and c["flags"] == flag and c["robust_acc"] == "7.00"


def test_the_settling_table_counts_each_step_on_the_strongest_evaluations_images(tmp_path):
    def write(name, broken_by, **extra):
        path = tmp_path / "cifar10" / f"{name}.json"
        _suite_file(tmp_path, name, broken_by, **extra)
        record = json.loads(path.read_text())
        record["per_image"] = outcomes.save(path.with_suffix(".npz"), broken_by, np.zeros(len(broken_by)))
        path.write_text(json.dumps(record))

    broken = np.array([outcomes.CLEAN] * 20 + [1] * 60 + [outcomes.ROBUST] * 20)
    write("suite/empir-l2", broken, diagnostics={"flags": []})
    moved = broken.copy()
    moved[-20:-17] = 2
    write("suite/empir-l2-recheck", moved, robust_after=17, converged=False)
    write("suite/empir-l2-recheck2", moved, robust_after=17, converged=True)
    write("suite/baseline-l2", np.array([outcomes.CLEAN] * 20 + [1] * 80), diagnostics={"flags": []})
    cards.write("cifar10", tmp_path)
    rows, zero = summary.settling_rows(tmp_path)
    assert zero == 1 and len(rows) == 1  # the FP row left nothing robust: nothing to re-check
    assert rows[0] == {"dataset": "CIFAR-10", "defence": "EMPIR", "threat": "L2 0.5", "n": "100", "suite": "20",
                       "stages": "\u2014", "r1": "17", "r2": "17", "r3": "\u2014", "r4": "\u2014",
                       "r5": "\u2014", "late": "\u2014", "converged": "yes"}
    assert "1 more row: the suite alone left no image robust" in summary.settling_table(tmp_path)
    # The figure's data: shares of the suite's 20 survivors, and none for a row with fewer than `least`.
    assert summary.settling_curves(tmp_path) == {"CIFAR-10, EMPIR, L2 0.5": {
        "steps": ["suite", "r1", "r2"], "share": [100.0, 85.0, 85.0], "robust": [20, 17, 17], "converged": True}}
    assert summary.settling_curves(tmp_path, least=21) == {}
    # New stages cut to some of them say which, beside their count.
    write("suite/empir-l2-stages", broken, robust_after=20, only=["apgd-t"])
    assert summary.settling_rows(tmp_path)[0][0]["stages"] == "20 (apgd-t only)"
    # A round that carried in breaks of an earlier run on fewer images (chains.carry) says how many.
    write("suite/empir-l2-recheck2", moved, robust_after=17, converged=True, carried={"images": 2})
    assert summary.settling_rows(tmp_path)[0][0]["r2"] == "17 (2 carried in)"


def test_the_spread_line_says_whether_the_first_blocks_interval_covers_the_whole(tmp_path):
    def write(name, broken_by):
        path = tmp_path / "cifar10" / f"{name}.json"
        _suite_file(tmp_path, name, broken_by)
        record = json.loads(path.read_text())
        record["per_image"] = outcomes.save(path.with_suffix(".npz"), broken_by, np.zeros(len(broken_by)))
        path.write_text(json.dumps(record))

    assert summary.spread_line("cifar10", "empir", "l2", root=tmp_path).endswith(": \u2014")
    r, b = outcomes.ROBUST, 1
    write("suite/empir-l2", np.array([r] * 2 + [b] * 98 + [r] * 30 + [b] * 70))  # the robust ones cluster late
    line = summary.spread_line("cifar10", "empir", "l2", block=100, root=tmp_path)
    assert line.startswith("CIFAR-10, EMPIR, L2 0.5 (suite/empir-l2): robust images per 100 in test-set order 2, 30.")
    assert "The first 100 give 2.00% (0.55-7.00), the 200 together 16.00%: the first block's interval does not " \
           "cover" in line
    write("suite/empir-l2", np.array(([r] * 15 + [b] * 85) * 2))
    assert "interval covers the whole" in summary.spread_line("cifar10", "empir", "l2", block=100, root=tmp_path)
    assert "fewer than two blocks of 1,000" in summary.spread_line("cifar10", "empir", "l2", root=tmp_path)


def _expected_file(root, name, record):
    path = root / "cifar10" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    base = {"threat": {"name": "linf-5-255", "norm": "linf", "eps": 5 / 255}, "members": ["a", "b", "c"],
            "n": 1000, "draws": 128, "clean": 0.51, "robust": 0.2123, "robust_ci95": [0.1915, 0.2332]}
    path.write_text(json.dumps({**base, **record}))


def test_the_randomised_card_quotes_the_converged_gpu_run_when_it_is_there(tmp_path):
    _expected_file(tmp_path, "stochastic/expected-suite-joint", {
        "samples": 16, "n_iter": 25, "n": 60, "robust": 0.2083, "lowest_by_stage": {"apgd-ce": 26, "square": 0}})
    card = cards.build("cifar10", tmp_path)["stochastic-linf-5-255"]
    assert card["n"] == 60 and card["unreliable"] and "EOT with 16 samples, 25 iterations;" in card["footnote"]
    assert card["broken_by"] == {"apgd-ce": 26} and "Not yet shown to have stopped moving" in card["footnote"]
    units = [{"kind": "suite", "samples": s, "n_iter": n, "lowest_by_stage": {"apgd-ce": s}} for s, n in
             ((32, 100), (64, 200))] + [{"kind": "lottery", "samples": 64, "n_iter": 200}]
    units[0]["doubled"] = {"diff": -0.004, "lo": -0.0066, "hi": -0.0014}
    _expected_file(tmp_path, "stochastic/expected-gpu", {
        "kind": "expected-gpu", "units": units,
        "chosen": {"samples": 64, "n_iter": 200, "converged": True, "from": [32, 100]}})
    card = cards.build("cifar10", tmp_path)["stochastic-linf-5-255"]
    assert card["n"] == 1000 and card["robust_acc"] == "21.23" and not card["unreliable"]
    assert card["broken_by"] == {"apgd-ce": 64} and card["sources"][0]["file"] == "cifar10/stochastic/expected-gpu.json"
    assert "EOT with 64 samples, 200 iterations; every stage but Square, run on a GPU" in card["footnote"]
    assert "still falling: an upper bound" in card["footnote"]  # the last doubling's interval lies below 0
    units[0]["doubled"]["hi"] = 0.001
    _expected_file(tmp_path, "stochastic/expected-gpu", {
        "kind": "expected-gpu", "units": units,
        "chosen": {"samples": 64, "n_iter": 200, "converged": True, "from": [32, 100]}})
    assert "upper bound" not in cards.expected_card("cifar10", root=tmp_path)["footnote"]
    # A further doubling on the first images decides "still falling" when it is there: falling, then not.
    units[0]["doubled"]["hi"] = -0.0014
    for hi, falling in ((-0.001, True), (0.0015, False)):
        _expected_file(tmp_path, "stochastic/expected-gpu", {
            "kind": "expected-gpu", "units": units,
            "chosen": {"samples": 64, "n_iter": 200, "converged": True, "from": [32, 100]},
            "further": {"samples": 128, "n_iter": 400, "n": 400,
                        "doubled": {"diff": -0.0027, "lo": -0.0069, "hi": hi}}})
        note = cards.expected_card("cifar10", root=tmp_path)["footnote"]
        assert "A further doubling (S = 128, N = 400, its own seed) on the first 400 images moved it by " \
               "-0.27 points" in note
        assert ("still falling: an upper bound" in note) is falling
