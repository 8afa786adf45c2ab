"""Backward rules, one small class each, grouped by the kind of op they replace the local gradient of.

* :mod:`~gradattr.rules.elementwise` — elementwise nonlinearities ``z -> f(z)`` (ε, Rescale, guided, deconv);
* :mod:`~gradattr.rules.products` — products of two input-dependent tensors (uniform, Shapley split) and
  normalisations (statistic held constant);
* :mod:`~gradattr.rules.softmax` — softmax and log-softmax (plain, constant, DeepLIFT's exact multiplier);
* :mod:`~gradattr.rules.layers` — linear layers (LRP's layer rules).

Which rule applies where is data: :mod:`gradattr.rulesets`.
"""

from gradattr.rules.elementwise import (
    Deconvolution,
    ElementwiseRule,
    Epsilon,
    Gradient,
    Guided,
    Identity,
    Nonlinearity,
    Rescale,
    derivative,
)
from gradattr.rules.layers import EpsilonLayer, LayerRule
from gradattr.rules.products import HoldConstant, Plain, ProductRule, ShapleySplit, Uniform
from gradattr.rules.softmax import ConstantSoftmax, DeepLiftSoftmax, PlainSoftmax, SoftmaxCall, SoftmaxRule

__all__ = [
    "ConstantSoftmax",
    "Deconvolution",
    "DeepLiftSoftmax",
    "ElementwiseRule",
    "Epsilon",
    "EpsilonLayer",
    "Gradient",
    "Guided",
    "HoldConstant",
    "Identity",
    "LayerRule",
    "Nonlinearity",
    "Plain",
    "PlainSoftmax",
    "ProductRule",
    "Rescale",
    "ShapleySplit",
    "SoftmaxCall",
    "SoftmaxRule",
    "Uniform",
    "derivative",
]
