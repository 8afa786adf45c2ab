"""What a model computes from its input, as the engine sees it: the op calls of one forward pass that would
carry a rule, by kind — the nonlinearities a model *actually* calls, whatever its modules are named.

The paper's propositions hold for some networks only (Ancona et al., ICLR 2018, Sec. 3: Prop. 1, eps-LRP =
Gradient*Input, for networks whose only nonlinearity is ReLU; Prop. 2, DeepLIFT with a zero baseline =
Gradient*Input, for ReLU networks without biases). Whether they apply is read off the inventory, not off a
flag the user sets: ``inventory(model, x).rectifiers_only``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradattr.engine.hygiene import preserved_model
from gradattr.engine.interception import RuleMode
from gradattr.engine.ops import ELEMENTWISE, lookup
from gradattr.rules import Gradient
from gradattr.rulesets import RuleSet

_PLAIN = RuleSet("inventory", Gradient(), complete=False)
"""Plain gradients everywhere: the pass only observes."""


@dataclass(frozen=True)
class Inventory:
    """Op calls that depend on the attributed input, by resolved name and kind, with their counts."""

    calls: dict[str, int]
    kinds: dict[str, str]

    def of_kind(self, *kinds: str) -> dict[str, int]:
        return {name: n for name, n in self.calls.items() if self.kinds[name] in kinds}

    @property
    def nonlinearities(self) -> dict[str, int]:
        """Elementwise nonlinearities (also chains written by hand, named by their last op)."""
        return self.of_kind("elementwise", "arithmetic", "select")

    @property
    def rectifiers_only(self) -> bool:
        """The only nonlinearities are ReLUs (max pooling allowed): Prop. 1 applies."""
        rectifiers = {name for name, entry in ELEMENTWISE.items() if entry.rectifier}
        others = self.of_kind("product", "softmax", "normalisation", "recurrent", "unknown")
        return not others and all(name in rectifiers for name in self.nonlinearities)


class _Observer(RuleMode):
    """A plain pass that counts the rule sites it meets, and routing, recurrent and unknown ops."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, _PLAIN, strict=False)
        self.rectifiers_only = False  # it observes every op, not only where the rules apply
        self.met: Counter[str] = Counter()
        self.kinds: dict[str, str] = {}

    def site(self, name: str, tensors: tuple) -> Any:
        self._count(name)
        return super().site(name, tensors)

    def _count(self, name: str, kind: str | None = None) -> None:
        op = lookup(name)
        self.met[name] += 1
        self.kinds[name] = kind or (op.kind if op is not None else "unknown")

    def routing(self, name: str, spec: Any, func: Any, args: tuple, kwargs: dict) -> Any:
        if any(isinstance(a, torch.Tensor) and a.requires_grad for a in args[:2]):
            self._count(name)
        return super().routing(name, spec, func, args, kwargs)

    def recurrent(self, name: str, spec: Any, func: Any, args: tuple, kwargs: dict) -> Any:
        self._count(name)
        return super().recurrent(name, spec, func, args, kwargs)

    def unsupported(self, name: str, reason: str) -> None:
        self._count(name, "unknown")


def inventory(model: nn.Module, inputs: object, **call: object) -> Inventory:
    """The op calls of one forward pass of ``model`` on ``inputs`` that depend on them, by kind.

    ``call``: the keywords of :func:`gradattr.attribute` that say how the model is called (``layer``,
    ``forward_kwargs``, ``output``, ``position``).

    Example:
        >>> import torch, gradattr
        >>> from gradattr.engine import inventory
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        >>> inventory(net, torch.randn(2, 3)).rectifiers_only
        True
    """
    from gradattr.methods._problem import build_problem  # the problem layer sits above the engine

    with preserved_model(model, warn=False) as view:
        problem = build_problem(view, inputs, None, None, call.pop("layer", None), **call)  # type: ignore[arg-type]
        observer = _Observer(view)
        leaves = tuple(x.detach().requires_grad_() for x in problem.inputs)
        with torch.enable_grad(), observer:
            problem.output(leaves, problem.all_rows)
    return Inventory(dict(observer.met), dict(observer.kinds))
