"""Figures for the chapters: small functions, each returning one figure.

Every figure function returns a :class:`matplotlib.figure.Figure` and never
calls ``plt.show()``: a notebook displays the returned figure, a script can
``fig.savefig(...)`` it, and tests can inspect it.  Numbers are computed by
the library modules (``quantize``, ``zoo``, ...), never here; this module
only draws.  Figures are created with :class:`matplotlib.figure.Figure`
directly, not through ``pyplot``, so building many of them leaks no global
state.  One module per kind of figure (``quantisers``, ``heatmaps``,
``examples``, ``curves``, ``bars``, ``cascade``, ``beyond``, ``stochastic``; shared colours in ``style``); every
annotated grid is drawn by one function, :func:`heatmap`.  Every figure is
imported here, so ``plots.accuracy_grid(...)`` works.  Markdown tables are
:mod:`empir_lib.core.tables` (re-exported here under their old names).
"""
from __future__ import annotations

from ...core.tables import markdown_table, missing_line, percent_cell
from .bars import objective_bars, overhead_bars, table2_bars
from .beyond import flip_curves, precision_sweeps
from .cascade import cascade_bars, job_time_bars, robust_vs_budget, settling_lines
from .curves import accuracy_tradeoff, along_attack_path, objective_paths, overhead_curves, strength_sweeps
from .examples import adversarial_examples, perturbations
from .heatmaps import (
           accuracy_grid,
           confusion_matrices,
           heatmap,
           in_percent,
           member_count_panels,
           overhead_heatmaps,
           precision_grid_panels,
)
from .quantisers import forward_and_gradient, quantised_images, quantizer_transfer, weight_histograms
from .stochastic import convergence_curve, lottery_curve
from .style import BITS_COLOURS, ROW_COLOURS, TABLE2_COLUMNS, TRADEOFF_STYLE, bits_colour, show_image

__all__ = ["BITS_COLOURS", "ROW_COLOURS", "TABLE2_COLUMNS", "TRADEOFF_STYLE", "accuracy_grid",
           "accuracy_tradeoff", "adversarial_examples", "along_attack_path", "bits_colour", "cascade_bars",
           "confusion_matrices", "convergence_curve", "flip_curves", "forward_and_gradient",
           "heatmap", "in_percent", "job_time_bars", "lottery_curve", "markdown_table",
           "member_count_panels", "missing_line", "objective_bars", "objective_paths", "overhead_bars",
           "overhead_curves", "overhead_heatmaps", "percent_cell", "perturbations", "precision_grid_panels",
           "precision_sweeps",
           "quantised_images", "quantizer_transfer", "robust_vs_budget", "settling_lines", "show_image",
           "strength_sweeps",
           "table2_bars", "weight_histograms"]
