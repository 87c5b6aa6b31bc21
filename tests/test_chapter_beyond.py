"""Chapter 11's helpers, part 1 (empir_lib.book.chapters.beyond), on results files written here, and its figures.

Part 2, the stochastic ensemble: tests/test_chapter_stochastic.py.
"""
import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from empir_lib.book import plots
from empir_lib.book.chapters import beyond
from empir_lib.studies import sweeps

EPS = sweeps.eps_grid("cifar10")


def write(root, name, record, dataset="cifar10"):
    path = root / dataset / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


def write_sweeps(root, attack="fgsm"):
    """FP falls linearly; a2w2 is above it up to eps 0.05 and below after; a4w4 is never above; a1w1 always."""
    ids = sweeps.members("cifar10")
    fp = [0.8 - 8 * e for e in EPS]
    curves = {ids[0]: fp, "cifar10-a2w2-s1": [v + (0.1 if e < 0.05 else -0.05) for v, e in zip(fp, EPS)],
              "cifar10-a4w4-s1": [v - 0.01 for v in fp], "cifar10-a1w1-s1": [v + 0.02 for v in fp]}
    for m in ids:
        acc = curves.get(m, fp)
        write(root, f"sweeps/whitebox-{m}-{attack}", {"eps": EPS, "accuracy": {m: acc}})
    write(root, f"sweeps/transfer-{attack}", {"eps": EPS, "accuracy": {m: [v + 0.3 for v in curves.get(m, fp)]
                                                                       for m in ids[1:]}})


def test_crossover_reads_where_a_member_beats_fp_and_where_it_stops():
    eps, fp = [0.0, 0.1, 0.2, 0.3], [0.9, 0.6, 0.5, 0.2]
    assert beyond.crossover(eps, [0.9, 0.8, 0.5, 0.1], fp) == {"start": 0.1, "stop": 0.2, "eps": 0.2,
                                                               "status": "crosses"}
    assert beyond.crossover(eps, [0.9, 0.5, 0.4, 0.1], fp)["status"] == "never"
    assert beyond.crossover(eps, [0.1, 0.7, 0.6, 0.3], fp)["status"] == "always"
    # Below FP at small eps (a lower clean accuracy), above it once FP has fallen.
    over = beyond.crossover(eps, [0.8, 0.5, 0.55, 0.5], fp)
    assert over == {"start": 0.2, "stop": None, "eps": None, "status": "overtakes"}
    assert beyond.crossover_text(over) == "beats FP from 0.2"
    assert beyond.crossover_text(beyond.crossover(eps, [0.9, 0.8, 0.5, 0.1], fp)) == "beats FP from 0.1, stops at 0.2"
    assert beyond.crossover_text(None) == "\u2014"


def test_sweep_panels_and_crossovers_from_files(tmp_path):
    panels, missing = beyond.sweep_panels("cifar10", "fgsm", tmp_path)
    assert len(missing) == 11 and not panels["white-box"]["series"]
    write_sweeps(tmp_path)
    panels, missing = beyond.sweep_panels("cifar10", "fgsm", tmp_path)
    assert not missing and panels["white-box"]["x"] == EPS
    assert set(panels["white-box"]["series"]) == set(panels["transfer from FP"]["series"])
    assert panels["transfer from FP"]["series"]["FP"] == panels["white-box"]["series"]["FP"]
    found, missing = beyond.crossovers("cifar10", tmp_path)
    assert len(missing) == 11  # PGD's files
    assert found["a2w2"][("white-box", "fgsm")] == {"start": EPS[1], "stop": 0.05, "eps": 0.05, "status": "crosses"}
    assert found["a4w4"][("white-box", "fgsm")]["status"] == "never"
    assert found["a1w1"][("white-box", "fgsm")]["status"] == "always"
    assert found["a2w2"][("transfer from FP", "fgsm")]["status"] == "always"
    md = beyond.crossover_table("cifar10", tmp_path)
    assert "| a2w2 | beats FP from 0.0125, stops at 0.05 |" in md
    assert "never beats FP" in md and "beats FP at every eps" in md
    fig = plots.precision_sweeps(panels, "fgsm")
    assert isinstance(fig, Figure) and len(fig.axes[0].lines) == 10


def test_flip_panels_and_the_mechanism_table(tmp_path):
    ids = sweeps.members("cifar10")
    px = {str(b): [min(1.0, e * (2**b - 1) * 2) for e in EPS] for b in sweeps.PIXEL_BITS}
    for m in ids:
        layers = {} if m == ids[0] else {"conv": {"abits": 2, "fraction": [min(1.0, 10 * e) for e in EPS]}}
        write(tmp_path, f"sweeps/flips-{m}", {"eps": EPS, "fgsm": {"pixels": px, "layers": layers},
                                             "random": {"pixels": px, "layers": layers}})
    panels, missing = beyond.flip_panels("cifar10", tmp_path)
    assert not missing and set(panels["pixels, FGSM direction"]["series"]) == {"1-bit pixels", "2-bit pixels",
                                                                              "4-bit pixels"}
    assert panels["layer inputs, FGSM direction"]["series"]["abits = 2"][-1] == pytest.approx(100)
    assert beyond.steepest_rise(EPS, [0, 1, 2, 40, 41, 42, 43, 44, 45]) == EPS[3]
    assert beyond.steepest_rise([0, 1], [5, 5]) is None
    write_sweeps(tmp_path)
    md = beyond.mechanism_table("cifar10", tmp_path)
    # The synthetic layer share rises evenly (10 eps, clipped at 1): its first step is the steepest.
    assert f"| 2 | {EPS[1]:.3g} | 0.05 | \u2014 |" in md
    assert isinstance(plots.flip_curves(panels), Figure)


def test_uniform_flip_share_matches_a_simulation():
    # Values uniform over the interior bins (between the first and last rounding boundaries), moves that
    # stay inside [0, 1]: the setting the formula describes.
    rng = np.random.default_rng(0)
    for bits, eps in ((2, 0.1), (2, 0.16), (4, 0.03), (8, 0.001)):
        k = 2**bits - 1
        v = rng.uniform(0.5 / k, 1 - 0.5 / k, 200000)
        measured = np.mean(np.round(k * (v + eps)) != np.round(k * v))
        assert measured == pytest.approx(beyond.uniform_flip_share(eps, bits), abs=0.01)
    assert beyond.uniform_flip_share(0.5, 2) == 1.0


def test_live_measurements_on_the_sample():
    from empir_lib.nets import data
    x, y = data.load_sample("mnist", 40)
    panels = beyond.live_flips("mnist-a2w2-s1", x, y, [0.0, 0.1, 0.3])
    px = panels["pixels, random sign"]["series"]
    assert px["1-bit pixels"][0] == 0 and px["2-bit, min(1, eps (2^k - 1))"] == pytest.approx([0, 30, 90])
    layers = panels["a2w2 layer inputs, FGSM direction"]["series"]
    assert layers and all(v[0] == 0 and v[-1] >= v[1] for v in layers.values())
