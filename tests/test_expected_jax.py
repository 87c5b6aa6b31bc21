"""The JAX port of the expected-accuracy suite against its TensorFlow reference, and the GPU run's ingest.

The numbers the book quotes from the GPU are judged again by TensorFlow
(:func:`empir_lib.studies.expected_gpu.ingest`); these tests check that what
ran there is the same defence and the same attack: the members' logits, the
vote, the objectives, the stochastic quantiser, and the attack's outputs.
"""
from __future__ import annotations

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from conftest import REPO, device_usage

from empir_lib.attack import apgd, apgd_schedule, expected, objectives, validate
from empir_lib.attack import expected_jax as ej
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data, diversity, models, stochastic
from empir_lib.nets import ensemble as ens_mod
from empir_lib.nets import jax_members as jm
from empir_lib.studies import expected_gpu, expected_study

EPS = 5 / 255


@pytest.fixture(scope="module")
def joint():
    """The jointly trained stochastic ensemble (read-only), its bundle on 24 sample images, and the port."""
    ens = ens_mod.from_zoo(diversity.joint_ids("cifar10"))
    x, y = data.load_sample("cifar10", 24)
    b = expected_gpu.bundle(ens, x, y)
    ms, order = jm.members(b)
    return ens, x, y, ms, order


def test_nearest_members_give_the_tensorflow_logits_and_vote(joint):
    ens, x, y, ms, order = joint
    near = ens_mod.make([stochastic.with_inference(m, "nearest") for m in ens.members], ens.rule)
    z_tf = ens_mod.member_logits(near, tf.constant(x)).numpy()
    z_jax = np.asarray(jm.stack_logits(ms, jnp.asarray(x), "nearest", None, precision=jax.lax.Precision.HIGHEST))
    assert z_jax.shape == z_tf.shape
    np.testing.assert_allclose(z_jax, z_tf, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(jm.vote(jnp.asarray(z_jax), order)), ens_mod.predict(near, x))


def test_stochastic_members_give_the_tensorflow_expected_accuracy(joint):
    ens, x, y, ms, order = joint
    p_tf = expected.correct_rate(ens, x, y, 64, seed=3)
    p_jax = ej.correct_rate(ms, order, x, y, 64, jax.random.key(3))
    # Per image each is a mean of 64 draws: the two agree within the draws' noise (3 standard errors).
    se = np.sqrt(np.mean(p_tf * (1 - p_tf) + p_jax * (1 - p_jax)) / 64 / len(y))
    assert abs(p_tf.mean() - p_jax.mean()) < 3 * se + 0.01
    near = ens_mod.make([stochastic.with_inference(m, "nearest") for m in ens.members], ens.rule)
    # ... and the draws are random: some image's share is strictly between 0 and 1.
    assert np.any((p_jax > 0) & (p_jax < 1)) and not np.array_equal(p_jax, ens_mod.predict(near, x) == y)


def test_the_stochastic_quantiser_is_unbiased_and_on_the_grid():
    a = jnp.linspace(-0.2, 1.2, 57).reshape(1, 57)
    layer = {"abits": 2, "stochastic": True}
    q = np.stack([np.asarray(jm.quantise_input(a, layer, "sample", jax.random.key(k), None)) for k in range(400)])
    np.testing.assert_allclose(q * 3, np.round(q * 3), atol=1e-6)  # every value is a 2-bit level
    np.testing.assert_allclose(q.mean(0), np.clip(np.asarray(a), 0, 1), atol=0.06)
    # A frozen draw of 0.5 everywhere rounds to the nearest level (up to ties), as stochastic.fixed_draw's check.
    half = np.asarray(jm.quantise_input(a, layer, "fixed", None, jnp.full(a.shape, 0.5)))
    near = np.asarray(jm.quantise_input(a, layer, "nearest", None, None))
    off = np.abs(np.clip(np.asarray(a), 0, 1) * 3 % 1 - 0.5) > 1e-6
    np.testing.assert_allclose(half[off], near[off])


def test_the_objectives_and_the_vote_are_the_tensorflow_ones():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 16, 10)).astype(np.float32)
    z[:, :4] = np.round(z[:, :4])  # ties among the members' votes
    y = rng.integers(0, 10, 16)
    zt, yt = tf.constant(z), tf.constant(y)
    want = {"ce_mean_prob": objectives.ce_mean_prob(zt, yt),
            "dlr_mean_logits": objectives.dlr(tf.reduce_mean(zt, 0), yt),
            "margin_mean_logits": objectives.margin(tf.reduce_mean(zt, 0), yt),
            "ce_member:2": objectives.cross_entropy(zt[2], yt)}
    for name, w in want.items():
        np.testing.assert_allclose(np.asarray(ej.objective(name, jnp.asarray(z), jnp.asarray(y))), w.numpy(),
                                   rtol=1e-5, atol=1e-5, err_msg=name)
    votes = np.round(rng.normal(size=(3, 64, 4))).astype(np.float32)
    for order in ([0, 1, 2], [2, 0, 1]):
        np.testing.assert_array_equal(np.asarray(jm.vote(jnp.asarray(votes), np.array(order))),
                                      ens_mod.vote(tf.constant(votes), np.array(order))[0].numpy())
    with pytest.raises(EmpirError, match="names no member"):
        ej.loss_index("ce_member:3", 3)


def test_the_attack_returns_valid_points_that_raise_its_loss(joint):
    ens, x, y, ms, order = joint
    loss = ej.eot_loss(ms, 1, "nearest")
    which = ej.loss_index("ce_mean_prob", 3)
    key = jax.random.key(0)
    before = np.asarray(loss(jnp.asarray(x), jnp.asarray(y), key, which)[0])
    for kw in ({}, {"step": EPS / 4, "schedule": False, "momentum": False}):
        xa = ej.attack(loss, which, x, y, EPS, 10, key, **kw)
        assert validate.valid(x, xa, {"norm": "linf", "eps": EPS}).all()
        after = np.asarray(loss(jnp.asarray(xa), jnp.asarray(y), key, which)[0])
        assert np.all(after >= before - 1e-5) and after.mean() > before.mean() + 0.1
    near = ens_mod.make([stochastic.with_inference(m, "nearest") for m in ens.members], ens.rule)
    assert np.mean(ens_mod.predict(near, xa) == y) < np.mean(ens_mod.predict(near, x) == y)
    assert apgd.checkpoints is apgd_schedule.checkpoints  # one schedule for both APGDs


def test_the_suite_keeps_each_images_worst_stage(joint):
    ens, x, y, ms, order = joint
    specs = [{"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "samples": 2, "n_iter": 3},
             {"name": "nearest", "kind": "nearest", "n_iter": 3}]
    res = ej.evaluate(ms, order, x[:8], y[:8], EPS, specs, draws=4, seed=1)
    per = res["per_stage"]
    assert per.shape == (8, 3) and np.all(res["best_stage"] == np.nanargmin(per, 1))
    assert validate.valid(x[:8], res["points"], {"norm": "linf", "eps": EPS}).all()
    assert res["stats"]["apgd-ce"]["invalid"] == 0
    with pytest.raises(EmpirError, match="Square"):
        ej.stage_points(ms, {"kind": "square"}, x[:2], y[:2], EPS, jax.random.key(0), (32, 32, 3))
    assert [ej.padded(n, 256) for n in (1, 5, 256, 300)] == [1, 8, 256, 256]


def test_a_bundle_carries_only_what_the_port_computes():
    with pytest.raises(EmpirError, match="grouped"):
        expected_gpu.layers(models.alexnet_tiny(2, 2))
    with pytest.raises(EmpirError, match="not a members bundle"):
        jm.members({"x": np.zeros(1)})


def _device_dir(tmp_path, ens, x, y, names=None):
    """A device run as scripts/expected_gpu_run.py writes it: two suites, the second's points out of eps once."""
    stages = ["apgd-ce"]
    run = {"device": "cpu:0", "jax": jax.__version__, "n": len(y), "eps": EPS, "draws": 4,
           "names": names or list(ens.names), "wall_s": 1.0, "units": []}
    arrays = {"clean": np.ones(len(y))}
    for s, n in ((1, 2), (2, 4)):
        name = f"suite-s{s}-n{n}"
        run["units"].append({"name": name, "kind": "suite", "samples": s, "n_iter": n, "stages": stages,
                             "stats": {}, "robust": 0.5, "seconds": 1.0})
        arrays.update({f"{name}-robust": np.full(len(y), 0.5), f"{name}-best_stage": np.zeros(len(y), int),
                       f"{name}-per_stage": np.zeros((len(y), 2))})
        pts = x.copy()
        if s == 2:
            pts[0] += 0.5  # outside eps: replaced by the clean image and counted
        np.savez_compressed(tmp_path / f"points-{name}.npz", x=pts)
    (tmp_path / "results.json").write_text(json.dumps(run))
    np.savez_compressed(tmp_path / "results.npz", **arrays)
    return tmp_path


def test_ingest_judges_the_returned_points_with_tensorflow(joint, tmp_path):
    ens, x, y, _, _ = joint
    (tmp_path / "dev").mkdir()
    dev = _device_dir(tmp_path / "dev", ens, x, y)
    out = tmp_path / "out"
    rec = expected_gpu.ingest(dev, ens, x, y, out, draws=4, command="test")
    first, second = rec["units"]
    assert second["invalid_on_return"] == 1 and first["invalid_on_return"] == 0
    with np.load(out / "expected-gpu.npz") as f:
        # Every point is the clean image, so the judged values are fresh draws at the clean images.
        assert abs(f["suite-s1-n2-tf"].mean() - f["clean"].mean()) < 0.25
        assert set(f.files) >= {"clean", "clean_gpu", "suite-s1-n2-tf", "suite-s2-n4-tf", "suite-s2-n4-gpu"}
    assert "doubled" in first and "doubled" not in second
    assert rec["chosen"] == expected_study.converged([{"samples": u["samples"], "n_iter": u["n_iter"],
                                                       "robust": u["robust"]} for u in rec["units"]])
    assert rec["robust"] == next(u["robust"] for u in rec["units"] if u["samples"] == rec["chosen"]["samples"])
    assert rec["provenance"]["command"] == "test" and rec["device"]["jax_device"] == "cpu:0"
    assert rec["draws"] == 4 and rec["device_draws"] == 4 and sum(rec["worst_of_runs"]["from_runs"].values()) == 24
    assert (out / "expected-gpu-worst-points.npz").is_file()
    # Square, run here afterwards: on the images still above zero, the lower point kept, judged again.
    sq = expected_gpu.add_square(out, ens, x, y, draws=4)["with_square"]
    with np.load(out / "expected-gpu.npz") as f:
        assert sq["attacked"] == int(np.sum(f[f"suite-s{rec['chosen']['samples']}-n{rec['chosen']['n_iter']}-tf"] > 0))
        assert np.isnan(f["square"]).sum() == len(y) - sq["attacked"] and len(f["with_square"]) == len(y)
    assert sq["invalid"] == 0 and 0 <= sq["lowest"] <= sq["attacked"] and sq["queries"] == 100
    again = json.loads((out / "expected-gpu.json").read_text())
    assert again["provenance"] == rec["provenance"] and "square_provenance" in again and again["units"] == rec["units"]
    (tmp_path / "bad").mkdir()
    with pytest.raises(EmpirError, match="this ingest is of"):
        expected_gpu.ingest(_device_dir(tmp_path / "bad", ens, x, y, names=["other"]), ens, x, y, out, draws=4)


def test_a_further_doubling_is_judged_and_paired_on_the_first_images(joint, tmp_path):
    ens, x, y, _, _ = joint
    (tmp_path / "dev").mkdir()
    out = tmp_path / "out"
    rec = expected_gpu.ingest(_device_dir(tmp_path / "dev", ens, x, y), ens, x, y, out, draws=4)
    c = rec["chosen"]
    s, n = 2 * c["samples"], 2 * c["n_iter"]
    more = tmp_path / "more"
    more.mkdir()
    name = f"suite-s{s}-n{n}"
    run = {"device": "cpu:0", "jax": jax.__version__, "n": 12, "eps": EPS, "draws": 4, "names": list(ens.names),
           "wall_s": 1.0, "units": [{"name": name, "kind": "suite", "samples": s, "n_iter": n, "seed": 7,
                                     "stats": {}, "robust": 0.5, "seconds": 2.0}]}
    pts = x[:12].copy()
    pts[3] += 0.5  # outside eps: judged at the clean image, and counted
    np.savez_compressed(more / f"points-{name}.npz", x=pts)
    (more / "results.json").write_text(json.dumps(run))
    f = expected_gpu.extend(more, ens, x, y, out, draws=4, command="test extend")["further"]
    assert (f["samples"], f["n_iter"], f["n"], f["invalid_on_return"]) == (s, n, 12, 1)
    with np.load(out / "expected-gpu.npz") as arrays:
        before = arrays[f"suite-s{c['samples']}-n{c['n_iter']}-tf"][:12]
        after = arrays[f"{name}-tf"]
    assert len(after) == 12 and f["before"]["robust"] == round(float(before.mean()), 6)
    assert f["doubled"]["diff"] == round(float(after.mean() - before.mean()), 6)
    again = json.loads((out / "expected-gpu.json").read_text())
    assert again["provenance"] == rec["provenance"] and again["further_provenance"]["command"] == "test extend"
    assert again["robust"] == rec["robust"]  # the quoted figure stays the quoted setting's
    run["units"][0].update(samples=s * 2, name=name)
    (more / "results.json").write_text(json.dumps(run))
    with pytest.raises(EmpirError, match="twice the quoted setting"):
        expected_gpu.extend(more, ens, x, y, out, draws=4)


def test_the_device_runner_needs_no_tensorflow_and_says_how_to_call_it():
    # The GPU machine has JAX and no TensorFlow: the runner and the port must import without it.
    assert "expected_gpu_run.py .gpu/bundle.npz OUT_DIR" in device_usage("expected_gpu_run")
    specs = {s["name"] for s in expected_gpu_run_specs()}
    assert specs == {"apgd-ce", "apgd-dlr", "pgd-margin", "member-0", "member-1", "member-2", "nearest",
                     "fixed-draws"}


def expected_gpu_run_specs():
    # The runner is a script, not a module of the package: load it from its file.
    spec = importlib.util.spec_from_file_location("expected_gpu_run", REPO / "scripts" / "expected_gpu_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.specs("suite", 2, 3)


def test_the_worst_of_runs_takes_each_images_lowest_point_and_ties_to_the_largest_budget():
    points = {(16, 50): np.zeros((3, 2, 2, 1)), (32, 100): np.ones((3, 2, 2, 1))}
    arrays = {"suite-s16-n50-tf": np.array([0.0, 0.5, 0.25]), "suite-s32-n100-tf": np.array([0.0, 0.25, 0.5])}
    x, info = expected_gpu.worst_of_runs(points, arrays, np.zeros(3, int))
    assert [float(v[0, 0, 0]) for v in x] == [1.0, 1.0, 0.0]  # a tie, then each image's lower run
    assert info == {"from_runs": {"S=16, N=50": 1, "S=32, N=100": 2}}
