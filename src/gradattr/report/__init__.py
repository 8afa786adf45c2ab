"""Figures and reports."""

from gradattr.report.heatmaps import heatmap_grid

__all__ = ["heatmap_grid"]
