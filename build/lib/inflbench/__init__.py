"""inflbench: training-data influence estimation benchmark (package side of the workflow)."""

__version__ = "0.1.0"
