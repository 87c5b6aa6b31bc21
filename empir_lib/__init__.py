"""empir_lib: ensembles of mixed-precision networks (EMPIR, ICLR 2020) in TF2 / Keras 3.

One idea per module; imports run one way, from the bottom of this list up
(``tests/test_imports.py`` checks it):

* ``errors``, ``settings`` (every dataset's settings, zoo ids), ``paper`` (the paper's numbers),
  ``files``, ``provenance``, ``timing``;
* ``quantize`` (DoReFa, Eq. 5), ``distribute``, ``models``, ``metrics``;
* ``data``, ``imagenet``, ``samples``, ``train``, ``zoo``;
* ``ensemble``, ``attacks``, and the worst-case evaluation's attack side (``surrogates``,
  ``apgd``, ``art_bridge``);
* ``results``, ``outcomes``, ``suite``, ``diagnostics``, ``worstcase``, ``evaluate``, ``reproduce``;
* ``overhead`` (Eq. 6), ``packing``, ``tables``, ``plots``, ``chapters``, ``exercises``;
* ``bench`` and ``cli`` (the ``empir`` command).

README.md, "What is where", has one line per module.
"""
__version__ = "0.1.0"
