"""A re-check round that has moved stops in the middle of a stage: every attack hears of its breaks and ends."""
import numpy as np
import pytest

from empir_lib.attack import apgd, convergence, objectives, outcomes, square, suite, targeted, validate
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, ensemble

LINF = {"norm": "linf", "eps": 0.3}


@pytest.fixture(scope="module")
def mnist():
    ens = ensemble.empir("mnist")
    x, y = data.load_sample("mnist", 40)
    keep = ensemble.predict(ens, x) == y  # correctly classified: every break is the attack's
    return ens, x[keep][:30], y[keep][:30]


def _first_break_stops(heard):
    def stop(i, xa):
        heard.append((np.asarray(i).copy(), xa.copy()))
        return True
    return stop


def test_apgd_ends_at_the_first_break_it_reports(mnist):
    ens, x, y = mnist
    fn = objectives.loss_fn(ens, "ce_mean_prob")
    full = apgd.run(fn, x, y, 0.3, "linf", n_iter=50, restarts=2)
    heard = []
    cut = apgd.run(fn, x, y, 0.3, "linf", n_iter=50, restarts=2, stop=_first_break_stops(heard))
    assert full.broken.sum() >= 10 and len(heard) == 1
    i, xa = heard[0]
    # What it reported is what it returns, and is a break of the vote within the ball.
    assert set(i) == set(np.flatnonzero(cut.broken)) and np.array_equal(cut.x_adv[i], xa)
    assert np.all(ensemble.predict(ens, xa) != y[i]) and validate.valid(x[i], xa, LINF).all()
    assert cut.broken.sum() < full.broken.sum() and cut.steps < full.steps


def test_apgd_t_and_square_end_at_the_first_break_in_their_images_indices(mnist):
    ens, x, y = mnist
    heard = []
    xa, stats = targeted.run(ens, targeted.loss_fn(ens), x, y, 0.3, "linf", n_iter=20, targets=3,
                             stop=_first_break_stops(heard))
    full_xa, full = targeted.run(ens, targeted.loss_fn(ens), x, y, 0.3, "linf", n_iter=20, targets=3)
    # Copies are reported as their images; after the wave it hears of the same breaks again, and ends.
    assert heard[0][0].max() < len(x) and all(set(h[0]) == set(heard[0][0]) for h in heard)
    assert stats["image_steps"] < full["image_steps"]
    assert np.all(ensemble.predict(ens, heard[0][1]) != y[heard[0][0]])
    heard.clear()
    _, sq = square.square_linf(ens, x, y, 0.3, queries=200, seed=1, stop=_first_break_stops(heard))
    _, sq_full = square.square_linf(ens, x, y, 0.3, queries=200, seed=1)
    assert len(heard) == 1 and sq["image_steps"] < sq_full["image_steps"]
    heard.clear()

    def once(xs, ys, s, stop):
        return square.square_linf(ens, xs, ys, 0.3, queries=200, seed=s, stop=stop)[0], 0

    square.with_restarts(once, ens, x, y, LINF, 4, seed=1, stop=_first_break_stops(heard))
    assert heard[0][0].max() < len(x) and all(set(h[0]) == set(heard[0][0]) for h in heard)


def test_a_cascade_with_stop_after_keeps_exactly_the_breaks_that_ended_it(mnist):
    ens, x, y = mnist
    specs = [{"name": "a", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 50, "restarts": 2},
             {"name": "b", "kind": "apgd", "loss": "dlr_mean_logits", "n_iter": 50, "restarts": 2}]
    whole = suite.cascade(ens, x, y, LINF, specs, progress=False)
    assert whole["stopped_in"] is None and whole["counts"]["a"] >= 10
    res = suite.cascade(ens, x, y, LINF, specs, progress=False, stop_after=3)
    assert res["stopped_in"] == "a" and res["stats"]["a"]["stopped"] and "b" not in res["stats"]
    assert 3 <= res["counts"]["a"] < whole["counts"]["a"]
    assert res["stats"]["a"]["image_steps"] < whole["stats"]["a"]["image_steps"]
    # Images the stop left unfinished are not counted as "the loss never rose".
    assert res["stats"]["a"]["no_progress"] <= whole["stats"]["a"]["no_progress"]
    broken = res["broken_by"] == 1
    assert np.all(ensemble.predict(ens, x[broken]) == y[broken])  # clean images; the breaks are re-checked
    with pytest.raises(EmpirError, match="deterministic"):
        suite.cascade(ens, x, y, LINF, [{**s, "eot_samples": 2} for s in specs], progress=False, stop_after=1)


def test_a_recheck_that_moved_stops_inside_its_first_stage(mnist, tmp_path):
    ens, x, y = mnist
    base = [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 25, "restarts": 1}]
    start = np.full(len(y), outcomes.ROBUST, np.int8)  # a row whose stage "never broke anything"
    res = convergence.recheck(ens, x, y, LINF, base, start, np.zeros(len(y)), progress=False,
                              state_path=tmp_path / "s.npz")
    assert convergence.moved_by(len(y)) == 1 and convergence.moved_by(1000) == 1
    assert convergence.moved_by(2000) == 2 and convergence.moved_by(10_000) == 10
    assert res["stopped_early"] and res["stopped_in"] == "recheck-apgd-ce" and not res["converged"]
    assert res["robust_before"] - res["robust_after"] >= 1
    whole = convergence.recheck(ens, x, y, LINF, base, start, np.zeros(len(y)), progress=False,
                                stop_when_moved=False)
    assert res["robust_after"] > whole["robust_after"]  # it did stop short of the whole stage
    assert whole["stopped_in"] is None and not whole["stopped_early"]
