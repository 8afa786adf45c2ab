"""Ordered-removal faithfulness curves: deletion and insertion (Petsiuk et al., BMVC 2018), pixel flipping and
region perturbation with AOPC (Bach et al., PLoS ONE 2015; Samek et al., IEEE TNNLS 2017) and IROF (Rieger &
Hansen, 2020).

All of them rank the features (or feature groups, or superpixels) of each sample by attribution, remove them
cumulatively in that order, a chunk at a time, and record the model's score of the target after each chunk:

    x_0 = x,   x_k = x with the first c_k features of the ranking set to the baseline x̄,   k = 0..L,

with chunk boundaries c_k = floor(k·G/L + 1/2) over the G features (groups) and L steps (every chunk holds
G/L features, up to rounding, when L does not divide G). Insertion starts from the all-baseline input and
puts the features of x back in the same order. Ties in the ranking are broken by feature index (a stable
sort). The metrics differ in what they record and how they summarise the curve:

- :func:`deletion_auc` / :func:`insertion_auc`: the target's softmax probability (or logit), summarised by
  the area under the curve over the fraction of features removed (inserted), trapezoid rule on [0, 1].
- :func:`region_perturbation`: the logit f(x_k) in most-relevant-first (MoRF) or least-relevant-first (LeRF)
  order, summarised by AOPC = 1/(L+1) Σ_{k=0}^{L} (f(x_0) - f(x_k)) (Samek et al., Eq. 12; the k = 0 term is
  zero but counts in the mean, as in the paper).
- :func:`irof`: superpixels ranked by mean attribution, removed one at a time; IROF is the area over the
  curve of p_c(x_k) / p_c(x_0).

Speed: every perturbed copy of a block of samples is built at once by comparing each feature's rank with the
chunk boundaries (no loop over samples or steps), and evaluated in forward passes of at most
``max_elements`` input elements (:func:`gradattr.metrics._passes.copy_scores`), without gradients, with the
model in eval mode and its state left unchanged.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from gradattr.engine import preserved_model
from gradattr.groups import as_grouping
from gradattr.methods._problem import AttributionProblem, Target, build_problem
from gradattr.metrics._passes import Score, budget, copies_with_baseline, copy_scores, target_scores
from gradattr.metrics._sampling import flat_attributions, single_input

Output = Literal["probability", "logit"]
Order = Literal["morf", "lerf"]

DEFAULT_STEPS = 20
"""Steps of deletion and insertion when ``steps`` is not given (fewer when there are fewer features)."""

DEFAULT_REGION_STEPS = 100
"""Steps of region perturbation when ``steps`` is not given: one region per step up to this many regions."""


@dataclass(frozen=True, eq=False)
class PerturbationCurve:
    """An ordered-removal curve and its summary, per sample.

    Attributes:
        per_sample: Tensor(B,), float64: the metric (AUC, AOPC or IROF) of each sample.
        curve: Tensor(B, L + 1), float64: the recorded score after k = 0..L steps (k = 0: nothing removed,
            or, for insertion, nothing inserted).
        fractions: Tensor(L + 1,), float64: the fraction of features (groups) removed or inserted at each step,
            c_k / G, from 0 to 1.
        order: ``"morf"`` (most relevant first) or ``"lerf"`` (least relevant first).
    """

    per_sample: Tensor
    curve: Tensor
    fractions: Tensor
    order: str

    @property
    def mean(self) -> float:
        """The metric averaged over the samples."""
        return float(self.per_sample.mean())


def deletion_auc(
    model: nn.Module,
    x: Tensor,
    attr: Tensor,
    target: Target = None,
    steps: int | None = None,
    baseline: float | Tensor = 0.0,
    output: Output = "probability",
    *,
    feature_groups: Tensor | None = None,
    max_elements: int | None = None,
) -> PerturbationCurve:
    """Deletion (Petsiuk et al., "RISE", BMVC 2018, Sec. 4.1): remove the features in order of decreasing
    attribution, ``steps`` equal chunks, and take the area under the target's probability curve.

    The curve holds S_c(x_k) for k = 0..L (k = 0 is x itself), x_k having its c_k most relevant features set to
    the baseline (module docstring); the AUC is the trapezoid rule over the fractions c_k / N in [0, 1]. A lower
    AUC (a faster drop) means a more faithful attribution. Petsiuk et al. remove 224 pixels per step of a
    224x224 image (L = 224); pass ``steps`` for that resolution.

    Args:
        model: the classifier; evaluated in eval mode without gradients, left unchanged.
        x: inputs (B, ...), float32 or float64.
        attr: attributions of ``x``'s shape.
        target: class per sample (int, sequence, LongTensor(B)); ``None``: the model's predicted class at x.
        steps: L, the number of chunks (1..N); default min(20, N) (N features, or groups).
        baseline: what a removed feature is set to: a number or a tensor broadcastable to ``x``.
        output: ``"probability"`` (softmax of the outputs, at the target) or ``"logit"`` (the target's
            pre-softmax output).
        feature_groups: group mask (e.g. ``gradattr.patches((1, 28, 28), 4)``): groups, ranked by the sum of
            their attributions, are removed whole.
        max_elements: memory budget, input elements per forward pass (default
            :data:`gradattr.metrics.sensitivity.ELEMENTS_PER_FORWARD`).

    Returns:
        A :class:`PerturbationCurve`: ``per_sample`` the AUC (B,), ``curve`` (B, L + 1), ``fractions``.
    """
    return _auc(model, x, attr, target, steps, baseline, output, feature_groups, max_elements, insertion=False)


def insertion_auc(
    model: nn.Module,
    x: Tensor,
    attr: Tensor,
    target: Target = None,
    steps: int | None = None,
    baseline: float | Tensor = 0.0,
    output: Output = "probability",
    *,
    feature_groups: Tensor | None = None,
    max_elements: int | None = None,
) -> PerturbationCurve:
    """Insertion (Petsiuk et al., "RISE", BMVC 2018, Sec. 4.1): start from the all-baseline input and insert
    the features of x in order of decreasing attribution, ``steps`` equal chunks; the area under the target's
    probability curve (trapezoid rule over the fraction inserted). A higher AUC means a more faithful
    attribution. Petsiuk et al. insert into a blurred copy of the image: pass it as ``baseline``.

    Arguments and result as in :func:`deletion_auc`; ``curve[:, 0]`` is the score of the baseline and
    ``curve[:, -1]`` that of x.
    """
    return _auc(model, x, attr, target, steps, baseline, output, feature_groups, max_elements, insertion=True)


def _auc(
    model: nn.Module,
    x: Tensor,
    attr: Tensor,
    target: Target,
    steps: int | None,
    baseline: float | Tensor,
    output: Output,
    feature_groups: Tensor | None,
    max_elements: int | None,
    *,
    insertion: bool,
) -> PerturbationCurve:
    curve, fractions = _grouped_curve(
        model, x, attr, target, feature_groups, "morf", steps, DEFAULT_STEPS, baseline, output, max_elements, insertion
    )
    return PerturbationCurve(torch.trapezoid(curve, fractions, dim=1), curve, fractions, "morf")


def _grouped_curve(
    model: nn.Module,
    x: Tensor,
    attr: Tensor,
    target: Target,
    feature_groups: Tensor | None,
    order: Order,
    steps: int | None,
    default_steps: int,
    baseline: float | Tensor,
    output: Output,
    max_elements: int | None,
    insertion: bool,
) -> tuple[Tensor, Tensor]:
    """The curve (B, L + 1) over features or groups ranked by their summed attribution, and its fractions."""
    x = single_input(x)
    grouping = as_grouping(feature_groups, x.shape[1:], x.device)
    ranks = removal_ranks(grouping.sums(flat_attributions("attr", attr, x)), order)[:, grouping.ids]
    bounds = chunk_bounds(grouping.num_groups, _steps(steps, grouping.num_groups, default_steps))
    curve = removal_curve(model, x, ranks, bounds, target, baseline, output, max_elements, insertion=insertion)
    return curve, bounds.double().to(curve.device) / grouping.num_groups


def region_perturbation(
    model: nn.Module,
    x: Tensor,
    attr: Tensor,
    target: Target = None,
    feature_groups: Tensor | None = None,
    order: Order = "morf",
    steps: int | None = None,
    baseline: float | Tensor = 0.0,
    output: Output = "logit",
    *,
    max_elements: int | None = None,
) -> PerturbationCurve:
    """Pixel flipping (Bach et al., PLoS ONE 2015) and region perturbation (Samek et al., "Evaluating the
    visualization of what a deep neural network has learned", IEEE TNNLS 2017, Sec. III) with AOPC.

    Regions (``feature_groups``, e.g. ``gradattr.patches((1, 28, 28), 4)``; single features without it: pixel
    flipping) are ranked by the sum of their attributions, most relevant first (MoRF) or least relevant first
    (LeRF), and removed cumulatively, one chunk of G / L regions per step (one region per step when L = G, as
    in the paper). The area over the perturbation curve (Samek et al., Eq. 12) is

        AOPC = 1/(L+1) Σ_{k=0}^{L} (f(x_0) - f(x_k)),

    where the k = 0 term is zero but counts in the mean, as in the paper; it is reported per sample (the
    paper's AOPC is its mean over the data, :attr:`PerturbationCurve.mean`). A faithful attribution has a
    large MoRF AOPC and a small (or negative) LeRF AOPC; the LeRF curve lies above the MoRF curve.

    Differences from the paper: Samek et al. replace a region by uniform noise; here it is set to
    ``baseline`` (a constant or a tensor, e.g. noise you draw), so the curve is deterministic.

    Args:
        model, x, attr, target, baseline, max_elements: as in :func:`deletion_auc`.
        feature_groups: the regions, a group mask; ``None``: every feature its own region.
        order: ``"morf"`` or ``"lerf"``.
        steps: L (1..G); default min(100, G).
        output: f, ``"logit"`` (the target's pre-softmax score, the default) or ``"probability"``.

    Returns:
        A :class:`PerturbationCurve`: ``per_sample`` the AOPC (B,), ``curve`` f(x_k) (B, L + 1).
    """
    curve, fractions = _grouped_curve(
        model, x, attr, target, feature_groups, order, steps, DEFAULT_REGION_STEPS, baseline, output, max_elements,
        insertion=False,
    )  # fmt: skip
    return PerturbationCurve(curve[:, 0] - curve.mean(dim=1), curve, fractions, order)


def irof(
    model: nn.Module,
    x: Tensor,
    attr: Tensor,
    target: Target = None,
    segments: Tensor | np.ndarray | None = None,
    *,
    baseline: float | Tensor | Literal["mean"] = "mean",
    n_segments: int = 100,
    compactness: float = 10.0,
    max_elements: int | None = None,
) -> PerturbationCurve:
    """Iterative Removal Of Features (Rieger & Hansen, "IROF: a low resource evaluation metric for
    explanation methods", ICLR 2020 workshop, arXiv:2003.08747).

    Each image is cut into superpixels (SLIC, Achanta et al. 2012, from scikit-image; or ``segments``); the
    superpixels are ranked by their mean attribution (over their pixels and channels) and removed
    cumulatively, most relevant first, one per step, recording the target's softmax probability p_c. IROF is
    the area over the normalised curve,

        IROF = 1 - ∫_0^1 p_c(x_k) / p_c(x_0) d(k / L)     (trapezoid rule over k = 0..L, L superpixels),

    so 0 means no drop at all and values near 1 an immediate drop; larger is more faithful.

    Removal: a superpixel is set to the mean value of the image, per channel (``baseline="mean"``: our reading
    of the paper's mean-value replacement, and Quantus' default ``perturb_baseline="mean"``) or to
    ``baseline``. Differences from Quantus 0.6: Quantus removes each superpixel from the original image alone
    (not cumulatively), without the k = 0 point, and reports L - Σ (an area in units of steps); here the
    removal is cumulative as in the paper and the area is normalised to [0, 1], so images with different
    numbers of superpixels compare.

    Args:
        model, target, max_elements: as in :func:`deletion_auc`.
        x: images (B, C, H, W).
        attr: attributions of ``x``'s shape.
        segments: superpixel labels (B, H, W), integers (any ids; renumbered per image); ``None``: SLIC from
            scikit-image with ``n_segments`` and ``compactness`` (install the ``test`` extra, or
            scikit-image).
        baseline: ``"mean"`` or a number / tensor broadcastable to ``x``.

    Returns:
        A :class:`PerturbationCurve`: ``per_sample`` the IROF (B,), ``curve`` p_c(x_k) (B, L_max + 1) with
        L_max the most superpixels of any image (an image with fewer repeats its last value), ``fractions``
        k / L_max.
    """
    x = single_input(x)
    if x.dim() != 4:
        raise ValueError(f"irof takes images (B, C, H, W), got shape {tuple(x.shape)}")
    flat = flat_attributions("attr", attr, x)
    labels = _segments(x, segments, n_segments, compactness)  # (B, H*W), ids 0..L_b - 1
    counts = labels.amax(dim=1) + 1
    ids = labels.repeat(1, x.shape[1])  # every channel of a pixel in its superpixel
    width = int(counts.max())
    sums = flat.new_zeros(x.shape[0], width).scatter_add_(1, ids, flat)
    sizes = flat.new_zeros(x.shape[0], width).scatter_add_(1, ids, torch.ones_like(flat))
    means = torch.where(sizes > 0, sums / sizes.clamp(min=1), torch.full_like(sums, -torch.inf))
    ranks = removal_ranks(means, "morf").gather(1, ids)  # absent ids rank last
    fill = x.mean(dim=(2, 3), keepdim=True) if isinstance(baseline, str) and baseline == "mean" else baseline
    bounds = torch.arange(width + 1, device=x.device)
    curve = removal_curve(model, x, ranks, bounds, target, fill, "probability", max_elements, insertion=False)
    scores = []
    for row, segments_of_row in zip(curve / curve[:, :1], counts.tolist(), strict=True):
        steps = torch.linspace(0.0, 1.0, segments_of_row + 1, dtype=torch.float64, device=x.device)
        scores.append(1.0 - torch.trapezoid(row[: segments_of_row + 1], steps))
    fractions = torch.linspace(0.0, 1.0, width + 1, dtype=torch.float64, device=x.device)
    return PerturbationCurve(torch.stack(scores), curve, fractions, "morf")


def _segments(x: Tensor, segments: Tensor | np.ndarray | None, n_segments: int, compactness: float) -> Tensor:
    """Superpixel ids (B, H*W), renumbered 0..L_b - 1 per image."""
    batch, _, height, width = x.shape
    if segments is None:
        segments = slic_segments(x, n_segments, compactness)
    labels = torch.as_tensor(np.asarray(segments) if not isinstance(segments, Tensor) else segments)
    if labels.shape != (batch, height, width) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(
            f"segments must be integer superpixel labels of shape {(batch, height, width)}, got "
            f"{tuple(labels.shape)} {labels.dtype}"
        )
    flat = labels.reshape(batch, -1).to(torch.long)
    return torch.stack([torch.unique(row, return_inverse=True)[1] for row in flat]).to(x.device)


def slic_segments(x: Tensor, n_segments: int = 100, compactness: float = 10.0) -> np.ndarray:
    """SLIC superpixels (Achanta et al., IEEE TPAMI 2012) of images (B, C, H, W): int labels (B, H, W).

    Uses ``skimage.segmentation.slic`` (scikit-image, in gradattr's ``test`` extra), one image at a time.
    """
    try:
        from skimage.segmentation import slic
    except ImportError:
        raise ImportError(
            "irof needs scikit-image for its SLIC superpixels: pip install 'gradattr[test]' (or scikit-image), "
            "or pass segments= (B, H, W) superpixel labels"
        ) from None
    images = x.detach().double().cpu().numpy()
    return np.stack([
        slic(image[0] if image.shape[0] == 1 else np.moveaxis(image, 0, -1), n_segments=n_segments,
             compactness=compactness, start_label=0, channel_axis=None if image.shape[0] == 1 else -1)
        for image in images
    ])  # fmt: skip


def chunk_bounds(num_features: int, steps: int) -> Tensor:
    """c_k = floor(k·G/L + 1/2) for k = 0..L: LongTensor(L + 1), from 0 to G (round half up)."""
    k = torch.arange(steps + 1, dtype=torch.long)
    return (2 * k * num_features + steps) // (2 * steps)


def _steps(steps: int | None, num_features: int, default: int) -> int:
    if steps is None:
        return min(default, num_features)
    try:
        number = operator.index(steps)
    except TypeError:
        raise TypeError(f"steps must be an int, got {type(steps).__name__}") from None
    if isinstance(steps, bool) or not 1 <= number <= num_features:
        raise ValueError(f"steps must be an int in 1..{num_features} (the features or groups), got {steps!r}")
    return number


def removal_ranks(scores: Tensor, order: Order) -> Tensor:
    """Position of each feature (group) in the removal order, LongTensor (B, G): 0 for the first removed.

    MoRF removes the largest scores first, LeRF the smallest; ties go by index (stable sort).
    """
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' (most relevant first) or 'lerf' (least relevant first), got {order!r}")
    ordering = torch.argsort(-scores if order == "morf" else scores, dim=1, stable=True)
    positions = torch.arange(scores.shape[1], device=scores.device).expand_as(ordering)
    return torch.empty_like(ordering).scatter_(1, ordering, positions)


def removal_curve(
    model: nn.Module,
    x: Tensor,
    ranks: Tensor,
    bounds: Tensor,
    target: Target,
    baseline: float | Tensor,
    output: Output,
    max_elements: int | None,
    *,
    insertion: bool,
) -> Tensor:
    """Scores of the cumulative removals (insertions): Tensor(B, K), float64, for K chunk boundaries.

    Copy k of sample b has the features with ``ranks[b] < bounds[k]`` set to the baseline (deletion) or taken
    from x into the all-baseline input (insertion).

    Args:
        ranks: LongTensor (B, N), each feature's position in the removal order.
        bounds: LongTensor (K,), the number of features (positions) removed in each copy.
    """
    bounds = bounds.to(x.device).view(1, -1, 1)

    def baselined(samples: slice, chosen: slice) -> Tensor:
        removed = ranks[samples].unsqueeze(1) < bounds[:, chosen]
        return ~removed if insertion else removed

    with preserved_model(model) as model, torch.no_grad():
        problem = build_problem(model, x, target, baseline)
        build = copies_with_baseline(problem, baselined)
        return copy_scores(problem, bounds.shape[1], build, budget(max_elements), scorer(problem, output))


def scorer(problem: AttributionProblem, output: Output) -> Score:
    """The score a curve records: the target's softmax probability or its pre-softmax output."""
    if output == "logit":
        return target_scores(problem)
    if output != "probability":
        raise ValueError(f"output must be 'probability' or 'logit', got {output!r}")
    target = class_target(problem)
    return lambda points, index: probabilities(problem.output((points,), index), target[index])


def class_target(problem: AttributionProblem) -> Tensor:
    """The target class of every sample, LongTensor(B) (the predicted class where none was given)."""
    problem.resolve_target()
    if problem.target is None:
        raise ValueError("the model has one output per sample, so there is no softmax probability; use output='logit'")
    return problem.target


def probabilities(logits: Tensor, target: Tensor) -> Tensor:
    """softmax(logits)[target] per row, float64 (K,)."""
    return logits.double().softmax(dim=-1).gather(1, target.unsqueeze(1)).squeeze(1)


__all__ = [
    "DEFAULT_REGION_STEPS",
    "DEFAULT_STEPS",
    "PerturbationCurve",
    "chunk_bounds",
    "class_target",
    "deletion_auc",
    "insertion_auc",
    "irof",
    "probabilities",
    "region_perturbation",
    "removal_curve",
    "removal_ranks",
    "scorer",
    "slic_segments",
]
