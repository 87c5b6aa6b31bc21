"""The expected-accuracy study on a GPU (issue 29): the bundle that goes there, and what comes back.

    EMPIR_DATA_DIR=... PYTHONPATH=. .venv/bin/python scripts/expected_gpu.py bundle 1000 .gpu/bundle.npz

writes the jointly trained stochastic ensemble and the first N CIFAR-10 test
images as plain arrays (:func:`empir_lib.studies.expected_gpu.bundle`); on the
GPU machine ``scripts/expected_gpu_run.py`` runs the plan on it in JAX.  Back here,

    EMPIR_DATA_DIR=... PYTHONPATH=. .venv/bin/python scripts/expected_gpu.py ingest DEVICE_OUT_DIR

judges every returned point again with the TensorFlow ensemble and writes
``data/results/cifar10/stochastic/expected-gpu.json`` (:func:`empir_lib.studies.expected_gpu.ingest`);
``expected_gpu.py square`` then adds the suite's Square stage, run here
(:func:`empir_lib.studies.expected_gpu.add_square`), and
``expected_gpu.py extend DEVICE_OUT_DIR`` reads a further doubling of the
quoted setting on the first images (``expected_gpu_run.py --plan
suite:128:400`` on a smaller bundle; :func:`empir_lib.studies.expected_gpu.extend`).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from empir_lib.nets import data, diversity
from empir_lib.nets import ensemble as ens_mod
from empir_lib.studies import expected_gpu, results


def write_bundle(n: int, path: str) -> None:
    x, y = data.load("cifar10", "test", n=n)
    b = expected_gpu.bundle(ens_mod.from_zoo(diversity.joint_ids("cifar10")), x, y)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **b)
    print(f"{path}: {n} images, members {json.loads(str(b['names']))}")


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "bundle" and argv[1].isdigit():
        write_bundle(int(argv[1]), argv[2])
        return 0
    if len(argv) == 2 and argv[0] == "ingest":
        x, y = data.load("cifar10", "test", n=json.loads((Path(argv[1]) / "results.json").read_text())["n"])
        ens = ens_mod.from_zoo(diversity.joint_ids("cifar10"))
        rec = expected_gpu.ingest(argv[1], ens, x, y, results.results_dir("cifar10") / "stochastic",
                                  command="scripts/expected_gpu.py " + " ".join(argv))
        print(json.dumps({k: rec[k] for k in ("clean", "robust", "robust_ci95", "chosen")}))
        return 0
    if len(argv) == 2 and argv[0] == "extend":
        x, y = data.load("cifar10", "test", n=json.loads((Path(argv[1]) / "results.json").read_text())["n"])
        rec = expected_gpu.extend(argv[1], ens_mod.from_zoo(diversity.joint_ids("cifar10")), x, y,
                                  results.results_dir("cifar10") / "stochastic",
                                  command="scripts/expected_gpu.py " + " ".join(argv))
        print(json.dumps(rec["further"]))
        return 0
    if len(argv) == 1 and argv[0] == "square":
        folder = results.results_dir("cifar10") / "stochastic"
        x, y = data.load("cifar10", "test", n=results.read_result(folder / "expected-gpu.json")["n"])
        rec = expected_gpu.add_square(folder, ens_mod.from_zoo(diversity.joint_ids("cifar10")), x, y)
        print(json.dumps(rec["with_square"]))
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
