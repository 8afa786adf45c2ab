"""Measures of attribution quality and agreement."""

from gradattr.groups import patches
from gradattr.metrics.agreement import (
    average_ranks,
    correlation_matrix,
    pearson_per_sample,
    spearman_per_sample,
    topk_intersection,
)
from gradattr.metrics.completeness import CompletenessWarning, completeness_gap
from gradattr.metrics.infidelity import infidelity
from gradattr.metrics.perturbation import PerturbationCurve, deletion_auc, insertion_auc, irof, region_perturbation
from gradattr.metrics.road import RoadResult, road
from gradattr.metrics.sensitivity import SensitivityResult, SubsetPlan, default_ns, draw_subsets, sensitivity_n
from gradattr.metrics.similarity import ssim
from gradattr.metrics.stability import avg_sensitivity, local_lipschitz, max_sensitivity

__all__ = [
    "CompletenessWarning",
    "PerturbationCurve",
    "RoadResult",
    "SensitivityResult",
    "SubsetPlan",
    "average_ranks",
    "avg_sensitivity",
    "completeness_gap",
    "correlation_matrix",
    "default_ns",
    "deletion_auc",
    "draw_subsets",
    "infidelity",
    "insertion_auc",
    "irof",
    "local_lipschitz",
    "max_sensitivity",
    "patches",
    "pearson_per_sample",
    "region_perturbation",
    "road",
    "sensitivity_n",
    "spearman_per_sample",
    "ssim",
    "topk_intersection",
]
