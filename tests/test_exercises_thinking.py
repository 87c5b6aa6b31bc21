"""The exercises that ask the reader to think (issue 26): their checks pass right answers and fail wrong ones.

Exercise 6.1 (the widest precision within the paper's 25% time budget, on
native and on proportional hardware), 6.4 (what fits in that budget at the
measured int8 rate), 4.4 (how far a signed step must go to cross a 2-bit input
quantiser), 5.4 (when a random classifier is counted as broken) and 7.4 (why
an attack on the model's own predictions can raise accuracy).
"""
import math

import pytest
from test_exercises import verdict  # the tick-or-cross helper the chapters' check tests share

from empir_lib.book import exercises
from empir_lib.core.errors import EmpirError

# --- 4.4: crossing a 2-bit input quantiser ------------------------------------------------


def test_crossing_problem_is_derived_from_the_quantiser():
    t = exercises.crossing_problem()
    assert t["edges"] == pytest.approx([1 / 6, 1 / 2, 5 / 6], abs=1e-5)
    assert t["min_step"] == pytest.approx(1 / 6, abs=1e-5)
    # 0.16 * 3 = 0.48 rounds to 0, 0.17 * 3 = 0.51 rounds to 1.
    assert t["steps"] == 17
    assert exercises.crossing_problem(step=0.05)["steps"] == 4  # 0.2 * 3 = 0.6 -> 1; 0.15 * 3 = 0.45 -> 0


RIGHT_4_4 = {"edges": [5 / 6, 1 / 6, 0.5], "min_step": 1 / 6, "steps": 17}


def test_crossing_accepts_the_derivation(capsys):
    verdict(capsys, exercises.check_crossing(RIGHT_4_4), True, "invisible until step 17")


@pytest.mark.parametrize("wrong, hint", [
    ({**RIGHT_4_4, "edges": [0, 1 / 3, 2 / 3, 1]}, "those are the levels"),
    ({**RIGHT_4_4, "edges": [0.25, 0.5, 0.75]}, "right number of edges"),
    ({**RIGHT_4_4, "edges": [1 / 6, 1 / 2]}, "3 edges"),
    ({**RIGHT_4_4, "min_step": 1 / 3}, "whole level"),
    ({**RIGHT_4_4, "min_step": 0.5}, "nearest edge"),
    ({**RIGHT_4_4, "steps": 16}, "one more"),
    ({**RIGHT_4_4, "steps": 30}, "you gave 30"),
    ({**RIGHT_4_4, "steps": 17.0}, "whole number"),
    ({**RIGHT_4_4, "edges": [float("nan")] * 3}, "NaN"),
    ({"edges": [1 / 6, 1 / 2, 5 / 6]}, "give a dict"),
    ([1 / 6, 1 / 2, 5 / 6], "give a dict"),
])
def test_crossing_rejects_wrong_answers(capsys, wrong, hint):
    verdict(capsys, exercises.check_crossing(wrong), False, hint)


# --- 5.4: a random classifier, queried Q times ----------------------------------------


def test_broken_chance_reference():
    assert exercises.broken_chance(0.05, 0) == 0
    assert exercises.broken_chance(1.0, 1) == 1
    assert exercises.broken_chance(0.5, 3) == pytest.approx(7 / 8)
    # the smallest Q at which an image right 95% of the time is more likely broken than not
    assert min(q for q in range(100) if exercises.broken_chance(0.05, q) > 0.5) == math.ceil(
        math.log(0.5) / math.log(0.95))


def test_broken_chance_accepts_the_formula(capsys):
    verdict(capsys, exercises.check_broken_chance(lambda p, q: 1 - (1 - p) ** q), True, "0.40", "expectation")


@pytest.mark.parametrize("wrong, hint", [
    (lambda p, q: (1 - p) ** q, "every query is right"),
    (lambda p, q: p * q, "p times q"),
    (lambda p, q: min(1.0, p * q), "p times q"),
    (lambda p, q: 1 - p ** q, "every query"),
    (lambda p, q: p, "expected"),
    (lambda p, q: 1 / 0, "ZeroDivisionError"),
])
def test_broken_chance_rejects_wrong_functions(capsys, wrong, hint):
    verdict(capsys, exercises.check_broken_chance(wrong), False, hint)


# --- 7.4: attacking the model's own predictions ----------------------------------------


def test_label_leak_reads_the_results_file():
    leak = exercises.label_leak()
    assert leak["labels"] == "clean prediction"
    assert leak["changed"] == 1
    assert 0 < leak["adversarial"] < 1 - leak["clean"]
    assert "fixed_share" not in leak  # the answer is not handed out with the data
    assert exercises.fixed_share(leak) == pytest.approx(leak["adversarial"] / (1 - leak["clean"]))


def test_label_leak_needs_every_prediction_changed(capsys):
    # CIFAR-10's EMPIR under paper-protocol FGSM leaves some predictions unchanged.
    leak = exercises.label_leak("cifar10", "table2/empir-paper-fgsm")
    assert leak["changed"] < 1 and exercises.fixed_share(leak) is None
    verdict(capsys, exercises.check_fixed_share(0.3, "cifar10", "table2/empir-paper-fgsm"), False,
            "did not change every prediction")


def test_label_leak_missing_file_is_a_clear_error():
    with pytest.raises(EmpirError):
        exercises.label_leak("cifar10", "table2/no-such-row")


def test_fixed_share_accepts_the_reasoning(capsys):
    leak = exercises.label_leak()
    answer = leak["adversarial"] / (1 - leak["clean"])
    verdict(capsys, exercises.check_fixed_share(answer), True, "true labels")


@pytest.mark.parametrize("wrong, hint", [
    (lambda leak: leak["adversarial"], "accuracy over all images"),
    (lambda leak: leak["adversarial"] / leak["clean"], "wrong before"),
    (lambda leak: 100 * leak["adversarial"] / (1 - leak["clean"]), "percentage"),
    (lambda leak: 1 - leak["clean"], "not quite"),
    (lambda leak: "a third", "one number"),
])
def test_fixed_share_rejects_wrong_answers(capsys, wrong, hint):
    verdict(capsys, exercises.check_fixed_share(wrong(exercises.label_leak())), False, hint)


# --- 6.1 and 6.4: the paper's 25% time budget -----------------------------------------


def test_precision_budget_is_eq6():
    # proportional: 2 k/32 < 1/4 needs k <= 3; native: every k <= 4 runs at the 4-bit rate, 2 * 4/32 = 1/4.
    assert exercises.precision_budget() == {"proportional": 3, "native": None}
    assert exercises.precision_budget(n=1) == {"proportional": 7, "native": 4}


@pytest.mark.parametrize("answer, ok, hint", [
    ({"proportional": 3, "native": None}, True, "no precision fits"),
    ({"proportional": 4, "native": None}, False, "exactly 25%"),
    ({"proportional": 3, "native": 2}, False, "next built-in width"),
    ({"proportional": 3, "native": 3.0}, False, "whole number"),
    ({"proportional": 2, "native": None}, False, "not quite"),
    ({"proportional": 3.5, "native": None}, False, "whole number"),
    ({"proportional": 3}, False, "keys"),
    (3, False, "keys"),
])
def test_precision_budget_check(capsys, answer, ok, hint):
    verdict(capsys, exercises.check_precision_budget(answer), ok, hint)


def test_rate_budget_is_eq6_with_the_measured_rate():
    assert exercises.rate_budget(0.2156) == {"members": 1, "max_rate": 0.125}
    assert exercises.rate_budget(0.1)["members"] == 2 and exercises.rate_budget(0.3)["members"] == 0
    assert exercises.rate_budget(0.125)["members"] == 1  # 2 x 0.125 sits on the bound, which is strict


@pytest.mark.parametrize("answer, ok, hint", [
    ({"members": 1, "max_rate": 0.125}, True, "8 times faster"),
    ({"members": 2, "max_rate": 0.125}, False, "2 x 0.216"),
    ({"members": 1, "max_rate": 0.25}, False, "fits one member"),
    ({"members": 1, "max_rate": 0.5}, False, "not quite"),
    ({"members": 1.0, "max_rate": 0.125}, False, "whole number"),
    ({"members": 1, "max_rate": "fast"}, False, "give a number"),
    ({"members": 1}, False, "give a dict"),
])
def test_rate_budget_check(capsys, answer, ok, hint):
    verdict(capsys, exercises.check_rate_budget(answer, 0.2156), ok, hint)
