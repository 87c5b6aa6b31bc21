"""What the book shows: chapter helpers, figures, exercises, classroom assignments
and launch buttons.

The top layer below the command line: it may import every other layer.
"""
