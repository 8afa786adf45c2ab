"""The paper's studies as functions that return tables (and write figures)."""

from gradattr.experiments.demo import DemoResult, run_demo

__all__ = ["DemoResult", "run_demo"]
