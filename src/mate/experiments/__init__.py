"""Experiments built on the engine: method comparisons over seeds, and run reports."""
from .compare import MethodSpec, compare, load_method_specs
from .run_report import render_report

__all__ = ["MethodSpec", "compare", "load_method_specs", "render_report"]
