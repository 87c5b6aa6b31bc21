"""Threat models, one record each (empir_lib.core.threats): names, norms, budgets and labels from one place."""
import pytest

from empir_lib.attack import suite
from empir_lib.core import settings, threats
from empir_lib.core.errors import EmpirError


def test_each_dataset_has_table1_its_extra_linf_budgets_and_l2():
    c = threats.of("cifar10")
    assert list(c) == ["linf-table1", "linf-8-255", "l2"]
    assert c["linf-table1"].eps == settings.CIFAR10.attacks["pgd"]["eps"] and c["l2"].eps == 0.5
    assert c["linf-8-255"] == threats.Threat("linf-8-255", "linf", 8 / 255, "L-inf 8/255")
    assert list(threats.of("mnist")) == ["linf-table1", "l2"]
    assert threats.get("tiny-imagenet", "linf-4-255").eps == pytest.approx(4 / 255)


def test_the_suite_reads_its_threats_from_the_records():
    for dataset in ("mnist", "cifar10", "tiny-imagenet"):
        assert suite.threats(dataset) == {n: t.as_dict() for n, t in threats.of(dataset).items()}


def test_names_and_labels_round_trip():
    assert threats.linf_name(8 / 255) == "linf-8-255"
    assert [threats.label(n) for n in ("linf-table1", "linf-4-255", "l2")] == [
        "L-inf, Table 1 eps", "L-inf 4/255", "L2"]


@pytest.mark.parametrize("call,msg", [
    (lambda: threats.of("imagenet"), "no threat models for 'imagenet'"),
    (lambda: threats.get("mnist", "linf-8-255"), "unknown threat model for mnist 'linf-8-255'"),
    (lambda: threats.label("l1"), "'l1' names no threat model"),
])
def test_bad_threats_are_refused_with_one_sentence(call, msg):
    with pytest.raises(EmpirError, match=msg):
        call()
