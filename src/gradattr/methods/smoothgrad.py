"""SmoothGrad, SmoothGrad-squared and VarGrad: a method averaged over noisy copies of the input.

Smilkov et al. (2017, Eq. 3), as presented by Nielsen et al. (IEEE SPM 2022, Sec. "SmoothGrad"): for a base
attribution method M,

    SmoothGrad:    R = (1/n) Σ_k M(x + ε_k)              ε_k ~ N(0, σ²),  σ = sigma · (max x - min x)
    SmoothGrad²:   R = (1/n) Σ_k M(x + ε_k)²             (Hooker et al. 2019)
    VarGrad:       R = (1/n) Σ_k M(x + ε_k)² - R_SG²      (Adebayo et al. 2018; the population variance)

σ is relative to each sample's range, as in the authors' code. The class explained is the one of the clean
input for every copy. Noise comes from a CPU generator seeded with ``seed``, drawn copy by copy in order,
so the result does not depend on how the copies are batched or on the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor

from gradattr.methods._batching import GRADIENT_ROWS_PER_PASS, copies_per_pass
from gradattr.methods._problem import AttributionProblem, check_positive_int
from gradattr.methods.saliency import saliency

Variant = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]
VARIANTS: tuple[str, ...] = ("smoothgrad", "smoothgrad_sq", "vargrad")
BaseMethod = Callable[..., tuple[Tensor, ...]]


def noise_scales(inputs: tuple[Tensor, ...], sigma: float) -> tuple[Tensor, ...]:
    """σ per sample and input: ``sigma · (max - min)`` of the sample's features, shaped to broadcast."""
    scales = []
    for x in inputs:
        low, high = torch.aminmax(x.reshape(x.shape[0], -1), dim=1)
        scales.append(((high - low) * sigma).view(-1, *[1] * (x.dim() - 1)))
    return tuple(scales)


def smoothgrad(
    problem: AttributionProblem,
    *,
    base: BaseMethod = saliency,
    samples: int = 50,
    sigma: float = 0.15,
    variant: Variant = "smoothgrad",
    seed: int = 0,
    batch_size: int | None = None,
    **base_options: Any,
) -> tuple[Tensor, ...]:
    """The base method's attributions averaged (or their square/variance) over Gaussian noisy copies.

    Args:
        problem: validated inputs x (B, ...), target c (fixed at the clean input), baselines for the base.
        base: the base method, by name in ``gradattr.attribute`` (any method except the layer-reading ones).
        samples: number n of noisy copies.
        sigma: noise standard deviation relative to each sample's range (max - min); 0 gives the base method.
        variant: ``"smoothgrad"`` (mean), ``"smoothgrad_sq"`` (mean of squares) or ``"vargrad"`` (variance).
        seed: seed of the noise.
        batch_size: most rows (noisy copies) per call of the base method; default from a memory budget.
        **base_options: options of the base method (e.g. ``steps`` for integrated gradients).

    Returns:
        One tensor per input, shape of the input.

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> r = gradattr.attribute(model, torch.randn(4, 3), method="smoothgrad", samples=10, sigma=0.1)
        >>> r.shape
        torch.Size([4, 3])
    """
    check_positive_int("samples", samples)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    problem.resolve_target()
    batch, rows = problem.batch_size, problem.all_rows
    scales = noise_scales(problem.inputs, float(sigma))
    generator = torch.Generator().manual_seed(seed)
    moments = [_Moments(x) for x in problem.inputs]
    per_chunk = copies_per_pass(problem, batch_size, GRADIENT_ROWS_PER_PASS)
    for first in range(0, samples, per_chunk):
        copies = min(per_chunk, samples - first)
        noise = [
            [torch.randn(x.shape, generator=generator, dtype=x.dtype) for x in problem.inputs] for _ in range(copies)
        ]
        points = tuple(
            (x + torch.stack([draw[i] for draw in noise]).to(x.device) * scale).reshape(-1, *x.shape[1:])
            for i, (x, scale) in enumerate(zip(problem.inputs, scales, strict=True))
        )
        attributions = base(problem.at_points(points, rows.repeat(copies)), **base_options)
        for moment, a in zip(moments, attributions, strict=True):
            moment.add(a.view(copies, batch, *a.shape[1:]))
    return tuple(moment.result(variant) for moment in moments)


class _Moments:
    """Running mean and sum of squared deviations over the copies, merged chunk by chunk (Chan et al. 1979),
    so VarGrad has no cancellation error: E[a²] - E[a]² loses all digits when the variance is small."""

    def __init__(self, like: Tensor) -> None:
        self.count = 0
        self.mean = torch.zeros_like(like)
        self.deviations = torch.zeros_like(like)

    def add(self, values: Tensor) -> None:
        """Merge a chunk of copies, shape (copies, *like.shape)."""
        count = values.shape[0]
        mean = values.mean(0)
        total = self.count + count
        delta = mean - self.mean
        self.deviations += (values - mean).square().sum(0) + delta.square() * (self.count * count / total)
        self.mean += delta * (count / total)
        self.count = total

    def result(self, variant: str) -> Tensor:
        variance = self.deviations / self.count
        if variant == "vargrad":
            return variance
        return self.mean if variant == "smoothgrad" else variance + self.mean.square()
