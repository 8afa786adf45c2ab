"""Backward rules, one small class each, grouped by the kind of op they replace the local gradient of.

* :mod:`~gradattr.rules.elementwise` — elementwise nonlinearities ``z -> f(z)`` (ε, Rescale, guided, deconv);
* :mod:`~gradattr.rules.products` — products of two input-dependent tensors (uniform, Shapley split) and
  normalisations (statistic held constant);
* :mod:`~gradattr.rules.softmax` — softmax and log-softmax (plain, constant, DeepLIFT's exact multiplier);
* :mod:`~gradattr.rules.layers` — linear layers (LRP's layer rules: ε, z⁺, αβ, γ, flat, w², zB).

Which rule applies where is data: :mod:`gradattr.rulesets`, and for LRP's layer rules
:mod:`gradattr.composites`.
"""

from gradattr.rules.elementwise import (
    Deconvolution,
    ElementwiseRule,
    Epsilon,
    Gradient,
    Guided,
    Identity,
    MultiplierRule,
    Nonlinearity,
    Rescale,
    derivative,
)
from gradattr.rules.layers import AlphaBeta, EpsilonLayer, Flat, Gamma, LayerCall, LayerRule, WSquare, ZBox, ZPlus
from gradattr.rules.products import HoldConstant, Plain, ProductRule, ShapleySplit, Uniform
from gradattr.rules.softmax import ConstantSoftmax, DeepLiftSoftmax, PlainSoftmax, SoftmaxCall, SoftmaxRule

__all__ = [
    "AlphaBeta",
    "ConstantSoftmax",
    "Deconvolution",
    "DeepLiftSoftmax",
    "ElementwiseRule",
    "Epsilon",
    "EpsilonLayer",
    "Flat",
    "Gamma",
    "Gradient",
    "Guided",
    "HoldConstant",
    "Identity",
    "LayerCall",
    "LayerRule",
    "MultiplierRule",
    "Nonlinearity",
    "Plain",
    "PlainSoftmax",
    "ProductRule",
    "Rescale",
    "ShapleySplit",
    "SoftmaxCall",
    "SoftmaxRule",
    "Uniform",
    "WSquare",
    "ZBox",
    "ZPlus",
    "derivative",
]
