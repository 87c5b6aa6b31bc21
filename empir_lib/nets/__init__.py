"""Networks: quantisation (paper Eq. 5), models, data, training, the zoo and ensembles.

Imports only from :mod:`empir_lib.core`.
"""
