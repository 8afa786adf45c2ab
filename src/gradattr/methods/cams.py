"""Class activation maps of the Grad-CAM family, and Eigen-CAM.

Each gradient-weighted CAM is Grad-CAM with another weighting of the layer's activations A (B, K, *spatial)
by the gradient G = ∂S_c/∂A (:func:`gradattr.methods.gradcam.class_activation_map`):

    L = ReLU(Σ_k W^k ⊙ A^k),   W = weights(A, G)  (per channel, or per channel and position)

and the weightings below are all that differs. Eigen-CAM needs no gradient: it projects the activations on
their first principal component. Every map is at the layer's resolution, upsampled to the input as Grad-CAM's.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradattr.methods._problem import AttributionProblem
from gradattr.methods.gradcam import ChannelWeights, LayerMethod, class_activation_map, layer_activations, layer_method
from gradattr.methods.layer_layout import ReshapeOption


def _spatial(tensor: Tensor) -> tuple[int, ...]:
    return tuple(range(2, tensor.dim()))


def gradcam_plus_plus_weights(activations: Tensor, gradient: Tensor) -> Tensor:
    """Grad-CAM++ (Chattopadhay et al., WACV 2018, Eq. 19 with the ReLU of Eq. 7), as pytorch-grad-cam 1.5.7
    computes it: w_k = Σ_ab α^k_ab ReLU(g^k_ab) with α = g² / (2g² + (Σ_ab A^k_ab) g³ + 10⁻⁶), α = 0 where
    g = 0. The 10⁻⁶ is pytorch-grad-cam's stabiliser; it matters where |g| is small (2g² ≲ 10⁻⁶: untrained
    or saturated nets), so it is kept to give that library's numbers.
    """
    total = activations.sum(dim=_spatial(activations), keepdim=True)
    square = gradient.square()
    alpha = square / (2 * square + total * square * gradient + PLUS_PLUS_STABILISER)
    alpha = torch.where(gradient != 0, alpha, torch.zeros_like(alpha))
    return (alpha * gradient.clamp(min=0)).sum(dim=_spatial(gradient), keepdim=True)


PLUS_PLUS_STABILISER = 1e-6
"""pytorch-grad-cam 1.5.7's term in the denominator of Grad-CAM++'s α."""


def hirescam_weights(activations: Tensor, gradient: Tensor) -> Tensor:
    """HiResCAM (Draelos & Carin 2020, arXiv:2011.08891): the gradient itself at every position,
    L = ReLU(Σ_k G^k ⊙ A^k)."""
    return gradient


def xgradcam_weights(activations: Tensor, gradient: Tensor) -> Tensor:
    """XGrad-CAM (Fu et al., BMVC 2020): w_k = Σ_ab g^k_ab A^k_ab / (Σ_ab A^k_ab + 1e-7)."""
    spatial = _spatial(activations)
    return (gradient * activations).sum(dim=spatial, keepdim=True) / (activations.sum(dim=spatial, keepdim=True) + 1e-7)


def layercam_weights(activations: Tensor, gradient: Tensor) -> Tensor:
    """LayerCAM (Jiang et al., IEEE TIP 2021): the positive gradient at every position,
    L = ReLU(Σ_k ReLU(G^k) ⊙ A^k)."""
    return gradient.clamp(min=0)


def _gradient_weighted(weights: ChannelWeights) -> LayerMethod:
    """The layer method of the map Σ_k W^k ⊙ A^k with W = ``weights(A, G)``, named for the weighting
    (``xgradcam_weights`` gives ``xgradcam``) and documented by its docstring (formula and paper)."""

    def signed_map(problem: AttributionProblem, layer: str | nn.Module, reshape: ReshapeOption) -> Tensor:
        return class_activation_map(problem, layer, weights=weights, relu=False, reshape=reshape)

    signed_map.__name__ = weights.__name__.removesuffix("_weights")
    signed_map.__doc__ = weights.__doc__
    return layer_method(signed_map)


gradcam_plus_plus = _gradient_weighted(gradcam_plus_plus_weights)
hirescam = _gradient_weighted(hirescam_weights)
xgradcam = _gradient_weighted(xgradcam_weights)
layercam = _gradient_weighted(layercam_weights)


def principal_projection(activations: Tensor) -> Tensor:
    """Each sample's activations (B, K, *spatial) projected on their first principal component: (B, *spatial).

    M = the sample's activations as (positions, K) minus their mean over positions; v = M's first right
    singular vector; the map is M v. SVD fixes v only up to its sign: it is chosen so that the map correlates
    positively (Σ_u (Mv)_u s_u >= 0) with s_u = Σ_k A^k_u, the channel-summed activations.
    """
    rows = activations.flatten(2).transpose(1, 2)  # (B, positions, K)
    centred = rows - rows.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projection = (centred @ vh[:, :1].transpose(1, 2)).squeeze(2)  # (B, positions)
    agreement = (projection * rows.sum(dim=2)).sum(dim=1, keepdim=True)
    projection = torch.where(agreement < 0, -projection, projection)
    return projection.reshape(activations.shape[0], *activations.shape[2:])


@layer_method
def eigencam(problem: AttributionProblem, layer: str | nn.Module, reshape: ReshapeOption) -> Tensor:
    """Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): the layer's activations projected on their first principal
    component, L = ReLU(M v) (:func:`principal_projection`: M the activations as (positions, K) centred over
    positions, v its first right singular vector, the sign of v fixed so that L correlates positively with the
    channel-summed activations). Class-agnostic: the target is only checked against the output; one forward
    pass without gradients. pytorch-grad-cam 1.5.7's ``EigenCAM`` gives the same map up to SVD's arbitrary sign.
    """
    activations, _ = layer_activations(problem, layer, reshape=reshape, gradient=False)
    return principal_projection(activations)
