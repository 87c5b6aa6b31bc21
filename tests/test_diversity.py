"""Joint training with a diversity penalty: the penalty's estimate, the loss, seeded and resumable training."""
import numpy as np
import pytest
import tensorflow as tf

from empir_lib.core import settings
from empir_lib.core.errors import EmpirError
from empir_lib.nets import diversity, stochastic, zoo


def test_the_penalty_is_higher_for_identical_members_than_for_independent_ones():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(256, 10)), rng.normal(size=(256, 10))
    same = float(diversity.dependence(np.stack([a, a, a])))
    indep = float(diversity.dependence(np.stack([a, b])))
    assert same == pytest.approx(1.0, abs=1e-5) and indep < 0.15 and same > indep
    # Invariant to scale and rotation (Kornblith et al.'s point): a rotated, scaled copy is still identical.
    q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    assert float(diversity.linear_cka(tf.constant(a, tf.float32), tf.constant(3 * a @ q, tf.float32))) == \
        pytest.approx(1.0, abs=1e-4)
    with pytest.raises(EmpirError, match="two members"):
        diversity.dependence(np.stack([a]))


def test_the_nonmax_distribution_leaves_out_the_label():
    logits = tf.constant(np.random.default_rng(1).normal(size=(5, 4)), tf.float32)
    y = tf.constant([0, 1, 2, 3, 0])
    p = diversity.nonmax_distribution(logits, y).numpy()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
    assert np.all(p[np.arange(5), y.numpy()] == 0)


def test_with_no_weight_the_loss_is_the_mean_cross_entropy():
    rng = np.random.default_rng(2)
    logits = tf.constant(rng.normal(size=(3, 8, 10)), tf.float32)
    y = tf.constant(rng.integers(0, 10, 8), tf.int32)
    t = tf.one_hot(y, 10)
    loss, ce, pen = diversity.joint_loss(logits, y, t, lam=0.0)
    ref = np.mean([tf.nn.softmax_cross_entropy_with_logits(t, logits[k]).numpy() for k in range(3)])
    assert float(loss) == pytest.approx(ref, rel=1e-5) and float(ce) == pytest.approx(ref, rel=1e-5)
    loss2, _, _ = diversity.joint_loss(logits, y, t, lam=2.0, representation="logits")
    assert float(loss2) > float(loss)


def test_joint_training_is_seeded_resumable_and_refuses_bad_input(data_dir, tmp_path):
    kw = dict(dataset="cifar10", members=((2, 2), (2, 2)), seed=3, epochs=2, n_train=96, batch_size=32,
              data_dir=data_dir, progress=False)
    whole = diversity.train_joint(run_dir=tmp_path / "whole", **kw)
    assert not whole["interrupted"] and len(whole["history"]) == 2
    assert whole["history"][0]["images_per_s"] > 0 and len(whole["history"][0]["train_accuracy"]) == 2
    cut = diversity.train_joint(run_dir=tmp_path / "cut", stop_after_batches=4, **kw)  # killed in epoch 2
    assert cut["interrupted"] and cut["epoch"] == 1
    resumed = diversity.train_joint(run_dir=tmp_path / "cut", **kw)
    for a, b in zip(whole["models"], resumed["models"]):
        for u, v in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(u, v)
    assert all(stochastic.is_stochastic(m) for m in resumed["models"])
    # Registered in a zoo: one entry per member, loadable, still stochastic, with both accuracies.
    zoo_dir = tmp_path / "zoo"
    zoo_dir.mkdir()
    with pytest.raises(EmpirError, match="interrupted"):
        diversity.add_to_zoo(cut, data_dir, zoo_dir)
    entries = diversity.add_to_zoo(whole, data_dir, zoo_dir, command="test")
    assert list(entries) == ["cifar10-a2w2-s3-joint0-l0.5", "cifar10-a2w2-s3-joint1-l0.5"]
    assert settings.defence_tag("cifar10-a2w2-s3-joint1-l0.5") == "joint1-l0.5"
    assert set(zoo.members("cifar10", zoo_dir)) == set(entries)
    for mid, e in entries.items():
        assert 0 <= e["test_accuracy"] <= 1 and 0 <= e["test_accuracy_nearest"] <= 1 and e["n_test"] == 10000
        assert e["joint"]["index"] == int(mid.split("joint")[1][0]) and e["joint"]["lam"] == 0.5
        assert stochastic.is_stochastic(zoo.load(mid, zoo_dir))
    with pytest.raises(EmpirError, match="different configuration"):
        diversity.train_joint(run_dir=tmp_path / "cut", **{**kw, "lam": 2.0})
    with pytest.raises(EmpirError, match="1..16"):
        diversity.train_joint(run_dir=tmp_path / "bad", **{**kw, "members": ((32, 32), (2, 2))})
    with pytest.raises(EmpirError, match="at least two"):
        diversity.train_joint(run_dir=tmp_path / "bad", **{**kw, "members": ((2, 2),)})
