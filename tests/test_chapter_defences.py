"""Chapter 10's helpers (empir_lib.book.chapters.defence_*) and exercise checks (empir_lib.book.exercises.ch10).

Results files and zoo manifests are written to temporary folders, so every
expected cell is known exactly: a missing file is a dash and a note naming its
command, the paper's numbers sit beside ours, and the verdict on EMPIR against
PGD adversarial training follows the numbers, whichever way they point.
"""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from matplotlib.figure import Figure

from empir_lib.attack import masking
from empir_lib.book import exercises
from empir_lib.book.chapters import (
    defence_costs,
    defence_masking,
    defence_rows,
    defence_table,
    defence_verdict,
)
from empir_lib.core import defences, paper, settings, tables
from empir_lib.core.errors import EmpirError
from empir_lib.core.files import sha256
from empir_lib.studies import cards, reproduce

ATTACKS = ("cw", "fgsm", "bim", "pgd")


def write(root, dataset, name, record):
    path = root / dataset / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def write_paper(root, dataset, row, accs, clean=0.9, n=1000):
    """The four paper-protocol files of a row; ``accs`` are fractions in CW, FGSM, BIM, PGD order."""
    for attack, acc in zip(ATTACKS, accs):
        write(root, dataset, f"{defence_rows.paper_protocol_stem(row)}-{attack}",
              {"adversarial_accuracy": acc, "clean_accuracy": clean, "n": n})


def write_suite(root, dataset, row, robust, n=1000, ci=None, flags=()):
    write(root, dataset, defence_rows.suite_name(row),
          {"robust_accuracy": robust, "clean_accuracy": 0.9, "n": n,
           "robust_ci95": list(ci or (max(0.0, robust - 0.01), min(1.0, robust + 0.01))),
           "diagnostics": {"values": {"zero_gradient_share": 0.25}, "flags": list(flags)}})


def body(md):
    """The table's lines, without the notes under it."""
    return [line for line in md.splitlines() if line.startswith("|")]


def line(md, start):
    return next(row for row in body(md) if row.startswith(start))


# --- rows ---------------------------------------------------------------------------------------


def test_rows_follow_the_papers_order_with_our_extra_rows_last():
    rows = defence_rows.all_rows("mnist")
    assert rows[:6] == ["baseline", "empir", "distillation", "igr", "fgsm-at", "empir-fgsm-at"]
    assert all("_" in r for r in rows[6:]) and set(rows[2:]) == set(settings.get("mnist").defence_row_ids())
    assert defence_rows.defence_rows("cifar10") == ["fgsm-at", "empir-fgsm-at", "pgd-at", "fgsm-at_eps0.1",
                                         "empir-fgsm-at_eps0.1", "pgd-at_eps0.1", "pgd-at_eps8",
                                         "pgd-at_original"]
    assert set(defence_rows.defence_rows("cifar10")) == set(settings.get("cifar10").defence_row_ids())
    assert defence_rows.row_key("empir-fgsm-at_eps0.1") == "empir-fgsm-at"


def test_labels_name_each_rows_setting():
    assert defence_rows.label("mnist", "distillation") == "defensive distillation (T = 100)"
    assert defence_rows.label("mnist", "igr") == "input gradient regularisation (\u03bb = 100)"
    assert defence_rows.label("cifar10", "pgd-at_eps0.1") == "PGD adversarial training (\u03b5 = 0.1, 7 steps)"
    assert defence_rows.label("cifar10", "empir") == "EMPIR"
    assert defence_rows.short_label("cifar10", "fgsm-at_eps0.1") == "FGSM-AT\n\u03b5 = 0.1"
    assert defence_rows.short_label("cifar10", "pgd-at_eps0.1") == "PGD-AT\n\u03b5 = 0.1"
    assert defence_rows.short_label("cifar10", "pgd-at") == "PGD-AT"
    # Madry et al.'s budget is written as the fraction of 255 it is.
    assert defence_rows.label("cifar10", "pgd-at_eps8") == "PGD adversarial training (\u03b5 = 8/255, 7 steps)"
    assert defence_rows.short_label("cifar10", "pgd-at_eps8") == "PGD-AT\n\u03b5 = 8/255"


def test_paper_rows_and_the_rows_the_paper_lacks():
    assert defence_rows.paper_row("mnist", "igr") == paper.TABLE2_DEFENCES["mnist"]["igr"]
    assert defence_rows.paper_row("cifar10", "baseline") == paper.TABLE2["cifar10"]["baseline"]
    assert defence_rows.paper_row("cifar10", "fgsm-at_eps0.1") is None
    with pytest.raises(EmpirError, match="dataset"):
        defence_rows.paper_row("tiny-imagenet", "empir")
    with pytest.raises(EmpirError, match="no Table 2 row 'distillation'"):
        defence_rows.row_members("cifar10", "distillation")
    assert defence_rows.row_members("cifar10", "empir-fgsm-at")[-1] == "cifar10-fp-s1-fgsmat-e0.3"


def test_file_names_match_what_reproduce_writes():
    planned = {j["name"] for j in reproduce.defence_jobs("cifar10", 10)}
    for row in defence_rows.defence_rows("cifar10"):
        assert defence_rows.suite_name(row) in planned
        assert all(f"{defence_rows.paper_protocol_stem(row)}-{a}" in planned for a in ATTACKS)
    # The PGD-AT rows also meet the suite at 8/255, beside EMPIR's suite/empir-linf-8-255.
    pgd = [r for r in defence_rows.defence_rows("cifar10") if defence_rows.row_key(r) == "pgd-at"]
    assert {defence_rows.suite_name(r, "linf-8-255") for r in pgd} <= planned
    others = [r for r in defence_rows.defence_rows("cifar10") if r not in pgd]
    assert not any(defence_rows.suite_name(r, "linf-8-255") in planned for r in others)


# --- (a) the full table -------------------------------------------------------------------------


def test_missing_files_are_dashes_with_notes_naming_the_commands(tmp_path):
    md = defence_table.table("mnist", tmp_path)
    ours = line(md, "| **defensive distillation (T = 100)**, ours")
    assert ours.count(tables.DASH) == 9
    # The paper's numbers are there all the same, beside ours.
    assert "| *paper* | 98.12 | 2.34 | 40.22 | 7.61 | 3.28 | 13.36 |" in md
    assert "`empir reproduce mnist --only defences/`" in md and "`empir reproduce mnist`" in md
    assert "defences/distillation-paper-cw" in md


def test_table_puts_ours_beside_the_papers_and_their_difference(tmp_path):
    write_paper(tmp_path, "mnist", "distillation", (0.10, 0.50, 0.20, 0.04), clean=0.98)
    write_suite(tmp_path, "mnist", "distillation", 0.0128)
    md = defence_table.table("mnist", tmp_path)
    rows = body(md)
    i = rows.index(line(md, "| **defensive distillation (T = 100)**, ours"))
    assert rows[i] == ("| **defensive distillation (T = 100)**, ours | 98.00 | 10.00 | 50.00 | 20.00 | 4.00 | "
                       "21.00 | 1,000 | 1.28 | 1,000 |")
    assert rows[i + 1].startswith("| *paper* | 98.12 |") and "*3.28* (lowest L-inf column)" in rows[i + 1]
    # ours - paper, column by column; the suite against the paper's lowest L-inf column (PGD, 3.28).
    assert rows[i + 2] == ("| difference (ours \u2212 paper) | -0.12 | +7.66 | +9.78 | +12.39 | +0.72 | +7.64 |  | "
                           "-2.00 |  |")
    assert "defences/distillation-paper-cw" not in md


def test_rows_the_paper_lacks_have_no_paper_line(tmp_path):
    md = defence_table.table("cifar10", tmp_path)
    rows = body(md)
    i = rows.index(line(md, "| **PGD adversarial training (\u03b5 = 0.1, 7 steps)**, ours"))
    k = rows.index(line(md, "| **PGD adversarial training (\u03b5 = 8/255, 7 steps)**, ours"))
    o = rows.index(line(md, "| **PGD adversarial training (\u03b5 = 0.3, 40 steps, step 0.01, clean weight 0.5, "
                                "predicted labels)**, ours"))
    assert (i, k, o) == (len(rows) - 3, len(rows) - 2, len(rows) - 1)
    j = rows.index(line(md, "| **PGD adversarial training (\u03b5 = 0.3, 7 steps)**, ours"))
    assert rows[j + 1].startswith("| *paper* | 73.55 | 12.62 |")


def test_one_missing_attack_leaves_the_average_missing(tmp_path):
    write_paper(tmp_path, "mnist", "igr", (0.1, 0.2, 0.3, 0.4))
    (tmp_path / "mnist" / "defences" / "igr-paper-bim.json").unlink()
    o = defence_rows.ours("mnist", "igr", tmp_path)
    assert o["bim"] is None and o["average"] is None and o["fgsm"] == pytest.approx(20.0)
    assert o["missing"] == ["defences/igr-paper-bim"] and o["n"] == [1000]


def test_adaptive_reads_robust_accuracy_and_flags(tmp_path):
    assert defence_rows.adaptive("mnist", "igr", tmp_path) is None
    write_suite(tmp_path, "mnist", "igr", 0.05, ci=(0.04, 0.06), flags=["zero_gradients: 3 of 9"])
    a = defence_rows.adaptive("mnist", "igr", tmp_path)
    assert a["robust"] == pytest.approx(5.0) and a["ci95"] == pytest.approx((4.0, 6.0))
    assert a["flags"] == ["zero_gradients: 3 of 9"] and a["zero_gradient_share"] == 0.25


def test_missing_lists_files_and_zoo_members(tmp_path):
    m = defence_rows.missing("mnist", tmp_path)
    assert len(m["table2"]) == 2 * 5 and len(m["defences"]) == len(defence_rows.defence_rows("mnist")) * 5
    assert "suite/empir-linf-table1" in m["table2"] and "defences/igr-suite-linf-table1" in m["defences"]


def test_gains_and_which_survive(tmp_path):
    write_suite(tmp_path, "mnist", "baseline", 0.0)
    write_suite(tmp_path, "mnist", "fgsm-at", 0.05, flags=["no_progress: 20%"])
    write_suite(tmp_path, "mnist", "igr", 0.005)
    write_paper(tmp_path, "mnist", "baseline", (0.1, 0.1, 0.1, 0.1))
    write_paper(tmp_path, "mnist", "fgsm-at", (0.1, 0.9, 0.1, 0.1))
    g = {x["row"]: x for x in defence_table.gains("mnist", tmp_path)}
    assert g["fgsm-at"]["paper_protocol"] == pytest.approx(20.0)
    # A gain the suite's diagnostics flag is unverified until a stronger suite clears it (issue 30, item 6).
    assert g["fgsm-at"]["adaptive"] == pytest.approx(5.0)
    assert defence_table.survives(g["fgsm-at"]) == "unverified (flagged: no_progress: 20%)"
    assert defence_table.survives({**g["fgsm-at"], "flags": []}) == "yes"
    assert defence_table.survives(g["igr"]) == "no" and defence_table.survives(g["distillation"]) == "not yet measured"
    assert g["fgsm-at"]["paper"] == pytest.approx(20.23 - 4.92)
    md = defence_table.gains_table("mnist", tmp_path)
    assert "no_progress: 20%" in md and "| +15.31 | +20.00 | +5.00 | unverified (flagged: no_progress: 20%) |" in md


def test_a_black_box_flag_stops_holding_a_gain_back_once_the_stronger_suite_settled_it(tmp_path):
    write_suite(tmp_path, "mnist", "baseline", 0.0)
    flag = "black_box_beats_white_box: Square broke 30 images every gradient attack missed"
    write_suite(tmp_path, "mnist", "igr", 0.05, flags=[flag])
    name = defence_rows.suite_name("igr")

    def igr():
        return next(g for g in defence_table.gains("mnist", tmp_path) if g["row"] == "igr")

    assert defence_table.survives(igr()) == f"unverified (flagged: {flag})"
    # New stages alone, or a re-check that still moved, answer nothing.
    long_square = [{"name": "square-5000", "kind": "square", "queries": 5000}]
    write(tmp_path, "mnist", f"{name}-stages", {"robust_accuracy": 0.04, "n": 1000, "attacks": long_square})
    write(tmp_path, "mnist", f"{name}-recheck", {"robust_accuracy": 0.03, "n": 1000, "converged": False})
    assert defence_table.survives(igr()).startswith("unverified")
    write(tmp_path, "mnist", f"{name}-recheck", {"robust_accuracy": 0.03, "n": 1000, "converged": True})
    # New stages without the 5,000-query Square (a job cut to APGD-T) leave the black-box flag open.
    write(tmp_path, "mnist", f"{name}-stages", {"robust_accuracy": 0.04, "n": 1000, "attacks": [], "only": ["x"]})
    assert defence_table.survives(igr()).startswith("unverified")
    write(tmp_path, "mnist", f"{name}-stages", {"robust_accuracy": 0.04, "n": 1000, "attacks": long_square})
    g = igr()
    assert g["flags"] == [] and g["answered"] == [flag] and g["adaptive"] == pytest.approx(3.0)
    assert defence_table.survives(g) == "yes (its flag answered by the stronger suite)"
    assert defence_table.flag_cell(g) == f"{flag} (answered: new stages, converged re-check)"


# --- (c) the verdict -----------------------------------------------------------------------------


def test_verdict_is_not_yet_measured_without_files(tmp_path):
    v = defence_verdict.pgd_verdict("cifar10", tmp_path)
    assert v["paper"]["holds"] is True and v["paper"]["difference"] == pytest.approx(26.78 - 11.14)
    assert set(v["rows"]) == {"pgd-at", "pgd-at_eps0.1", "pgd-at_eps8", "pgd-at_original"}
    for row in v["rows"].values():
        for c in row["comparisons"]:
            assert c["holds"] is None and c["status"] == "not yet measured" and c["missing"]
    text = "\n".join(defence_verdict.verdict_lines(v))
    assert text.count("not yet measured") == 12 and "+15.64 points" in text  # 4 PGD-AT rows x 3 comparisons


@pytest.mark.parametrize("empir, pgd, holds", [(0.30, 0.20, True), (0.20, 0.30, False)])
def test_verdict_follows_the_numbers(tmp_path, empir, pgd, holds):
    write_paper(tmp_path, "cifar10", "empir", (empir,) * 4)
    write_paper(tmp_path, "cifar10", "pgd-at", (pgd,) * 4)
    write_suite(tmp_path, "cifar10", "empir", empir / 10, ci=(empir / 10 - 0.001, empir / 10 + 0.001))
    write_suite(tmp_path, "cifar10", "pgd-at", pgd / 10, ci=(pgd / 10 - 0.001, pgd / 10 + 0.001))
    v = defence_verdict.pgd_verdict("cifar10", tmp_path)
    paper_cmp, adaptive_cmp, at_8 = v["rows"]["pgd-at"]["comparisons"]
    # No 8/255 suite files here: that comparison waits for them.
    assert at_8["holds"] is None and "defences/pgd-at-suite-linf-8-255" in at_8["missing"]
    assert "8/255" in at_8["measure"]
    assert paper_cmp["holds"] is holds and adaptive_cmp["holds"] is holds
    assert paper_cmp["difference"] == pytest.approx(100 * (empir - pgd))
    assert adaptive_cmp["separated"] is True and paper_cmp["separated"] is None
    # The eps-0.1 row has no files: its comparisons stay unmeasured.
    assert all(c["holds"] is None for c in v["rows"]["pgd-at_eps0.1"]["comparisons"])
    text = "\n".join(defence_verdict.verdict_lines(v))
    assert ("the claim holds" if holds else "the claim does not hold") in text
    assert "95% intervals are apart" in text


def test_overlapping_intervals_are_reported(tmp_path):
    write_suite(tmp_path, "cifar10", "empir", 0.02, ci=(0.01, 0.03))
    write_suite(tmp_path, "cifar10", "pgd-at", 0.025, ci=(0.015, 0.035))
    c = defence_verdict.pgd_verdict("cifar10", tmp_path)["rows"]["pgd-at"]["comparisons"][1]
    assert c["holds"] is False and c["separated"] is False


def test_the_verdict_quotes_each_rows_strongest_evaluation_and_says_what_is_unsigned(tmp_path):
    write_suite(tmp_path, "cifar10", "empir", 0.02, ci=(0.01, 0.03))
    write_suite(tmp_path, "cifar10", "pgd-at", 0.25, ci=(0.24, 0.26), flags=["unbounded_not_zero: 8 of 100"])
    c = defence_verdict.pgd_verdict("cifar10", tmp_path)["rows"]["pgd-at"]["comparisons"][1]
    assert c["flagged"] == ["PGD-AT (unbounded_not_zero)"] and c["upper_bound"] == ["EMPIR", "PGD-AT"]
    # EMPIR's re-check (a doubled budget, a new seed) lowers its number and signs it.
    write(tmp_path, "cifar10", "suite/empir-linf-table1-recheck",
          {"robust_accuracy": 0.015, "robust_ci95": [0.008, 0.025], "n": 1000, "converged": True})
    c = defence_verdict.pgd_verdict("cifar10", tmp_path)["rows"]["pgd-at"]["comparisons"][1]
    assert c["empir"] == pytest.approx(1.5) and c["upper_bound"] == ["PGD-AT"]
    text = "\n".join(defence_verdict.verdict_lines(defence_verdict.pgd_verdict("cifar10", tmp_path)))
    assert ("1.50% against 25.00% worst-case suite robust accuracy (L-inf, Table 1 eps) (-23.50 points): the claim "
            "does not hold; the 95% intervals are apart; unverified: the suite's diagnostics flag PGD-AT "
            "(unbounded_not_zero); not re-checked, so an upper bound: PGD-AT.") in text
    # A re-check round that still moved leaves an upper bound too, and the line says so.
    write(tmp_path, "cifar10", "suite/empir-linf-table1-recheck",
          {"robust_accuracy": 0.015, "robust_ci95": [0.008, 0.025], "n": 1000, "converged": False})
    c = defence_verdict.pgd_verdict("cifar10", tmp_path)["rows"]["pgd-at"]["comparisons"][1]
    assert c["moving"] == ["EMPIR"] and c["upper_bound"] == ["PGD-AT"]
    text = "\n".join(defence_verdict.verdict_lines(defence_verdict.pgd_verdict("cifar10", tmp_path)))
    assert "; still moving when re-checked, so an upper bound: EMPIR." in text


def test_the_verdict_sets_a_gap_beside_empirs_seed_spread(tmp_path):
    write_paper(tmp_path, "cifar10", "empir", (0.30,) * 4)  # seed set 1 is Table 2's own row
    write_paper(tmp_path, "cifar10", "pgd-at", (0.20,) * 4)
    for k, acc in ((2, 0.32), (3, 0.34)):
        for a in ("cw", "fgsm", "bim", "pgd"):
            write(tmp_path, "cifar10", f"seeds/set{k}/empir-paper-{a}",
                  {"adversarial_accuracy": acc, "clean_accuracy": 0.9, "n": 1000})
    paper_cmp = defence_verdict.pgd_verdict("cifar10", tmp_path)["rows"]["pgd-at"]["comparisons"][0]
    assert paper_cmp["seed"]["sd"] == pytest.approx(2.0) and paper_cmp["seed"]["k"] == 3
    text = "\n".join(defence_verdict.verdict_lines(defence_verdict.pgd_verdict("cifar10", tmp_path)))
    assert "(+10.00 points): the claim holds; EMPIR's seed spread is 2.00 points (sd over 3 sets), so the gap is " \
           "beyond two seed sds." in text
    write_paper(tmp_path, "cifar10", "pgd-at", (0.27,) * 4)  # 3 points behind: inside two sds of 2
    text = "\n".join(defence_verdict.verdict_lines(defence_verdict.pgd_verdict("cifar10", tmp_path)))
    assert "so the gap is inside two seed sds." in text


def test_verdict_needs_a_pgd_row():
    with pytest.raises(EmpirError, match="no PGD adversarial training row"):
        defence_verdict.pgd_verdict("mnist")


# --- (b) training --------------------------------------------------------------------------------

CPU = {"cores": 2, "cpu": "AMD EPYC", "gpus": []}


def entry(dataset, seconds, epochs=6, acc=0.99, hardware=CPU, **extra):
    return {"dataset": dataset, "wbits": 32, "abits": 32, "epochs": epochs, "test_accuracy": acc,
            "train_time_s": seconds, "hardware": hardware, "file": "x.keras", "sha256": "0", **extra}


def test_training_rows_and_the_time_ratio(tmp_path):
    gpu = {"cores": 16, "cpu": "Xeon", "gpus": ["H200"]}
    members = {"mnist-fp-s1": entry("mnist", 120.0),
               "mnist-fp-s1-igr-l100": entry("mnist", 480.0, defence="igr", defence_params={"lam": 100.0}),
               "mnist-fp-s1-fgsmat-e0.3": entry("mnist", 30.0, hardware=gpu, defence="fgsm-at",
                                                defence_params={"eps": 0.3, "clean_weight": 0.5})}
    (tmp_path / "manifest.json").write_text(json.dumps({"members": members}))
    rows = {r["member"]: r for r in defence_costs.training_rows("mnist", tmp_path)}
    assert rows["mnist-fp-s1"]["plain"] and rows["mnist-fp-s1"]["accuracy"] == pytest.approx(99.0)
    assert rows["mnist-fp-s1-igr-l100"]["epoch_ratio"] == pytest.approx(4.0)
    assert rows["mnist-fp-s1-fgsmat-e0.3"]["epoch_ratio"] is None  # other hardware: no ratio
    assert rows["mnist-fp-s1-distill-t100"]["accuracy"] is None
    md = defence_costs.training_table("mnist", tmp_path)
    assert "| `mnist-fp-s1-igr-l100` | igr | lam=100 | 6 | 99.00 | 8.0 | 4.0\u00d7 |" in md
    assert "`empir zoo build --dataset mnist --defended`" in md and "`mnist-fp-s1-distill-t100`" in md
    assert "`empir zoo build --dataset mnist`" in md  # the plain a4w2 members are missing too


def test_pgd_recipes_tell_a_collapse_from_a_network_that_learnt(tmp_path):
    def pgd(acc, loss, **params):
        return entry("cifar10", 900.0, epochs=8, acc=acc, defence="pgd-at", defence_params=params,
                     history=[{"epoch": 8, "loss": loss}])
    original = {"eps": 0.3, **defences.RECIPES["pgd-at"]["original"]}
    members = {"cifar10-fp-s1": entry("cifar10", 300.0, epochs=15, acc=0.74),
               "cifar10-fp-s1-pgdat-e0.3": pgd(0.10, 2.3026, eps=0.3),
               "cifar10-fp-s1-pgdat-e0.1": pgd(0.30, 2.1, eps=0.1),
               "cifar10-fp-s1-pgdat-e0.3-n40-a0.01-w0.5-ypred": pgd(0.70, 1.5, **original)}
    (tmp_path / "manifest.json").write_text(json.dumps({"members": members}))
    rows = {r["member"]: r for r in defence_costs.pgd_training_rows("cifar10", tmp_path)}
    assert rows["cifar10-fp-s1-pgdat-e0.3"]["collapsed"] and rows["cifar10-fp-s1-pgdat-e0.3"]["recipe"] == "madry"
    assert not rows["cifar10-fp-s1-pgdat-e0.1"]["collapsed"]  # 2.1 is not ln 10
    o = rows["cifar10-fp-s1-pgdat-e0.3-n40-a0.01-w0.5-ypred"]
    assert o["recipe"] == "original" and not o["collapsed"] and o["accuracy"] == pytest.approx(70.0)
    lines = defence_costs.pgd_recipe_lines("cifar10", tmp_path)
    assert sum("a constant answer" in line for line in lines) == 1
    assert lines[-1].endswith("the original recipe (eps = 0.3): 70.00%, -3.55 points against the paper's.")
    del members["cifar10-fp-s1-pgdat-e0.3-n40-a0.01-w0.5-ypred"]
    (tmp_path / "manifest.json").write_text(json.dumps({"members": members}))
    assert "not trained yet" in defence_costs.pgd_recipe_lines("cifar10", tmp_path)[-1]


# --- (d) the figure -----------------------------------------------------------------------------


def test_figure_has_a_panel_per_dataset_and_dashes_for_missing(tmp_path):
    write_paper(tmp_path, "mnist", "baseline", (0.1, 0.1, 0.1, 0.1))
    fig = defence_table.figure(("mnist", "cifar10"), tmp_path)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    ax = fig.axes[0]
    rows = defence_rows.all_rows("mnist")
    in_paper = sum(defence_rows.paper_row("mnist", r) is not None for r in rows)
    assert len(ax.patches) == in_paper + 1  # the paper's rows, and our one row with files
    assert sum(t.get_text() == "\u2013" for t in ax.texts) == 3 * len(rows) - in_paper - 1


# --- the live computation ------------------------------------------------------------------------


def linear_zoo(tmp_path, scales):
    """A zoo of linear MNIST 'members' whose logits are ``scale`` times one fixed linear map."""
    rng = np.random.default_rng(0)
    kernel = rng.normal(0, 0.05, (784, 10)).astype(np.float32)
    members = {}
    for mid, scale in scales.items():
        model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
        model.layers[-1].set_weights([kernel * scale, np.zeros(10, np.float32)])
        path = tmp_path / f"{mid}.keras"
        model.save(path)
        members[mid] = {"dataset": "mnist", "file": path.name, "sha256": sha256(path), "wbits": 32, "abits": 32,
                        **({"defence": "distillation"} if "distill" in mid else {})}
    (tmp_path / "manifest.json").write_text(json.dumps({"members": members}))
    return tmp_path, kernel


def test_gradient_masking_sees_a_saturated_softmax(tmp_path):
    zoo_dir, kernel = linear_zoo(tmp_path, {"mnist-fp-s1": 1.0, "mnist-fp-s1-distill-t100": 1e4})
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, (20, 28, 28, 1)).astype(np.float32)
    y = np.argmax(x.reshape(20, -1) @ kernel, -1)
    y[:5] = (y[:5] + 1) % 10  # five images misclassified
    plain, distilled = masking.gradient_masking("mnist", ["mnist-fp-s1", "mnist-fp-s1-distill-t100"], x, y,
                                          zoo_dir=zoo_dir)
    # Same decisions (the logits are scaled), but the scaled softmax is saturated and, on every image it
    # classifies correctly, its CE gradient is exactly zero...
    assert plain["accuracy"] == distilled["accuracy"] == 75.0
    assert distilled["saturated"] == 100.0 and distilled["zero_ce"] == 75.0 and plain["zero_ce"] == 0.0
    assert distilled["gap"] == pytest.approx(1e4 * plain["gap"], rel=1e-3)
    # ...so FGSM on the cross-entropy leaves every image as it was, while the margin's gradient is the same.
    assert distilled["fgsm_ce"] == distilled["accuracy"]
    assert distilled["zero_margin"] == 0.0 and distilled["fgsm_margin"] == plain["fgsm_margin"]
    assert distilled["defence"] == "distillation" and plain["defence"] == "none" and plain["n"] == 20
    md = defence_masking.masking_table([plain, distilled])
    assert "`mnist-fp-s1-distill-t100` | distillation |" in md and "On 20 images" in md
    assert "FGSM \u03b5=0.3 on CE" in md


def test_gradient_masking_refuses_a_member_not_in_the_zoo_and_bad_labels(tmp_path):
    zoo_dir, _ = linear_zoo(tmp_path, {"mnist-fp-s1": 1.0})
    x = np.zeros((3, 28, 28, 1), np.float32)
    with pytest.raises(EmpirError, match="mnist-fp-s1-distill-t100 is not in the zoo yet; 'empir zoo build "
                                         "--dataset mnist --defended'"):
        masking.gradient_masking("mnist", ["mnist-fp-s1-distill-t100"], x, [0, 1, 2], zoo_dir=zoo_dir)
    with pytest.raises(EmpirError, match="3 images and y 2 labels"):
        masking.gradient_masking("mnist", ["mnist-fp-s1"], x, [0, 1], zoo_dir=zoo_dir)


# --- exercise checks ------------------------------------------------------------------------------


def tf_fgsm_at(sign=1.0, clip=True, clean_weight=0.5, adv_weight=0.5):
    def fn(model, x, y, eps):
        xt = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xt)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=model(xt))
        adv = xt + sign * eps * tf.sign(tape.gradient(ce, xt))
        adv = tf.clip_by_value(adv, 0, 1) if clip else adv
        return (clean_weight * ce + adv_weight * tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=y, logits=model(adv))).numpy()
    return fn


def verdict(capsys, ok, expected, *words):
    out = capsys.readouterr().out
    assert ok is expected, out
    assert out.startswith(exercises.OK if expected else exercises.NO), out
    for w in words:
        assert w in out, out


def test_fgsm_at_check_accepts_a_tape_solution(capsys):
    verdict(capsys, exercises.check_fgsm_at_loss(tf_fgsm_at()), True, "matches the library")


@pytest.mark.parametrize("kwargs, hint", [
    (dict(clip=False), "clip"), (dict(sign=-1.0), "down"), (dict(clean_weight=1, adv_weight=1), "0.5"),
    (dict(clean_weight=0, adv_weight=1), "adversarial term alone"), (dict(adv_weight=0, clean_weight=1), "clean"),
    (dict(clean_weight=0.3, adv_weight=0.7), "differ"),
])
def test_fgsm_at_check_rejects_typical_mistakes(capsys, kwargs, hint):
    verdict(capsys, exercises.check_fgsm_at_loss(tf_fgsm_at(**kwargs)), False, hint)


def test_fgsm_at_check_reports_shape_and_exceptions(capsys):
    verdict(capsys, exercises.check_fgsm_at_loss(lambda *a: float(np.mean(tf_fgsm_at()(*a)))), False, "one number")
    verdict(capsys, exercises.check_fgsm_at_loss(lambda *a: tf_fgsm_at()(*a)[:3]), False, "shape")

    def stub(*args):
        raise NotImplementedError("not yet")
    verdict(capsys, exercises.check_fgsm_at_loss(stub), False, "NotImplementedError")


def test_zero_gradient_gap_is_where_float32_flushes_exp_to_zero(capsys):
    gap = exercises.zero_gradient_gap()
    assert gap == pytest.approx(-np.log(np.finfo(np.float32).tiny), abs=0.05)
    verdict(capsys, exercises.check_zero_gradient_gap(gap), True, "flushed to zero")
    verdict(capsys, exercises.check_zero_gradient_gap(18.3), False, "rounds to 1.0")
    verdict(capsys, exercises.check_zero_gradient_gap(103.3), False, "subnormal")
    verdict(capsys, exercises.check_zero_gradient_gap(40), False, "not quite")
    verdict(capsys, exercises.check_zero_gradient_gap("big"), False, "one number")
    verdict(capsys, exercises.check_zero_gradient_gap(float("inf")), False, "finite")


# --- the smaller helpers -------------------------------------------------------------------------


def test_rows_table_marks_untrained_members_and_our_own_rows(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"members": {"cifar10-fp-s1": entry("cifar10", 1.0)}}))
    md = defence_rows.rows_table("cifar10", tmp_path)
    assert "| `baseline` | baseline FP | yes | `cifar10-fp-s1` |" in md
    assert "| `pgd-at_eps0.1` | PGD adversarial training (\u03b5 = 0.1, 7 steps) | no (ours) | " \
           "`cifar10-fp-s1-pgdat-e0.1` (not trained yet) |" in md


def test_warning_signs_read_label_leaking_and_one_step_failure(tmp_path):
    assert defence_table.training_warning_signs("mnist", root=tmp_path) == [
        "mnist, FGSM adversarial training (\u03b5 = 0.3): not yet measured.",
        "mnist, EMPIR of FGSM-trained members (\u03b5 = 0.3): not yet measured."]
    write_paper(tmp_path, "mnist", "fgsm-at", (0.03, 0.995, 0.01, 0.004), clean=0.99)
    write_suite(tmp_path, "mnist", "fgsm-at", 0.0)
    write_paper(tmp_path, "mnist", "empir-fgsm-at", (0.9, 0.70, 0.60, 0.55), clean=0.99)
    leak, fine = defence_table.training_warning_signs("mnist", root=tmp_path)
    assert "clean 99.00%, FGSM 99.50%" in leak and "label leaking" in leak and "catastrophic overfitting" in leak
    assert "lowest of BIM and PGD 0.40%" in leak and "worst-case suite 0.00%" in leak
    assert "label leaking" not in fine and "catastrophic" not in fine and "suite" not in fine
    assert "were fooled" not in leak  # its lowest L-inf column (0.40) is within 20 points of the suite


def test_warning_signs_compare_the_paper_protocol_with_the_suite(tmp_path):
    write_paper(tmp_path, "mnist", "distillation", (0.02, 0.98, 0.97, 0.96), clean=0.985)
    write_suite(tmp_path, "mnist", "distillation", 0.01)
    assert defence_table.training_warning_signs("mnist", ("igr",), tmp_path)[0] == (
        "mnist, input gradient regularisation (\u03bb = 100): not yet measured.")
    (line,) = defence_table.training_warning_signs("mnist", ("distillation",), tmp_path)
    assert "the paper protocol's best L-inf attack leaves 95.00 points more than the suite" in line
    assert "label leaking" not in line and "catastrophic" not in line and "stuck" not in line
    write_paper(tmp_path, "mnist", "igr", (0.6, 0.18, 0.21, 0.2), clean=0.6)
    (line,) = defence_table.training_warning_signs("mnist", ("igr",), tmp_path)[:1]
    assert "an iterative attack leaves more images than one FGSM step" in line


def test_masking_summary_quotes_each_measurement():
    row = {"member": "m", "accuracy": 98.0, "zero_ce": 97.8, "saturated": 99.8, "fgsm_ce": 97.8, "fgsm_margin": 0.0}
    assert defence_masking.masking_summary([row]) == [
        "m: clean 98.0%; CE gradient exactly zero on 97.8% of the images (softmax saturated on 99.8%); one FGSM "
        "step leaves 97.8% accuracy on the cross-entropy and 0.0% on the margin."]


def test_figure_labels_a_measured_zero(tmp_path):
    write_suite(tmp_path, "mnist", "baseline", 0.0)
    ax = defence_table.figure(("mnist",), tmp_path).axes[0]
    assert "0" in [t.get_text() for t in ax.texts]


def test_a_constant_classifier_is_named_in_the_verdict(tmp_path):
    confusion = np.zeros((10, 10), int)
    confusion[:, 0] = 1000  # every image answered 'airplane', whatever its class
    confusion[3, 0], confusion[3, 3] = 990, 10
    for attack in ATTACKS:
        write(tmp_path, "cifar10", f"{defence_rows.paper_protocol_stem('pgd-at')}-{attack}",
              {"adversarial_accuracy": 0.1, "clean_accuracy": 0.1, "n": 10000, "confusion": confusion.tolist()})
    one = cards.one_answer("cifar10", "pgd-at", tmp_path)
    assert one["class"] == "airplane" and one["share"] == pytest.approx(0.999) and one["constant"]
    text = "\n".join(defence_verdict.verdict_lines(defence_verdict.pgd_verdict("cifar10", tmp_path)))
    assert "answers 'airplane' for 99.9% of the test images" in text and "constant classifier" in text
    # A network that spreads its answers is not flagged, and a row without files has no answer.
    write(tmp_path, "cifar10", f"{defence_rows.paper_protocol_stem('pgd-at_eps8')}-pgd",
          {"adversarial_accuracy": 0.1, "clean_accuracy": 0.5, "n": 10000,
           "confusion": (np.eye(10, dtype=int) * 500 + 50).tolist()})
    assert cards.one_answer("cifar10", "pgd-at_eps8", tmp_path)["constant"] is False
    assert cards.one_answer("cifar10", "pgd-at_eps0.1", tmp_path) is None
    assert text.count("constant classifier") == 1
    # Once EMPIR's files are there, the comparison is measured but not scored: a constant classifier is no defence.
    write_paper(tmp_path, "cifar10", "empir", (0.3,) * 4)
    text = "\n".join(defence_verdict.verdict_lines(defence_verdict.pgd_verdict("cifar10", tmp_path)))
    assert ("EMPIR vs PGD adversarial training (ε = 0.3, 7 steps): not compared on average adversarial accuracy "
            "(CW, FGSM, BIM, PGD): that network is a constant") in text
    # One line per comparison, each naming its measure: no two lines alike.
    assert len(set(text.splitlines())) == len(text.splitlines())
    assert "the claim holds" not in text.split("EMPIR vs PGD adversarial training (ε = 0.3, 7 steps)")[1].split("\n")[0]


def test_a_constant_classifiers_gain_does_not_survive(tmp_path):
    confusion = np.zeros((10, 10), int)
    confusion[:, 0] = 1000
    write_paper(tmp_path, "cifar10", "baseline", (0.1,) * 4)
    write_suite(tmp_path, "cifar10", "baseline", 0.0)
    for attack in ATTACKS:
        write(tmp_path, "cifar10", f"{defence_rows.paper_protocol_stem('pgd-at')}-{attack}",
              {"adversarial_accuracy": 0.1, "clean_accuracy": 0.1, "n": 10000, "confusion": confusion.tolist()})
    write_suite(tmp_path, "cifar10", "pgd-at", 0.1)
    write_paper(tmp_path, "cifar10", "pgd-at_eps8", (0.2,) * 4)
    write_suite(tmp_path, "cifar10", "pgd-at_eps8", 0.1)
    g = {r["row"]: r for r in defence_table.gains("cifar10", tmp_path)}
    assert g["pgd-at"]["adaptive"] == pytest.approx(10.0)
    assert defence_table.survives(g["pgd-at"]) == "invalid: a constant classifier, not a defence"
    assert defence_table.survives(g["pgd-at_eps8"]) == "yes"  # the same gain, from a network that answers every class
