"""A re-check round's stage on a GPU (issue 30): the bundle that goes there, and what comes back.

    EMPIR_DATA_DIR=... PYTHONPATH=. .venv/bin/python scripts/recheck_gpu.py bundle DATASET STATE .gpu/round.npz

reads a round's saved state (``STATE``, e.g.
``data/partial/chains/suite-cifar10-suite-empir-l2-recheck5-1.npz``: see
``scripts/attack_stages.py DATASET status``) and writes the members and the
survivors its stage has left, closest first
(:func:`empir_lib.studies.recheck_gpu.bundle`); on the GPU machine
``scripts/recheck_gpu_run.py`` runs the stage on them in JAX.  Back here,

    EMPIR_DATA_DIR=... PYTHONPATH=. .venv/bin/python scripts/recheck_gpu.py ingest DATASET STATE DEVICE_OUT_DIR

validates every returned point, judges it on the TensorFlow ensemble's vote
and writes the result into the same state
(:func:`empir_lib.studies.recheck_gpu.ingest`); the round's usual command
(``scripts/attack_stages.py DATASET recheck ...``) resumes it from there.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from empir_lib.nets import data
from empir_lib.nets import ensemble as ens_mod
from empir_lib.studies import recheck_gpu


def _round(dataset: str, state: str) -> tuple:
    with np.load(state, allow_pickle=False) as f:
        config = json.loads(str(f["config"]))
    x, y = data.load(dataset, "test", None, config["n"])
    return ens_mod.from_zoo(config["members"], config["rule"]), x, y


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] in ("bundle", "ingest"):
        ens, x, y = _round(argv[1], argv[2])
        if argv[0] == "bundle":
            b = recheck_gpu.bundle(argv[2], ens, x, y)
            Path(argv[3]).parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(argv[3], **b)
            print(f"{argv[3]}: {len(b['y'])} survivors, stage {json.loads(str(b['spec']))['name']}, "
                  f"{int(b['need'])} breaks to move")
        else:
            print(json.dumps(recheck_gpu.ingest(argv[3], argv[2], ens, x, y)))
        return 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
