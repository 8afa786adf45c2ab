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
from gradattr.methods.layer_layout import ReshapeOption, layout

_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
INTERPOLATIONS = ("linear", "nearest", "area")

ChannelWeights = Callable[[Tensor, Tensor], Tensor]
"""The weighting of a class activation map: (A, G), both (B, K, *spatial), -> weights W broadcastable to A,
the map being Σ_k W^k ⊙ A^k (:func:`class_activation_map`)."""


def layer_activations(
    problem: AttributionProblem, layer: str | nn.Module, *, reshape: ReshapeOption = None, name: str | None = None,
    gradient: bool = True,
) -> tuple[Tensor, Tensor | None]:  # fmt: skip
    """The layer's activations A and the gradient G = ∂(Σ_rows S_c)/∂A, both rearranged to (B, K, *spatial).

    One forward pass at the inputs, with the layer's output made a leaf, and one backward pass from S_c down
    to A only; ``gradient=False``: the forward pass alone, without gradients, and G is ``None`` (the target is
    checked against the output all the same). ``layer`` is a submodule or its dotted name (``name``, the
    user's name for the messages, defaults to it); ``reshape``: as in
    :func:`gradattr.methods.layer_layout.layout` (without it a layer whose output has no channels-first spatial
    dimensions is refused, naming the layer and its output shape).
    """
    if isinstance(layer, str):
        name = layer if name is None else name
    module = find_layer(problem.model, layer)
    rows = problem.all_rows
    with activation_leaf(module) as seen, torch.set_grad_enabled(gradient):  # S_c also checks the target
        scores = problem.score(problem.output(problem.inputs, rows), rows)
    if not seen:
        raise ValueError(f"the layer {name or type(module).__name__} was not called in the forward pass")
    activations = seen[0]
    arrange = layout(module, name, activations, reshape)
    grad = None
    if gradient and scores.requires_grad:
        (grad,) = torch.autograd.grad(scores.sum(), activations)
    elif gradient:  # the output does not depend on the layer
        grad = torch.zeros_like(activations)
    arranged = arrange(activations.detach())
    if not isinstance(arranged, Tensor) or arranged.dim() < 3 or arranged.shape[0] != rows.numel():
        shape = tuple(arranged.shape) if isinstance(arranged, Tensor) else type(arranged).__name__
        raise ValueError(f"Grad-CAM's reshape must give (B, K, *spatial) with B = {rows.numel()}; it gave {shape}")
    return arranged, None if grad is None else arrange(grad)


def gradcam_weights(activations: Tensor, gradient: Tensor) -> Tensor:
    """Grad-CAM's α_k = (1/Z) Σ_u ∂S_c/∂A^k_u, the spatial mean of the gradient (Selvaraju et al. Eq. 1)."""
    return gradient.mean(dim=tuple(range(2, gradient.dim())), keepdim=True)


def class_activation_map(
    problem: AttributionProblem, layer: str | nn.Module, *, weights: ChannelWeights = gradcam_weights,
    relu: bool = True, reshape: ReshapeOption = None, name: str | None = None,
) -> Tensor:  # fmt: skip
    """A class activation map at the layer's own resolution: Tensor(B, *spatial) = ReLU(Σ_k W^k ⊙ A^k), with
    W = ``weights(A, G)`` (Grad-CAM's α_k by default: Eq. 2), A and G from :func:`layer_activations`."""
    activations, gradient = layer_activations(problem, layer, reshape=reshape, name=name)
    assert gradient is not None
    cam = (weights(activations, gradient) * activations).sum(dim=1)  # Eq. 2 before the ReLU
    return cam.clamp(min=0) if relu else cam


def map_for_inputs(problem: AttributionProblem, cam: Tensor, *, upsample: bool, interpolation: str) -> tuple[Tensor]:
    """A map (B, *spatial) as a layer method's result: resized to the input (``upsample``, one input), else at
    the layer's resolution (B, 1, *spatial)."""
    if not upsample or len(problem.inputs) != 1:
        return (cam.unsqueeze(1),)
    return (resize_to_input(cam, problem.inputs[0], interpolation),)


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


LayerMap = Callable[[AttributionProblem, str | nn.Module, ReshapeOption], Tensor]
"""A class activation map: (problem, layer, reshape) -> the map (B, *spatial) at the layer's resolution, before
the final ReLU."""

LayerMethod = Callable[..., tuple[Tensor, ...]]
"""A registered method that reads a layer (:class:`gradattr.methods.Method` with ``reads_layer=True``)."""

OPTIONS_DOC = """
    Args:
        problem: the model's inputs (any dtype, e.g. token ids) and target c.
        layer: the layer (or its dotted name) whose output A (B, K, *spatial) gives the map, ``attribute``'s
            ``layer=``.
        interpolation: ``"linear"`` (linear/bilinear/trilinear by the number of spatial dimensions),
            ``"nearest"`` or ``"area"``.
        relu: apply the final ReLU (keep only evidence for the class).
        upsample: resize to the input; ``False`` returns the map at the layer's resolution (B, 1, *spatial).
            A model with several inputs always gets that map (there is no single input shape to resize to).
        reshape: how the layer's output is read as (B, K, *spatial) (:mod:`gradattr.methods.layer_layout`):
            ``None`` for a channels-first output; ``"auto"`` for ViT/DeiT/Swin tokens (B, T, D) on a square grid
            (the leading CLS/distillation/register tokens dropped) and (B, H, W, C) channels-last maps; or a
            function (a permute/reshape/slice, applied to the activations and to their gradient alike). A layer
            whose output has no channels-first spatial dimensions, a Linear or transformer layer's (B, T, D), is
            refused without it, naming the layer and its output shape.

    Returns:
        The map with the shape of the input (the same value in every channel), or (B, 1, *spatial).
"""


def layer_method(layer_map: LayerMap) -> LayerMethod:
    """The attribution method of a class activation map, with the map's name and docstring (and
    :data:`OPTIONS_DOC`): ``method(problem, *, layer, interpolation, relu, upsample, reshape)``, the map of
    ``layer_map``, through a ReLU (``relu``) and resized to the input (``upsample``, :func:`map_for_inputs`)."""

    def method(
        problem: AttributionProblem,
        *,
        layer: str | nn.Module,
        interpolation: str = "linear",
        relu: bool = True,
        upsample: bool = True,
        reshape: ReshapeOption = None,
    ) -> tuple[Tensor, ...]:
        cam = layer_map(problem, layer, reshape)
        return map_for_inputs(
            problem, cam.clamp(min=0) if relu else cam, upsample=upsample, interpolation=interpolation
        )

    method.__name__ = method.__qualname__ = layer_map.__name__
    method.__module__ = layer_map.__module__
    method.__doc__ = f"{layer_map.__doc__ or ''}\n{OPTIONS_DOC}"
    return method


@layer_method
def gradcam(problem: AttributionProblem, layer: str | nn.Module, reshape: ReshapeOption) -> Tensor:
    """Grad-CAM of the layer given as ``layer=``, upsampled to the input: ReLU(Σ_k α_k A^k) (Eq. 1-2 above).

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
        ...                             torch.nn.Linear(4 * 6 * 6, 2))
        >>> gradattr.attribute(model, torch.randn(2, 1, 8, 8), method="gradcam", layer="1").shape
        torch.Size([2, 1, 8, 8])
    """
    return class_activation_map(problem, layer, relu=False, reshape=reshape)


def guided_gradcam(
    problem: AttributionProblem,
    *,
    layer: str | nn.Module,
    interpolation: str = "linear",
    reshape: ReshapeOption = None,
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
    cam = class_activation_map(problem, layer, reshape=reshape)
    for i, x in enumerate(problem.inputs):
        if x.dim() < cam.dim():
            label = "the input" if len(problem.inputs) == 1 else f"inputs[{i}]"
            raise ValueError(
                f"guided_gradcam upsamples the layer's map {tuple(cam.shape[1:])} to every input, but {label} "
                f"{tuple(x.shape)} has fewer dimensions; use gradcam for the map at the layer's resolution"
            )
    guided = guided_backprop(problem)
    return tuple(g * resize_to_input(cam, x, interpolation) for g, x in zip(guided, problem.inputs, strict=True))
