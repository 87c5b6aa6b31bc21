"""empir_lib: ensembles of mixed-precision networks (EMPIR, ICLR 2020) in TF2 / Keras 3.

Modules, one idea each: ``quantize`` (DoReFa, Eq. 5), ``models`` (MNISTconv,
CIFARconv, AlexNet), ``data``, ``train``, ``zoo``, ``evaluate``,
``provenance``, ``samples`` and ``cli``.
"""
__version__ = "0.1.0"
