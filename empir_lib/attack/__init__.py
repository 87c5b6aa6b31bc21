"""Attacks and the worst-case suite: the paper protocol's attacks, objectives, APGD,
ART's Square, per-image outcomes, the cascade and its diagnostics.

Imports only from the layers below (core, nets, hardware).
"""
