"""The bottom layer: what every other layer may use, and which uses nothing above it.

Errors and input checks (``errors``), every dataset's settings and the zoo ids
(``settings``), the defences' registry (``defences``), the paper's numbers
(``paper``), files, provenance, timing, the ``tf.distribute`` strategy, and
Markdown cells (``tables``).
"""
