"""Same module name as sibling/analysis.py, other content: names must not leak."""

NAME = "failing"
