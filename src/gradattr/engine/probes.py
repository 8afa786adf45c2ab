"""Relevance probes: how first-layer LRP rules whose relevance is not proportional to the input (flat, w²,
zB) reach the model's input.

The engine's relevance is ``x ⊙ g`` (gradient×input form), which is 0 wherever ``x = 0``; flat and box rules
give relevance there too (Montavon et al. 2019, Sec. 10.2). So each attributed input ``x`` gets a probe ``p``
(zeros, same shape): every linear op applied to ``x`` before the first layer (the clone the engine feeds the
model, reshapes, an input normalisation ``(x − μ)/σ``, ...) is applied to its probe as well, with the other
input-dependent operands detached. A first-layer rule hands its relevance to the probe of its input, and the
gradient carries it back through those ops to ``p`` — as Zennit's plain gradient carries relevance back
through them — so the input's relevance is ``x ⊙ g_x + g_p``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from torch import Tensor

SHADOWED_KINDS = frozenset({"structural", "linear", "arithmetic", "batch_norm"})
"""Op kinds linear in the input that carry a probe along: the ops between the input and the first layer."""


class Probes:
    """The probe of each tensor computed from the attributed inputs by linear ops only, during one pass."""

    def __init__(self) -> None:
        self._of: dict[int, tuple[weakref.ref[Tensor], Tensor]] = {}

    def __bool__(self) -> bool:
        return bool(self._of)

    def add(self, tensor: Tensor, probe: Tensor) -> None:
        self._of[id(tensor)] = (weakref.ref(tensor), probe)

    def of(self, value: Any) -> Tensor | None:
        """The probe of ``value``, or ``None`` when it has none."""
        if not isinstance(value, Tensor):
            return None
        entry = self._of.get(id(value))
        return entry[1] if entry is not None and entry[0]() is value else None

    def follow(
        self, name: str, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], out: Any
    ) -> None:
        """After the op ``func(*args, **kwargs) -> out``: the same op over the probes of its operands (other
        tensors detached) is the probe of ``out``. In-place ops and ops without a probed operand end the probe."""
        if name.endswith("_") or "__i" in name or "setitem" in name:
            return
        found = False

        def substitute(value: Any) -> Any:
            nonlocal found
            if isinstance(value, (list, tuple)):
                return type(value)(substitute(v) for v in value)
            probe = self.of(value)
            if probe is not None:
                found = True
                return probe
            return value.detach() if isinstance(value, Tensor) and value.requires_grad else value

        new_args = substitute(args)
        new_kwargs = {k: substitute(v) for k, v in kwargs.items()}
        if not found:
            return
        probe_out = func(*new_args, **new_kwargs)
        if isinstance(out, Tensor) and isinstance(probe_out, Tensor):
            self.add(out, probe_out)
        elif isinstance(out, (list, tuple)) and isinstance(probe_out, (list, tuple)):
            for o, p in zip(out, probe_out, strict=False):
                if isinstance(o, Tensor) and isinstance(p, Tensor):
                    self.add(o, p)
