"""Studies: jobs that write results files (``empir reproduce``), reading them back,
and the benchmarks.

Imports only from the layers below (core, nets, hardware, attack).
"""
