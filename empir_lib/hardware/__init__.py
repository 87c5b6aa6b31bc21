"""Eq. 6 and deployment: overheads, bit-packed storage, ONNX graphs on integer kernels.

Imports only from :mod:`empir_lib.core` and :mod:`empir_lib.nets`.
"""
