"""One source for every dataset's settings: its tables have one name each (settings.X), zoo ids round-trip."""
import pytest

from empir_lib.attack import attacks
from empir_lib.book import assignments, launch, plots
from empir_lib.book.chapters import defence_rows
from empir_lib.core import settings
from empir_lib.core.errors import EmpirError
from empir_lib.hardware import overhead
from empir_lib.nets import data, models, samples, train, zoo
from empir_lib.studies import eot_study, expected_study, reproduce, results

# The second names the per-dataset tables and the paper's constants once had in other modules (issue 28).
OLD_NAMES = {attacks: ("PRESETS", "TINY_EPS", "_CW"), train: ("RECIPES",), models: ("ARCH_FOR_DATASET",),
             zoo: ("GRID", "REQUIRED", "EMPIR_MEMBERS", "FLOAT16_DATASETS"), samples: ("SAMPLE_SIZES",),
             data: ("SPLITS", "INPUT_SHAPES", "NUM_CLASSES", "CIFAR_CLASSES", "ARCHIVES"),
             reproduce: ("EPS8", "SECOND_EPS"), results: ("PAPER_TABLE2",), eot_study: ("EPS",),
             expected_study: ("DRAWS",), overhead: ("NATIVE_WIDTHS", "PAPER_FIGURE4"),
             launch: ("REPO",), assignments: ("REPO",), plots: ("DASH",), defence_rows: ("DASH",)}


def test_the_tables_are_views_of_settings_under_one_name():
    for name, d in settings.DATASETS.items():
        assert settings.ATTACK_PRESETS.get(name, {}) == d.attacks and settings.RECIPES[name] is d.recipe
    assert [(module.__name__, a) for module, names in OLD_NAMES.items() for a in names if hasattr(module, a)] == []


@pytest.mark.parametrize("wbits,abits,seed,expected", [
    (2, 4, 1, "mnist-a4w2-s1"), (32, 32, 3, "mnist-fp-s3"), ([1, 2, 4], [4, 4, 4], 2, "mnist-a4-4-4w1-2-4-s2")])
def test_member_ids_round_trip(wbits, abits, seed, expected):
    assert settings.member_id("mnist", wbits, abits, seed) == expected
    assert settings.parse_member_id(expected) == ("mnist", wbits, abits, seed)
    assert settings.parse_member_id(f"tiny-imagenet-{expected[6:]}")[0] == "tiny-imagenet"


@pytest.mark.parametrize("bad", ["mnist-s1", "mnist-a4w2", "a4w2", "mnist-a0w2-s1", 7])
def test_bad_member_ids_are_refused(bad):
    with pytest.raises(EmpirError):
        settings.parse_member_id(bad)


def test_which_member_is_full_precision_comes_from_its_precision():
    assert settings.is_full_precision(32, 32) and settings.is_full_precision([32, 32], 32)
    assert not settings.is_full_precision(32, 4) and not settings.is_full_precision([32, 2], 32)
    for name in settings.EMPIR_MEMBERS:
        d = settings.get(name)
        assert d.empir_fp == f"{name}-fp-s1" and d.empir_fp not in d.empir_lp
        assert sorted(d.empir_lp + [d.empir_fp]) == sorted(d.empir_ids)


def test_every_dataset_has_what_the_library_reads():
    for name, d in settings.DATASETS.items():
        assert d.arch in models.ARCHITECTURES and d.num_classes >= 10 and len(d.input_shape) == 3
        for w, a, s, *_ in d.zoo:
            settings.member_id(name, w, a, s)
        assert set(d.empir_ids) <= {settings.member_id(name, *m[:3]) for m in d.zoo}
    with pytest.raises(EmpirError, match="unknown dataset 'svhn'"):
        settings.get("svhn")
