"""Measures of attribution quality and agreement."""

from gradattr.groups import patches
from gradattr.metrics.agreement import (
    average_ranks,
    correlation_matrix,
    pearson_per_sample,
    spearman_per_sample,
    topk_intersection,
)
from gradattr.metrics.axioms import InvarianceResult, input_invariance, non_sensitivity, shifted_model
from gradattr.metrics.completeness import CompletenessWarning, completeness_gap, conservation_gap
from gradattr.metrics.complexity import complexity, effective_complexity, sparseness
from gradattr.metrics.faithfulness import faithfulness_correlation, monotonicity
from gradattr.metrics.infidelity import infidelity
from gradattr.metrics.localisation import (
    attribution_localisation,
    pointing_game,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
    top_k_intersection,
)
from gradattr.metrics.perturbation import PerturbationCurve, deletion_auc, insertion_auc, irof, region_perturbation
from gradattr.metrics.randomisation import random_logit
from gradattr.metrics.road import RoadResult, road
from gradattr.metrics.sensitivity import SensitivityResult, SubsetPlan, default_ns, draw_subsets, sensitivity_n
from gradattr.metrics.similarity import ssim
from gradattr.metrics.stability import avg_sensitivity, local_lipschitz, max_sensitivity

__all__ = [
    "CompletenessWarning",
    "InvarianceResult",
    "PerturbationCurve",
    "RoadResult",
    "SensitivityResult",
    "SubsetPlan",
    "attribution_localisation",
    "average_ranks",
    "avg_sensitivity",
    "completeness_gap",
    "complexity",
    "conservation_gap",
    "correlation_matrix",
    "default_ns",
    "deletion_auc",
    "draw_subsets",
    "effective_complexity",
    "faithfulness_correlation",
    "infidelity",
    "input_invariance",
    "insertion_auc",
    "irof",
    "local_lipschitz",
    "max_sensitivity",
    "monotonicity",
    "non_sensitivity",
    "patches",
    "pearson_per_sample",
    "pointing_game",
    "random_logit",
    "region_perturbation",
    "relevance_mass_accuracy",
    "relevance_rank_accuracy",
    "road",
    "sensitivity_n",
    "shifted_model",
    "sparseness",
    "spearman_per_sample",
    "ssim",
    "top_k_intersection",
    "topk_intersection",
]
