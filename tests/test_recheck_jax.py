"""A re-check round's stage on a GPU (issue 30): the JAX APGD at L2, and the round's state going there and back.

The device side runs here on JAX's CPU backend: the same code, slower.
What counts for the book is what :func:`empir_lib.studies.recheck_gpu.ingest`
writes into the round's state, so these tests check that it counts only
valid points the TensorFlow vote calls wrong, that the CPU cascade resumes
the state it wrote, and that the JAX attack is the reference's attack.
"""
from __future__ import annotations

import importlib.util
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO, device_usage

from empir_lib.attack import apgd_jax, cascade_state, objectives, recheck_jax, suite, validate
from empir_lib.core import settings
from empir_lib.core.errors import EmpirError
from empir_lib.nets import data
from empir_lib.nets import ensemble as ens_mod
from empir_lib.nets import jax_members as jm
from empir_lib.studies import expected_gpu, recheck_gpu

THREAT = {"norm": "l2", "eps": 0.5}
SPEC = {"name": "apgd-ce", "kind": "apgd", "loss": "ce_mean_prob", "n_iter": 8, "restarts": 2}


@pytest.fixture(scope="module")
def empir():
    """CIFAR-10's EMPIR ensemble, the sample images it classifies right, and its JAX port."""
    ens = ens_mod.from_zoo(settings.get("cifar10").empir_ids, "vote")
    x, y = data.load_sample("cifar10", 40)
    right = ens_mod.predict(ens, x) == y
    x, y = x[right][:24], y[right][:24]
    ms, order = jm.members(expected_gpu.bundle(ens, x, y))
    return ens, x, y, ms, order


def test_the_l2_ball_and_start_hold_and_the_direction_has_unit_norm():
    rng = np.random.default_rng(0)
    x_nat = jnp.asarray(rng.uniform(size=(6, 4, 4, 3)).astype(np.float32))
    far = x_nat + jnp.asarray(rng.normal(size=(6, 4, 4, 3)).astype(np.float32))
    p = np.asarray(apgd_jax.project(x_nat, far, 0.5, "l2"))
    assert validate.valid(np.asarray(x_nat), p, THREAT).all()
    x0 = np.asarray(apgd_jax.random_start(jax.random.key(0), x_nat, 0.5, "l2"))
    assert validate.valid(np.asarray(x_nat), x0, THREAT).all() and not np.allclose(x0, np.asarray(x_nat))
    d = np.asarray(apgd_jax.direction(far - x_nat, "l2"))
    np.testing.assert_allclose(np.sqrt((d ** 2).reshape(6, -1).sum(1)), 1.0, rtol=1e-5)
    near = np.asarray(apgd_jax.project(x_nat, x_nat + 1e-3, 0.5, "l2"))  # inside the ball: unchanged (box aside)
    np.testing.assert_allclose(near, np.clip(np.asarray(x_nat) + 1e-3, 0, 1), atol=1e-6)


def test_the_jax_stage_breaks_what_the_tensorflow_apgd_breaks(empir):
    ens, x, y, ms, order = empir
    xa_tf, _ = suite.run_attack(ens, SPEC, THREAT, x, y, seed=3)
    k_tf = int(np.sum(validate.valid(x, xa_tf, THREAT) & (objectives.deployed(ens, xa_tf) != y)))
    res = recheck_jax.stage(ms, order, SPEC, THREAT, x, y, jax.random.key(3), need=10**6, lanes=16)
    assert res["attacked"] == len(y) and res["chunks"] == 3  # 8 images of 2 restarts per chunk
    ok = validate.valid(x, res["x_adv"], THREAT)
    assert ok.all()
    confirmed = ok & (objectives.deployed(ens, res["x_adv"]) != y)
    k_jax = int(res["broken"].sum())
    # The same attack on 24 images: the counts agree within a few images, and TensorFlow's vote agrees with
    # the port's float32 vote on its breaks (a point on the decision boundary may differ in the last bit).
    assert k_tf >= 6 and abs(k_jax - k_tf) <= 4, (k_jax, k_tf)
    assert confirmed.sum() >= k_jax - 1 and not np.any(confirmed & ~res["broken"])
    with pytest.raises(EmpirError, match="only"):
        recheck_jax.stage(ms, order, {**SPEC, "kind": "square"}, THREAT, x, y, jax.random.key(0), need=1)


def _interrupted_round(ens, x, y, path, stop_after):
    """A cascade's saved state cut after its first chunk, as a session that ran out of time leaves it."""
    real = cascade_state.save

    class CutError(Exception):
        pass

    def save_then_cut(p, config, state):
        real(p, config, state)
        if state["pos"] > 0:
            raise CutError

    cascade_state.save = save_then_cut
    try:
        with pytest.raises(CutError):
            suite.cascade(ens, x, y, THREAT, [SPEC], seed=5, chunk=4, state_path=path, progress=False,
                          stop_after=stop_after)
    finally:
        cascade_state.save = real


def _device(tmp_path, bundle_path, name="dev"):
    """Run scripts/recheck_gpu_run.py on a bundle, here (the script is loaded from its file, not imported)."""
    spec = importlib.util.spec_from_file_location("recheck_gpu_run", REPO / "scripts" / "recheck_gpu_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / name
    assert module.main([str(bundle_path), str(out), "--lanes", "8"]) == 0
    return out


def test_a_stage_goes_to_the_device_and_back_into_its_round(empir, tmp_path):
    ens, x, y, _, _ = empir
    state = tmp_path / "state.npz"
    _interrupted_round(ens, x, y, state, stop_after=100)
    w = recheck_gpu.where(state)
    assert w["stage"] == 1 and w["pos"] == 4 and len(w["left"]) == len(y) - 4 and w["need"] == 100 - \
        int(cascade_state.load(state, json.loads(str(np.load(state)["config"])))["stats"]["apgd-ce"]["broken"])
    b = recheck_gpu.bundle(state, ens, x, y)
    np.savez_compressed(tmp_path / "round.npz", **b)
    dev = _device(tmp_path, tmp_path / "round.npz")
    # One returned point pushed out of the ball: it must not count, whatever the device said of it.
    with np.load(dev / "results.npz") as f:
        got = dict(f)
    got["x_adv"][0] = np.clip(got["x_adv"][0] + 0.5, 0, 1)
    np.savez_compressed(dev / "results.npz", **got)
    summary = recheck_gpu.ingest(dev, state, ens, x, y)
    assert summary["attacked"] == len(y) - 4 and summary["invalid"] == 1 and not summary["stopped"]
    idx = w["left"]
    resumed = suite.cascade(ens, x, y, THREAT, [SPEC], seed=5, chunk=4, state_path=state, progress=False,
                            stop_after=100)
    # The CPU cascade resumed the ingested state: the device's confirmed breaks are the stage's, nothing reran.
    fooled = objectives.deployed(ens, got["x_adv"]) != y[idx]
    valid = validate.valid(x[idx], got["x_adv"], THREAT)
    assert np.array_equal(resumed["broken_by"][idx] == 1, fooled & valid)
    st = resumed["stats"]["apgd-ce"]
    assert st["device"][0]["images"] == len(y) - 4 and st["device"][0]["confirmed"] == summary["confirmed"]
    # A device run is ingested only into the state it was bundled from.
    with pytest.raises(EmpirError, match="no saved round state|another state"):
        recheck_gpu.ingest(dev, state, ens, x, y)


def test_a_device_run_that_reaches_the_tolerance_stops_the_round(empir, tmp_path):
    ens, x, y, _, _ = empir
    state = tmp_path / "state.npz"
    # Six breaks move it: its first chunk of 4 images cannot, the device's 20 survivors can.
    _interrupted_round(ens, x, y, state, stop_after=6)
    np.savez_compressed(tmp_path / "round.npz", **recheck_gpu.bundle(state, ens, x, y))
    summary = recheck_gpu.ingest(_device(tmp_path, tmp_path / "round.npz"), state, ens, x, y)
    assert summary["stopped"] and summary["confirmed"] >= summary["need"] >= 2
    assert summary["attacked"] < len(y) - 4  # the device stopped at the chunk that moved it
    with pytest.raises(EmpirError, match="stopped already"):
        recheck_gpu.where(state)
    resumed = suite.cascade(ens, x, y, THREAT, [SPEC], seed=5, chunk=4, state_path=state,
                            progress=False, stop_after=6)
    assert resumed["stopped_in"] == "apgd-ce"


def test_the_device_runner_needs_no_tensorflow_and_says_how_to_call_it():
    # The GPU machine has JAX and no TensorFlow: the runner and what it imports must load without it.
    assert "recheck_gpu_run.py .gpu/round.npz OUT_DIR" in device_usage("recheck_gpu_run")
