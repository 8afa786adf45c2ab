"""Linear op calls as :class:`~gradattr.rules.layers.LayerCall`: the input, weight and bias of ``F.linear``,
``F.conv*``, ``F.conv_transpose*``, average pooling and one-weight products, read from the call's arguments,
and eval-mode batch norm folded into the layer before it (Zennit's ``SequentialMergeBatchNorm``, at the op
call and without editing a module: ``W' = W·γ/σ``, ``b' = (b − μ)·γ/σ + β`` with ``σ = sqrt(var + eps)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from gradattr.rules.layers import LayerCall, LayerKind

_CONV_OPTIONS = ("stride", "padding", "dilation", "groups")
_CONV_DEFAULTS = (1, 0, 1, 1)
_CONV_POSITIONS = (3, 4, 5, 6)  # conv*d(input, weight, bias, stride, padding, dilation, groups)
_TRANSPOSED_POSITIONS = (
    3,
    4,
    7,
    6,
)  # conv_transpose*d(input, weight, bias, stride, padding, output_padding, groups, dilation)


def _argument(args: tuple[Any, ...], kwargs: dict[str, Any], position: int, name: str, default: Any = None) -> Any:
    return args[position] if len(args) > position else kwargs.get(name, default)


def layer_kind(name: str) -> LayerKind:
    """The kind of the layer op with resolved name ``name``."""
    base = name.rsplit(".", 1)[-1]
    if "pool" in base:
        return "pooling"
    if base.startswith("conv_transpose"):
        return "conv_transpose"
    return "conv" if base.startswith("conv") else "linear"


def layer_call(kind: LayerKind, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> LayerCall:
    """The call ``func(*args, **kwargs)`` of a layer op as a :class:`LayerCall` (its input is ``args[0]``)."""
    rest = {k: v for k, v in kwargs.items() if k not in ("input", "weight", "bias")}
    if kind == "pooling":
        others = args[1:]
        return LayerCall(kind, lambda a, w, b: func(a, *others, **rest))
    weight, bias, others = _argument(args, kwargs, 1, "weight"), _argument(args, kwargs, 2, "bias"), args[3:]
    conv = None
    if kind != "linear":
        positions = _TRANSPOSED_POSITIONS if kind == "conv_transpose" else _CONV_POSITIONS
        options = zip(positions, _CONV_OPTIONS, _CONV_DEFAULTS, strict=True)
        conv = tuple(_argument(args, kwargs, p, o, d) for p, o, d in options)
    return LayerCall(kind, lambda a, w, b: func(a, w, b, *others, **rest), weight, bias, conv)  # type: ignore[arg-type]


def layer_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return _argument(args, kwargs, 0, "input")


def product_call(
    func: Callable[..., Any], flat: list[Any], listed: bool, kwargs: dict[str, Any], dependent: int
) -> LayerCall:
    """A product (``matmul``, ``einsum``, ...) whose operand ``dependent`` is the only input-dependent one, as a
    layer; its weight is the other tensor operand when there is exactly one."""
    others = [i for i, v in enumerate(flat) if isinstance(v, Tensor) and i != dependent]
    weight_at = others[0] if len(others) == 1 else None

    def evaluate(a: Tensor, w: Tensor | None, b: Tensor | None) -> Tensor:
        values = list(flat)
        values[dependent] = a
        if weight_at is not None and w is not None:
            values[weight_at] = w
        return func(values[0], values[1:], **kwargs) if listed else func(*values, **kwargs)

    return LayerCall("product", evaluate, flat[weight_at] if weight_at is not None else None)


def merged_with_batch_norm(
    call: LayerCall, output: Tensor, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> LayerCall | None:
    """``call`` followed by the eval-mode ``F.batch_norm(output, *args[1:])`` as one layer, or ``None`` where
    the two do not fold (a product or pooling, batch norm over another dimension than the layer's features,
    a grouped transposed convolution)."""
    if call.weight is None or call.kind not in ("linear", "conv", "conv_transpose"):
        return None
    if call.kind == "linear" and output.dim() != 2:  # batch norm normalises dim 1, a linear layer's features are last
        return None
    if call.kind == "conv_transpose" and call.conv is not None and call.conv[3] != 1:
        return None
    mean, var = _argument(args, kwargs, 1, "running_mean"), _argument(args, kwargs, 2, "running_var")
    gamma, beta = _argument(args, kwargs, 3, "weight"), _argument(args, kwargs, 4, "bias")
    eps = _argument(args, kwargs, 7, "eps", 1e-5)
    scale = torch.rsqrt(var + eps)
    if gamma is not None:
        scale = gamma * scale
    shift = -mean * scale + (beta if beta is not None else 0)
    weight = call.weight
    channel = 1 if call.kind == "conv_transpose" else 0
    shape = [1] * weight.dim()
    shape[channel] = -1
    bias = shift if call.bias is None else call.bias * scale + shift
    return replace(call, weight=weight * scale.view(shape), bias=bias)
