"""Eq. 6 against the stopwatch: deployed members timed, their memory measured, their predictions compared.

:mod:`empir_lib.hardware.deploy` puts each member on ONNX Runtime's integer kernels;
this module measures what the paper's section 3.3 only models:

* :func:`equivalence`: on a full test set, how many predictions of each
  deployed member (and of the EMPIR vote) differ from the emulated Keras ones;
* :func:`timings`: latency per image at batch 1 and throughput at batch 100
  of the FP member, each LP member and the whole EMPIR ensemble, in rounds
  (every configuration once per round, so background load hits them alike),
  one thread pinned to one core, the spread over the rounds kept; plus the
  int8-against-float32 rate of the runtime's convolution kernels, which is
  Eq. 6's ``Ops_per_sec(FP) / Ops_per_sec(k)`` measured on this CPU;
* :func:`peak_memory`: the peak resident memory of a fresh process that loads
  and runs the FP member, against one that runs the ensemble.

``empir_lib.hardware.deploy_bench.run()`` writes ``data/results/deploy/{equivalence,timing}.json``
with provenance; chapter 6 reads them (its tables and figure: :mod:`empir_lib.book.chapters.hardware`).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import numpy as np
import onnxruntime as ort
import tensorflow as tf
from onnx import TensorProto, helper, numpy_helper
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
from tqdm.auto import tqdm

from ..core import files, provenance, settings
from ..core.errors import EmpirError, check_positive_int
from ..core.files import write_json
from ..nets import data, zoo
from . import deploy, overhead

RESULTS = files.REPO / "data" / "results" / "deploy"
DATASETS = ("mnist", "cifar10", "tiny-imagenet")
# The networks whose FC layers are quantised (AlexNet's ip1 and ip2), so that 2- and 4-bit weight
# storage (the '+nbits' deployment) applies; MNISTconv's and CIFARconv's FC layers stay float32.
NBITS_DATASETS = ("tiny-imagenet",)


def _write(path: Path, record: dict, command: str) -> dict:
    record = {**record, "versions": {"onnxruntime": ort.__version__}, "provenance": provenance.record(command)}
    write_json(path, record)
    return record


def equivalence(datasets: Iterable[str] = DATASETS, data_dir: str | None = None, out: Path | None = None) -> dict:
    """Deployed against Keras on each dataset's full test set, for its EMPIR members and their vote."""
    t0 = time.perf_counter()
    rows = {}
    for ds in tqdm(list(datasets), desc="equivalence", leave=False):
        x, _ = data.load(ds, "test", data_dir)
        rows[ds] = {**deploy.compare(settings.get(ds).empir_ids, x), "data": data.describe_source(ds, data_dir)}
        if ds in NBITS_DATASETS:
            rows[f"{ds}+nbits"] = {**deploy.compare(settings.get(ds).empir_ids, x, nbits=True),
                                   "data": data.describe_source(ds, data_dir)}
    record = {"datasets": rows, "wall_time_s": round(time.perf_counter() - t0, 1)}
    return _write(out or RESULTS / "equivalence.json", record,
                  "python -c 'from empir_lib.hardware import deploy_bench; deploy_bench.run()'")


# --- time ---------------------------------------------------------------------------------------


def _pinned() -> Callable[[], None]:
    """Pin this process to one core (the last one) and return a function that undoes it."""
    if not hasattr(os, "sched_setaffinity"):
        return lambda: None
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(before)})
    return lambda: os.sched_setaffinity(0, before)


def _seconds(fn: Callable[[], object], calls: int) -> float:
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def _spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def _runner(sessions: list, x: np.ndarray) -> Callable[[], object]:
    feeds = {"image": x}
    if len(sessions) == 1:
        return lambda: sessions[0][0].run(None, feeds)
    fp = [s[1] for s in sessions]
    # The ensemble: every member's forward pass, then the vote, as a deployed EMPIR would run it.
    return lambda: deploy.vote(np.stack([s[0].run(None, feeds)[0] for s in sessions]), fp)


def time_configurations(configs: dict, x: np.ndarray, rounds: int = 7, latency_calls: int = 1000,
                        throughput_calls: int = 3) -> dict:
    """Latency (s per image, batch 1) and throughput (images/s, batch 100) of each configuration, in rounds.

    ``configs`` maps a name to a list of (session, is_fp) pairs run on the same images; each round
    times every configuration once, so slow moments of a shared machine fall on all of them.
    """
    rounds = check_positive_int(rounds, "rounds")
    one, hundred = x[:1], x[:100]
    if len(hundred) < 100:
        raise EmpirError(f"timing needs 100 images; got {len(x)}.")
    lat = {k: [] for k in configs}
    thr = {k: [] for k in configs}
    calls = {}
    for name, sessions in configs.items():  # warm-up (first runs allocate and pack weights), then calibrate
        _runner(sessions, hundred)()
        # About 0.1 s per measurement: long enough to average out the scheduler's ticks.
        calls[name] = (max(5, min(latency_calls, int(0.1 / _seconds(_runner(sessions, one), 3)))),
                       max(throughput_calls, int(0.2 / _seconds(_runner(sessions, hundred), 1))))
    for _ in tqdm(range(rounds), desc="timing rounds", leave=False):
        for name, sessions in configs.items():
            lat[name].append(_seconds(_runner(sessions, one), calls[name][0]))
            thr[name].append(100 / _seconds(_runner(sessions, hundred), calls[name][1]))
    return {k: {"latency_s": _spread(lat[k]), "throughput_per_s": _spread(thr[k])} for k in configs}


def _conv_model(op: str, cin: int = 64, hw: int = 14, cout: int = 128, k: int = 6) -> bytes:
    """One convolution (MNISTconv's conv2, the layer with most of its work) as float Conv or int8 QLinearConv."""
    rng = np.random.default_rng(0)
    if op == "Conv":
        w = rng.normal(size=(cout, cin, k, k)).astype(np.float32)
        nodes = [helper.make_node("Conv", ["x", "w"], ["y"], strides=[2, 2])]
        inits, in_type, out_type = [numpy_helper.from_array(w, "w")], TensorProto.FLOAT, TensorProto.FLOAT
    else:
        w = rng.integers(-3, 4, size=(cout, cin, k, k)).astype(np.int8)
        consts = {"xs": np.float32(1 / 15), "xz": np.uint8(0), "w": w, "ws": np.float32(1 / 3), "wz": np.int8(0),
                  "ys": np.float32(1 / 15), "yz": np.uint8(0)}
        nodes = [helper.make_node("QLinearConv", ["x", *consts], ["y"], strides=[2, 2])]
        inits = [numpy_helper.from_array(np.asarray(v), n) for n, v in consts.items()]
        in_type, out_type = TensorProto.UINT8, TensorProto.UINT8
    graph = helper.make_graph(nodes, op, [helper.make_tensor_value_info("x", in_type, ["b", cin, hw, hw])],
                              [helper.make_tensor_value_info("y", out_type, None)], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", deploy.OPSET)])
    proto.ir_version = 9
    return proto.SerializeToString()


def kernel_rate(rounds: int = 7, batch: int = 100) -> dict:
    """Eq. 6's Ops_per_sec(FP) / Ops_per_sec(int8) measured: time of QLinearConv / time of float Conv, same shape."""
    rng = np.random.default_rng(1)
    xf = rng.random((batch, 64, 14, 14), dtype=np.float32)
    xu = (xf * 15).astype(np.uint8)
    fp, q = deploy.session(_conv_model("Conv")), deploy.session(_conv_model("QLinearConv"))
    run_fp, run_q = (lambda: fp.run(None, {"x": xf})), (lambda: q.run(None, {"x": xu}))
    # About 0.2 s per measurement, as in time_configurations.
    calls = [max(3, int(0.2 / _seconds(fn, 2))) for fn in (run_fp, run_q)]
    ratios = [_seconds(run_q, calls[1]) / _seconds(run_fp, calls[0]) for _ in range(rounds)]
    return {"layer": "MNISTconv conv2: 64 -> 128 channels, 6x6, stride 2, 14x14 input", "batch": batch,
            "int8_over_fp32_time": _spread(ratios)}


def timings(datasets: Iterable[str] = DATASETS, rounds: int = 9, grid: str = "mnist", out: Path | None = None,
            deploy_dir: deploy.DeployDir = None) -> dict:
    """Measured time of the deployed FP member, each LP member and the EMPIR ensemble, and Eq. 6 beside it."""
    t0 = time.perf_counter()
    undo = _pinned()
    try:
        rate = kernel_rate(rounds)
        rows = {}
        for ds in tqdm(list(datasets), desc="datasets", leave=False):
            s = settings.get(ds)
            x, _ = data.load_sample(ds, 100)
            members = {m: deploy.ensure(m, deploy_dir) for m in s.empir_ids}
            configs = {m: [(d.session, d.fp)] for m, d in members.items()}
            configs["EMPIR"] = [(d.session, d.fp) for d in members.values()]
            if ds in NBITS_DATASETS:
                nbits = {m: deploy.ensure(f"{m}+nbits", deploy_dir) for m in s.empir_lp}
                configs.update({f"{m}+nbits": [(d.session, False)] for m, d in nbits.items()})
                configs["EMPIR+nbits"] = [*[(d.session, False) for d in nbits.values()],
                                          (members[s.empir_fp].session, True)]
            measured = time_configurations(configs, x, rounds)
            rows[ds] = {"fp": s.empir_fp, "lp": s.empir_lp, "measured": measured,
                        "integer_share": {m: deploy.integer_share(m) for m in s.empir_ids},
                        **_eq6(s, measured, rate["int8_over_fp32_time"]["median"])}
        with tempfile.TemporaryDirectory() as tmp:  # the grid's members, deployed only to be timed
            x, _ = data.load_sample(grid, 100)
            ids = [settings.member_id(grid, w, a, 1) for w, a in [(32, 32), *settings.GRID]]
            configs = {m: [(deploy.ensure(m, tmp).session, m.endswith("fp-s1"))] for m in ids}
            grid_rows = time_configurations(configs, x, rounds)
    finally:
        undo()
    record = {"datasets": rows, "grid": {"dataset": grid, "members": grid_rows}, "kernel_rate": rate,
              "threads": 1, "pinned_cores": 1, "rounds": rounds, "wall_time_s": round(time.perf_counter() - t0, 1)}
    return _write(out or RESULTS / "timing.json", record, "python -c 'from empir_lib.hardware import deploy_bench; "
                  "deploy_bench.run()'")


def ops_per_sec(int8_over_fp32_time: float) -> Callable[[int], float]:
    """Eq. 6's Ops_per_sec(b) on this CPU: one integer width, int8, so every b <= 8 runs at the int8 rate.

    ``int8_over_fp32_time`` is :func:`kernel_rate`'s measured ratio; FP runs at rate 1.
    Pass the result to :func:`empir_lib.hardware.overhead.eq6_time` as ``ops_per_sec``.
    """
    if not int8_over_fp32_time > 0:
        raise EmpirError(f"the int8 / fp32 time ratio must be > 0; got {int8_over_fp32_time!r}.")

    def rate(bits: int) -> float:
        return 1.0 if bits > 8 else 1.0 / int8_over_fp32_time

    return rate


def _eq6(s: settings.DatasetSettings, measured: dict, int8_rate: float) -> dict:
    """Eq. 6's time: the paper's proportional model, with the measured int8 rate, and the ensemble measured."""
    config = [(w, a) for w, a, _ in s.empir]
    fp_lat = measured[s.empir_fp]["latency_s"]["median"]
    fp_thr = measured[s.empir_fp]["throughput_per_s"]["median"]
    return {"eq6_paper": overhead.ensemble_overheads(config)["time"],
            "eq6_measured_rate": overhead.ensemble_overheads(config, ops_per_sec(int8_rate))["time"],
            "eq6_member_times": 1 + sum(measured[m]["latency_s"]["median"] / fp_lat for m in s.empir_lp),
            "ensemble_batch1": measured["EMPIR"]["latency_s"]["median"] / fp_lat,
            "ensemble_batch100": fp_thr / measured["EMPIR"]["throughput_per_s"]["median"]}


def _tflite(model: keras.Model, x: np.ndarray, int8: bool) -> bytes:
    """The member through TF Lite's converter: float32, or int8 with the converter's own calibration on ``x``."""
    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
    fn = convert_variables_to_constants_v2(tf.function(lambda t: model(t, training=False)).get_concrete_function(spec))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([x[i:i + 1]] for i in range(len(x)))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    return converter.convert()


def _litert_runner(model_bytes: bytes, x: np.ndarray) -> Callable[[], object]:
    interpreter = tf.lite.Interpreter(model_content=model_bytes, num_threads=1)  # XNNPACK, one thread
    interpreter.resize_tensor_input(0, list(x.shape))
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]

    def run() -> None:
        interpreter.set_tensor(index, x)
        interpreter.invoke()

    return run


def runtimes(rounds: int = 7, out: Path | None = None) -> dict:
    """Why ONNX Runtime: its float32 and int8 kernels against LiteRT's (XNNPACK) on MNISTconv, same run.

    Float32: the FP member in both.  int8: our DoReFa a4w2 member on ONNX Runtime, and, for LiteRT, the
    FP member converted to int8 with the converter's own calibration (the only int8 path LiteRT offers;
    its scales are not DoReFa's, so it serves only as a speed reference for LiteRT's int8 kernels).
    """
    t0 = time.perf_counter()
    x, _ = data.load_sample("mnist", 100)
    fp = zoo.load("mnist-fp-s1")
    lite = {"float32": _tflite(fp, x, False), "int8": _tflite(fp, x, True)}
    ort_members = {"float32": deploy.ensure("mnist-fp-s1").session, "int8": deploy.ensure("mnist-a4w2-s1").session}
    undo = _pinned()
    try:
        fns = {}
        for batch in (1, 100):
            for kind in ("float32", "int8"):
                fns[f"LiteRT {kind}, batch {batch}"] = _litert_runner(lite[kind], x[:batch])
                fns[f"ONNX Runtime {kind}, batch {batch}"] = (
                    lambda s=ort_members[kind], b=batch: s.run(None, {"image": x[:b]}))
        calls = {k: max(3, int(0.1 / _seconds(fn, 3))) for k, fn in fns.items()}
        runs = {k: [] for k in fns}
        for _ in tqdm(range(rounds), desc="runtimes", leave=False):
            for k, fn in fns.items():
                runs[k].append(_seconds(fn, calls[k]) / (100 if k.endswith("100") else 1))
    finally:
        undo()
    record = {"seconds_per_image": {k: _spread(v) for k, v in runs.items()}, "rounds": rounds,
              "litert": f"tf.lite.Interpreter (TensorFlow {tf.__version__}, XNNPACK)",
              "wall_time_s": round(time.perf_counter() - t0, 1)}
    return _write(out or RESULTS / "runtimes.json", record, "python -c 'from empir_lib.hardware import deploy_bench; "
                  "deploy_bench.runtimes()'")


# --- memory -------------------------------------------------------------------------------------

# A fresh interpreter with ONNX Runtime and NumPy only (no TensorFlow, which alone holds ~0.5 GB).  It resets
# the kernel's peak-RSS mark after the imports (clear_refs 5), so VmHWM at the end is the peak while the
# sessions load and run, and prints it with the resident set before them.
_CHILD = """
import sys
import numpy as np, onnxruntime as ort
def status(key):
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(key))
batch, shape, paths = int(sys.argv[1]), tuple(int(d) for d in sys.argv[2].split(",")), sys.argv[3:]
x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS:")
opts = ort.SessionOptions(); opts.intra_op_num_threads = 1
opts.add_session_config_entry("session.disable_quant_qdq", "1")
sessions = [ort.InferenceSession(p, opts, providers=["CPUExecutionProvider"], disabled_optimizers=["ConvBNFusion"])
            for p in paths]
for _ in range(3):
    for s in sessions:
        s.run(None, {"image": x})
print(before, status("VmHWM:"))
"""


def _peak_rss(paths: list[Path], shape: tuple, batch: int) -> int:
    """Peak resident bytes that loading and running ``paths`` at ``batch`` adds to a fresh process."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(batch), ",".join(map(str, shape)), *map(str, paths)],
                         capture_output=True, text=True, check=True)
    before, peak = map(int, out.stdout.split()[-2:])
    return peak - before


def peak_memory(dataset: str, repeats: int = 3, deploy_dir: deploy.DeployDir = None, batch: int = 100) -> dict:
    """Peak resident bytes added by running the FP member, and by running the whole ensemble, at ``batch``."""
    s = settings.get(dataset)
    ensembles = {"ensemble": s.empir_ids}
    if dataset in NBITS_DATASETS:
        ensembles["ensemble+nbits"] = [*(f"{m}+nbits" for m in s.empir_lp), s.empir_fp]
    keys = sorted({m for ids in ensembles.values() for m in ids})
    for m in keys:
        deploy.ensure(m, deploy_dir)  # checks each file's sha256 before a child process reads it
    folder = Path(deploy_dir or deploy.DEPLOY_DIR)
    entries = deploy.read_manifest(folder)["members"]
    path = {m: folder / entries[m]["file"] for m in keys}
    runs = {"fp": [], **{k: [] for k in ensembles}}
    for _ in range(repeats):
        runs["fp"].append(_peak_rss([path[s.empir_fp]], s.input_shape, batch))
        for k, ids in ensembles.items():
            runs[k].append(_peak_rss([path[m] for m in ids], s.input_shape, batch))
    fp_file = entries[s.empir_fp]["size_bytes"]
    return {"batch": batch, "peak_rss_bytes": {k: _spread(v) for k, v in runs.items()},
            "file_bytes": {m: entries[m]["size_bytes"] for m in keys},
            "rss_over_fp": {k: statistics.median(runs[k]) / statistics.median(runs["fp"]) for k in ensembles},
            "files_over_fp": {k: sum(entries[m]["size_bytes"] for m in ids) / fp_file for k, ids in ensembles.items()}}


def memory(datasets: Iterable[str] = DATASETS, out: Path | None = None) -> dict:
    """:func:`peak_memory` for each dataset, written to ``data/results/deploy/memory.json``."""
    t0 = time.perf_counter()
    rows = {ds: {f"batch{b}": peak_memory(ds, batch=b) for b in (1, 100)}
            for ds in tqdm(list(datasets), desc="memory", leave=False)}
    return _write(out or RESULTS / "memory.json", {"datasets": rows, "wall_time_s": round(time.perf_counter() - t0, 1)},
                  "python -c 'from empir_lib.hardware import deploy_bench; deploy_bench.run()'")


def run(data_dir: str | None = None, parts: Iterable[str] = ("equivalence", "timing", "memory")) -> dict:
    """Deploy the EMPIR members (and the '+nbits' variants), then write the chosen results files."""
    for ds in DATASETS:
        s = settings.get(ds)
        for m in [*s.empir_ids, *(f"{m}+nbits" for m in s.empir_lp if ds in NBITS_DATASETS)]:
            deploy.deploy(m)
    steps = {"equivalence": lambda: equivalence(data_dir=data_dir), "timing": timings, "memory": memory}
    return {p: steps[p]() for p in parts}


def load(name: str) -> dict:
    """One of the committed results files: 'equivalence', 'timing' or 'memory'."""
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise EmpirError(f"{path} is missing; write it with "
                         "python -c 'from empir_lib.hardware import deploy_bench; deploy_bench.run()'.")
    return json.loads(path.read_text())
