"""LRP composites: which layer rule (:mod:`gradattr.rules.layers`) applies at which linear op — Zennit's
composites (Anders et al., "Software for Dataset-wide XAI", 2021; Montavon et al. 2019, Sec. 10.2) as data.

A composite is a mapping. Its keys say where a rule applies, most specific first:

* a module class (or tuple of classes), or a glob over the module's dotted path (``"features.0"``,
  ``"classifier.*"``): every linear op that runs inside such a module;
* ``"first"``: the first layer — a linear or conv op whose input is the model's input up to linear ops
  (reshapes, an input normalisation), where flat, w² and zB apply;
* an op kind: ``"linear"`` (``F.linear``), ``"conv"``, ``"conv_transpose"``, ``"pooling"`` (average pooling),
  ``"product"`` (``matmul``/``einsum`` with one input-dependent factor).

An op no key covers keeps its plain gradient, which in gradient×input form is LRP-0 (``R_j = Σ_k a_j w_jk /
z_k · R_k``). Example, z⁺ at convolutions, ε = 0.25 at the classifier, flat at the input::

    Composite({"conv": ZPlus(), "linear": EpsilonLayer(1e-6), "classifier.*": EpsilonLayer(0.25),
               "first": Flat(), "pooling": EpsilonLayer(1e-6)})

Eval-mode batch norm after a linear/conv op is folded into it (``merge_batch_norm=True``, Zennit's
``SequentialMergeBatchNorm`` at the op call: also for ``F.batch_norm`` and functional convs); one that folds
into nothing passes relevance through (Zennit's ``Pass``). Nonlinearities, products, softmax and norms get
AttnLRP's rules (:func:`gradattr.rulesets.lrp`), so one composite covers a CNN and a transformer.

The named composites are Zennit 0.5.1's, with its defaults (``epsilon = stabilizer = 1e-6``, ``gamma=0.25``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

from torch import Tensor, nn

from gradattr.rules.layers import AlphaBeta, EpsilonLayer, Flat, Gamma, LayerRule, ZBox, ZPlus

Where = type[nn.Module] | tuple[type[nn.Module], ...] | str
"""A composite key: a module class or classes, ``"first"``, an op kind, or a glob over module paths."""

OP_KINDS: tuple[str, ...] = ("linear", "conv", "conv_transpose", "pooling", "product")

CompositeName = Literal[
    "epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat", "epsilon_gamma_box"
]
COMPOSITES: tuple[str, ...] = get_args(CompositeName)
"""The named composites (Zennit's names)."""


@dataclass(frozen=True, eq=False)
class Composite:
    """Layer rules by op kind, first-layer position and module (see the module doc for the keys)."""

    rules: Mapping[Where, LayerRule | None]
    name: str = "custom"
    merge_batch_norm: bool = True
    needs_reference: bool = False

    def __post_init__(self) -> None:
        for key, rule in self.rules.items():
            if rule is not None and not callable(getattr(rule, "backward", None)):
                raise TypeError(f"composite {self.name!r}: the rule for {key!r} is not a layer rule, got {rule!r}")
            if not isinstance(key, (str, type, tuple)):
                raise TypeError(
                    f"composite {self.name!r}: a key must be a module class, 'first', an op kind or a "
                    f"glob over module paths, got {key!r}"
                )

    @property
    def by_module(self) -> tuple[tuple[Where, LayerRule | None], ...]:
        """The entries keyed by module class or path glob, in the mapping's order."""
        return tuple((k, r) for k, r in self.rules.items() if not (isinstance(k, str) and k in ("first", *OP_KINDS)))

    @property
    def direct(self) -> bool:
        """Whether some rule hands relevance to the input directly (flat, w², zB), so inputs need probes."""
        return any(rule is not None and rule.direct for rule in self.rules.values())

    def select(self, kind: str, first: bool) -> LayerRule | None:
        """The rule at an op of kind ``kind``; ``first``: the op is a first layer."""
        if first and kind != "pooling" and "first" in self.rules:
            return self.rules["first"]
        return self.rules.get(kind)


def _zennit_base(conv: LayerRule, epsilon: float, stabilizer: float) -> dict[Where, LayerRule | None]:
    """Zennit's ``layer_map_base`` plus its rule at convolutions and ε at linear layers (and at products)."""
    return {
        "conv": conv,
        "conv_transpose": conv,
        "linear": EpsilonLayer(epsilon),
        "product": EpsilonLayer(epsilon),
        "pooling": EpsilonLayer(stabilizer),  # Zennit's Norm at average pooling
    }


def named(
    name: str,
    *,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    stabilizer: float = 1e-6,
    low: float | Tensor | None = None,
    high: float | Tensor | None = None,
) -> Composite:
    """Zennit's composite ``name`` (one of :data:`COMPOSITES`):

    * ``epsilon_plus``: z⁺ at convolutions, ε at linear layers;
    * ``epsilon_plus_flat``: the same with flat at the first layer;
    * ``epsilon_alpha2_beta1`` / ``epsilon_alpha2_beta1_flat``: α=2, β=1 at convolutions (flat first);
    * ``epsilon_gamma_box``: γ at convolutions, zB with bounds ``low``/``high`` at the first layer.

    Average pooling gets Zennit's ``Norm`` (ε = ``stabilizer``, no bias), batch norm is merged.
    """
    if name not in COMPOSITES:
        raise ValueError(f"unknown composite {name!r}; choose one of {', '.join(COMPOSITES)} or pass a Composite")
    if name == "epsilon_gamma_box":
        if low is None or high is None:
            raise ValueError("epsilon_gamma_box needs the input's bounds: pass low= and high= (numbers or tensors)")
        rules = _zennit_base(Gamma(gamma, stabilizer), epsilon, stabilizer)
        return Composite({"first": ZBox(low, high, stabilizer), **rules}, name)
    if low is not None or high is not None:
        raise ValueError(
            f"low= and high= are the bounds of epsilon_gamma_box's first layer; {name} has no use for them"
        )
    conv = ZPlus(stabilizer) if name.startswith("epsilon_plus") else AlphaBeta(2.0, 1.0, stabilizer)
    rules = _zennit_base(conv, epsilon, stabilizer)
    if name.endswith("_flat"):
        rules = {"first": Flat(stabilizer), **rules}
    return Composite(rules, name)
