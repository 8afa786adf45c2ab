"""ROAD, RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and Efficient Evaluation
Strategy for Attribution Methods", ICML 2022).

ROAD removes the most (MoRF) or least (LeRF) relevant p% of the pixels of each image, as the other ordered
removal metrics do, but replaces them by *noisy linear imputation* instead of a constant, so that the
removal does not leak the shape of the removed set to the model (the paper's class information leakage)
and no retraining is needed.

Noisy linear imputation (Sec. 4 of the paper and its code): each removed pixel takes the weighted mean of its
8 neighbours, direct neighbours with weight 1/6 and diagonal ones with weight 1/12 (neighbours outside the
image are left out and the weights of the others renormalised),

    x_i = Σ_{j ∈ N(i)} w_ij x_j / Σ_{j ∈ N(i)} w_ij     for every removed pixel i,

where some neighbours x_j are themselves removed (unknown). This is a sparse linear system in the removed
pixels, one right-hand side per channel, solved exactly (``scipy.sparse.linalg.spsolve``); then Gaussian
noise of standard deviation ``noise`` (0.01 in the paper's code) is added to the imputed pixels. The noise
is seeded per sample and percentage, so results do not depend on the batch size or the memory budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.linalg
import torch
from torch import Tensor, nn

from gradattr.engine import preserved_model
from gradattr.methods._problem import Target, build_problem
from gradattr.metrics._passes import budget, copy_scores
from gradattr.metrics._sampling import count, single_input
from gradattr.metrics.perturbation import Order, class_target, probabilities, removal_ranks

NEIGHBOUR_WEIGHTS: tuple[tuple[int, int, float], ...] = (
    (-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12),
    (0, -1, 1 / 6), (0, 1, 1 / 6),
    (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12),
)  # fmt: skip
"""(row offset, column offset, weight) of the 8 neighbours in the imputation (Rong et al. 2022)."""

DEFAULT_PERCENTAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The fractions of pixels removed, as in the paper's figures (10% .. 90%)."""


@dataclass(frozen=True, eq=False)
class RoadResult:
    """ROAD curves per sample.

    Attributes:
        percentages: the fractions of pixels removed, (P,).
        curve: Tensor(B, P), float64: the target's softmax probability on each imputed image.
        correct: BoolTensor(B, P): whether the model's prediction on the imputed image is the target (the
            paper's accuracy, when ``target`` holds the labels).
        order: ``"morf"`` or ``"lerf"``.
    """

    percentages: tuple[float, ...]
    curve: Tensor
    correct: Tensor
    order: str

    @property
    def per_sample(self) -> Tensor:
        """Tensor(B,): the mean of each sample's probability curve over the percentages."""
        return self.curve.mean(dim=1)

    @property
    def accuracy(self) -> Tensor:
        """Tensor(P,): the fraction of samples still predicted as the target, per percentage (the paper's
        ROAD curve)."""
        return self.correct.double().mean(dim=0)


def linear_imputation(image: Tensor, removed: Tensor) -> Tensor:
    """The removed pixels of ``image`` replaced by linear imputation (no noise): Tensor like ``image``.

    Solves x_i = Σ_j w_ij x_j / Σ_j w_ij over the in-image 8-neighbours j of every removed pixel i
    (:data:`NEIGHBOUR_WEIGHTS`), the kept pixels fixed, one sparse system for all channels.

    Args:
        image: (C, H, W).
        removed: BoolTensor (H, W), the pixels to impute; at least one pixel must be kept.
    """
    channels, height, width = image.shape
    mask = removed.detach().cpu().numpy().reshape(-1)
    values = image.detach().cpu().double().numpy().reshape(channels, -1).copy()  # never the caller's memory
    unknown = np.flatnonzero(mask)
    if unknown.size == 0:
        return image.clone()
    if unknown.size == mask.size:
        raise ValueError("every pixel is removed: linear imputation needs at least one kept pixel")
    variable = np.full(mask.size, -1)
    variable[unknown] = np.arange(unknown.size)
    rows, cols = np.divmod(unknown, width)
    diagonal = np.zeros(unknown.size)
    rhs = np.zeros((unknown.size, channels))
    entries_i, entries_j, entries_w = [], [], []
    for dy, dx, weight in NEIGHBOUR_WEIGHTS:
        r, c = rows + dy, cols + dx
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        neighbour = np.where(inside, r * width + c, 0)
        diagonal += weight * inside
        free = inside & mask[neighbour]
        known = inside & ~mask[neighbour]
        rhs[known] += weight * values[:, neighbour[known]].T
        entries_i.append(np.flatnonzero(free))
        entries_j.append(variable[neighbour[free]])
        entries_w.append(np.full(int(free.sum()), -weight))
    entries_i.append(np.arange(unknown.size))
    entries_j.append(np.arange(unknown.size))
    entries_w.append(diagonal)
    system = scipy.sparse.coo_matrix(
        (np.concatenate(entries_w), (np.concatenate(entries_i), np.concatenate(entries_j))),
        shape=(unknown.size, unknown.size),
    ).tocsc()
    solution = scipy.sparse.linalg.spsolve(system, rhs).reshape(unknown.size, channels)
    values[:, unknown] = solution.T
    return torch.from_numpy(values.reshape(channels, height, width)).to(image.dtype).to(image.device)


def road(
    model: nn.Module,
    x: Tensor,
    attr: Tensor,
    target: Target = None,
    percentages: Sequence[float] = DEFAULT_PERCENTAGES,
    order: Order = "morf",
    *,
    noise: float = 0.01,
    seed: int = 0,
    max_elements: int | None = None,
) -> RoadResult:
    """ROAD (Rong et al., ICML 2022): the target's probability and the model's accuracy after removing the
    top (MoRF) or bottom (LeRF) ``p`` of the pixels by noisy linear imputation, for each p in ``percentages``.

    Pixels are ranked by their attribution summed over channels (ties by index); removing p of the H·W pixels
    imputes round(p·H·W) of them (round half up), all channels of a pixel together. A faithful attribution
    makes the MoRF curve drop fast and the LeRF curve stay high. Each image and percentage is imputed on its
    own (a sparse solve on the CPU); all imputed copies of a block of samples then go through the model in
    forward passes of at most ``max_elements`` input elements.

    Args:
        model: the classifier; evaluated in eval mode without gradients, left unchanged.
        x: images (B, C, H, W).
        attr: attributions (B, C, H, W) or (B, H, W).
        target: class per sample; ``None``: the model's predicted class at x.
        percentages: fractions of pixels removed, each in [0, 1).
        order: ``"morf"`` (most relevant first) or ``"lerf"`` (least relevant first).
        noise: standard deviation of the Gaussian noise added to imputed pixels (0: plain linear imputation).
        seed: seed of the noise; image b at percentage index k uses the seed (seed, b, k).
        max_elements: memory budget, input elements per forward pass (default
            :data:`gradattr.metrics.sensitivity.ELEMENTS_PER_FORWARD`).

    Returns:
        A :class:`RoadResult`: ``curve`` (B, P) probabilities, ``correct`` (B, P), ``accuracy`` (P,).
    """
    x = single_input(x)
    if x.dim() != 4:
        raise ValueError(f"road takes images (B, C, H, W), got shape {tuple(x.shape)}")
    batch, _, height, width = x.shape
    pixels = _pixel_attributions(attr, x)
    fractions = _percentages(percentages)
    if not (isinstance(noise, (int, float)) and not isinstance(noise, bool) and noise >= 0):
        raise ValueError(f"noise must be a number >= 0, got {noise!r}")
    seed = count("seed", seed, 0)
    ranks = removal_ranks(pixels, order).view(batch, height, width)
    counts = [int(np.floor(p * height * width + 0.5)) for p in fractions]

    def build(samples: slice, chosen: slice) -> Tensor:
        copies = [
            _noisy_imputation(x[b], ranks[b] < counts[k], noise, _copy_seed(seed, b, k))
            for b in range(samples.start, samples.stop)
            for k in range(chosen.start, chosen.stop)
        ]
        return torch.stack(copies)

    with preserved_model(model) as model, torch.no_grad():
        problem = build_problem(model, x, target, 0.0)
        target_of = class_target(problem)

        def score(points: Tensor, index: Tensor) -> Tensor:
            logits = problem.output((points,), index)
            correct = logits.argmax(dim=-1) == target_of[index]
            return torch.stack([probabilities(logits, target_of[index]), correct.double()], dim=1)

        scores = copy_scores(problem, len(counts), build, budget(max_elements), score)
    return RoadResult(tuple(fractions), scores[..., 0], scores[..., 1] > 0.5, order)


def _noisy_imputation(image: Tensor, removed: Tensor, noise: float, seed: int) -> Tensor:
    imputed = linear_imputation(image, removed)
    if noise == 0:
        return imputed
    draw = torch.randn(image.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return imputed + (noise * draw * removed.cpu()).to(imputed.dtype).to(imputed.device)


def _copy_seed(seed: int, sample: int, step: int) -> int:
    return (seed * 1_000_003 + sample * 1_009 + step) % (2**63 - 1)


def _pixel_attributions(attr: Tensor, x: Tensor) -> Tensor:
    """Attributions per pixel, summed over channels: float64 (B, H·W)."""
    if not isinstance(attr, Tensor):
        raise TypeError(f"attr must be a tensor, got {type(attr).__name__}")
    if attr.shape == x.shape:
        attr = attr.sum(dim=1)
    if attr.shape != x.shape[:1] + x.shape[2:]:
        raise ValueError(f"attr must have shape {tuple(x.shape)} or {tuple(x.shape[:1] + x.shape[2:])}")
    if not bool(torch.isfinite(attr).all()):
        raise ValueError("attr contain NaN or infinite values")
    return attr.detach().to(x.device, torch.float64).reshape(x.shape[0], -1)


def _percentages(percentages: Sequence[float]) -> list[float]:
    values = [float(p) for p in percentages]
    if not values or not all(0.0 <= p < 1.0 for p in values):
        raise ValueError(f"percentages must be a non-empty sequence of fractions in [0, 1), got {percentages!r}")
    return values


__all__ = ["DEFAULT_PERCENTAGES", "NEIGHBOUR_WEIGHTS", "RoadResult", "linear_imputation", "road"]
