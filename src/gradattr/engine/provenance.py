"""What an input-dependent tensor *is*, recognised from how it was computed — not from class names.

The engine applies rules at op calls, but a model may write one mathematical op as several torch calls:
HuggingFace's GPT-2 writes GELU as ``0.5 * x * (1 + tanh(c (x + 0.044715 x³)))`` and Llama writes RMSNorm as
``x * rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)``. Two facts about each tensor of a forward pass let the
engine give such code the rule of what it computes:

* **chain**: the tensor is ``f(source)`` elementwise for one source tensor of the same shape, built by
  elementwise ops whose other operands are constants or are themselves elementwise functions of the same
  source (``x * sigmoid(x)``, the GELU above). A nonlinear chain is one elementwise nonlinearity: its
  rule is applied from the source to the chain's end, so every consumer sees the rule of ``f`` as a whole.
* **statistic**: the tensor is a per-row statistic — made by a reduction (``mean``, ``sum``, a norm) of an
  input-dependent tensor, then only elementwise ops with constants, other statistics or shape ops. A
  product with (or division by) a statistic is a normalisation (layer norm, RMSNorm, ``F.normalize``, the
  denominator of a hand-written softmax).

Facts are kept per forward pass by tensor identity; an entry disappears with its tensor.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

ElementwiseFunction = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Chain:
    """The tensor equals ``f(source)`` elementwise; ``nonlinear``: some op of the chain is nonlinear;
    ``pointwise``: ``f`` holds no tensor constants, so it may be applied to any subset of elements."""

    source: Tensor
    f: ElementwiseFunction
    nonlinear: bool = False
    pointwise: bool = True


@dataclass(frozen=True)
class Facts:
    chain: Chain | None = None
    statistic: bool = False


_NONE = Facts()


class Provenance:
    """Facts about the tensors of one forward pass, by identity (entries vanish with their tensors)."""

    def __init__(self) -> None:
        self._facts: dict[int, tuple[weakref.ref[Tensor], Facts]] = {}

    def get(self, tensor: Tensor) -> Facts:
        entry = self._facts.get(id(tensor))
        if entry is None or entry[0]() is not tensor:
            return _NONE
        return entry[1]

    def set(self, tensor: Tensor, facts: Facts) -> None:
        key = id(tensor)
        if facts == _NONE:
            self._facts.pop(key, None)
            return
        facts_of = self._facts

        def forget(_: weakref.ref[Tensor]) -> None:
            entry = facts_of.get(key)
            if entry is not None and entry[0]() is None:
                del facts_of[key]

        self._facts[key] = (weakref.ref(tensor, forget), facts)

    def chain(self, tensor: Tensor) -> Chain:
        """The tensor's chain; a tensor without one is the identity chain of itself."""
        chain = self.get(tensor).chain
        return chain if chain is not None else Chain(tensor, _identity)

    def is_statistic(self, tensor: Tensor) -> bool:
        return self.get(tensor).statistic


def _identity(t: Tensor) -> Tensor:
    return t
