"""Evaluate selected elementwise nonlinearities as other functions, at the op call, without editing the model.

:class:`SubstitutionMode` is a ``TorchFunctionMode`` that looks every torch call up in the engine's table of
elementwise nonlinearities (:data:`gradattr.engine.ops.ELEMENTWISE`, by resolved name), so ``nn.ReLU``,
``F.relu``, ``torch.relu``, ``x.relu()`` and ``x.relu_()`` are one entry; each call of a selected entry
computes ``replacement(z)`` instead, in place where the call was in place. Fused recurrent kernels
(``nn.RNN(nonlinearity="relu")``, ...) are evaluated unrolled (:mod:`gradattr.engine.recurrent`) so that their
cell nonlinearities are substituted too.

The robustness attacks use it to differentiate twice through ReLU networks: a ReLU net has zero second
derivative almost everywhere, so the gradient of a gradient map is taken through the softplus surrogate
(Ghorbani et al., AAAI 2019, Sec. 3; Dombrowski et al., NeurIPS 2019).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.overrides import TorchFunctionMode

from gradattr.engine import ops
from gradattr.engine.interception import op_name
from gradattr.engine.recurrent import CellOps

Selector = Callable[[ops.Elementwise], bool]
Replacement = Callable[[Tensor], Tensor]


class SubstitutionMode(TorchFunctionMode):
    """While active, every call of an elementwise op with ``select(entry)`` true computes ``replacement(z)``.

    Args:
        select: which :data:`~gradattr.engine.ops.ELEMENTWISE` entries to replace, e.g.
            ``lambda entry: entry.rectifier`` for every ReLU call.
        replacement: the function evaluated instead, elementwise on the call's input ``z``.

    Example:
        >>> import torch, torch.nn.functional as F
        >>> with SubstitutionMode(lambda e: e.rectifier, torch.tanh):
        ...     y = F.relu(torch.tensor([-1.0]))
        >>> round(float(y), 4)
        -0.7616
    """

    def __init__(self, select: Selector, replacement: Replacement) -> None:
        super().__init__()
        self.select = select
        self.replacement = replacement

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        name = op_name(func)
        entry = ops.ELEMENTWISE.get(name)
        if entry is not None and self.select(entry):
            return self._substitute(entry, args, kwargs)
        expander = ops.RECURRENT.get(name)
        if expander is not None:
            return expander(args, kwargs, CellOps(self._cell_nonlinearity))
        return func(*args, **kwargs)

    def _substitute(self, entry: ops.Elementwise, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor:
        z, _, inplace, _ = entry.bind(args, kwargs)
        if not inplace:
            return self.replacement(z)
        # The replacement's backward may need z itself: compute on a copy, then write the result into z.
        return z.copy_(self.replacement(z.clone()))

    def _cell_nonlinearity(self, name: str, z: Tensor) -> Tensor:
        """A nonlinearity inside an unrolled recurrent cell (``name`` is an ``ELEMENTWISE`` key)."""
        entry = ops.ELEMENTWISE[name]
        return self.replacement(z) if self.select(entry) else entry.function(z)
