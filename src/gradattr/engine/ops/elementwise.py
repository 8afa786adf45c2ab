"""Elementwise nonlinearities ``z -> f(z)``, by resolved name: the op kind whose local derivative rules
replace (Ancona et al., ICLR 2018, Sec. 3). ``nn.ReLU``, ``F.relu``, ``torch.relu`` and ``x.relu_()`` are the
same entry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Elementwise:
    """An elementwise nonlinearity ``f``; ``function`` computes it out of place.

    ``always_inplace``: the op writes its result into its input (``relu_``); ``inplace_position``: index of
    a positional ``inplace`` flag (``F.elu(x, 1.0, True)``), which may also come as a keyword;
    ``rectifier``: f(z) = max(z, 0).
    """

    function: Callable[..., Tensor]
    always_inplace: bool = False
    inplace_position: int | None = None
    rectifier: bool = False

    def bind(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Tensor, Callable[[Tensor], Tensor], bool, bool]:
        """Split a call into ``(z, f, inplace, pointwise)``: ``f(z)`` is the call's out-of-place result;
        ``pointwise``: no other argument is a tensor, so ``f`` applies to any subset of ``z``'s elements."""
        rest = list(args)
        options = dict(kwargs)
        inplace = self.always_inplace
        if "inplace" in options:
            inplace = bool(options.pop("inplace"))
        elif self.inplace_position is not None and len(rest) > self.inplace_position:
            inplace = bool(rest.pop(self.inplace_position))
        z = rest.pop(0) if rest else options.pop("input", None)
        if z is None:
            z = options.pop("self")
        function = self.function
        pointwise = not any(isinstance(a, Tensor) for a in (*rest, *options.values()))

        def f(t: Tensor) -> Tensor:
            return function(t, *rest, **options)

        return z, f, inplace, pointwise


def _rrelu_eval(z: Tensor, lower: float = 1.0 / 8, upper: float = 1.0 / 3, training: bool = False, **_: Any) -> Tensor:
    """RReLU as it computes in eval mode (the models gradattr attributes): leaky ReLU with the mean slope."""
    return F.leaky_relu(z, (lower + upper) / 2)


def _elementwise_table() -> dict[str, Elementwise]:
    table: dict[str, Elementwise] = {}

    def add(names: str, function: Callable[..., Tensor], **kw: Any) -> None:
        for name in names.split():
            table[name] = Elementwise(function, **kw)

    add("torch.relu torch.Tensor.relu", torch.relu, rectifier=True)
    add("torch.relu_ torch.Tensor.relu_ torch.nn.functional.relu_", torch.relu, always_inplace=True, rectifier=True)
    add("torch.nn.functional.relu", F.relu, inplace_position=1, rectifier=True)
    add("torch.nn.functional.relu6", F.relu6, inplace_position=1)
    add("torch.nn.functional.leaky_relu", F.leaky_relu, inplace_position=2)
    add("torch.nn.functional.leaky_relu_", F.leaky_relu, always_inplace=True)
    add("torch.nn.functional.elu", F.elu, inplace_position=2)
    add("torch.nn.functional.elu_", F.elu, always_inplace=True)
    add("torch.nn.functional.selu", F.selu, inplace_position=1)
    add("torch.selu torch.Tensor.selu", torch.selu)
    add("torch.selu_ torch.Tensor.selu_", torch.selu, always_inplace=True)
    add("torch.nn.functional.celu", F.celu, inplace_position=2)
    add("torch.celu_ torch.Tensor.celu_", torch.celu, always_inplace=True)
    add("torch.nn.functional.gelu", F.gelu)
    add("torch.nn.functional.silu", F.silu, inplace_position=1)
    add("torch.nn.functional.mish", F.mish, inplace_position=1)
    add("torch.nn.functional.softplus", F.softplus)
    add("torch.sigmoid torch.Tensor.sigmoid torch.special.expit", torch.sigmoid)
    add("torch.sigmoid_ torch.Tensor.sigmoid_", torch.sigmoid, always_inplace=True)
    add("torch.nn.functional.logsigmoid", F.logsigmoid)
    add("torch.nn.functional.hardsigmoid", F.hardsigmoid, inplace_position=1)
    add("torch.nn.functional.hardswish", F.hardswish, inplace_position=1)
    add("torch.nn.functional.hardtanh", F.hardtanh, inplace_position=3)
    add("torch.nn.functional.hardtanh_", F.hardtanh, always_inplace=True)
    add("torch.tanh torch.Tensor.tanh", torch.tanh)
    add("torch.tanh_ torch.Tensor.tanh_", torch.tanh, always_inplace=True)
    add("torch.nn.functional.softsign", F.softsign)
    add("torch.clamp torch.clip torch.Tensor.clamp torch.Tensor.clip", torch.clamp)
    add("torch.clamp_ torch.clip_ torch.Tensor.clamp_ torch.Tensor.clip_", torch.clamp, always_inplace=True)
    add("torch.clamp_min torch.Tensor.clamp_min", torch.clamp_min)
    add("torch.clamp_max torch.Tensor.clamp_max", torch.clamp_max)
    add("torch.abs torch.Tensor.abs torch.absolute torch.Tensor.absolute", torch.abs)
    add("torch.abs_ torch.Tensor.abs_", torch.abs, always_inplace=True)
    # smooth functions models write activations, norms and softmaxes with by hand (see engine.provenance)
    for op in [
        "exp",
        "exp2",
        "expm1",
        "log",
        "log2",
        "log10",
        "log1p",
        "sqrt",
        "rsqrt",
        "reciprocal",
        "square",
        "erf",
        "erfc",
        "sin",
        "cos",
        "sinh",
        "cosh",
        "atan",
        "asinh",
        "sign",
        "sgn",
    ]:
        add(f"torch.{op} torch.Tensor.{op}", getattr(torch, op))
        add(f"torch.{op}_ torch.Tensor.{op}_", getattr(torch, op), always_inplace=True)
    add("torch.special.erf", torch.erf)
    add("torch.special.expm1", torch.expm1)
    add("torch.nn.functional.tanhshrink", F.tanhshrink)
    add("torch.nn.functional.softshrink", F.softshrink)
    add("torch.nn.functional.hardshrink", F.hardshrink)
    add("torch.nn.functional.threshold", F.threshold, inplace_position=3)
    add("torch.nn.functional.rrelu", _rrelu_eval)
    return table


ELEMENTWISE: dict[str, Elementwise] = _elementwise_table()
ELEMENTWISE: dict[str, Elementwise] = _elementwise_table()
"""Elementwise nonlinearities by resolved name; the method's rule replaces their gradient."""
