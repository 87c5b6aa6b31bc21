"""Chapter 11's exercise checks accept a right answer and say what is wrong with wrong ones."""
import numpy as np

from empir_lib.book import exercises


def crossover(eps, member, fp):
    beaten = False
    for e, a, b in zip(eps, member, fp):
        if e > 0 and a > b:
            beaten = True
        elif e > 0 and beaten:
            return e
    return None


def test_a_right_crossover_passes(capsys):
    assert exercises.check_crossover(crossover)
    assert capsys.readouterr().out.startswith(exercises.OK)


def test_wrong_crossovers_fail_with_a_hint(capsys):
    first_below = lambda eps, m, f: next((e for e, a, b in zip(eps, m, f) if e > 0 and a <= b), None)  # noqa: E731
    assert not exercises.check_crossover(first_below)
    assert "never" in capsys.readouterr().out

    def strict(eps, member, fp):  # a tie still counted as beating
        beaten = False
        for e, a, b in zip(eps, member, fp):
            if e > 0 and a >= b:
                beaten = True
            elif e > 0 and beaten:
                return e
        return None

    assert not exercises.check_crossover(strict)
    assert not exercises.check_crossover(lambda *a: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out


def majority(preds):
    counts = np.stack([np.bincount(c, minlength=preds.max() + 1) for c in preds.T])
    return counts.argmax(1)  # argmax returns the first maximum: the smaller class


def test_a_right_majority_passes_and_wrong_ones_fail(capsys):
    assert exercises.check_majority(majority)
    assert capsys.readouterr().out.startswith(exercises.OK)

    def larger(preds):  # ties to the larger class
        counts = np.stack([np.bincount(c, minlength=preds.max() + 1) for c in preds.T])
        return counts.shape[1] - 1 - counts[:, ::-1].argmax(1)

    assert not exercises.check_majority(larger)
    assert "ties to the smaller class" in capsys.readouterr().out
    assert not exercises.check_majority(lambda p: p[0])  # the first draw is not the majority
    assert not exercises.check_majority(lambda p: majority(p)[:1])
    assert "return" in capsys.readouterr().out


def test_flip_share_check_passes_the_formula_and_fails_the_usual_slips():
    assert exercises.check_flip_share(lambda k, e: min(1.0, e * (2**k - 1)))
    assert not exercises.check_flip_share(lambda k, e: min(1.0, e * 2**k))  # levels instead of bins
    assert not exercises.check_flip_share(lambda k, e: e * (2**k - 1))  # never capped at 1
    assert not exercises.check_flip_share(lambda k, e: float("nan"))
