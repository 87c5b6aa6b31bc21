"""empir_lib: ensembles of mixed-precision networks (EMPIR, ICLR 2020) in TF2 / Keras 3.

The library is six layers, one folder each, bottom to top (:data:`LAYERS`).  A
module imports only from its own folder or a folder below it, never above, and
never inside a function (``tests/test_imports.py`` checks both):

* ``core``: errors, settings, the defences' registry, the paper's numbers, files,
  provenance, timing, the distribution strategy, Markdown cells;
* ``nets``: quantisation (Eq. 5), models, data, training, the zoo, ensembles,
  stochastic members and their joint training;
* ``hardware``: Eq. 6's overheads, bit-packed storage, ONNX deployment;
* ``attack``: the attacks, objectives, APGD, Square, the suite and its
  diagnostics;
* ``studies``: results files and the jobs of ``empir reproduce``, benchmarks;
* ``book``: the chapters' helpers, figures, exercises and assignments;

and ``cli`` (the ``empir`` command) on top.  README.md, "What is where", has one
line per module.
"""
__version__ = "0.1.0"

# Bottom to top: a module in LAYERS[i] may import from LAYERS[:i + 1] only.
LAYERS = ("core", "nets", "hardware", "attack", "studies", "book")
