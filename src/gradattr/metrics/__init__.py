"""Measures of attribution quality and agreement."""

from gradattr.metrics.agreement import correlation_matrix, pearson_per_sample
from gradattr.metrics.completeness import completeness_gap

__all__ = ["completeness_gap", "correlation_matrix", "pearson_per_sample"]
