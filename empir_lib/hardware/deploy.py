"""Members deployed in ONNX Runtime: the files, their hashes, sessions, and the check against Keras.

:mod:`empir_lib.hardware.deploy_graph` turns a member into an ONNX graph whose
quantised layers run on ONNX Runtime's integer kernels (Eq. 5's levels as
int8 and uint8 codes, with scales set from the member's bits).  This module
writes that graph as ``data/deployed/<member>.onnx`` with an entry in
``data/deployed/manifest.json`` (sha256, size, which kernel each layer runs
on), loads it after checking the hash, and compares its predictions, and the
EMPIR vote (paper section 3.2) computed from them, with the Keras members'.
:mod:`empir_lib.hardware.deploy_bench` times them (Eq. 6, section 3.3).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import ArrayLike

from ..core import files, settings
from ..core.errors import EmpirError, check_positive_int
from ..core.files import atomic_write, sha256, write_json
from ..nets import ensemble, zoo
from ..nets.models import check_images
from .deploy_graph import OPSET, to_onnx, weight_codes

# The graph builder's two public names, under the names the chapter and tests use from here.
__all__ = ["OPSET", "to_onnx", "weight_codes"]

DEPLOY_DIR = files.REPO / "data" / "deployed"
DeployDir = str | os.PathLike | None


# --- the deployed files ---------------------------------------------------------------------------


def manifest_path(deploy_dir: DeployDir = None) -> Path:
    """Where the deployed members' manifest lives."""
    return Path(deploy_dir or DEPLOY_DIR) / "manifest.json"


def read_manifest(deploy_dir: DeployDir = None) -> dict:
    """The deployed members' manifest (``{'members': {}}`` when none is deployed)."""
    return files.read_manifest(manifest_path(deploy_dir), "restore it with git or rerun 'empir deploy'")


def deploy(member: str, deploy_dir: DeployDir = None, zoo_dir: zoo.ZooDir = None) -> dict:
    """``empir deploy MEMBER``: write ``<member>.onnx`` and its manifest entry (sha256, size, kernels).

    ``MEMBER`` is a zoo id, with ``+nbits`` appended for the variant whose quantised dense layers
    store 2- or 4-bit weights (:func:`to_onnx`).  The file is a deterministic function of the zoo
    member: rerunning gives the same bytes.
    """
    zoo_id, plus, variant = member.partition("+")
    if plus and variant != "nbits":
        raise EmpirError(f"{member!r}: the only deployment variant is '+nbits' (e.g. '{zoo_id}+nbits').")
    model = zoo.load(zoo_id, zoo_dir)
    proto, kinds = to_onnx(model, nbits=bool(plus))
    folder = Path(deploy_dir or DEPLOY_DIR)
    path = folder / f"{zoo_id}{'.nbits' if plus else ''}.onnx"
    atomic_write(path, lambda p: Path(p).write_bytes(proto.SerializeToString()))
    _, wbits, abits, _ = settings.parse_member_id(zoo_id)
    entry = {"file": path.name, "sha256": sha256(path), "size_bytes": path.stat().st_size,
             "zoo_sha256": zoo.read_manifest(zoo_dir)["members"][zoo_id]["sha256"], "wbits": wbits,
             "abits": abits, "kernels": kinds, "opset": OPSET, "onnx": onnx.__version__,
             "onnxruntime": ort.__version__, "command": f"empir deploy {member}"}
    manifest = read_manifest(folder)
    manifest["members"][member] = entry
    write_json(manifest_path(folder), manifest)
    return entry


def session(model_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads and no spinning (timings stay honest)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = check_positive_int(threads, "threads")
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    # Our integer kernels are explicit (QLinearConv, MatMulInteger), so ORT's QDQ rewriting has nothing to
    # do; turning it off lets constant folding turn int8 weight codes into float levels once, at start-up.
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    # Folding batch norm into the convolution before it (w * gamma / sigma, then a bias that cancels
    # the mean) changes the float rounding enough to flip activation codes at the next quantiser:
    # 22 of 200 Tiny ImageNet a2w2 predictions changed with the fusion, none without it.
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"],
                                disabled_optimizers=["ConvBNFusion"])


class Deployed(NamedTuple):
    """A deployed member: its id, manifest entry and ONNX Runtime session."""

    member: str
    entry: dict
    session: ort.InferenceSession

    @property
    def fp(self) -> bool:
        return settings.is_full_precision(self.entry["wbits"], self.entry["abits"])


def load(member: str, deploy_dir: DeployDir = None, threads: int = 1) -> Deployed:
    """A deployed member by zoo id, after checking its sha256 against the manifest."""
    folder = Path(deploy_dir or DEPLOY_DIR)
    entries = read_manifest(folder)["members"]
    if member not in entries:
        raise EmpirError(f"{member!r} is not deployed in {folder}; run 'empir deploy {member}' "
                         f"(deployed: {', '.join(sorted(entries)) or 'none'}).")
    entry = entries[member]
    path = folder / entry["file"]
    if not path.is_file():
        raise EmpirError(f"{path} is missing; rewrite it with 'empir deploy {member}'.")
    data = path.read_bytes()
    actual = sha256(path)
    if actual != entry["sha256"]:
        raise EmpirError(f"{path} has sha256 {actual} but the manifest says {entry['sha256']}: the file is "
                         f"truncated or tampered with. Rewrite it with 'empir deploy {member}'.")
    return Deployed(member, entry, session(data, threads))


def ensure(member: str, deploy_dir: DeployDir = None, threads: int = 1) -> Deployed:
    """:func:`load`, deploying the member first when it is not deployed yet."""
    if member not in read_manifest(deploy_dir)["members"]:
        deploy(member, deploy_dir)
    return load(member, deploy_dir, threads)


def logits(member: Deployed, x: ArrayLike, batch_size: int = 500) -> np.ndarray:
    """The deployed member's logits for checked images, in batches."""
    x = check_images(x, member.session.get_inputs()[0].shape[1:])
    batch_size = check_positive_int(batch_size, "batch_size")
    out = [member.session.run(None, {"image": x[i:i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, member.session.get_outputs()[0].shape[-1]), np.float32)


def vote(stacked_logits: ArrayLike, fp: list[bool]) -> np.ndarray:
    """EMPIR's max vote (section 3.2) in NumPy, with :mod:`empir_lib.nets.ensemble`'s FP-first tie-break.

    The same rule as :func:`empir_lib.nets.ensemble.vote`, without TensorFlow, so a deployed ensemble
    needs nothing but the runtime (:func:`compare` checks the two agree).
    """
    logits = np.asarray(stacked_logits)
    preds = logits.argmax(-1)                                                  # (K, B)
    counts = (preds[..., None] == np.arange(logits.shape[-1])).sum(0)          # (B, C)
    tied = counts >= counts.max(-1, keepdims=True)
    idx = np.arange(len(fp))
    ranked = preds[np.concatenate([idx[np.array(fp, bool)], idx[~np.array(fp, bool)]])]  # priority order
    cols = np.arange(preds.shape[1])
    first = tied[cols[None], ranked].argmax(0)                                 # first member among the tied
    return ranked[first, cols].astype(np.int64)


def compare(members: list[str], x: ArrayLike, batch_size: int = 500, deploy_dir: DeployDir = None,
            nbits: bool = False) -> dict:
    """Deployed against emulated (Keras) predictions on ``x``: per member and for the ensemble's vote.

    ``nbits=True`` compares the LP members' '+nbits' deployments.  Returns
    {'members': {id: {'differ', 'max_abs_logit_diff', 'kernels'}}, 'vote_differ', 'n'}.
    """
    x = np.asarray(x, np.float32)
    ens = ensemble.from_zoo(members)
    keras_out = ensemble.predict_all(ens, x, batch_size)
    keras_logits = keras_out["logits"]
    deployed = [ensure(f"{m}+nbits" if nbits and not fp else m, deploy_dir) for m, fp in zip(members, ens.fp)]
    onnx_logits = np.stack([logits(d, x, batch_size) for d in deployed])
    rows = {}
    for d, k, o in zip(deployed, keras_logits, onnx_logits):
        rows[d.member] = {"differ": int((k.argmax(-1) != o.argmax(-1)).sum()),
                   "max_abs_logit_diff": float(np.abs(k - o).max()), "kernels": d.entry["kernels"]}
    fp = [d.fp for d in deployed]
    vote_differ = int((keras_out["pred"] != vote(onnx_logits, fp)).sum())
    return {"members": rows, "vote_differ": vote_differ, "n": int(len(x))}


def integer_share(member: str, zoo_dir: zoo.ZooDir = None) -> float:
    """Fraction of a member's multiply-accumulates that its deployed form runs on integer kernels."""
    model = zoo.load(member, zoo_dir)
    _, kinds = to_onnx(model)
    total = integer = 0
    for layer in model.layers:
        if getattr(layer, "kernel", None) is None:
            continue
        out = layer.output.shape
        macs = math.prod(layer.kernel.shape) * (math.prod(out[1:-1]) if len(out) == 4 else 1)
        total += macs
        integer += macs if kinds.get(layer.name, "").startswith("int8") else 0
    return integer / total
