"""Measures of attribution quality and agreement."""

from gradattr.metrics.agreement import (
    average_ranks,
    correlation_matrix,
    pearson_per_sample,
    spearman_per_sample,
    topk_intersection,
)
from gradattr.metrics.completeness import completeness_gap
from gradattr.groups import patches
from gradattr.metrics.sensitivity import SensitivityResult, SubsetPlan, default_ns, draw_subsets, sensitivity_n

__all__ = [
    "SensitivityResult",
    "SubsetPlan",
    "average_ranks",
    "completeness_gap",
    "correlation_matrix",
    "default_ns",
    "draw_subsets",
    "patches",
    "pearson_per_sample",
    "sensitivity_n",
    "spearman_per_sample",
    "topk_intersection",
]
