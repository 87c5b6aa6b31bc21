"""Attacks and the worst-case suite: the paper protocol's attacks, objectives, APGD,
Square (ours; ART's for the expected suite), per-image outcomes, the cascade and its diagnostics.

Imports only from the layers below (core, nets, hardware).
"""
