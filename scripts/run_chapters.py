"""Re-execute chapters in the quick profile and store their outputs (what the rendered book shows).

    .venv/bin/python scripts/run_chapters.py book/07_results.ipynb book/08_adaptive_attacks.ipynb

Runs each notebook with EMPIR_DATA_DIR unset (embedded samples only, as a
reader without the datasets would), then drops TensorFlow's C++ start-up log
lines from stderr outputs: they change on every run and say nothing.
"""
import os
import re
import sys
import time

import nbformat
from nbconvert.preprocessors import ExecutePreprocessor

NOISE = re.compile(r"^(WARNING: All log messages|I0000 |E0000 |W0000 |To enable the following instructions|"
                   r".*cpu_feature_guard|.*cuda_platform|.*cudart_stub|.*port\.cc)")


def clean(nb):
    for cell in nb.cells:
        outs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                text = "".join(line for line in out["text"].splitlines(keepends=True) if not NOISE.match(line))
                if not text.strip():
                    continue
                out["text"] = text
            outs.append(out)
        if cell.cell_type == "code":
            cell.outputs = outs
    return nb


def main(paths):
    os.environ.pop("EMPIR_DATA_DIR", None)
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        t0 = time.perf_counter()
        ExecutePreprocessor(timeout=1200, kernel_name="python3").preprocess(nb, {"metadata": {"path": "book"}})
        nbformat.write(clean(nb), path)
        print(f"{path}: {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
