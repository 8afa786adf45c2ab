"""Rule sets: which backward rule applies at which kind of op — named, documented data (Zennit's
"composites"). A method names its rule set; the engine looks rules up here and never branches on a method.

The op kinds (:mod:`gradattr.engine.ops`): ``elementwise`` nonlinearities (also hand-written ones, recognised
as elementwise chains), ``product`` of two input-dependent tensors, ``normalisation`` (a product with, or
division by, a per-row statistic), ``softmax``, ``layer`` (linear/conv: LRP's layer rules), and ``max`` (max
pooling and max over a dimension: the paper's gradient routing, or DeepLIFT's exact tree of ReLUs).

=================  ==================  ===============  ==================  ===============  ======================
rule set           elementwise         product          normalisation       softmax          layer
=================  ==================  ===============  ==================  ===============  ======================
``deeplift``       Rescale             Shapley split    Shapley split       exact (decomp.)  plain
``attnlrp``        ε: f(z)/(z+ε·sgn z) uniform (÷2)     statistic constant  plain (grad×in)  plain
``cp``             ε                   uniform          statistic constant  constant         plain
``epsilon``        pass: f(z)/z        uniform          statistic constant  plain            ε (Bach et al. 2015)
``lrp:<name>``     pass: f(z)/z        uniform          statistic constant  plain            a composite's rules
``guided``         guided backprop     plain            plain               plain            plain
``deconvnet``      deconvnet           plain            plain               plain            plain
=================  ==================  ===============  ==================  ===============  ======================

Sources: DeepLIFT Rescale (Shrikumar et al. 2017; Ancona et al., ICLR 2018, Eq. 9) and the Shapley value of
a two-factor product (SPEC "Modern ops"); AttnLRP (Achtibat et al., ICML 2024); CP-LRP (Ali et al., ICML
2022); ε-LRP at layers (Bach et al. 2015; Montavon et al. 2019).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any, Literal, get_args

import torch
from torch import nn

from gradattr.composites import Composite
from gradattr.rules import (
    ConstantSoftmax,
    Deconvolution,
    DeepLiftSoftmax,
    ElementwiseRule,
    Epsilon,
    EpsilonLayer,
    Guided,
    HoldConstant,
    Identity,
    LayerRule,
    Nonlinearity,
    Plain,
    PlainSoftmax,
    ProductRule,
    Rescale,
    ShapleySplit,
    SoftmaxRule,
    Uniform,
)

MaxPooling = Literal["route", "exact"]
"""``"route"``: max pooling and max over a dimension keep their gradient, which routes to the maximum (the
paper's reference code); ``"exact"``: the max is evaluated as a tree of ``max(a, b) = a + relu(b − a)``, each
ReLU with the method's rule, which makes DeepLIFT's summation-to-delta exact through max pooling."""

MAX_POOLING: tuple[str, ...] = get_args(MaxPooling)


KINDS: tuple[str, ...] = ("elementwise", "product", "normalisation", "softmax", "layer")
"""The rule slots of a rule set."""

BatchNormHandling = Literal["linear", "merge"]
"""Eval-mode batch norm: ``"linear"``, an affine op with its plain gradient (the paper's methods); ``"merge"``,
folded into the linear/conv op before it so that op's LRP rule sees the merged weights, else LRP's pass rule
(Zennit's ``SequentialMergeBatchNorm`` and ``Pass``)."""


@dataclass(frozen=True)
class Override:
    """Rule ``rule`` at op kind ``kind`` inside the modules ``where`` selects: a module class (or a tuple of
    classes) or a glob over the module's dotted path in the model (``"features.0"``, ``"*.attn*"``); the
    innermost module whose ``forward`` is running decides. E.g. the ε rule only at the classifier:
    ``Override("layer", EpsilonLayer(0.25), "classifier.*")``."""

    kind: str
    rule: Any
    where: type[nn.Module] | tuple[type[nn.Module], ...] | str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"override kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def applies(self, path: str, module: nn.Module) -> bool:
        if isinstance(self.where, str):
            return fnmatchcase(path, self.where)
        return isinstance(module, self.where)


@dataclass(frozen=True)
class RuleSet:
    """Which rule replaces the local gradient at each op kind.

    ``complete``: the method needs a rule at every nonlinear op, so an op without one is an error; ``False``
    for methods defined as the plain gradient away from their rule's ops (guided backprop, deconvnet).
    """

    name: str
    elementwise: ElementwiseRule
    product: ProductRule = field(default_factory=Plain)
    normalisation: ProductRule = field(default_factory=Plain)
    softmax: SoftmaxRule = field(default_factory=PlainSoftmax)
    layer: LayerRule | Composite | None = None
    max_pooling: MaxPooling = "route"
    complete: bool = True
    overrides: tuple[Override, ...] = ()
    batch_norm: BatchNormHandling = "linear"

    @property
    def needs_reference(self) -> bool:
        """Whether a forward pass over the baseline must record each rule site's inputs first."""
        rules = (self.elementwise, self.product, self.normalisation, self.softmax, self.layer)
        rules += tuple(o.rule for o in self.overrides)
        return any(rule is not None and rule.needs_reference for rule in rules)

    @property
    def rectifiers_only(self) -> bool:
        """Whether the rule set changes the gradient at rectifiers only (guided backprop, deconvnet): every op
        but the elementwise nonlinearities (and recurrent kernels, which hold them) then runs as it is."""
        plain = isinstance(self.product, Plain) and isinstance(self.normalisation, Plain)
        plain = plain and isinstance(self.softmax, PlainSoftmax) and self.layer is None and not self.overrides
        return plain and not self.elementwise.changes(Nonlinearity(torch.tanh)) and self.max_pooling == "route"

    @property
    def needs_probe(self) -> bool:
        """Whether a layer rule hands relevance to the input directly (flat, w², zB at the first layer), so the
        inputs need relevance probes (:mod:`gradattr.engine.probes`)."""
        rules = (self.layer, *(o.rule for o in self.overrides if o.kind == "layer"))
        return any(rule is not None and rule.direct for rule in rules)

    def rule(self, kind: str, path: str | None = None, module: nn.Module | None = None) -> Any:
        """The rule at op kind ``kind`` in the module ``module`` (dotted ``path``): the first override that
        applies there, else the rule set's rule for the kind."""
        if module is not None:
            for override in self.overrides:
                if override.kind == kind and override.applies(path or "", module):
                    return override.rule
        return getattr(self, kind)

    def with_max_pooling(self, max_pooling: MaxPooling) -> RuleSet:
        if max_pooling not in MAX_POOLING:
            raise ValueError(f"max_pooling must be one of {', '.join(map(repr, MAX_POOLING))}, got {max_pooling!r}")
        return replace(self, max_pooling=max_pooling)


def deeplift() -> RuleSet:
    """DeepLIFT: Rescale at nonlinearities, exact Shapley split at products and normalisations, the exact
    softmax multiplier: Σ R = S_c(x) − S_c(x̄) to float precision on any net built from these ops."""
    return RuleSet("deeplift", Rescale(), ShapleySplit(), ShapleySplit(), DeepLiftSoftmax())


LrpRules = Literal["attnlrp", "cp", "epsilon"]
"""eps-LRP's rule sets: AttnLRP (default), CP-LRP, and ε-LRP with the ε rule at every linear layer too."""

LRP_RULES: tuple[str, ...] = get_args(LrpRules)


def epsilon_lrp(rules: LrpRules = "attnlrp", epsilon: float = 1e-4) -> RuleSet:
    """eps-LRP's rule set ``rules`` with stabiliser ``epsilon`` (see the table in the module doc)."""
    if rules not in LRP_RULES:
        raise ValueError(f"rules must be one of {', '.join(map(repr, LRP_RULES))}, got {rules!r}")
    elementwise, held = Epsilon(epsilon), HoldConstant(Uniform())
    if rules == "cp":
        return RuleSet("cp", elementwise, Uniform(), held, ConstantSoftmax())
    if rules == "epsilon":  # ε at the layers, relevance passed unchanged through activations (Zennit's Pass)
        return RuleSet("epsilon", Identity(), Uniform(), held, PlainSoftmax(), EpsilonLayer(epsilon))
    return RuleSet("attnlrp", elementwise, Uniform(), held, PlainSoftmax())


def lrp(composite: Composite) -> RuleSet:
    """LRP with ``composite``'s layer rules (:mod:`gradattr.composites`) and AttnLRP's rules elsewhere
    (Achtibat et al., ICML 2024): relevance passes unchanged through activations (Zennit's ``Pass``, AttnLRP's
    identity rule: ``g(z) = f(z)/z``), products split uniformly, norms' statistics held constant, softmax in
    gradient×input form. Its module-keyed entries become overrides; batch norm is merged into the layer
    before it when the composite says so."""
    overrides = tuple(Override("layer", rule, where) for where, rule in composite.by_module)
    batch_norm: BatchNormHandling = "merge" if composite.merge_batch_norm else "linear"
    return RuleSet(
        f"lrp:{composite.name}", Identity(), Uniform(), HoldConstant(Uniform()), PlainSoftmax(), composite,
        overrides=overrides, batch_norm=batch_norm,
    )


GUIDED = RuleSet("guided", Guided(), complete=False)
DECONVNET = RuleSet("deconvnet", Deconvolution(), complete=False)
