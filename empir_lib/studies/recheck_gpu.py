"""A re-check round's stage on a GPU: what goes there and how it comes back into the round (issue 30).

The round runs on the CPU as a resumable cascade
(:func:`empir_lib.attack.convergence.recheck`; its state is committed in
``data/partial/``).  Its first stage at round 5 costs about 300,000
image-steps per survivor, far more than a session here.  So:

1. :func:`bundle` reads the round's saved state (the stage in progress, its
   survivors in their closest-first order from where it stands, the breaks
   it still needs to move) and packs the members
   (:func:`empir_lib.studies.expected_gpu.bundle`) with those survivors;
2. ``scripts/recheck_gpu_run.py`` runs the stage on them in JAX
   (:func:`empir_lib.attack.recheck_jax.stage`);
3. :func:`ingest` validates every returned point, judges it on the
   TensorFlow ensemble's vote (the deployed decision, as the cascade does),
   and writes the result into the **same state**: the attacked survivors
   move the stage's position on, the confirmed breaks are the stage's, and
   the stage stops if they reach the round's tolerance.  The usual command
   (``scripts/attack_stages.py ... recheck ...``) then resumes the round from
   there and writes its results with their provenance; the stage's
   statistics say which images ran on the device, where and for how long.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..attack import cascade_state, objectives, outcomes, suite, validate
from ..core.errors import EmpirError
from ..nets import ensemble as ens_mod
from . import expected_gpu


def _state(state_path: str | os.PathLike) -> tuple[dict, dict]:
    path = Path(state_path)
    if not path.is_file():
        raise EmpirError(f"{path}: no saved round state; start the round on the CPU "
                         "(scripts/attack_stages.py ... recheck ...) and stop it after its first chunk.")
    with np.load(path, allow_pickle=False) as f:
        config = json.loads(str(f["config"]))
    return config, cascade_state.load(path, config)


def where(state_path: str | os.PathLike) -> dict:
    """The stage in progress: its spec and 1-based index, the threat, the survivors left, the breaks still needed."""
    return _where(*_state(state_path), state_path)


def _where(config: dict, state: dict, state_path: str | os.PathLike) -> dict:
    if cascade_state.stopped(state["stats"]):
        raise EmpirError(f"{state_path}: the round has stopped already (it moved); run the CPU command to finish it.")
    if state["todo"] is None:
        raise EmpirError(f"{state_path}: the stage has not ordered its survivors yet; run the CPU command until it "
                         "saves its first chunk.")
    j = state["stage"] + 1
    spec = config["attacks"][j - 1]
    own = [a["name"] for a in config["attacks"][config.get("start_stage", 0):]]
    broke = sum(int(v["broken"]) for k, v in state["stats"].items() if k in own)
    left = np.asarray(state["todo"][state["pos"]:], np.int64)
    if np.any(state["broken_by"][left] != outcomes.ROBUST):  # what the stage has not reached is still robust
        raise EmpirError(f"{state_path}: images the stage has not attacked yet are marked broken; the state is "
                         "inconsistent.")
    return {"stage": j, "spec": spec, "threat": config["threat"], "seed": config["seed"],
            "need": int(config["stop_after"]) - broke, "pos": int(state["pos"]), "left": left}


def digest(state_path: str | os.PathLike) -> str:
    """sha256 of the state file: a device run is ingested only into the state it was bundled from."""
    return hashlib.sha256(Path(state_path).read_bytes()).hexdigest()


def bundle(state_path: str | os.PathLike, ens: ens_mod.Ensemble, x: np.ndarray, y: np.ndarray) -> dict:
    """The members, the survivors left (closest first) and the stage to run on them (:func:`where`)."""
    config, state = _state(state_path)
    w = _where(config, state, state_path)
    if list(ens.names) != config["members"]:
        raise EmpirError(f"{state_path} is a round of {config['members']}, not of {list(ens.names)}.")
    b = expected_gpu.bundle(ens, x[w["left"]], y[w["left"]])
    key = int(w["seed"]) * 1_000_003 + w["stage"] * 7919 + w["pos"]  # as the cascade seeds a chunk
    return {**b, "index": w["left"], "spec": np.array(json.dumps(w["spec"])),
            "threat": np.array(json.dumps(w["threat"])), "need": np.array(w["need"]), "key": np.array(key),
            "state_sha256": np.array(digest(state_path))}


def ingest(device_dir: str | os.PathLike, state_path: str | os.PathLike, ens: ens_mod.Ensemble, x: np.ndarray,
           y: np.ndarray) -> dict:
    """Write a device run's attacked survivors and confirmed breaks into the round's state; returns a summary.

    A point counts as a break only if it is finite, in the box and within
    the ball (:func:`empir_lib.attack.validate.valid`) and the TensorFlow
    ensemble's vote there is wrong, as the cascade judges every stage.
    """
    device_dir = Path(device_dir)
    run = json.loads((device_dir / "results.json").read_text())
    if run["state_sha256"] != digest(state_path):
        raise EmpirError(f"{device_dir} was bundled from another state of {state_path} (it changed since); "
                         "bundle again.")
    config, state = _state(state_path)
    w = _where(config, state, state_path)
    with np.load(device_dir / "results.npz", allow_pickle=False) as f:
        got = dict(f)
    k = int(run["attacked"])
    idx = np.asarray(got["index"][:k], np.int64)
    if not np.array_equal(idx, w["left"][:k]) or got["broken"].shape != (k,) or len(got["x_adv"]) != k:
        raise EmpirError(f"{device_dir}: its images are not the first {k} survivors the state has left.")
    xa = np.asarray(got["x_adv"], np.float32)
    good = validate.valid(x[idx], xa, config["threat"])
    fooled = objectives.deployed(ens, np.where(good[:, None, None, None], xa, x[idx])) != y[idx]
    ok = good & fooled
    state["broken_by"][idx[ok]] = w["stage"]
    state["norm"][idx[ok]] = validate.norms(x[idx], xa, config["threat"]["norm"])[ok]
    spec = w["spec"]
    st = state["stats"][spec["name"]]
    st["broken"] += int(ok.sum())
    st["invalid"] = st.get("invalid", 0) + int((~good).sum())
    st["seconds"] += float(run["seconds"])
    st["image_steps"] += k * suite.stage_budget(spec)  # every lane runs to the end: no early stop there
    st.setdefault("device", []).append({
        "from": w["pos"], "images": k, "seconds": round(float(run["seconds"]), 1), "device": run["device"],
        "jax": run["jax"], "lanes": run["lanes"], "device_breaks": int(got["broken"].sum()),
        "confirmed": int(ok.sum()), "not_confirmed": int((got["broken"] & ~ok).sum())})
    state["pos"] = w["pos"] + k
    if int(ok.sum()) >= w["need"]:
        st["stopped"] = True
    cascade_state.save(state_path, config, state)
    return {"attacked": k, "confirmed": int(ok.sum()), "device_breaks": int(got["broken"].sum()),
            "invalid": int((~good).sum()), "need": w["need"], "stopped": bool(st.get("stopped")),
            "pos": state["pos"], "left": len(w["left"]) - k}
