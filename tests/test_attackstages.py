"""The suite's new stages (APGD-T, Square-L2), output validation, continuing a cascade, the convergence
re-check, the per-image transfer check, the minimal L2 that always succeeds, and the paper protocol's labels."""
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from empir_lib.attack import (
    apgd,
    art_bridge,
    cascade_state,
    convergence,
    diagnostics,
    minnorm,
    objectives,
    outcomes,
    square,
    suite,
    targeted,
    validate,
)
from empir_lib.attack import progress as progress_bars
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, ensemble
from empir_lib.studies import evaluate, paper_labels, results, suite_checks, worstcase


def _masked_ensemble():
    # The input is rounded, so the gradient is exactly zero everywhere, yet the decision varies.
    inp = keras.Input((28, 28, 1))
    h = keras.layers.Lambda(lambda t: tf.round(t * 2.0) / 2.0)(inp)
    out = keras.layers.Dense(10, kernel_initializer=keras.initializers.RandomNormal(seed=3))(
        keras.layers.Flatten()(h))
    return ensemble.make([keras.Model(inp, out)], names=["masked"])


def test_apgd_takes_one_budget_per_image(empir_mnist):
    ens, x, y = empir_mnist
    x, y = x[:12], y[:12]
    eps = np.where(np.arange(12) % 2 == 0, 0.0, 3.0)
    out = apgd.run(ens_loss(ens), x, y, eps, "l2", n_iter=10)
    d = validate.norms(x, out.x_adv, "l2")
    assert np.all(d <= eps * (1 + 1e-4) + 1e-5)
    assert not out.broken[eps == 0].any() and out.broken[eps > 0].any()
    with pytest.raises(EmpirError, match="one finite number"):
        apgd.run(ens_loss(ens), x, y, np.full(5, 0.1), "l2", n_iter=2)


def _lucky_start(eps):
    # Zero gradient: an image is fooled only if its random start puts pixel 0 above 0.5 + 0.8 eps (about 1 in
    # 10 starts), so the share broken counts the independent random starts each image got.
    def fn(x, y):
        loss = 0.0 * tf.reduce_sum(x, [1, 2, 3])
        return loss, tf.where(x[:, 0, 0, 0] > 0.5 + 0.8 * eps, y + 1, y)
    return fn


@pytest.mark.parametrize("batch_size", [500, 40])
def test_restarts_side_by_side_are_independent_restarts(batch_size):
    n, eps = 300, 0.1
    x, y = np.full((n, 4, 4, 1), 0.5, np.float32), np.zeros(n, np.int64)
    one = apgd.run(_lucky_start(eps), x, y, eps, n_iter=1, restarts=1, batch_size=batch_size)
    eight = apgd.run(_lucky_start(eps), x, y, eps, n_iter=1, restarts=8, batch_size=batch_size)
    p = one.broken.mean()
    assert 0.03 < p < 0.25  # the toy's odds per start
    # Eight independent starts: 1 - (1 - p)^8.  Copies of one start (or of one batch's draw) would give p.
    expected = 1 - (1 - p) ** 8
    assert abs(eight.broken.mean() - expected) < 0.12
    assert np.all(eight.x_adv[eight.broken, 0, 0, 0] > 0.5 + 0.8 * eps)
    assert np.abs(eight.x_adv - x).max() <= eps + 1e-6


def test_apgd_copies_of_one_image_stop_once_one_is_broken():
    x = np.full((2, 4, 4, 1), 0.5, np.float32)
    def fn(xb, yb):  # label 1 is fooled at once, label 0 never
        return 0.0 * tf.reduce_sum(xb, [1, 2, 3]), tf.where(yb == 1, yb + 1, yb)
    y = np.array([1, 0])
    alone = apgd.run(fn, x, y, 0.1, n_iter=50)
    together = apgd.run(fn, x, y, 0.1, n_iter=50, groups=np.array([7, 7]))
    assert alone.broken.tolist() == together.broken.tolist() == [True, False]
    assert alone.steps == 2 + 50 and together.steps == 2
    with pytest.raises(EmpirError, match="one id per image"):
        apgd.run(fn, x, y, 0.1, n_iter=5, groups=np.array([1]))


def test_apgd_t_targets_side_by_side_count_each_break_once(empir_mnist):
    ens, x, y = empir_mnist
    x, y = x[:16], y[:16]
    side = targeted.run(ens, targeted.loss_fn(ens), x, y, 0.2, "linf", n_iter=10, targets=3)
    one = targeted.run(ens, targeted.loss_fn(ens), x, y, 0.2, "linf", n_iter=10, targets=3, batch_size=16)
    for xa, stats in (side, one):
        fooled = ensemble.predict(ens, xa) != y
        assert sum(stats["broken_per_target"]) == fooled.sum()
        assert validate.valid(x, xa, {"norm": "linf", "eps": 0.2}).all()


def test_square_restarts_side_by_side_take_the_first_copy_that_fools_the_vote(empir_mnist):
    ens, x, y = empir_mnist
    pred = ensemble.predict(ens, x)
    keep = np.flatnonzero(pred == y)[:3]
    xs, ys = x[keep], y[keep]
    other = x[np.flatnonzero((pred == y) & (y != ys[0]) & (y != ys[1]) & (y != ys[2]))[0]]
    calls = []

    def once(xb, yb, seed, stop):  # copy 5 of each image (the 6th restart) "finds" another digit
        calls.append((len(xb), seed))
        out = xb.copy()
        if len(xb) == 8 * len(xs):
            out[5 * len(xs):6 * len(xs)] = other
        return out, len(xb) * 10

    threat = {"norm": "linf", "eps": 1.0}
    best, steps = square.with_restarts(once, ens, xs, ys, threat, 8, seed=4)
    assert calls == [(24, 4)] and steps == 240
    assert np.array_equal(best, np.repeat(other[None], 3, 0))
    calls.clear()
    best, steps = square.with_restarts(once, ens, xs, ys, threat, 8, seed=4, batch_size=3)
    assert calls == [(3, 4 + r) for r in range(8)] and np.array_equal(best, xs)
    # An output outside the budget never counts as a break.
    calls.clear()
    best, _ = square.with_restarts(once, ens, xs, ys, {"norm": "linf", "eps": 0.01}, 8, seed=4)
    assert np.array_equal(best, xs)


def ens_loss(ens):
    return objectives.loss_fn(ens, "ce_mean_prob")


def test_attacks_report_the_steps_they_spend_as_they_spend_them(empir_mnist):
    ens, x, y = empir_mnist
    x, y = x[:6], y[:6]
    ticks = []
    out = apgd.run(ens_loss(ens), x, y, 0.05, n_iter=30, restarts=2, tick=ticks.append)
    assert len(ticks) > 3 and sum(ticks) == out.steps  # per segment, not once at the end
    ticks.clear()
    _, info = square.square_l2(ens, x, y, 0.5, queries=40, seed=1, tick=ticks.append)
    assert len(ticks) > 3 and sum(ticks) == info["image_steps"]
    ticks.clear()
    _, info = square.square_linf(ens, x, y, 0.05, queries=40, seed=1, tick=ticks.append)
    assert len(ticks) > 3 and sum(ticks) == info["image_steps"]


def test_the_cascade_bar_counts_image_steps_within_each_stages_budget(empir_mnist, capsys):
    ens, x, y = empir_mnist
    x, y = x[:8], y[:8]
    threat = {"norm": "l2", "eps": 0.3}
    specs = [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 12, "restarts": 2},
             {"name": "apgd-t", "kind": "apgd-t", "loss": "dlr_targeted_mean_logits", "n_iter": 8,
              "restarts": 1, "targets": 3},
             {"name": "square-l2", "kind": "square", "queries": 30, "restarts": 2},
             {"name": "cw-l2", "kind": "cw", "binary_search_steps": 2, "max_iterations": 5, "learning_rate": 0.1,
              "initial_const": 1.0, "confidence": 0.0, "abort_early": True, "batch_size": 100}]
    res = suite.cascade(ens, x, y, threat, specs, progress=True)
    for spec in specs:
        st = res["stats"][spec["name"]]
        assert 0 < st["image_steps"] <= suite.stage_budget(spec) * st["attacked"], spec["name"]
    assert suite.stage_budget(specs[1]) == 3 * 1 * 9 and suite.stage_budget(specs[2]) == 60
    err = capsys.readouterr().err
    assert "image-step" in err and "apgd-t" in err


def test_a_chunked_stage_bar_only_moves_forward_and_ends_at_its_total(empir_mnist, monkeypatch):
    ens, x, y = empir_mnist
    x, y = x[:8], y[:8]
    bars = []

    class Bar:  # records every count the cascade shows
        def __init__(self, total):
            self.total, self.n, self.shown = total, 0, []
            bars.append(self)

        def update(self, k):
            self.n += k
            self.shown.append(self.n)

        def refresh(self):
            self.shown.append(self.n)

        def close(self):
            pass

    monkeypatch.setattr(progress_bars, "steps_bar", lambda total, desc, progress: Bar(total))
    specs = [{"name": "square-l2", "kind": "square", "queries": 20, "restarts": 1}]
    res = suite.cascade(ens, x, y, {"norm": "l2", "eps": 0.5}, specs, chunk=2, progress=True)
    (bar,) = bars
    assert bar.total == 20 * res["stats"]["square-l2"]["attacked"] > 2 * 20  # more than one chunk
    assert bar.shown == sorted(bar.shown) and bar.shown[-1] == bar.total


def test_targeted_dlr_is_the_papers_formula_and_targets_skip_the_label(empir_mnist):
    z = tf.constant([[5.0, 3.0, 1.0, 0.0, -1.0], [0.0, 1.0, 2.0, 3.0, 4.0]])
    got = targeted.dlr_targeted(z, tf.constant([0, 4]), tf.constant([2, 1])).numpy()
    # -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)
    assert got == pytest.approx([-(5 - 1) / (5 - 0.5), -(4 - 1) / (4 - 1.5)])
    ens, x, y = empir_mnist
    ranked = targeted.target_ranking(ens, x[:20], y[:20], 9)
    assert ranked.shape == (20, 9) and not np.any(ranked == y[:20, None])
    assert all(len(set(r)) == 9 for r in ranked)
    with pytest.raises(EmpirError, match="wrong classes"):
        targeted.target_ranking(ens, x[:2], y[:2], 10)


def test_apgd_t_breaks_on_the_vote_within_the_ball(empir_mnist):
    ens, x, y = empir_mnist
    x, y = x[:16], y[:16]
    xa, stats = targeted.run(ens, targeted.loss_fn(ens), x, y, 0.2, "linf", n_iter=10, targets=2)
    fooled = ensemble.predict(ens, xa) != y
    assert fooled.any() and stats["image_steps"] > 0
    assert sum(stats["broken_per_target"]) == fooled.sum() and len(stats["broken_per_target"]) == 2
    assert validate.valid(x, xa, {"norm": "linf", "eps": 0.2}).all()


def test_square_l2_stays_finite_in_the_box_and_the_ball(empir_mnist):
    ens, x, y = empir_mnist
    # Saturated images (all black, all white) are where ART's Square-L2 divides by a zero norm.
    x = np.concatenate([x[:6], np.zeros((2, 28, 28, 1), np.float32), np.ones((2, 28, 28, 1), np.float32)])
    y = np.concatenate([y[:6], ensemble.predict(ens, x[6:])])
    xa, stats = square.square_l2(ens, x, y, 2.0, queries=60, seed=1)
    assert validate.valid(x, xa, {"norm": "l2", "eps": 2.0}).all()
    assert stats["image_steps"] >= len(x)
    # It moves: the perturbations use the budget (before clipping) on the images it did not break.
    assert np.median(validate.norms(x[:6], xa[:6], "l2")) > 0.5


def _gray_copies(ens, k=40):
    x = np.full((k, 28, 28, 1), 0.5, np.float32)
    return x, ensemble.predict(ens, x)


def _span(mask):
    rows, cols = np.nonzero(mask.any(0))[:2]
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


def test_square_copies_of_one_image_search_their_own_windows(empir_mnist):
    # One query after the start, on 40 copies of a gray image that no small step breaks: the pixels
    # each copy changed lie in its own window, so together they span more than one window would.
    ens = empir_mnist[0]
    x, y = _gray_copies(ens)
    xa, _ = square.square_linf(ens, x, y, 0.01, queries=2, seed=0, p_init=0.05)  # windows of 6 x 6
    d = xa[..., 0] - x[..., 0]
    moved = np.sign(d) != np.sign(np.sign(d).sum(1, keepdims=True))  # off its column's stripe
    assert moved.any(axis=(1, 2)).sum() >= 5 and min(_span(moved)) > 6
    xa, _ = square.square_l2(ens, x, y, 0.3, queries=2, seed=0, p_init=0.02)  # windows of 5 x 5
    grid = np.zeros((28, 28), bool)
    grid[1:26, 1:26] = True  # the start's 5 x 5 grid of patterns, non-zero everywhere on it
    emptied = (xa[..., 0] == x[..., 0]) & grid  # window 2 of an accepted proposal is emptied
    assert emptied.any(axis=(1, 2)).sum() >= 5 and min(_span(emptied)) > 5
    r, c = square.windows(np.random.default_rng(0), 50, 6, 28, 28)[1:]
    assert r.shape == (50, 6, 1) and c.shape == (50, 1, 6) and r.max() < 28 and c.max() < 28
    assert len(set(zip(r[:, 0, 0], c[:, 0, 0]))) > 40


def test_square_linf_is_valid_and_breaks_as_many_as_arts(empir_mnist):
    ens, x, y = empir_mnist
    keep = ensemble.predict(ens, x) == y
    x, y = x[keep][:40], y[keep][:40]
    xa, stats = square.square_linf(ens, x, y, 0.2, queries=150, seed=1)
    assert validate.valid(x, xa, {"norm": "linf", "eps": 0.2}).all() and stats["image_steps"] >= len(x)
    ours = int(np.sum(ensemble.predict(ens, xa) != y))
    arts = int(np.sum(ensemble.predict(ens, art_bridge.square(ens, x, y, 0.2, 150, 1, 1)) != y))
    assert ours >= arts - 2 and ours >= 10, (ours, arts)  # the reference ART implementation as a yardstick
    with pytest.raises(EmpirError, match="eps"):
        square.square_linf(ens, x, y, 1.5)


def test_square_schedule_and_pattern():
    assert square.p_selection(0.1, 0, 5000) == 0.1
    assert square.p_selection(0.1, 4999, 5000) == pytest.approx(0.1 / 512)
    p = square.pattern(7, np.random.default_rng(0))
    assert np.sum(p ** 2) == pytest.approx(1.0) and p.shape == (7, 7) and p.min() < 0 < p.max()


def test_validation_refuses_nan_out_of_box_and_over_budget():
    x = np.full((4, 3, 3, 1), 0.5, np.float32)
    xa = x.copy()
    xa[0, 0, 0, 0] = np.nan
    xa[1, 0, 0, 0] = 1.2
    xa[2] += 0.3
    xa[3, 0, 0, 0] += 0.1
    assert validate.valid(x, xa, {"norm": "linf", "eps": 0.25}).tolist() == [False, False, False, True]


def test_the_cascade_counts_invalid_outputs_and_never_as_breaks(empir_mnist, monkeypatch):
    ens, x, y = empir_mnist
    x, y = x[:10], y[:10]

    def nan_attack(ens, spec, threat, xb, yb, seed=0, tick=None, stop=None):
        return np.full_like(xb, np.nan), {}

    monkeypatch.setattr(suite, "run_attack", nan_attack)
    specs = [{"name": "broken-tool", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 1, "restarts": 1}]
    res = suite.cascade(ens, x, y, {"norm": "l2", "eps": 2.0}, specs, progress=False)
    correct = int(np.sum(ensemble.predict(ens, x) == y))
    assert res["stats"]["broken-tool"]["invalid"] == correct and res["counts"]["broken-tool"] == 0
    assert res["counts"]["robust"] == correct
    diag = diagnostics.run(ens, x, y, {"norm": "l2", "eps": 2.0}, res, diag_n=2)
    assert any(f.startswith("invalid_outputs") for f in diag["flags"])


SHORT = [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 3, "restarts": 1},
         {"name": "apgd-t", "kind": "apgd-t", "loss": targeted.LOSS, "n_iter": 5, "restarts": 1, "targets": 2}]


def test_continuing_a_cascade_equals_running_it_whole(empir_mnist):
    ens, x, y = empir_mnist
    x, y = x[:24], y[:24]
    threat = {"norm": "linf", "eps": 0.15}
    whole = suite.cascade(ens, x, y, threat, SHORT, progress=False)
    first = suite.cascade(ens, x, y, threat, SHORT[:1], progress=False)
    more = suite.cascade(ens, x, y, threat, SHORT, progress=False, start=first)
    assert np.array_equal(whole["broken_by"], more["broken_by"])
    assert more["stats"]["apgd-t"]["attacked"] == first["counts"]["robust"]
    other = first["broken_by"].copy()
    other[np.flatnonzero(other != outcomes.CLEAN)[0]] = outcomes.CLEAN  # a mistake the vote does not make
    with pytest.raises(EmpirError, match="do not match"):
        suite.cascade(ens, x, y, threat, SHORT, progress=False, start={**first, "broken_by": other})
    with pytest.raises(EmpirError, match="first stages"):
        suite.cascade(ens, x, y, threat, SHORT[1:], progress=False, start=first)


def test_a_round_that_stops_at_its_tolerance_attacks_the_closest_survivors_first(empir_mnist, monkeypatch):
    ens, x, y = empir_mnist
    keep = ensemble.predict(ens, x) == y
    x, y = x[keep][:12], y[keep][:12]
    p = ensemble.predict_all(ens, x)["mean_prob"]
    margin = p[np.arange(12), y] - np.where(np.eye(10, dtype=bool)[y], -1.0, p).max(1)
    todo = np.arange(12)[::-1].copy()
    out = cascade_state.closest_first(ens, x, y, todo, 3)
    assert list(out[:3]) == [11, 10, 9] and sorted(out) == list(range(12))  # the attacked part stays put
    assert np.all(np.diff(margin[out[3:]]) >= 0)
    assert np.array_equal(cascade_state.closest_first(ens, x, y, out, 3), out)  # a resume does not reshuffle
    closest = list(cascade_state.closest_first(ens, x, y, np.arange(12), 0))
    assert closest != list(range(12))  # else the test below could not tell the orders apart
    seen = []

    def no_break(ens_, spec_, threat_, xs, ys, seed, tick=None, stop=None):
        seen.extend(int(np.flatnonzero((x == xi).all(axis=(1, 2, 3)))[0]) for xi in xs)
        return xs.copy(), {}

    monkeypatch.setattr(suite, "run_attack", no_break)
    threat = {"norm": "l2", "eps": 1.0}
    res = suite.cascade(ens, x, y, threat, SHORT[:1], chunk=4, progress=False, stop_after=1)
    assert seen == closest and res["stats"]["apgd-ce"]["order"] == {"rule": cascade_state.ORDER, "from": 0}
    seen.clear()
    res = suite.cascade(ens, x, y, threat, SHORT[:1], chunk=4, progress=False)
    assert seen == list(range(12)) and "order" not in res["stats"]["apgd-ce"]


def test_the_suite_has_the_new_stages_in_order(empir_mnist):
    ens = empir_mnist[0]
    linf = [s["name"] for s in suite.attack_suite(ens, {"norm": "linf", "eps": 0.3})]
    l2 = suite.attack_suite(ens, {"norm": "l2", "eps": 2.0})
    assert linf.index("apgd-t") < linf.index("square") < linf.index("member-1")
    assert [s["name"] for s in l2][-6:-3] == ["apgd-t", "square-l2", "cw-l2"]
    assert l2[-1]["name"] == "transfer-fp" and all(diagnostics.single_member(s) for s in l2[-3:])
    sq = next(s for s in l2 if s["kind"] == "square")
    assert sq["queries"] == 5000 and next(s for s in l2 if s["kind"] == "apgd-t")["targets"] == 9


def test_per_image_transfer_check_flags_above_its_share():
    attacks = [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob"},
               {"name": "member-0", "kind": "apgd", "loss": "ce_member:0"},
               {"name": "transfer-fp", "kind": "apgd", "loss": "ce_member:1"}]
    broken_by = np.array([1] * 990 + [2] * 1 + [3] * 2 + [-1] * 7)
    tc = diagnostics.transfer_check(attacks, broken_by)
    assert tc["images"] == 3 and tc["flag"] and tc["after_every_ensemble_stage"]
    assert tc["per_stage"] == {"member-0": 1, "transfer-fp": 2}
    assert not diagnostics.transfer_check(attacks, np.array([1] * 999 + [3]))["flag"]
    late = attacks + [{"name": "apgd-t", "kind": "apgd-t", "loss": targeted.LOSS}]
    assert not diagnostics.transfer_check(late, broken_by)["after_every_ensemble_stage"]


def test_the_recheck_doubles_the_budget_and_measures_the_change(empir_mnist):
    ens, x, y = empir_mnist
    x, y = x[:20], y[:20]
    d = convergence.doubled(SHORT + [{"name": "sq", "kind": "square", "queries": 10, "restarts": 1}])
    assert [s["name"] for s in d] == ["recheck-apgd-ce", "recheck-apgd-t", "recheck-sq"]
    assert d[0]["n_iter"] == 6 and d[0]["restarts"] == 2 and d[2]["queries"] == 20
    # A row whose one stage never ran (every correct image "survived") is far from converged ...
    correct = ensemble.predict(ens, x) == y
    start = np.where(correct, outcomes.ROBUST, outcomes.CLEAN)
    res = convergence.recheck(ens, x, y, {"norm": "linf", "eps": 0.3}, SHORT[:1], start, np.zeros(20),
                              progress=False)
    assert res["change_points"] > 10 and not res["converged"] and set(res["stats"]) == {"recheck-apgd-ce"}
    two = SHORT[:1] + [{**SHORT[0], "name": "apgd-ce-2"}]
    early = convergence.recheck(ens, x, y, {"norm": "linf", "eps": 0.3}, two, start, np.zeros(20), progress=False)
    assert early["stopped_early"] and early["stages_run"] == 1  # moved already: "not converged" is final
    assert early["counts"]["recheck-apgd-ce-2"] == 0 and not early["converged"]
    # ... and one at eps = 0 cannot move.
    still = convergence.recheck(ens, x, y, {"norm": "linf", "eps": 0.0}, SHORT[:1], start, np.zeros(20),
                                progress=False)
    assert still["change_points"] == 0 and still["converged"] and still["stages_run"] == 1


def test_a_recheck_stage_runs_in_chunks_that_fit_a_session():
    # Round 5 of the suite's APGD-CE: 96 restarts of 3,201 passes, about 307,000 image-steps per survivor.
    r5 = convergence.next_round([{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 100,
                                  "restarts": 3}] + [{"name": f"recheck{r}-x", "kind": "apgd"} for r in (2, 3, 4)])
    assert r5[0] == 5 and suite.stage_budget(r5[1][0]) == 96 * 3201
    assert convergence.chunk_for(r5[1][0]) == 3 and convergence.chunk_for(r5[1][0], 10) == 1
    assert convergence.chunk_for(SHORT[0]) == 1000  # a cheap stage: one chunk, as before
    assert convergence.chunk_for({"name": "square", "kind": "square", "queries": 5000}) == 200


class _CutError(Exception):
    pass


def test_a_recheck_cut_in_the_middle_of_a_stage_resumes_at_its_last_chunk(empir_mnist, tmp_path, monkeypatch):
    # A session ends inside a stage: the chunks finished before it are not attacked again, and the
    # resumed round gives exactly the uninterrupted round's per-image result.
    ens, x, y = empir_mnist
    x, y = x[:12], y[:12]
    start = np.where(ensemble.predict(ens, x) == y, outcomes.ROBUST, outcomes.CLEAN)
    threat, spec = {"norm": "l2", "eps": 1.0}, SHORT[:1]
    steps = 2 * suite.stage_budget(convergence.doubled(spec)[0])  # two survivors per chunk
    whole = convergence.recheck(ens, x, y, threat, spec, start, np.zeros(12), progress=False,
                                stop_when_moved=False, chunk_steps=steps)
    real, seen = suite.run_attack, []

    def counted(ens_, spec_, threat_, xs, *a, **k):
        seen.append(len(xs))
        if cut and len(seen) == 3:
            raise _CutError
        return real(ens_, spec_, threat_, xs, *a, **k)

    monkeypatch.setattr(suite, "run_attack", counted)
    state = tmp_path / "round.npz"
    cut = True
    with pytest.raises(_CutError):
        convergence.recheck(ens, x, y, threat, spec, start, np.zeros(12), state_path=state, progress=False,
                            stop_when_moved=False, chunk_steps=steps)
    assert seen == [2, 2, 2] and convergence.checkpoints(state, 1)[0].is_file()
    survivors = int(np.sum(start == outcomes.ROBUST))
    where = cascade_state.progress(convergence.checkpoints(state, 1)[0])
    assert where["stage"] == "recheck-apgd-ce" and where["stage_index"] == where["stages"] == 2
    assert where["done"] == 4 and where["left"] == survivors - 4 and set(where["broken"]) == {"recheck-apgd-ce"}
    assert where["robust"] == survivors - where["broken"]["recheck-apgd-ce"]
    np.savez(tmp_path / "other.npz", config=np.array("{}"))
    with pytest.raises(EmpirError, match="not a cascade's saved state"):
        cascade_state.progress(tmp_path / "other.npz")
    seen.clear()
    cut = False
    again = convergence.recheck(ens, x, y, threat, spec, start, np.zeros(12), state_path=state, progress=False,
                                stop_when_moved=False, chunk_steps=steps)
    assert sum(seen) == survivors - 4  # the two finished chunks were kept, not attacked again
    np.testing.assert_array_equal(again["broken_by"], whole["broken_by"])
    assert again["robust_after"] == whole["robust_after"]
    # A state tied to another start (the row below re-run since the state was saved) is refused.
    other = start.copy()
    other[np.flatnonzero(start == outcomes.ROBUST)[0]] = 1
    assert convergence.checkpoints(state, 1)[0].is_file()
    with pytest.raises(EmpirError, match="another configuration"):
        convergence.recheck(ens, x, y, threat, spec, other, np.zeros(12), state_path=state, progress=False,
                            stop_when_moved=False, chunk_steps=steps)


def test_a_row_that_moved_gets_a_second_round_at_four_times_the_budget(empir_mnist):
    ens, x, y = empir_mnist
    x, y = x[:20], y[:20]
    first = SHORT[:1] + convergence.doubled(SHORT[:1])
    r, more = convergence.next_round(first)
    assert r == 2 and [s["name"] for s in more] == ["recheck2-apgd-ce"]
    assert more[0]["n_iter"] == 4 * SHORT[0]["n_iter"] and more[0]["restarts"] == 4
    assert [convergence.round_of(a["name"]) for a in first + more] == [0, 1, 2]
    correct = ensemble.predict(ens, x) == y
    start = np.where(correct, outcomes.ROBUST, outcomes.CLEAN)
    res = convergence.recheck(ens, x, y, {"norm": "linf", "eps": 0.3}, first, start, np.zeros(20), progress=False)
    assert res["round"] == 2 and set(res["stats"]) == {"recheck2-apgd-ce"} and not res["converged"]
    assert res["counts"]["recheck2-apgd-ce"] == res["robust_before"] - res["robust_after"] > 0


def test_minimal_l2_always_succeeds_even_on_a_masked_model(empir_mnist):
    ens = _masked_ensemble()
    x, y = data.load_sample("mnist", 40)
    pred = ensemble.predict(ens, x)
    assert len(set(pred.tolist())) > 1
    y = pred  # every image correct, so each one needs an adversarial example
    r = minnorm.minimal_l2(ens, x, y, n_iter=5, bisect_steps=2, progress=False)
    assert r["success_rate"] == 1.0 and r["found"] == 40 and np.isfinite(r["norm"]).all()
    assert r["from_boundary"] > 0  # blind APGD (only its random start moves) leaves images to the boundary start
    # A constant model has no adversarial example among the images: said, not invented.
    inp = keras.Input((28, 28, 1))
    const = ensemble.make([keras.Model(inp, keras.layers.Dense(10, kernel_initializer="zeros",
                                                               bias_initializer="ones")(keras.layers.Flatten()(inp)))],
                          names=["constant"])
    yc = ensemble.predict(const, x)
    rc = minnorm.minimal_l2(const, x, yc, n_iter=2, bisect_steps=1, progress=False)
    assert rc["success_rate"] == 0.0 and np.isinf(rc["norm"]).all()


def test_minimal_l2_on_the_ensemble_is_verified(empir_mnist):
    ens, x, y = empir_mnist
    x, y = x[:20], y[:20]
    r = minnorm.minimal_l2(ens, x, y, n_iter=10, bisect_steps=3, progress=False)
    correct = ensemble.predict(ens, x) == y
    assert r["success_rate"] == 1.0 and np.all(r["norm"][~correct] == 0) and np.all(r["norm"][correct] > 0)
    assert r["median_ci95"][0] <= r["median_l2"] <= r["median_ci95"][1]


def test_paper_label_split_bounds_and_exact_case():
    rec = {"protocol": "paper", "n": 10000, "adversarial_accuracy": 0.0882, "attack_success_rate": 1.0,
           "clean_accuracy": 0.7416}
    s = paper_labels.split(rec)
    assert s["exact"] and s["moved_lo"] == 882 and s["share_lo"] == 1.0
    loose = paper_labels.split({**rec, "attack_success_rate": 0.5})
    assert not loose["exact"] and loose["moved_lo"] == 0 and loose["moved_hi"] == 882
    r = paper_labels.row({**rec, "attack_success_rate": 0.5}, {"moved": 100, "clean_wrong": 2584,
                                                             "wall_time_s": 1.0})
    assert r["share"] == pytest.approx(100 / 882) and r["rerun_within_bounds"]
    tight = {**rec, "attack_success_rate": 0.999}  # bounds [872, 882]: a re-run of 100 is another draw
    far = paper_labels.row(tight, {"moved": 100, "clean_wrong": 2584, "wall_time_s": 1.0})
    assert far["share"] is None and not far["rerun_within_bounds"] and far["method"].startswith("bounds only")
    with pytest.raises(EmpirError, match="not the paper protocol"):
        paper_labels.split({**rec, "protocol": "adaptive"})


def test_paper_label_rerun_counts_mistakes_moved_to_the_truth(empir_mnist):
    ens, x, y = empir_mnist
    y = y.copy()
    y[:6] = (y[:6] + 1) % 10  # six clean mistakes for certain (wrong labels), beside the model's own
    x, y = x[:60], y[:60]
    res = evaluate.adversarial_accuracy(ens, "fgsm", x, y, "paper", dataset="mnist", progress=False)
    rec = {k: v for k, v in res.items() if not isinstance(v, np.ndarray)}
    again = paper_labels.rerun_wrong(rec, ens, x, y, progress=False)
    wrong = res["clean_pred"] != y
    assert again["clean_wrong"] == int(wrong.sum()) >= 6
    assert again["moved"] == int(np.sum(res["adv_pred"][wrong] == y[wrong]))  # FGSM: per image, exact
    with pytest.raises(EmpirError, match="not the row's"):
        paper_labels.rerun_wrong({**rec, "clean_accuracy": 0.5}, ens, x, y, progress=False)


def _committed_row(ens, x, y, root):
    """A committed suite row (its first stage only) on ``x``: (the cascade, the dataset's results folder)."""
    base = suite.cascade(ens, x, y, {"norm": "l2", "eps": 2.0}, SHORT[:1], progress=False)
    rec = worstcase.summary({"members": list(ens.names), "rule": ens.rule, "attacks": SHORT[:1], "n": len(y)},
                            base["broken_by"], base["counts"], base["stats"], y, ens)
    ds = root / "mnist"
    path = ds / "suite" / "empir-l2.json"
    path.parent.mkdir(parents=True)
    rec["per_image"] = outcomes.save(path.with_suffix(".npz"), base["broken_by"], base["norm"])
    results.write_result(path, rec, "mnist", prov={"command": "test"})
    return base, ds


def test_a_stages_job_continues_a_committed_row(empir_mnist, tmp_path, monkeypatch):
    ens, x, y = empir_mnist
    x, y = x[:16], y[:16]
    monkeypatch.setattr(suite, "_suite", lambda ens, threat: list(SHORT))
    base, ds = _committed_row(ens, x, y, tmp_path)
    job = {"name": "suite/empir-l2-stages", "members": list(ens.names), "threat": "l2", "kind": "stages", "n": 16,
           "base": "suite/empir-l2"}
    out, ran = worstcase.run_job(job, "mnist", ens, x, y, ds, tmp_path / "runs", progress=False,
                                 prov={"command": "test"})
    assert ran and [a["name"] for a in out["attacks"]] == ["apgd-ce", "apgd-t"]
    assert out["robust_before"] == base["counts"]["robust"] >= out["robust_after"]
    assert set(out["stats"]) == {"apgd-t"} and out["invalid_outputs"] == {"apgd-t": 0}
    written = ds / "suite" / "empir-l2-stages.json"
    assert outcomes.load(written, json.loads(written.read_text()))["broken_by"].shape == (16,)
    again, ran2 = worstcase.run_job(job, "mnist", ens, x, y, ds, tmp_path / "runs", progress=False)
    assert not ran2 and again["robust_after"] == out["robust_after"]
    summary = suite_checks.row_summary("mnist", "empir", "l2", root=tmp_path)
    assert summary["before"] == out["robust_before"]
    assert summary["broke"] == {"apgd-t": out["stats"]["apgd-t"]["broken"]}
    wf = suite_checks.where_from("mnist", "empir-l2", "empir-l2-stages", root=tmp_path)
    assert wf["only_second"] == 0 and wf["only_first"] == out["robust_before"] - out["robust_after"]
    assert sum(wf["only_first_broken_in_second_by"].values()) == wf["only_first"]
    names = [j["name"] for j in worstcase.jobs("mnist", 10, 10)]
    assert "suite/empir-l2-recheck" in names and names[-1] == "suite/empir-min-norm"
    # Re-check rounds: the first re-checks the new stages' figure; one that moved is re-checked in turn.
    assert suite_checks.next_recheck("mnist", "suite/empir-l2", tmp_path) == ("suite/empir-l2-recheck",
                                                                              "suite/empir-l2-stages")
    name, base_name = suite_checks.next_recheck("mnist", "suite/empir-l2", tmp_path)
    job = {"name": name, "members": list(ens.names), "threat": "l2", "kind": "recheck", "n": 16, "base": base_name}
    rec, ran = worstcase.run_job(job, "mnist", ens, x, y, ds, tmp_path / "runs", progress=False,
                                 prov={"command": "test"})
    assert ran and rec["robust_before"] == out["robust_after"] and rec["base"]["name"] == base_name
    after_one = suite_checks.next_recheck("mnist", "suite/empir-l2", tmp_path)
    assert after_one == (None if rec["converged"] else ("suite/empir-l2-recheck2", "suite/empir-l2-recheck"))
    summary = suite_checks.row_summary("mnist", "empir", "l2", root=tmp_path)
    assert summary["recheck"]["after"] == rec["robust_after"] and len(summary["rounds"]) == 1
    assert suite_checks.KINDS == ("stages", "late", "recheck", "min_norm")


def _planted(root, name, **record):
    path = root / "mnist" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"n": 100, "members": ["m"], "robust_accuracy": 0.1, **record}))


def test_the_next_recheck_round_follows_the_last_verdict(tmp_path):
    with pytest.raises(EmpirError, match="no suite row"):
        suite_checks.next_recheck("mnist", "suite/empir-l2", tmp_path)
    _planted(tmp_path, "suite/empir-l2")
    assert suite_checks.next_recheck("mnist", "suite/empir-l2", tmp_path) == ("suite/empir-l2-recheck",
                                                                              "suite/empir-l2")
    _planted(tmp_path, "suite/empir-l2-recheck", converged=False)
    assert suite_checks.next_recheck("mnist", "suite/empir-l2", tmp_path) == ("suite/empir-l2-recheck2",
                                                                              "suite/empir-l2-recheck")
    _planted(tmp_path, "suite/empir-l2-recheck2", converged=True)
    assert suite_checks.next_recheck("mnist", "suite/empir-l2", tmp_path) is None
    evals = suite_checks.evaluations("mnist", "suite/empir-l2", tmp_path)
    assert suite_checks.recheck_of(evals)["converged"]  # the last round's verdict, not the first's
    for r in range(2, suite_checks.ROUNDS + 1):
        _planted(tmp_path, f"suite/empir-l2-recheck{r}", converged=False)
    with pytest.raises(EmpirError, match="report it as an upper bound"):
        suite_checks.next_recheck("mnist", "suite/empir-l2", tmp_path)


def test_an_evaluation_that_continues_a_re_run_row_is_refused_not_quoted(tmp_path):
    # A row's stages re-run (say on 10,000 images instead of 1,000) leave its old rounds stale.
    _planted(tmp_path, "suite/empir-l2", per_image={"sha256": "a"})
    _planted(tmp_path, "suite/empir-l2-stages", base={"name": "suite/empir-l2", "sha256": "a"},
             per_image={"sha256": "b"})
    _planted(tmp_path, "suite/empir-l2-recheck", base={"name": "suite/empir-l2-stages", "sha256": "b"},
             converged=True)
    assert len(suite_checks.evaluations("mnist", "suite/empir-l2", tmp_path)) == 3
    _planted(tmp_path, "suite/empir-l2-stages", base={"name": "suite/empir-l2", "sha256": "a"},
             per_image={"sha256": "c"})
    with pytest.raises(EmpirError, match="continues another version of suite/empir-l2-stages"):
        suite_checks.evaluations("mnist", "suite/empir-l2", tmp_path)
    # A round run before the stages existed did not see their breaks: it is stale too.
    _planted(tmp_path, "suite/empir-l2-recheck", base={"name": "suite/empir-l2", "sha256": "a"}, converged=True)
    with pytest.raises(EmpirError, match="continues another version"):
        suite_checks.next_recheck("mnist", "suite/empir-l2", tmp_path)


def test_late_stages_follow_only_a_converged_round_and_can_unsettle_it(tmp_path):
    _planted(tmp_path, "suite/empir-l2")
    _planted(tmp_path, "suite/empir-l2-recheck", converged=False)
    with pytest.raises(EmpirError, match="follow a converged re-check round"):
        suite_checks.late_base("mnist", "suite/empir-l2", tmp_path)
    _planted(tmp_path, "suite/empir-l2-recheck2", converged=True)
    assert suite_checks.late_base("mnist", "suite/empir-l2", tmp_path) == ("suite/empir-l2-late-stages",
                                                                           "suite/empir-l2-recheck2")

    def verdict():
        return suite_checks.converged(suite_checks.evaluations("mnist", "suite/empir-l2", tmp_path))

    assert verdict() is True
    _planted(tmp_path, "suite/empir-l2-late-stages", converged=True, base={"name": "suite/empir-l2-recheck2"})
    assert verdict() is True and suite_checks.next_recheck("mnist", "suite/empir-l2", tmp_path) is None
    # Asked again, the same job is named (kept by its configuration), not refused.
    assert suite_checks.late_base("mnist", "suite/empir-l2", tmp_path)[0] == "suite/empir-l2-late-stages"
    _planted(tmp_path, "suite/empir-l2-late-stages", converged=False, change_points=0.3,
             base={"name": "suite/empir-l2-recheck2"})
    assert verdict() is False
    with pytest.raises(EmpirError, match="upper bound"):
        suite_checks.next_recheck("mnist", "suite/empir-l2", tmp_path)


def test_a_late_stages_job_keeps_every_break_of_the_converged_round(empir_mnist, tmp_path, monkeypatch):
    ens, x, y = empir_mnist
    x, y = x[:16], y[:16]
    monkeypatch.setattr(suite, "_suite", lambda ens, threat: list(SHORT[:1]))
    _, ds = _committed_row(ens, x, y, tmp_path)
    job = {"name": "suite/empir-l2-recheck", "members": list(ens.names), "threat": "l2", "kind": "recheck",
           "n": 16, "base": "suite/empir-l2"}
    round1, _ = worstcase.run_job(job, "mnist", ens, x, y, ds, tmp_path / "runs", progress=False,
                                  prov={"command": "test"})
    first = ds / "suite" / "empir-l2-recheck.json"
    if not round1["converged"]:  # a round that moved gets no late stages; plant the verdict to go on
        with pytest.raises(EmpirError, match="converged re-check round"):
            suite_checks.late_base("mnist", "suite/empir-l2", tmp_path)
        first.write_text(json.dumps({**json.loads(first.read_text()), "converged": True}))
    kept = outcomes.load(first, json.loads(first.read_text()))["broken_by"]
    # The suite gains APGD-T after the round converged: the late stages run it on the survivors only.
    monkeypatch.setattr(suite, "_suite", lambda ens, threat: list(SHORT))
    name, on = suite_checks.late_base("mnist", "suite/empir-l2", tmp_path)
    job = {"name": name, "members": list(ens.names), "threat": "l2", "kind": "late", "n": 16, "base": on}
    real, chunks = suite.cascade, []
    monkeypatch.setattr(suite, "cascade", lambda *a, **k: chunks.append(k.get("chunk")) or real(*a, **k))
    late, ran = worstcase.run_job(job, "mnist", ens, x, y, ds, tmp_path / "runs", progress=False,
                                  prov={"command": "test"})
    assert ran and on == "suite/empir-l2-recheck" and [a["name"] for a in late["attacks"]][-1] == "apgd-t"
    assert set(late["stats"]) == {"apgd-t"} and late["robust_before"] == round1["robust_after"]
    assert chunks == [convergence.chunk_for(SHORT[-1])]  # its stages run in chunks a session can finish
    now = outcomes.load(ds / "suite" / "empir-l2-late-stages.json", late)["broken_by"]
    was_broken = kept != outcomes.ROBUST
    assert np.array_equal(now[was_broken], kept[was_broken])  # no break of the rounds is dropped
    evals = suite_checks.evaluations("mnist", "suite/empir-l2", tmp_path)
    assert evals[-1][0] == "suite/empir-l2-late-stages"
    assert suite_checks.converged(evals) is (late["robust_after"] == 0 or late["converged"])
    steps = suite_checks.settling("mnist", "suite/empir-l2", tmp_path)["steps"]
    assert [s["kind"] for s in steps] == ["suite", "round", "late"] and steps[-1]["robust"] == late["robust_after"]


def test_a_min_norm_job_writes_a_checked_file_that_always_succeeds(empir_mnist, tmp_path):
    ens, x, y = empir_mnist
    x, y = x[:12], y[:12]
    job = {"name": "suite/empir-min-norm", "members": list(ens.names), "threat": "l2", "kind": "min_norm", "n": 12}
    out, ran = worstcase.run_job(job, "mnist", ens, x, y, tmp_path / "mnist", tmp_path / "runs", progress=False,
                                 prov={"command": "test"})
    assert ran and out["success_rate"] == 1.0 and out["robust_accuracy"] == 0.0
    assert out["median_ci95"][0] <= out["median_l2"] <= out["median_ci95"][1]
    path = tmp_path / "mnist" / "suite" / "empir-min-norm.json"
    arrays = outcomes.load(path, json.loads(path.read_text()))
    assert np.isfinite(arrays["norm"]).all()
    assert not list((tmp_path / "runs").glob("*.npz"))  # done: the resume state is gone


def test_the_label_column_shows_a_share_or_its_bounds(tmp_path):
    rec = {"protocol": "paper", "n": 1000, "adversarial_accuracy": 0.1, "attack_success_rate": 1.0,
           "clean_accuracy": 0.7}
    rows = {"table2/baseline-paper-pgd": paper_labels.row(rec),
            "table2/empir-paper-cw": paper_labels.row({**rec, "attack_success_rate": 0.95})}
    path = tmp_path / "cifar10" / "labels" / "paper-protocol.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"rows": rows}))
    col = paper_labels.column("cifar10", tmp_path)
    assert col == {"baseline (FP)": {"pgd": "100.0%"}, "EMPIR, paper protocol": {"cw": "50.0%-100.0%"}}
    with pytest.raises(EmpirError, match="missing"):
        paper_labels.column("mnist", tmp_path)
