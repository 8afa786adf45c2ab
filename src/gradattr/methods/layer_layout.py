"""How a layer's output is read as a channels-first map (B, K, *spatial) for the class activation maps.

A convolution gives that layout already. A transformer layer does not: a ViT/DeiT block gives tokens
(B, T, D), a Swin stage (B, H·W, C) tokens or a (B, H, W, C) channels-last map. ``reshape=`` says how to
rearrange the output: ``None`` (a channels-first output, refused otherwise), a function, or ``"auto"``
(:func:`auto_layout`, the rules below).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from torch import Tensor, nn

Reshape = Callable[[Tensor], Tensor]
"""A rearrangement of a layer's output into (B, K, *spatial), e.g. a ViT block's (B, 1 + 14·14, D) tokens:
``lambda a: a[:, 1:].transpose(1, 2).reshape(a.shape[0], -1, 14, 14)``."""

ReshapeOption = Reshape | Literal["auto"] | None
"""The ``reshape=`` option of the class activation maps."""

CHANNELS_LAST = (nn.Linear, nn.Bilinear, nn.Embedding, nn.LayerNorm, nn.RMSNorm, nn.MultiheadAttention,
                 nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder,
                 nn.TransformerDecoder, nn.Transformer, nn.RNNBase)  # fmt: skip
"""Layers whose output is (B, [T,] D), features last: no channels-first spatial map for Grad-CAM."""

CHANNELS_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
                  nn.GroupNorm, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                  nn.modules.pooling._AdaptiveAvgPoolNd, nn.modules.pooling._AdaptiveMaxPoolNd)  # fmt: skip
"""Layers whose output is (B, K, *spatial), channels first: ``"auto"`` leaves it as it is."""

MAX_LEADING_TOKENS = 8
"""The most leading non-patch tokens (CLS, distillation, registers) that ``"auto"`` drops from (B, T, D)."""


def layout(layer: nn.Module, name: str | None, activations: Tensor, reshape: ReshapeOption) -> Reshape:
    """The rearrangement of ``layer``'s output ``activations`` into (B, K, *spatial) that ``reshape`` asks
    for; without ``reshape``, the identity for a channels-first output, else a ValueError naming the layer and
    its output shape."""
    if reshape == "auto":
        return auto_layout(layer, name, activations)
    if callable(reshape):
        return reshape
    if reshape is not None:
        raise TypeError(
            'reshape must be None, "auto" or a function that rearranges the layer\'s output into (B, K, *spatial), '
            f"got {type(reshape).__name__} {reshape!r}"
        )
    if activations.dim() < 3 or isinstance(_last(layer), CHANNELS_LAST):
        flat = activations.dim() < 3
        kind = "no spatial dimensions" if flat else "tokens by features, features last, no spatial dimensions"
        raise ValueError(
            f"Grad-CAM needs a layer whose output is channels first with spatial dimensions (B, K, *spatial); "
            f"{_called(layer, name)} gives {tuple(activations.shape)}: {kind}. Choose a convolutional layer (e.g. "
            'the last one), or pass reshape="auto" (square grids of ViT/DeiT/Swin tokens, channels-last maps) or '
            "a function that rearranges that output into (B, K, *spatial) (for a ViT's patch tokens: "
            "lambda a: a[:, 1:].transpose(1, 2).reshape(len(a), -1, 14, 14))"
        )
    return _unchanged


def auto_layout(layer: nn.Module, name: str | None, activations: Tensor) -> Reshape:
    """``reshape="auto"``: how ``layer``'s output is read, from its shape and the kind of layer.

    * (B, T, D) from a layer that is not a convolution, pooling or batch-norm: tokens. The first s tokens
      (CLS, distillation, register tokens) are dropped for the smallest s in 0..8 with T - s = n², and the
      rest is the n x n grid in row-major order: (B, D, n, n). The smallest s is the right one whenever there
      are at most 2n leading tokens (T - s is then a square for no smaller s). A HuggingFace Swin stage's
      (B, H·W, C) is read this way (H = W).
    * (B, H, W, C) from a features-last layer (Linear, LayerNorm, transformer layers, ...), or from a layer of
      another kind when H = W != C: a channels-last map, permuted to (B, C, H, W).
    * Any other output with spatial dimensions is channels first already and kept.

    A shape that fits none of these (no spatial dimensions, no square grid of tokens) is a ValueError naming it.
    """
    shape = tuple(activations.shape)
    last = _last(layer)
    first, features_last = isinstance(last, CHANNELS_FIRST), isinstance(last, CHANNELS_LAST)
    if activations.dim() == 3 and not first:
        return _token_grid(layer, name, shape)
    if activations.dim() == 4 and (features_last or (not first and shape[1] == shape[2] != shape[3])):
        return _channels_last
    if activations.dim() >= 3 and not features_last:
        return _unchanged
    raise ValueError(
        f'reshape="auto" cannot read {_called(layer, name)}\'s output {shape} as a map: it reads (B, T, D) tokens '
        "on a square grid, (B, H, W, C) channels-last and (B, K, *spatial) channels-first maps; pass reshape=, a "
        "function that rearranges that output into (B, K, *spatial)"
    )


def _token_grid(layer: nn.Module, name: str | None, shape: tuple[int, ...]) -> Reshape:
    """(B, T, D) tokens -> (B, D, n, n) without the s leading tokens, s the smallest with T - s = n²."""
    tokens = shape[1]
    squares = (s for s in range(min(MAX_LEADING_TOKENS, tokens - 1) + 1) if math.isqrt(tokens - s) ** 2 == tokens - s)
    leading = next(squares, None)
    if leading is not None:
        side = math.isqrt(tokens - leading)
        return lambda a: a[:, leading:].transpose(1, 2).reshape(a.shape[0], a.shape[2], side, side)
    raise ValueError(
        f'reshape="auto" reads {_called(layer, name)}\'s output {shape} as (B, T, D) tokens, but T = {tokens} is '
        f"not a square number of patches plus at most {MAX_LEADING_TOKENS} leading tokens; pass reshape=, a "
        "function that rearranges that output into (B, K, *spatial)"
    )


def _channels_last(activations: Tensor) -> Tensor:
    return activations.permute(0, 3, 1, 2)


def _unchanged(activations: Tensor) -> Tensor:
    return activations


def _last(layer: nn.Module) -> nn.Module:
    """The module that makes the output: the last one of (nested) Sequentials."""
    while isinstance(layer, nn.Sequential) and len(layer):
        layer = layer[-1]
    return layer


def _called(layer: nn.Module, name: str | None) -> str:
    return f"layer '{name}' ({type(layer).__name__})" if name else f"the layer {type(layer).__name__}"
