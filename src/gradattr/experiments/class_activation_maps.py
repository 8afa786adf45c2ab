"""The class activation maps the study shows: Grad-CAM and its family, on the paper's CNN (robustness section)
and on the ViT, whose tokens are read as a square grid (``reshape="auto"``)."""

from __future__ import annotations

from torch import Tensor, nn

from gradattr.methods import attribute

CAM_METHODS: tuple[str, ...] = (
    "gradcam", "gradcam_plus_plus", "hirescam", "xgradcam", "layercam", "scorecam", "ablationcam", "eigencam",
)  # fmt: skip
"""Grad-CAM and its family, in report order: the gradient-weighted maps, then the perturbation ones (Score-CAM,
Ablation-CAM) and Eigen-CAM (the activations' first principal component, no class)."""


def vit_cam_layer(depth: int) -> str:
    """The layer a ViT's (:class:`~gradattr.models.transformer.VisionTransformer`) class activation maps read:
    the LayerNorm at the input of its last block (``blocks.{depth-1}.norm1``, as pytorch-grad-cam does). Its last
    block's output reaches the head only through the class token, so the gradient on its patch tokens is 0 and
    every gradient-weighted map (and Ablation-CAM) there is 0."""
    return f"blocks.{depth - 1}.norm1"


def token_cams(model: nn.Module, inputs: Tensor, targets: Tensor, layer: str) -> dict[str, Tensor]:
    """Method -> the :data:`CAM_METHODS` maps of ``inputs`` for ``targets`` at the token layer ``layer``, its
    patch tokens read as a square grid (``reshape="auto"``) and each token's value drawn over its patch
    (nearest-neighbour upsampling, so the grid stays visible)."""
    return {
        method: attribute(model, inputs, method, target=targets, layer=layer, reshape="auto", interpolation="nearest")
        for method in CAM_METHODS
    }


def token_grid(model: nn.Module, inputs: Tensor, layer: str) -> tuple[int, ...]:
    """The grid the patch tokens of ``layer`` are read as by :func:`token_cams` (e.g. (4, 4) for the 16 tokens of
    the digits ViT), from one sample's map at the layer's resolution."""
    return tuple(attribute(model, inputs[:1], "eigencam", layer=layer, reshape="auto", upsample=False).shape[2:])
