"""Figures and reports: heatmap grids, Sensitivity-n curves, text coloured by attribution, the HTML study
report (:func:`write_study`)."""

from gradattr.report.curves import sensitivity_figure
from gradattr.report.heatmaps import heatmap_figure, heatmap_grid
from gradattr.report.study_page import render_study, write_study
from gradattr.report.tokens import token_spans

__all__ = ["heatmap_figure", "heatmap_grid", "render_study", "sensitivity_figure", "token_spans", "write_study"]
