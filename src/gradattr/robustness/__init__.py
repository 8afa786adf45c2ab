"""Robustness of explanations (Nielsen et al., "Robust Explainability", IEEE SPM 2022).

Sanity checks (Adebayo et al. 2018), class sensitivity, attacks on explanations (Ghorbani et al. 2019) and
adversarial training (PGD, Madry et al. 2018), each as a function returning tables of numbers.
"""

from gradattr.robustness.adversarial import PGD, ModelComparison, adversarial_train, compare_models, robust_accuracy
from gradattr.robustness.attack import (
    OBJECTIVES,
    SECOND_ORDER_METHODS,
    ExplanationAttackResult,
    PerturbationReport,
    differentiable_attribution,
    explanation_attack,
    random_sign_perturbation,
)
from gradattr.robustness.class_sensitivity import ClassSensitivityResult, class_sensitivity
from gradattr.robustness.sanity import (
    SanityResult,
    data_randomisation,
    model_randomisation,
    permuted_labels,
    randomisation_order,
)
from gradattr.robustness.surrogate import softplus_surrogate

__all__ = [
    "OBJECTIVES",
    "PGD",
    "SECOND_ORDER_METHODS",
    "ClassSensitivityResult",
    "ExplanationAttackResult",
    "ModelComparison",
    "PerturbationReport",
    "SanityResult",
    "adversarial_train",
    "class_sensitivity",
    "compare_models",
    "data_randomisation",
    "differentiable_attribution",
    "explanation_attack",
    "model_randomisation",
    "permuted_labels",
    "random_sign_perturbation",
    "randomisation_order",
    "robust_accuracy",
    "softplus_surrogate",
]
