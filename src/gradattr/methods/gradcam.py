"""Grad-CAM and Guided Grad-CAM (Selvaraju et al. 2017; Nielsen et al., IEEE SPM 2022, Sec. "Grad-CAM").

For a layer with activations A of shape (K, *spatial) (K channels, e.g. the last convolution):

    α_k = (1/Z) Σ_u ∂S_c/∂A^k_u           (the spatial mean of the gradient, Selvaraju et al. Eq. 1)
    L   = ReLU(Σ_k α_k A^k)              (Eq. 2), upsampled to the input's spatial size

Guided Grad-CAM is the elementwise product of Guided Backpropagation and the upsampled map (Sec. 3.1). A
model with several inputs has no single input to upsample to: Grad-CAM then returns the map at the layer's
resolution, (B, 1, *spatial) (as ``upsample=False`` does, and as Captum's ``LayerGradCam``), and Guided
Grad-CAM multiplies each input's Guided Backprop by the map upsampled to that input.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradattr.methods._problem import AttributionProblem, activation_leaf, find_layer
from gradattr.methods.guided_backprop import guided_backprop

_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
INTERPOLATIONS = ("linear", "nearest", "area")


Reshape = Callable[[Tensor], Tensor]
"""A rearrangement of a layer's output into (B, K, *spatial), e.g. a ViT block's (B, 1 + 14·14, D) tokens:
``lambda a: a[:, 1:].transpose(1, 2).reshape(a.shape[0], -1, 14, 14)``."""

CHANNELS_LAST = (nn.Linear, nn.Bilinear, nn.Embedding, nn.LayerNorm, nn.RMSNorm, nn.MultiheadAttention,
                 nn.TransformerEncoderLayer, nn.TransformerDecoderLayer, nn.TransformerEncoder,
                 nn.TransformerDecoder, nn.Transformer, nn.RNNBase)  # fmt: skip
"""Layers whose output is (B, [T,] D), features last: no channels-first spatial map for Grad-CAM."""


def class_activation_map(
    problem: AttributionProblem, layer: nn.Module, *, relu: bool = True, reshape: Reshape | None = None,
    name: str | None = None,
) -> Tensor:  # fmt: skip
    """Grad-CAM at the layer's own resolution: Tensor(B, *spatial) = ReLU(Σ_k α_k A^k).

    One forward pass at the inputs, with the layer's output A (B, K, *spatial, channels first) made a
    leaf, and one backward pass from S_c down to A only. ``reshape`` rearranges A (and its gradient, in the
    same way) into (B, K, *spatial) first; without it a layer whose output has no spatial dimensions is refused.
    """
    rows = problem.all_rows
    with activation_leaf(layer) as seen, torch.enable_grad():
        scores = problem.score(problem.output(problem.inputs, rows), rows)
    if not seen:
        raise ValueError("the Grad-CAM layer was not called in the forward pass")
    activations = seen[0]
    if reshape is None:
        _check_spatial(layer, name, activations)
    if scores.requires_grad:
        (gradient,) = torch.autograd.grad(scores.sum(), activations)
    else:  # the output does not depend on the layer
        gradient = torch.zeros_like(activations)
    if reshape is not None:
        activations, gradient = reshape(activations.detach()), reshape(gradient)
        if not isinstance(activations, Tensor) or activations.dim() < 3 or activations.shape[0] != rows.numel():
            shape = tuple(activations.shape) if isinstance(activations, Tensor) else type(activations).__name__
            raise ValueError(f"Grad-CAM's reshape must give (B, K, *spatial) with B = {rows.numel()}; it gave {shape}")
    spatial = tuple(range(2, activations.dim()))
    weights = gradient.mean(dim=spatial, keepdim=True)  # α_k, Eq. 1
    cam = (weights * activations.detach()).sum(dim=1)  # Eq. 2 before the ReLU
    return cam.clamp(min=0) if relu else cam


def _check_spatial(layer: nn.Module, name: str | None, activations: Tensor) -> None:
    """Refuse an output without channels-first spatial dimensions: Grad-CAM would average over the wrong axis
    (the tokens of a (B, T, D) output taken as channels) and return a meaningless map."""
    last = layer
    while isinstance(last, nn.Sequential) and len(last):
        last = last[-1]
    flat = activations.dim() < 3
    if not flat and not isinstance(last, CHANNELS_LAST):
        return
    called = f"layer '{name}' ({type(layer).__name__})" if name else f"the layer {type(layer).__name__}"
    kind = "no spatial dimensions" if flat else "tokens by features, features last, no spatial dimensions"
    raise ValueError(
        f"Grad-CAM needs a layer whose output is channels first with spatial dimensions (B, K, *spatial); "
        f"{called} gives {tuple(activations.shape)}: {kind}. Choose a convolutional layer (e.g. the last one), "
        "or pass reshape=, a function that rearranges that output into (B, K, *spatial) (for a ViT's patch "
        "tokens: lambda a: a[:, 1:].transpose(1, 2).reshape(len(a), -1, 14, 14))"
    )


def resize_to_input(cam: Tensor, like: Tensor, interpolation: str) -> Tensor:
    """``cam`` (B, *spatial) resized to the trailing dimensions of ``like`` and repeated over its others."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {interpolation!r}")
    rank = cam.dim() - 1
    if like.dim() - 1 < rank:
        raise ValueError(
            f"the layer's map has {rank} spatial dimension(s) but the input {tuple(like.shape)} has fewer; "
            "pass upsample=False to get the map at the layer's resolution"
        )
    size = tuple(like.shape[-rank:])
    mode = _LINEAR_MODES.get(rank, "nearest") if interpolation == "linear" else interpolation
    resized = F.interpolate(cam.unsqueeze(1), size=size, mode=mode).squeeze(1)
    leading = like.dim() - 1 - rank
    return resized.view(cam.shape[0], *(1,) * leading, *size).expand(like.shape)


def gradcam(
    problem: AttributionProblem,
    *,
    layer: str | nn.Module,
    interpolation: str = "linear",
    relu: bool = True,
    upsample: bool = True,
    reshape: Reshape | None = None,
) -> tuple[Tensor, ...]:
    """Grad-CAM of the layer given as ``layer=``, upsampled to the input.

    Args:
        problem: the model's inputs (any dtype, e.g. token ids) and target c.
        layer: the layer (or its dotted name) whose output A (B, K, *spatial) gives the map, ``attribute``'s
            ``layer=``.
        interpolation: ``"linear"`` (linear/bilinear/trilinear by the number of spatial dimensions),
            ``"nearest"`` or ``"area"``.
        relu: apply the ReLU of Eq. 2 (keep only evidence for the class).
        upsample: resize to the input; ``False`` returns the map at the layer's resolution (B, 1, *spatial).
            A model with several inputs always gets that map (there is no single input shape to resize to).
        reshape: a function rearranging the layer's output into (B, K, *spatial) (a permute/reshape/slice: it
            is applied to the activations and to their gradient alike). Needed for a layer whose output has no
            channels-first spatial dimensions, a Linear or transformer layer's (B, T, D): refused without it,
            naming the layer and its output shape.

    Returns:
        The map with the shape of the input (the same value in every channel), or (B, 1, *spatial).

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
        ...                             torch.nn.Linear(4 * 6 * 6, 2))
        >>> gradattr.attribute(model, torch.randn(2, 1, 8, 8), method="gradcam", layer="1").shape
        torch.Size([2, 1, 8, 8])
    """
    cam = class_activation_map(problem, find_layer(problem.model, layer), relu=relu, reshape=reshape,
                               name=layer if isinstance(layer, str) else None)  # fmt: skip
    if not upsample or len(problem.inputs) != 1:
        return (cam.unsqueeze(1),)
    return (resize_to_input(cam, problem.inputs[0], interpolation),)


def guided_gradcam(
    problem: AttributionProblem,
    *,
    layer: str | nn.Module,
    interpolation: str = "linear",
    reshape: Reshape | None = None,
) -> tuple[Tensor, ...]:
    """Guided Grad-CAM: Guided Backpropagation ⊙ the upsampled Grad-CAM of ``layer=`` (Selvaraju et al. 3.1).

    Args:
        problem: the model's inputs, floating tensors (Guided Backprop is taken with respect to them), and
            target c.
        layer: as for :func:`gradcam`.
        interpolation: as for :func:`gradcam`.
        reshape: as for :func:`gradcam`.

    Returns:
        One map per input with the input's shape: its Guided Backprop times the map upsampled to it.
    """
    for i, x in enumerate(problem.inputs):
        if not x.is_floating_point():
            label = "input" if len(problem.inputs) == 1 else f"inputs[{i}]"
            raise TypeError(f"guided_gradcam needs floating inputs for Guided Backprop, {label} is {x.dtype}")
    cam = class_activation_map(problem, find_layer(problem.model, layer), reshape=reshape,
                               name=layer if isinstance(layer, str) else None)  # fmt: skip
    for i, x in enumerate(problem.inputs):
        if x.dim() < cam.dim():
            label = "the input" if len(problem.inputs) == 1 else f"inputs[{i}]"
            raise ValueError(
                f"guided_gradcam upsamples the layer's map {tuple(cam.shape[1:])} to every input, but {label} "
                f"{tuple(x.shape)} has fewer dimensions; use gradcam for the map at the layer's resolution"
            )
    guided = guided_backprop(problem)
    return tuple(g * resize_to_input(cam, x, interpolation) for g, x in zip(guided, problem.inputs, strict=True))
