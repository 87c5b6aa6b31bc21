"""EMPIR ensembles: the hand-worked three-member example, the tie-break, and bad input."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from empir_lib.core.errors import EmpirError
from empir_lib.nets import ensemble, models


def _probs_to_logits(p):
    return np.log(np.asarray(p, np.float32))


# Three members in the original's order (LP1, LP2, FP); four images, three classes.
P = np.array([
    # image 0: LP1 -> 0, LP2 -> 0, FP -> 1    majority 0
    [[.6, .3, .1], [.5, .4, .1], [.2, .7, .1]],
    # image 1: LP1 -> 0, LP2 -> 1, FP -> 2    all disagree: the FP member decides (2)
    [[.5, .3, .2], [.1, .8, .1], [.3, .3, .4]],
    # image 2: LP1 -> 2, LP2 -> 1, FP -> 1    majority 1
    [[.1, .2, .7], [.2, .6, .2], [.1, .6, .3]],
    # image 3: all -> 2
    [[.1, .1, .8], [.2, .2, .6], [.3, .3, .4]],
], np.float32).transpose(1, 0, 2)               # (members, images, classes)
ORDER = np.array([2, 0, 1], np.int32)           # FP first


def test_vote_and_average_match_the_hand_worked_example():
    out = {k: v.numpy() for k, v in ensemble.combine(tf.constant(_probs_to_logits(P)), ORDER, "vote").items()}
    assert out["pred"].tolist() == [0, 2, 1, 2]
    # Voters' mean (section 4.2): the mean over the members that voted for the winner.
    np.testing.assert_allclose(out["voter_mean_prob"][0], [.55, .35, .1], atol=1e-6)
    np.testing.assert_allclose(out["voter_mean_prob"][1], [.3, .3, .4], atol=1e-6)    # FP alone
    np.testing.assert_allclose(out["voter_mean_prob"][2], [.15, .6, .25], atol=1e-6)
    np.testing.assert_allclose(out["voter_mean_prob"][3], P[:, 3].mean(0), atol=1e-6)
    np.testing.assert_allclose(out["mean_prob"], P.mean(0), atol=1e-6)
    avg = ensemble.combine(tf.constant(_probs_to_logits(P)), ORDER, "average")
    # Averaging: argmax of the mean, which differs from the vote on images 0 and 1:
    # image 0 mean (.433, .467, .1) -> 1; image 1 mean (.3, .467, .233) -> 1.
    assert avg["pred"].numpy().tolist() == [1, 1, 1, 2]
    np.testing.assert_allclose(avg["attack_prob"].numpy(), P.mean(0), atol=1e-6)


def test_tie_break_follows_the_first_fp_member_for_any_size():
    # Two members that disagree: the FP member wins, wherever it sits.
    logits = _probs_to_logits([[[.9, .1]], [[.2, .8]]])
    assert ensemble.vote(tf.constant(logits), np.array([1, 0], np.int32))[0].numpy().tolist() == [1]
    assert ensemble.vote(tf.constant(logits), np.array([0, 1], np.int32))[0].numpy().tolist() == [0]
    # Four members, 2-2 tie: the class of the first-ranked member among the tied classes.
    four = _probs_to_logits([[[.9, .1]], [[.8, .2]], [[.3, .7]], [[.4, .6]]])
    assert ensemble.vote(tf.constant(four), np.array([2, 0, 1, 3], np.int32))[0].numpy().tolist() == [1]
    assert ensemble.vote(tf.constant(four), np.array([0, 2, 1, 3], np.int32))[0].numpy().tolist() == [0]


def test_voter_selection_carries_no_gradient():
    x = tf.Variable(_probs_to_logits(P))
    with tf.GradientTape() as tape:
        out = ensemble.combine(x, ORDER, "vote")["voter_mean_prob"]
        s = tf.reduce_sum(out[:, 0])
    g = tape.gradient(s, x).numpy()
    assert np.all(np.isfinite(g))
    # Image 1: only the FP member voted for the winner, so only it gets a gradient.
    assert np.abs(g[:2, 1]).sum() == 0 and np.abs(g[2, 1]).sum() > 0


def test_priority_puts_fp_members_first():
    fp, lp = models.mnist_conv(), models.mnist_conv(2, 4)
    e = ensemble.make([lp, lp, fp])
    assert e.fp == (False, False, True)
    assert ensemble.priority(e).tolist() == [2, 0, 1]


def test_zoo_empir_ensemble_predicts_the_sample():
    from empir_lib.nets import data

    e = ensemble.empir("mnist")
    x, y = data.load_sample("mnist", 200)
    assert np.mean(ensemble.predict(e, x) == y) > 0.97
    out = ensemble.predict_all(e, x[:10])
    assert out["logits"].shape == (3, 10, 10) and out["pred"].shape == (10,)


@pytest.mark.parametrize("members,rule,msg", [
    ([], "vote", "at least one member"),
    (None, "vote", "at least one member"),
    ("mixed", "vote", "inputs of shape"),
    ("one", "median", "unknown combination rule 'median'"),
    ("notmodel", "vote", "not a Keras model"),
])
def test_bad_ensembles_are_refused(members, rule, msg):
    if members == "mixed":
        members = [models.mnist_conv(), models.cifar_conv()]
    elif members == "one":
        members = [models.mnist_conv()]
    elif members == "notmodel":
        members = [models.mnist_conv(), "model.keras"]
    with pytest.raises(EmpirError, match=msg):
        ensemble.make(members, rule)


def test_members_with_different_class_counts_are_refused():
    a = models.mnist_conv()
    inp = keras.Input((28, 28, 1))
    b = keras.Model(inp, keras.layers.Dense(5)(keras.layers.Flatten()(inp)))
    with pytest.raises(EmpirError, match="5 classes"):
        ensemble.make([a, b])


def test_unknown_zoo_member_and_empty_id_list():
    with pytest.raises(EmpirError, match="unknown zoo member"):
        ensemble.from_zoo(["mnist-a9w9-s1"])
    with pytest.raises(EmpirError, match="at least one member"):
        ensemble.from_zoo([])
