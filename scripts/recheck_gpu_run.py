"""The device side of ``scripts/recheck_gpu.py``: a re-check round's stage in JAX, on a machine without TensorFlow.

    PYTHONPATH=. python3 scripts/recheck_gpu_run.py .gpu/round.npz OUT_DIR [--budget SECONDS] [--lanes N]

Runs :func:`empir_lib.attack.recheck_jax.stage` on the bundle's survivors,
closest first, in chunks of ``lanes`` rows (images times restarts), until
the breaks reach the round's tolerance or ``--budget`` seconds would be
passed.  After every chunk it writes ``results.json`` and ``results.npz``,
so what finished always comes back.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import numpy as np

from empir_lib.attack import recheck_jax
from empir_lib.nets import jax_members as jm


def run(bundle_path: str, out_dir: str, budget: float, lanes: int) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with np.load(bundle_path) as f:
        b = dict(f)
    ms, order = jm.members(b)
    spec, threat = json.loads(str(b["spec"])), json.loads(str(b["threat"]))
    record = {"device": str(jax.devices()[0]), "jax": jax.__version__, "spec": spec, "threat": threat,
              "need": int(b["need"]), "lanes": lanes, "key": int(b["key"]), "state_sha256": str(b["state_sha256"]),
              "names": json.loads(str(b["names"])), "survivors": len(b["y"])}
    print(json.dumps(record), flush=True)

    def done(res: dict) -> None:
        k = res["attacked"]
        np.savez_compressed(out / "results.npz", index=b["index"][:k], broken=res["broken"],
                            x_adv=res["x_adv"].astype(np.float32))
        rec = {**record, "attacked": k, "breaks": int(res["broken"].sum()), "seconds": round(res["seconds"], 1),
               "chunks": res["chunks"]}
        (out / "results.json").write_text(json.dumps(rec, indent=1))
        print(json.dumps({k2: rec[k2] for k2 in ("attacked", "breaks", "seconds", "chunks")}), flush=True)

    recheck_jax.stage(ms, order, spec, threat, b["x"], b["y"], jax.random.key(int(b["key"])), int(b["need"]),
                      lanes=lanes, budget_s=budget, done=done)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0].startswith("-"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    budget = float(argv[argv.index("--budget") + 1]) if "--budget" in argv else float("inf")
    lanes = int(argv[argv.index("--lanes") + 1]) if "--lanes" in argv else 4096
    run(argv[0], argv[1], budget, lanes)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
