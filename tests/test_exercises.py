"""The exercise checks accept the library's own answers and reject wrong ones.

A check that accepted everything would pass a notebook run unnoticed, so every
check here is also fed answers that must fail.  The last tests hold the
chapters to the exercise layout that book/exercises/README.md promises:
every exercise has a solution, solutions are folded in the HTML book, and the
handout command strips them all.
"""
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml
from nbconvert.preprocessors import ClearOutputPreprocessor, TagRemovePreprocessor

from empir_lib.book import exercises
from empir_lib.nets import quantize, zoo

REPO = Path(__file__).resolve().parent.parent
TICK, CROSS = exercises.OK, exercises.NO


def verdict(capsys, ok, expected: bool, *words):
    """The returned bool, the printed mark and (optionally) words of the hint all agree."""
    out = capsys.readouterr().out
    assert ok is expected, out
    assert out.startswith(TICK if expected else CROSS), out
    for w in words:
        assert w in out, out
    return out


# --- check_quantizer ------------------------------------------------------------------


def numpy_quantizer(x, k):
    n = 2**k - 1
    return np.round(x * n) / n


def test_quantizer_accepts_the_library_and_a_numpy_solution(capsys):
    verdict(capsys, exercises.check_quantizer(lambda x, k: quantize.quantize_k(x, k).numpy()), True)
    verdict(capsys, exercises.check_quantizer(numpy_quantizer), True, "k = 1..8")


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, k: np.floor(x * (2**k - 1)) / (2**k - 1), "wrong on"),   # floor instead of round
    (lambda x, k: np.round(x * 2**k) / 2**k, "wrong on"),               # 2^k instead of 2^k - 1
    (lambda x, k: x, "wrong on"),                                       # no quantisation at all
    (lambda x, k: numpy_quantizer(x, k)[:-1], "shape"),                 # drops an element
    (lambda x, k: numpy_quantizer(x, 2), "k=1"),                        # ignores k
])
def test_quantizer_rejects_wrong_functions(capsys, wrong, hint):
    verdict(capsys, exercises.check_quantizer(wrong), False, hint)


@pytest.mark.parametrize("check", ["check_quantizer", "check_vote"])
def test_checks_report_a_student_exception_without_raising(capsys, check):
    def stub(*args):
        raise NotImplementedError("not written yet")

    verdict(capsys, getattr(exercises, check)(stub), False, "NotImplementedError")


def test_quantizer_inputs_cover_every_level_and_avoid_ties():
    for k in range(1, 9):
        x = exercises.quantizer_inputs(k)
        n = 2**k - 1
        assert set(np.round(x * n).astype(int)) == set(range(n + 1))
        assert np.all(np.abs((x.astype(np.float64) * n) % 1 - 0.5) > 1e-4)


# --- check_levels ---------------------------------------------------------------------


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("kind", ["weights", "activations"])
def test_levels_accept_the_library_in_any_order(capsys, bits, kind):
    verdict(capsys, exercises.check_levels(quantize.levels(bits, kind)[::-1].tolist(), bits, kind), True)


@pytest.mark.parametrize("answer, hint", [
    ([-1.0, 0.0, 1.0], "8 distinct levels"),                     # a zero level DoReFa does not have
    ([j / 7 for j in range(8)], "not the right values"),          # activation levels, not weight levels
    ("minus one to one", "list of numbers"),
])
def test_levels_reject_wrong_answers(capsys, answer, hint):
    verdict(capsys, exercises.check_levels(answer, 3, "weights"), False, hint)


# --- check_ste_gradients --------------------------------------------------------------


def test_ste_gradients_are_the_clip_window():
    np.testing.assert_array_equal(exercises.ste_gradients(), [0, 1, 1, 0])


def test_ste_check_accepts_tensorflow_and_rejects_the_true_derivative(capsys):
    verdict(capsys, exercises.check_ste_gradients(exercises.ste_gradients()), True)
    verdict(capsys, exercises.check_ste_gradients([0, 0, 0, 0]), False, "STE")
    verdict(capsys, exercises.check_ste_gradients([1, 1, 1, 1]), False, "a=-0.25", "a=1.3")
    verdict(capsys, exercises.check_ste_gradients([0, 1, 1]), False, "one gradient per point")


# --- the zoo checks, on a small fake manifest so the answers are known ----------------


def entry(wbits, abits, acc, dataset="mnist", seed=1):
    return {"dataset": dataset, "wbits": wbits, "abits": abits, "seed": seed, "test_accuracy": acc}


@pytest.fixture
def fake_zoo(tmp_path):
    members = {"mnist-fp-s1": entry(32, 32, 0.99), "mnist-a1w1-s1": entry(1, 1, 0.8857),
               "mnist-a2w4-s1": entry(4, 2, 0.981), "mnist-a4w2-s1": entry(2, 4, 0.9763),
               "cifar10-a4w4-s1": entry(4, 4, 0.995, "cifar10")}
    (tmp_path / "manifest.json").write_text(json.dumps({"members": members}))
    return tmp_path


def test_best_member(capsys, fake_zoo):
    assert exercises.best_lowprecision_member("mnist", fake_zoo) == ("mnist-a2w4-s1", 0.981)
    verdict(capsys, exercises.check_best_member("mnist-a2w4-s1", "mnist", fake_zoo), True, "98.10%")
    verdict(capsys, exercises.check_best_member("mnist-a4w2-s1", "mnist", fake_zoo), False, "does better")
    verdict(capsys, exercises.check_best_member("mnist-fp-s1", "mnist", fake_zoo), False, "full precision")
    # a member of another dataset, even a better one, is not an answer for MNIST
    verdict(capsys, exercises.check_best_member("cifar10-a4w4-s1", "mnist", fake_zoo), False, "not a mnist")


def test_accuracy_gap(capsys, fake_zoo):
    assert exercises.accuracy_gap("mnist", 1, 1, zoo_dir=fake_zoo) == pytest.approx(10.43)
    verdict(capsys, exercises.check_accuracy_gap(10.43, "mnist", 1, 1, fake_zoo), True, "10.43")
    verdict(capsys, exercises.check_accuracy_gap(0.1043, "mnist", 1, 1, fake_zoo), False, "fraction")
    verdict(capsys, exercises.check_accuracy_gap(-10.43, "mnist", 1, 1, fake_zoo), False, "sign")
    verdict(capsys, exercises.check_accuracy_gap(11.0, "mnist", 1, 1, fake_zoo), False, "not quite")
    verdict(capsys, exercises.check_accuracy_gap("ten", "mnist", 1, 1, fake_zoo), False, "one number")


def test_zoo_checks_accept_their_own_answer_on_the_real_zoo(capsys):
    if not any(v["wbits"] != 32 for v in zoo.members("mnist").values()):
        pytest.skip("the zoo has no low-precision MNIST member")
    best, _ = exercises.best_lowprecision_member("mnist")
    verdict(capsys, exercises.check_best_member(best, "mnist"), True)


# --- the chapters keep the exercise layout -------------------------------------------


def chapter_notebooks():
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [c["file"] for part in toc.get("parts", []) for c in part.get("chapters", [])]
    # The numbered chapters have exercises; an appendix (e.g. book/appendix_original_code) has none.
    return [REPO / f"{f}.ipynb" for f in files if Path(f).name[:2].isdigit() and (REPO / f"{f}.ipynb").exists()]


def tags(cell):
    return set(cell.metadata.get("tags", []))


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.name)
def test_chapter_exercises_have_folded_solutions(path):
    nb = nbformat.read(path, as_version=4)
    exercise_cells = [c for c in nb.cells if "exercise" in tags(c)]
    solutions = [c for c in nb.cells if "solution" in tags(c)]
    headings = [c for c in nb.cells if c.cell_type == "markdown" and "### Exercise" in c.source]
    assert len(headings) >= 2, f"{path.name}: fewer than two exercises"
    assert len(solutions) >= len(headings), f"{path.name}: an exercise has no solution"
    for c in exercise_cells:
        assert c.cell_type == "code" and "exercises.check_" in c.source, c.source
    for c in solutions:
        if c.cell_type == "code":
            assert "hide-cell" in tags(c), f"{path.name}: solution code not folded:\n{c.source}"
        else:
            assert ":class: dropdown" in c.source, f"{path.name}: solution text not folded:\n{c.source}"


@pytest.mark.parametrize("path", chapter_notebooks(), ids=lambda p: p.name)
def test_handout_command_strips_solutions_and_outputs(path):
    # The same two preprocessors, with the same settings, as the command in book/exercises/README.md.
    nb = nbformat.read(path, as_version=4)
    remove = TagRemovePreprocessor(remove_cell_tags={"solution"}, enabled=True)
    nb, _ = remove.preprocess(nb, {})
    nb, _ = ClearOutputPreprocessor(enabled=True).preprocess(nb, {})
    assert not any("solution" in tags(c) for c in nb.cells)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert any("exercise" in tags(c) for c in nb.cells)


def test_readme_gives_the_handout_command():
    text = (REPO / "book" / "exercises" / "README.md").read_text()
    assert "--TagRemovePreprocessor.remove_cell_tags solution" in text
    assert "--ClearOutputPreprocessor.enabled=True" in text


# --- chapter 2: the attacks ------------------------------------------------------------


def tf_fgsm(model, x, y, eps, sign=1.0, clip=True, use_sign=True):
    """A student's FGSM written from Eq. 1 with a GradientTape, with switches for typical mistakes."""
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.keras.losses.sparse_categorical_crossentropy(y, model(x), from_logits=True)
    g = tape.gradient(loss, x)
    xa = x + sign * eps * (tf.sign(g) if use_sign else g)
    return (tf.clip_by_value(xa, 0, 1) if clip else xa).numpy()


def test_fgsm_check_accepts_a_tape_solution_and_the_library(capsys):
    verdict(capsys, exercises.check_fgsm(tf_fgsm), True, "matches Eq. 1")
    verdict(capsys, exercises.check_fgsm(exercises.reference_fgsm), True)


@pytest.mark.parametrize("kwargs, hint", [
    ({"sign": -1.0}, "down"),
    ({"clip": False}, "clip"),
    ({"use_sign": False}, "sign"),
])
def test_fgsm_check_rejects_typical_mistakes(capsys, kwargs, hint):
    verdict(capsys, exercises.check_fgsm(lambda m, x, y, e: tf_fgsm(m, x, y, e, **kwargs)), False, hint)


def test_fgsm_check_reports_shape_and_exceptions(capsys):
    verdict(capsys, exercises.check_fgsm(lambda m, x, y, e: x[:1]), False, "shape")

    def stub(m, x, y, e):
        raise NotImplementedError("write FGSM")

    verdict(capsys, exercises.check_fgsm(stub), False, "NotImplementedError")


def test_linf_check(capsys):
    def per_image(x, xa):
        return np.abs(xa - x).reshape(len(x), -1).max(1)

    verdict(capsys, exercises.check_linf_norm(per_image), True)
    verdict(capsys, exercises.check_linf_norm(lambda x, xa: np.abs(xa - x).max()), False, "one number")
    verdict(capsys, exercises.check_linf_norm(lambda x, xa: (xa - x).reshape(len(x), -1).max(1)), False,
            "absolute")
    verdict(capsys, exercises.check_linf_norm(
        lambda x, xa: np.sqrt(((xa - x) ** 2).reshape(len(x), -1).sum(1))), False, "L2")


def test_gradient_counts_follow_the_presets(capsys):
    from empir_lib.core import settings

    counts = exercises.gradient_counts("mnist")
    assert counts == {"fgsm": 1, "bim": settings.ATTACK_PRESETS["mnist"]["bim"]["nb_iter"],
                      "pgd": settings.ATTACK_PRESETS["mnist"]["pgd"]["nb_iter"], "cw": 50}
    verdict(capsys, exercises.check_gradient_counts(counts), True)
    verdict(capsys, exercises.check_gradient_counts({**counts, "cw": 1}), False, "cw")
    verdict(capsys, exercises.check_gradient_counts([1, 40, 40, 50]), False, "dict")


# --- chapter 6: hardware overheads ------------------------------------------------------


CIFAR_EMPIR = [(4, 2), (2, 2), (32, 32)]
MNIST_EMPIR = [(2, 4), (2, 4), (32, 32)]


def test_overheads_check(capsys):
    verdict(capsys, exercises.check_overheads({"time": 1.1875, "storage": 1.1875}, CIFAR_EMPIR), True)
    verdict(capsys, exercises.check_overheads({"time": 0.1875, "storage": 0.1875}, CIFAR_EMPIR), False,
            "LP members' part")
    # MNIST: time from the weight bits (1 + 2 * 2/32) and storage from max(w, a) (1 + 2 * 4/32) are both wrong
    verdict(capsys, exercises.check_overheads({"time": 1.125, "storage": 1.25}, MNIST_EMPIR), False,
            "wider of wbits and abits", "count wbits")
    verdict(capsys, exercises.check_overheads(1.25, MNIST_EMPIR), False, "dict")
    verdict(capsys, exercises.check_overheads({"time": 1.25, "storage": 1.25}, CIFAR_EMPIR, "native"), False,
            "storage")


def test_pack_check(capsys):
    from empir_lib.hardware import overhead

    verdict(capsys, exercises.check_pack(overhead.pack_codes), True)
    verdict(capsys, exercises.check_pack(lambda c, k: c.astype(np.uint8)), False, "not a whole byte")
    msb_first = lambda c, k: np.packbits(((c[:, None] >> np.arange(k)[::-1]) & 1).astype(np.uint8).ravel(),  # noqa: E731
                                         bitorder="little")
    verdict(capsys, exercises.check_pack(msb_first), False, "least significant bit first")
    verdict(capsys, exercises.check_pack(lambda c, k: overhead.pack_codes(c, k).astype(np.int64)), False, "uint8")


# --- chapter 4: Pareto front and input quantisation ----------------------------------


TRADEOFF_CLEAN = {"a": 0.99, "b": 0.97, "c": 0.95, "d": 0.96, "e": 0.99}
TRADEOFF_ADV = {"a": 0.10, "b": 0.50, "c": 0.90, "d": 0.40, "e": 0.05}


def test_pareto_front_drops_dominated_members():
    # d is beaten by b on both axes; e ties a on clean but is worse under attack
    assert exercises.pareto_front(TRADEOFF_CLEAN, TRADEOFF_ADV) == ["a", "b", "c"]


def test_check_pareto(capsys):
    verdict(capsys, exercises.check_pareto(["c", "a", "b"], TRADEOFF_CLEAN, TRADEOFF_ADV), True, "a, b, c")
    verdict(capsys, exercises.check_pareto(["a", "b", "c", "d"], TRADEOFF_CLEAN, TRADEOFF_ADV), False,
            "d is dominated", "b has")
    verdict(capsys, exercises.check_pareto(["a", "b"], TRADEOFF_CLEAN, TRADEOFF_ADV), False, "missing", "c")
    verdict(capsys, exercises.check_pareto(["a", "zz"], TRADEOFF_CLEAN, TRADEOFF_ADV), False, "zz")
    verdict(capsys, exercises.check_pareto("a", TRADEOFF_CLEAN, TRADEOFF_ADV), False, "list of member ids")


def test_flippable_fraction_by_hand():
    # 1 bit: threshold at 0.5.  0.0 and 1.0 stay put under +-0.3; 0.3 and 0.6 can cross; 0.5 rounds
    # to even (0) and 0.5 + 0.3 rounds to 1.
    x = np.float32([0.0, 1.0, 0.3, 0.6, 0.5, 0.1])
    assert exercises.flippable_fraction(x, 1, 0.3) == pytest.approx(3 / 6)
    # 2 bits: thresholds at 1/6, 1/2, 5/6: every pixel is within 0.3 of one
    assert exercises.flippable_fraction(x, 2, 0.3) == 1.0
    assert exercises.flippable_fraction(x, 1, 0.0) == 0.0


def test_check_flippable_fraction(capsys):
    x = np.float32([0.0, 1.0, 0.3, 0.6, 0.5, 0.1, 0.0, 0.0])
    expected = exercises.flippable_fraction(x, 1, 0.3)
    verdict(capsys, exercises.check_flippable_fraction(expected, x), True, "37.5%")
    verdict(capsys, exercises.check_flippable_fraction(100 * expected, x), False, "percentage")
    verdict(capsys, exercises.check_flippable_fraction(1 - expected, x), False, "can NOT")
    verdict(capsys, exercises.check_flippable_fraction(0.9, x), False, "not quite")
    verdict(capsys, exercises.check_flippable_fraction("half", x), False, "one number")


# --- chapter 5: voting, averaging and the original's loss ---------------------------------


def numpy_vote(votes, fp):
    """An independent max vote with the FP-first tie-break, written from the rule's statement."""
    order = [i for i in range(len(fp)) if fp[i]] + [i for i in range(len(fp)) if not fp[i]]
    out = []
    for col in np.asarray(votes).T:
        counts = np.bincount(col)
        tied = set(np.flatnonzero(counts == counts.max()))
        out.append(next(col[i] for i in order if col[i] in tied))
    return np.array(out)


def test_reference_vote_matches_the_rule_statement_and_the_original():
    # three members (LP, LP, FP): majority wins, a three-way disagreement goes to the FP member
    votes = np.array([[0, 1, 2], [1, 1, 0], [2, 0, 1]]).T
    np.testing.assert_array_equal(exercises.reference_vote(votes, (False, False, True)), [2, 1, 1])
    for votes, fp in exercises.vote_cases():
        np.testing.assert_array_equal(exercises.reference_vote(votes, fp), numpy_vote(votes, fp))


def test_check_vote_accepts_a_correct_vote(capsys):
    verdict(capsys, exercises.check_vote(numpy_vote), True, "ensemble.vote")
    verdict(capsys, exercises.check_vote(exercises.reference_vote), True)


def plain_majority(votes, fp):
    # ties go to the smallest class, as np.argmax(bincount) does: the FP member is ignored
    return np.array([np.bincount(c).argmax() for c in np.asarray(votes).T])


def last_member_decides(votes, fp):
    # right for EMPIR's (LP, LP, FP) order only: wrong when the FP member is elsewhere
    out = []
    for col in np.asarray(votes).T:
        counts = np.bincount(col)
        out.append(counts.argmax() if counts.max() * 2 > len(col) else col[-1])
    return np.array(out)


@pytest.mark.parametrize("wrong, hint", [
    (plain_majority, "the rule gives"),
    (last_member_decides, "the rule gives"),
    (lambda votes, fp: np.asarray(votes)[0], "the rule gives"),
    (lambda votes, fp: numpy_vote(votes, fp)[:-1], "one class per image"),
])
def test_check_vote_rejects_wrong_votes(capsys, wrong, hint):
    verdict(capsys, exercises.check_vote(wrong), False, hint)




def test_rule_predictions_and_check_rules_disagree(capsys):
    # two members narrowly for class 0, one member sure of class 1: the vote says 0, the mean says 1
    probs = [[0.55, 0.45], [0.55, 0.45], [0.0, 1.0]]
    preds = exercises.rule_predictions(np.asarray(probs)[:, None, :])
    assert (int(preds["vote"][0]), int(preds["average"][0])) == (0, 1)
    verdict(capsys, exercises.check_rules_disagree(probs), True, "vote picks class 0", "average picks class 1")
    verdict(capsys, exercises.check_rules_disagree([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]]), False, "both rules")
    verdict(capsys, exercises.check_rules_disagree([[0.9, 0.3], [0.8, 0.2], [0.6, 0.4]]), False, "summing to 1")
    verdict(capsys, exercises.check_rules_disagree([[0.5, 0.5], [0.5, 0.5]]), False, "shape")


def test_prob_as_logits_loss_range_by_hand(capsys):
    lo, hi = exercises.prob_as_logits_loss_range(10)
    assert lo == pytest.approx(np.log(np.e + 9) - 1, abs=1e-5)
    assert hi == pytest.approx(np.log(np.e + 9), abs=1e-5)
    # convexity argument: no probability vector goes below the vertex value
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(10), 1000)
    loss = np.log(np.exp(p).sum(1)) - p[:, 0]
    assert loss.min() >= lo - 1e-6 and loss.max() <= hi + 1e-6
    verdict(capsys, exercises.check_prob_as_logits_range((hi, lo)), True, "exactly 1 wide")
    verdict(capsys, exercises.check_prob_as_logits_range((0.0, np.log(10))), False, "log-probabilities")
    verdict(capsys, exercises.check_prob_as_logits_range((1.0, 2.0)), False, "width is right")
    verdict(capsys, exercises.check_prob_as_logits_range((1.46,)), False, "two numbers")


# --- chapter 7: the result tables ------------------------------------------------------


def write_table2(root, dataset, accuracies):
    """Fake Table 2 results files: {stem: {attack: accuracy}} under root/<dataset>/table2/."""
    folder = root / dataset / "table2"
    folder.mkdir(parents=True, exist_ok=True)
    for stem, cells in accuracies.items():
        for attack, acc in cells.items():
            (folder / f"{stem}-{attack}.json").write_text(json.dumps(
                {"adversarial_accuracy": acc, "clean_accuracy": 0.99, "n": 100}))


FAKE_TABLE2 = {"baseline-paper": {"cw": 0.04, "fgsm": 0.12, "bim": 0.01, "pgd": 0.01},
               "empir-paper": {"cw": 0.80, "fgsm": 0.70, "bim": 0.20, "pgd": 0.18}}


def test_average_gain_by_hand(tmp_path, capsys):
    write_table2(tmp_path, "mnist", FAKE_TABLE2)
    # (80 + 70 + 20 + 18) / 4 - (4 + 12 + 1 + 1) / 4 = 47 - 4.5
    assert exercises.average_gain("mnist", tmp_path) == pytest.approx(42.5)
    verdict(capsys, exercises.check_average_gain(42.5, "mnist", tmp_path), True, "42.50")
    verdict(capsys, exercises.check_average_gain(0.425, "mnist", tmp_path), False, "fraction")
    verdict(capsys, exercises.check_average_gain(-42.5, "mnist", tmp_path), False, "sign")
    verdict(capsys, exercises.check_average_gain(47.48 - 4.92, "mnist", tmp_path), False, "paper's gain")
    verdict(capsys, exercises.check_average_gain(50.0, "mnist", tmp_path), False, "not quite")
    verdict(capsys, exercises.check_average_gain("lots", "mnist", tmp_path), False, "one number")


def test_average_gain_waits_for_missing_results(tmp_path, capsys):
    write_table2(tmp_path, "mnist", {"baseline-paper": FAKE_TABLE2["baseline-paper"],
                                     "empir-paper": {"fgsm": 0.7}})
    assert exercises.average_gain("mnist", tmp_path) is None
    verdict(capsys, exercises.check_average_gain(42.5, "mnist", tmp_path), False, "empir reproduce mnist")


def test_halfwidth_check(capsys):
    verdict(capsys, exercises.check_halfwidth(lambda p, n: 1.96 * np.sqrt(p * (1 - p) / n)), True)
    verdict(capsys, exercises.check_halfwidth(exercises.binomial_halfwidth), True)
    verdict(capsys, exercises.check_halfwidth(lambda p, n: np.sqrt(p * (1 - p) / n)), False, "standard error")
    verdict(capsys, exercises.check_halfwidth(lambda p, n: 196 * np.sqrt(p * (1 - p) / n)), False,
            "percentage")
    verdict(capsys, exercises.check_halfwidth(lambda p, n: 1.96 * p * (1 - p) / n), False, "square root")
    verdict(capsys, exercises.check_halfwidth(lambda p, n: 1.96 * np.sqrt(p / n)), False, "expected")


def test_halfwidth_by_hand():
    assert exercises.binomial_halfwidth(0.5, 100) == pytest.approx(0.098)
    assert exercises.binomial_halfwidth(0.0, 500) == 0.0


# --- chapter 8: adaptive attacks ---------------------------------------------------------


def log_mean_prob(z):
    """The mixture's log-probability, written from its definition in NumPy (stable)."""
    z = np.asarray(z, np.float64)
    logp = z - z.max(-1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
    m = logp.max(0)
    return m + np.log(np.exp(logp - m).mean(0))


def softmax_np(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_library_mean_prob_objective_is_the_mixture_log_probability():
    z = exercises.mean_prob_problem()
    np.testing.assert_allclose(exercises.objective_scores(z, "mean_prob"), log_mean_prob(z), atol=1e-4)
    # softmax of the scores is the plain mean of the members' probabilities
    np.testing.assert_allclose(softmax_np(exercises.objective_scores(z, "mean_prob")),
                               softmax_np(z.astype(np.float64)).mean(0), atol=1e-6)


def test_mean_prob_check(capsys):
    verdict(capsys, exercises.check_mean_prob_scores(log_mean_prob), True, "mixture")
    # plus a constant per image: softmax does not see it
    verdict(capsys, exercises.check_mean_prob_scores(lambda z: log_mean_prob(z) + 3.0), True)
    verdict(capsys, exercises.check_mean_prob_scores(lambda z: softmax_np(z).mean(0)), False, "log")
    verdict(capsys, exercises.check_mean_prob_scores(lambda z: z.mean(0)), False, "mean of the logits")
    verdict(capsys, exercises.check_mean_prob_scores(lambda z: z[-1]), False, "differs")
    verdict(capsys, exercises.check_mean_prob_scores(lambda z: log_mean_prob(z)[:3]), False, "shape")


def test_mean_prob_check_catches_underflow(capsys):
    def naive(z):  # float32 softmax of confident members underflows to 0 for whole rows
        with np.errstate(divide="ignore"):
            return np.log(np.zeros(z.shape[1:], np.float32))

    verdict(capsys, exercises.check_mean_prob_scores(naive), False, "-inf")


def test_worst_case_by_hand():
    correct = {"a": np.array([1, 1, 0, 1], bool), "b": np.array([1, 0, 1, 1], bool)}
    assert exercises.worst_case_accuracy(correct) == 0.5  # images 0 and 3 survive both


def test_worst_case_check(capsys):
    per_image = lambda c: np.mean(np.all(list(c.values()), axis=0))  # noqa: E731
    verdict(capsys, exercises.check_worst_case(per_image), True, "every attack")
    verdict(capsys, exercises.check_worst_case(lambda c: min(np.mean(v) for v in c.values())), False,
            "strongest single attack")
    verdict(capsys, exercises.check_worst_case(lambda c: np.mean(np.any(list(c.values()), axis=0))), False,
            "*any*")
    verdict(capsys, exercises.check_worst_case(lambda c: 100 * per_image(c)), False, "percentage")
    verdict(capsys, exercises.check_worst_case(lambda c: 0.5), False, "not quite")


# --- chapter 9: ImageNet scale -------------------------------------------------------------


def test_eps_in_255ths_follows_the_preset(capsys):
    assert exercises.eps_in_255ths() == pytest.approx(255 * 0.1 * 0.226)
    verdict(capsys, exercises.check_eps_in_255ths(0.1 * 0.226 * 255), True, "5.76")
    verdict(capsys, exercises.check_eps_in_255ths(5.76), True)
    verdict(capsys, exercises.check_eps_in_255ths(0.0226), False, "multiply by 255")
    verdict(capsys, exercises.check_eps_in_255ths(25.5), False, "standard deviation")
    verdict(capsys, exercises.check_eps_in_255ths(0.1 / 0.226 * 255), False, "divided")
    verdict(capsys, exercises.check_eps_in_255ths(8.0), False, "not quite")
    verdict(capsys, exercises.check_eps_in_255ths("small"), False, "one number")


def layerwise_fraction(f, k):
    return f + (1 - f) * k / 32


def test_member_storage_reference_is_the_packed_size():
    from empir_lib.hardware import overhead
    from empir_lib.nets import models

    model = models.alexnet_tiny(2, 2, width=0.25)
    report = overhead.storage_report(model)
    f, k, expected = exercises.storage_cases()[3]
    assert (f, k) == (pytest.approx(report["fp_share"]), 2)
    assert expected == pytest.approx(layerwise_fraction(f, k))
    # packing pads each tensor to whole bytes: at most one byte per weight tensor more
    assert 0 <= report["packed_bytes"] - expected * report["float_bytes"] <= len(model.weights)


def test_member_storage_check(capsys):
    verdict(capsys, exercises.check_member_storage(layerwise_fraction), True, "Eq. 6")
    verdict(capsys, exercises.check_member_storage(lambda f, k: k / 32), False, "float32")
    verdict(capsys, exercises.check_member_storage(lambda f, k: f * k / 32 + (1 - f)), False, "swapped")
    verdict(capsys, exercises.check_member_storage(lambda f, k: 100 * layerwise_fraction(f, k)), False,
            "percentage")
    verdict(capsys, exercises.check_member_storage(lambda f, k: 1 + layerwise_fraction(f, k)), False,
            "whole FP model")
    verdict(capsys, exercises.check_member_storage(lambda f, k: f), False, "expected")

    def stub(f, k):
        raise NotImplementedError("not written yet")

    verdict(capsys, exercises.check_member_storage(stub), False, "NotImplementedError")
