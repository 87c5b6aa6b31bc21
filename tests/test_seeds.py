"""The seed study (empir_lib.studies.seeds): its plan, reading the sets back on the same images, and its verdicts."""
import json

import numpy as np
import pytest

from empir_lib.attack import outcomes
from empir_lib.book.chapters import seeds as chapter_seeds
from empir_lib.core import paper, settings
from empir_lib.core.errors import EmpirError
from empir_lib.studies import seeds


def test_the_seed_sets_share_no_member_and_the_first_is_the_books_empir():
    for dataset in ("mnist", "cifar10"):
        s = seeds.sets(dataset)
        assert len(s) == 3 and s[0]["empir"] == settings.get(dataset).empir_ids
        ids = [m for rows in s for m in rows["empir"]]
        assert len(ids) == len(set(ids)) == 9  # no member shared between sets
        assert all(rows["baseline"] == [rows["empir"][-1]] for rows in s)  # each set's FP member is its baseline
    assert [m for rows in seeds.sets("mnist") for m in rows["empir"] if "a4w2" in m] == [
        f"mnist-a4w2-s{k}" for k in range(1, 7)]


def test_the_plan_runs_sets_two_and_three_cheapest_first():
    jobs = seeds.jobs("cifar10", 10000, 1000)
    names = [j["name"] for j in jobs]
    assert not any("set1" in n for n in names)  # set 1 is the book's table2/ and suite/
    kinds = ["l2" if n.endswith("-l2") else "paper" if "-paper-" in n else "linf" for n in names]
    assert kinds == sorted(kinds, key=["linf", "paper", "l2"].index)
    assert {j["n"] for j in jobs if j["name"].endswith("-l2")} == {1000}
    assert {j["n"] for j in jobs if not j["name"].endswith("-l2")} == {10000}
    assert "seeds/set3/empir-linf-8-255" in names and "seeds/set2/baseline-paper-cw" in names


def test_a_study_on_fewer_images_reruns_set_one_on_them(tmp_path):
    # Set 1's Table 2 files cover 10,000 images and keep no per-image file: on 2,000, set 1 is run again.
    _fill(tmp_path, "cifar10")
    names = [j["name"] for j in seeds.jobs("cifar10", 2000, 500, root=tmp_path)]
    assert "seeds/set1/empir-paper-pgd" in names and "seeds/set1/baseline-paper-cw" in names
    # The suite too: set 1's files cover other images (and an older suite), so it meets the suite again.
    assert "seeds/set1/empir-linf-table1" in names and "seeds/set1/baseline-l2" in names
    assert not any("set1" in j["name"] for j in seeds.jobs("cifar10", 10000, 500, root=tmp_path))
    # Read back on 2,000 images: set 1 from its re-run; a set on other images is None, not a number.
    for k, acc in ((1, 0.30), (2, 0.31), (3, 0.32)):
        for row in seeds.ROWS:
            for attack in ("cw", "fgsm", "bim", "pgd"):
                _write(tmp_path, "cifar10", f"seeds/set{k}/{row}-paper-{attack}",
                       {"adversarial_accuracy": acc, "clean_accuracy": 0.7, "n": 2000 if k < 3 else 1000})
    values = seeds.seed_values("cifar10", root=tmp_path)
    assert [v["empir"]["paper_average"] for v in values[:2]] == pytest.approx([30.0, 31.0])
    assert values[2]["empir"]["paper_average"] is None and values[0]["empir"]["paper_n"] == 2000


def test_a_dataset_without_seed_sets_is_refused():
    with pytest.raises(EmpirError, match="has no seed sets"):
        seeds.sets("tiny-imagenet")


def _write(root, dataset, name, record, broken_by=None):
    path = root / dataset / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    if broken_by is not None:
        record["per_image"] = outcomes.save(path.with_suffix(".npz"), broken_by, np.zeros(len(broken_by)))
        record["n"] = len(broken_by)
    path.write_text(json.dumps(record))


def _fill(root, dataset="mnist", shift=(0.0, 1.0, 2.0)):
    """Three seed sets whose EMPIR paper-protocol accuracy is 40 + shift, and suite files with per-image outcomes."""
    for k, d in enumerate(shift, start=1):
        for row, base in (("empir", 0.40), ("baseline", 0.10)):
            for attack in ("cw", "fgsm", "bim", "pgd"):
                name = seeds._paper_name(k, row, attack)  # noqa: SLF001
                _write(root, dataset, name, {"adversarial_accuracy": base + d / 100, "clean_accuracy": 0.99,
                                             "n": 10000})
            for threat in ("linf-table1", "l2"):
                # set 1's L2 file covers 2,000 images; only the first 1,000 (all robust for EMPIR) are compared
                n = 2000 if k == 1 and threat == "l2" else 1000
                broken = np.full(n, 1)
                broken[:100] = outcomes.ROBUST if row == "empir" else 1
                if k == 1 and threat == "l2":
                    broken[1000:] = outcomes.ROBUST  # outside the compared images
                _write(root, dataset, seeds._suite_name(k, row, threat),  # noqa: SLF001
                       {"robust_accuracy": float(np.mean(broken == outcomes.ROBUST)), "clean_accuracy": 1.0,
                        "broken_by": outcomes.counts(broken, [])}, broken)


def test_values_read_every_set_on_the_same_images(tmp_path):
    _fill(tmp_path)
    values = seeds.seed_values("mnist", root=tmp_path)
    assert [v["empir"]["paper_average"] for v in values] == pytest.approx([40.0, 41.0, 42.0])
    # Set 1's L2 file holds 2,000 images: read on the first 1,000, like sets 2 and 3 (10% robust, not 55%).
    assert [v["empir"]["l2"] for v in values] == pytest.approx([10.0, 10.0, 10.0])
    assert [v["empir"]["l2_n"] for v in values] == [1000, 1000, 1000]
    assert values[0]["baseline"]["linf-table1"] == 0.0


def test_a_missing_file_is_none_not_a_number(tmp_path):
    _fill(tmp_path)
    (tmp_path / "mnist" / "seeds" / "set3" / "empir-paper-bim.json").unlink()
    values = seeds.seed_values("mnist", root=tmp_path)
    assert values[2]["empir"]["paper_average"] is None and values[2]["empir"]["bim"] is None
    assert seeds.spread([v["empir"]["paper_average"] for v in values])["k"] == 2


def test_compare_decides_against_the_seed_spread():
    # The same sign in every set and a mean beyond one sd: beyond the spread.
    assert seeds.compare([10.4, 9.8, 10.9], [8.0, 8.3, 7.9])["verdict"] == "beyond the seed spread"
    # One set reverses the sign: inside the spread, whatever the mean.
    c = seeds.compare([10.4, 7.0, 10.9], [8.0, 8.3, 7.9])
    assert c["verdict"] == "inside the seed spread" and not c["same_sign"]
    assert c["mean"] == pytest.approx(np.mean([2.4, -1.3, 3.0]))
    # One set only: nothing is said about seeds.
    assert seeds.compare([10.0, None, None], [8.0, None, None])["verdict"].startswith("one seed set")
    # The test-set interval: 10.4% vs 8.0% on 10,000 images are apart, on 100 images they are not.
    assert seeds.compare([10.4], [8.0], n=10000)["intervals_apart"] == [True]
    assert seeds.compare([10.4], [8.0], n=100)["intervals_apart"] == [False]


def test_ours_against_the_paper_within_two_seed_sds(tmp_path):
    _fill(tmp_path)
    values = seeds.seed_values("mnist", root=tmp_path)
    out = seeds.versus_paper("mnist", values)
    assert out["empir"]["paper"] == paper.TABLE2["mnist"]["empir"]["average"]
    assert out["empir"]["mean"] == pytest.approx(41.0) and out["empir"]["sd"] == pytest.approx(1.0)
    assert out["empir"]["within_two_sd"] is (abs(41.0 - out["empir"]["paper"]) <= 2.0)


# --- the chapters' view -------------------------------------------------------------------------

def test_member_seeds_reads_the_recipes_members_only():
    m = chapter_seeds.member_seeds("mnist", "a4w2")
    assert m["seeds"] == [1, 2, 3, 4, 5, 6] and m["k"] == 6 and m["sd"] > 0
    # CIFAR-10's 40-epoch a2w2 members are not the recipe's (15 epochs): only seed 1 of the grid counts.
    assert chapter_seeds.member_seeds("cifar10", "a2w2")["seeds"] == [1]
    # CIFAR-10's EMPIR members train for 40 epochs: asked for by name, they are a set of their own.
    forty = chapter_seeds.member_seeds("cifar10", "a2w2", epochs=40)
    assert forty["seeds"] and 1 not in forty["seeds"] and 2 in forty["seeds"]
    assert "no member trained for 7 epochs" in chapter_seeds.member_seed_lines("cifar10", ("a2w2",), epochs=7)[0]


def test_set_1_is_read_from_the_suite_the_other_sets_met(tmp_path):
    _fill(tmp_path)
    # Set 1's new stages (added on its survivors) broke 40 more of the first 1,000 EMPIR images at L2 ...
    broken = np.full(1000, 1)
    broken[:60] = outcomes.ROBUST
    _write(tmp_path, "mnist", "suite/empir-l2-stages", {"robust_accuracy": 0.06, "clean_accuracy": 1.0}, broken)
    # ... and its re-check (a doubled budget the other sets did not meet) is never read.
    _write(tmp_path, "mnist", "suite/empir-l2-recheck", {"robust_accuracy": 0.0, "clean_accuracy": 1.0},
           np.full(1000, 1))
    values = seeds.seed_values("mnist", root=tmp_path)
    assert [v["empir"]["l2"] for v in values] == pytest.approx([6.0, 10.0, 10.0])
    # A stages file on fewer images than the study compares is not used.
    _write(tmp_path, "mnist", "suite/empir-l2-stages", {"robust_accuracy": 0.0, "clean_accuracy": 1.0},
           np.full(500, 1))
    assert seeds.seed_values("mnist", root=tmp_path)[0]["empir"]["l2"] == pytest.approx(10.0)


def test_the_seed_table_and_verdicts_come_from_the_files(tmp_path):
    _fill(tmp_path)
    md = chapter_seeds.seed_table("mnist", tmp_path)
    assert "| EMPIR | 2 | 99.00 | 41.00 |" in md and "**41.00 ± 1.00**" in md
    lines = chapter_seeds.verdict_lines("mnist", tmp_path)
    # EMPIR's paper average is 30 points over the baseline in every set, with no spread in the difference.
    assert any(line.startswith("mnist, paper average: EMPIR minus FP per seed set +30.00, +30.00, +30.00")
               and "beyond the seed spread" in line for line in lines)
    assert any("EMPIR paper-protocol average: ours 41.00 ± 1.00 over 3 seed set(s), the paper's 47.48: "
               "outside two seed sds of ours" in line for line in lines)
    # One measure only (chapter 8's L2 question): its comparison, and not the paper's.
    only = chapter_seeds.verdict_lines("mnist", tmp_path, measures=("paper_average",))
    assert only and all(line.startswith("mnist, paper average") for line in only)
    with pytest.raises(EmpirError, match="seed-study measure"):
        chapter_seeds.verdict_lines("mnist", tmp_path, measures=("l3",))


def test_a_recheck_that_moved_is_reported_as_an_upper_bound(tmp_path):
    assert chapter_seeds.recheck_lines("mnist", "linf-table1", tmp_path) == []
    for k, (before, after, done) in enumerate(((8, 6, False), (5, 5, True)), start=1):
        _write(tmp_path, "mnist", f"seeds/set{k}/empir-linf-table1-recheck",
               {"robust_before": before, "robust_after": after, "n": 2000, "converged": done})
    line = chapter_seeds.recheck_lines("mnist", "linf-table1", tmp_path)[0]
    assert "set 1 8 -> 6 of 2,000, set 2 5 -> 5 of 2,000" in line
    # Which set settled and which is still an upper bound, not one verdict for both.
    assert line.endswith("set 2 converged; set 1 not converged (a last round moved 0.1 point or more), "
                         "so its value is an upper bound.")


def test_a_seed_sets_recheck_rounds_are_read_as_a_chain_until_every_set_converged(tmp_path):
    # Set 1 moved in round 1 (8 -> 6) and stood still in round 2; set 2 converged in round 1.
    _write(tmp_path, "mnist", "seeds/set1/empir-linf-table1-recheck",
           {"robust_before": 8, "robust_after": 6, "n": 2000, "converged": False})
    _write(tmp_path, "mnist", "seeds/set2/empir-linf-table1-recheck",
           {"robust_before": 5, "robust_after": 5, "n": 2000, "converged": True})
    _write(tmp_path, "mnist", "seeds/set1/empir-linf-table1-recheck2",
           {"robust_before": 6, "robust_after": 6, "n": 2000, "converged": True})
    line = chapter_seeds.recheck_lines("mnist", "linf-table1", tmp_path)[0]
    assert "up to 2 rounds" in line and "set 1 8 -> 6 -> 6 of 2,000, set 2 5 -> 5 of 2,000" in line
    assert line.endswith("converged.")


def test_sets_are_compared_at_their_last_recheck_round_only_when_every_set_has_one(tmp_path):
    _fill(tmp_path)
    before = [v["empir"]["linf-table1"] for v in seeds.seed_values("mnist", root=tmp_path)]
    for k in (1, 2, 3):
        broken = np.full(1000, 1)
        broken[:50 + k] = outcomes.ROBUST  # each round left 50 + k of the suite's 100
        name = seeds._suite_name(k, "empir", "linf-table1") + ("-recheck" if k != 2 else "-recheck2")  # noqa: SLF001
        _write(tmp_path, "mnist", name, {"robust_accuracy": (50 + k) / 1000, "clean_accuracy": 1.0,
                                         "broken_by": outcomes.counts(broken, [])}, broken)
        values = seeds.seed_values("mnist", root=tmp_path)
        got = [v["empir"]["linf-table1"] for v in values]
        if k < 3:  # a set without a re-check: every set keeps the suite's value, budgets must match
            assert got == before
    assert got == pytest.approx([5.1, 5.2, 5.3]) and before == pytest.approx([10.0, 10.0, 10.0])
    assert values[1]["empir"]["linf-table1_file"] == "seeds/set2/empir-linf-table1-recheck2"
    assert [v["baseline"]["linf-table1"] for v in values] == pytest.approx([0.0, 0.0, 0.0])  # no re-check: as was
