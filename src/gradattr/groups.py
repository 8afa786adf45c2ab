"""Feature groups: which input features are removed, and attributed, together.

Ancona et al. (ICLR 2018, Sec. 4.1 and 5) measure Sensitivity-n on MNIST with 4x4 patches as the features;
superpixels for large images and tokens for text (all embedding dimensions of one token) work the same way.
A grouping is an integer mask of the input's feature shape whose entry is the group id of that feature:
ids run over 0..G-1 with no gap, every feature belongs to exactly one group. The attribution of a group is
the sum of its features' attributions, R_g = Σ_{i ∈ g} R_i.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

PatchSize = int | Sequence[int]


def patches(shape: Sequence[int], size: PatchSize) -> Tensor:
    """Group mask of rectangular patches over the trailing dimensions of a feature shape.

    ``size`` is an int (square patches over the last two dimensions, or the last one for a 1-D shape) or a
    tuple of patch sizes for the trailing ``len(size)`` dimensions. The leading dimensions that ``size`` does
    not cover (e.g. the channels of a (C, H, W) image) are grouped together: a patch holds all its channels.
    Patches are numbered row-major over the patch grid. Where a dimension is not a multiple of the patch size,
    the last patch along it is smaller (a 10-wide row with size 4 has patches of 4, 4 and 2).

    Args:
        shape: the feature shape of one sample, without the batch dimension, e.g. ``(1, 28, 28)``.
        size: patch size, e.g. ``4`` or ``(4, 4)``.

    Returns:
        LongTensor of ``shape`` with group ids 0..G-1, G = Π_d ceil(shape[d] / size[d]) over the patched
        dimensions.

    Example:
        >>> import gradattr
        >>> mask = gradattr.patches((1, 28, 28), 4)
        >>> int(mask.max()) + 1
        49
    """
    shape = _positive_ints("shape", shape)
    if isinstance(size, int) and not isinstance(size, bool):
        if size < 1:
            raise ValueError(f"patch size must be a positive int or a tuple of positive ints, got {size!r}")
        sizes = (size,) * min(2, len(shape))
    else:
        sizes = _positive_ints("size", size)
    if len(sizes) > len(shape):
        raise ValueError(f"patch size {tuple(sizes)} has more dimensions than the feature shape {shape}")
    patched = shape[len(shape) - len(sizes) :]
    counts = [math.ceil(extent / step) for extent, step in zip(patched, sizes, strict=True)]
    ids = torch.zeros((), dtype=torch.long)
    for extent, step, count in zip(patched, sizes, counts, strict=True):
        ids = ids.unsqueeze(-1) * count + torch.arange(extent) // step
    leading = shape[: len(shape) - len(sizes)]
    return ids.expand(*leading, *patched).clone()


def _positive_ints(name: str, values: Sequence[int]) -> tuple[int, ...]:
    try:
        items = tuple(values)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of positive ints, got {values!r}") from None
    if not items or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in items):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {values!r}")
    return items


@dataclass(frozen=True)
class Grouping:
    """A validated grouping of the N features of one sample into G groups.

    Attributes:
        ids: LongTensor(N), the group id of each feature in row-major (flattened) order.
        num_groups: G.
    """

    ids: Tensor
    num_groups: int

    @classmethod
    def identity(cls, num_features: int, device: torch.device | None = None) -> Grouping:
        """Every feature its own group."""
        return cls(torch.arange(num_features, device=device), num_features)

    def sums(self, attributions: Tensor) -> Tensor:
        """R_g = Σ_{i ∈ g} R_i: (B, N) -> (B, G), in the attributions' dtype."""
        out = attributions.new_zeros(attributions.shape[0], self.num_groups)
        return out.index_add_(1, self.ids, attributions)

    def feature_mask(self, group_mask: Tensor) -> Tensor:
        """Which features belong to the selected groups: BoolTensor(K, G) -> BoolTensor(K, N)."""
        return group_mask.index_select(1, self.ids)


def as_grouping(feature_groups: Tensor | None, feature_shape: Sequence[int], device: torch.device) -> Grouping:
    """Validate a group mask against a sample's feature shape (``None``: every feature its own group).

    The mask is an integer tensor of the feature shape, or of a shape that extends to it: a prefix of the
    feature shape (e.g. ``(L,)`` for the tokens of an ``(L, D)`` embedding, extended over the trailing
    dimensions), or a shape that broadcasts to it by PyTorch's rules (e.g. ``(1, H, W)`` for ``(C, H, W)``).
    The prefix reading is tried first.

    Raises:
        TypeError: the mask is not an integer tensor.
        ValueError: the shape does not extend to the feature shape, an id is negative (a feature in no
            group), or the ids are not contiguous 0..G-1.
    """
    feature_shape = tuple(feature_shape)
    num_features = math.prod(feature_shape)
    if feature_groups is None:
        return Grouping.identity(num_features, device)
    if not isinstance(feature_groups, Tensor):
        raise TypeError(
            "feature_groups must be an integer tensor of group ids (e.g. gradattr.patches(...)), got "
            f"{type(feature_groups).__name__}"
        )
    if feature_groups.is_floating_point() or feature_groups.is_complex() or feature_groups.dtype == torch.bool:
        raise TypeError(f"feature_groups must hold integer group ids, got dtype {feature_groups.dtype}")
    ids = _extend(feature_groups, feature_shape).reshape(-1).to(device=device, dtype=torch.long)
    if ids.numel() == 0:
        raise ValueError("feature_groups is empty")
    negative = int((ids < 0).sum())
    if negative:
        raise ValueError(
            f"feature_groups must cover every feature: {negative} of {num_features} features have a negative id "
            "(every feature needs a group id in 0..G-1)"
        )
    counts = torch.bincount(ids)
    missing = (counts == 0).nonzero().reshape(-1)
    if missing.numel():
        shown = ", ".join(str(int(i)) for i in missing[:10]) + (", ..." if missing.numel() > 10 else "")
        raise ValueError(
            f"feature group ids must be contiguous 0..G-1; ids {shown} are unused while the largest id is "
            f"{counts.numel() - 1} (renumber the groups, e.g. with torch.unique(mask, return_inverse=True))"
        )
    return Grouping(ids, counts.numel())


def _extend(mask: Tensor, feature_shape: tuple[int, ...]) -> Tensor:
    """The mask at the full feature shape: prefix extension first, then PyTorch broadcasting."""
    shape = tuple(mask.shape)
    if len(shape) < len(feature_shape) and shape == feature_shape[: len(shape)]:
        mask = mask.reshape(*shape, *(1,) * (len(feature_shape) - len(shape)))
    try:
        return torch.broadcast_to(mask, feature_shape)
    except RuntimeError:
        raise ValueError(
            f"feature_groups of shape {shape} does not fit the features of one sample, shape {feature_shape}; "
            "expected that shape, a prefix of it, or a shape that broadcasts to it"
        ) from None
