"""Sensitivity-n (Ancona et al., ICLR 2018, Sec. 4.1, Def. 4), measured as the paper's authors did.

A method satisfies Sensitivity-n when, for every subset S of n features,

    Σ_{i ∈ S} R_i^c(x) = S_c(x) - S_c(x_[x_S = x̄]),

the drop of the target's pre-softmax output when the features of S are set to the baseline x̄. The measure
(SPEC.md, "Sensitivity-n"): for each n, draw ``num_subsets`` subsets of n features uniformly at random (the
same subsets for every sample), and for each sample take the Pearson correlation over the subsets between
the attribution sums and the output drops; then average over samples. Features may be groups (4x4 patches
in the paper's MNIST experiments), with R of a group the sum over its features.

The default grid of n runs over the whole range, unique(round(geomspace(1, N, 20))), ending at n = N
(``max_fraction`` cuts it at a fraction of N; 0.8 gives the grid of SPEC.md and earlier versions). At n = N
all subsets coincide (every feature removed): the attribution sums and output drops are the same for every
subset, the correlation is undefined (NaN, counted in ``valid`` as 0), and Sensitivity-N is completeness,
Σ_i R_i = S_c(x) - S_c(x̄), measured by :func:`gradattr.metrics.completeness_gap`.

This is not Quantus' ``SensitivityN``, which removes the top-n features by attribution value in nested
steps and correlates per-step sums with cumulative drops.

Speed: for one n, the subsets' index tensors become a (K, N) removal mask; the perturbed copies of a block
of samples are built from it by broadcasting (no Python loop over samples or subsets) and evaluated in
forward passes of at most ``max_elements`` input elements, without gradients, in the inputs' dtype (float32
by default); only the per-sample correlations are kept. The subsets are shared by all attribution maps of a
batch, so comparing methods costs the forward passes once (:func:`measure`).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gradattr.engine import preserved_model
from gradattr.groups import Grouping, as_grouping
from gradattr.methods._batching import ELEMENTS_PER_CHUNK
from gradattr.methods._model_call import ForwardKwargs, OutputSelector, Position
from gradattr.methods._problem import AttributionProblem, Target, build_problem
from gradattr.metrics._passes import copies_with_baseline, copy_scores
from gradattr.metrics._sampling import flat_attributions
from gradattr.metrics.agreement import pearson_per_sample

ELEMENTS_PER_FORWARD = ELEMENTS_PER_CHUNK
"""Default memory budget: input elements per forward pass, the methods' budget (2**17: 512 KiB of float32,
167 MNIST images). Larger passes fall out of the CPU caches and run slower per row, not faster."""

ZERO_VARIANCE_ULPS = 64
"""A vector over the subsets counts as constant when its standard deviation is at most this many machine
epsilons (of the inputs' dtype) times its largest magnitude: variation float rounding alone can produce."""


def default_ns(num_features: int, points: int = 20, fraction: float = 1.0) -> list[int]:
    """The log grid of n: unique(round(geomspace(1, fraction · N, points))), within 1..N.

    The default runs up to n = N, where Sensitivity-n is undefined as a correlation (all subsets coincide)
    and is completeness instead; ``fraction=0.8`` gives the grid of SPEC.md ("Sensitivity-n").

    Raises:
        ValueError: ``num_features`` below 1, ``fraction`` outside (0, 1].
    """
    if num_features < 1:
        raise ValueError(f"num_features must be at least 1, got {num_features}")
    check_fraction(fraction)
    grid = np.unique(np.round(np.geomspace(1.0, max(1.0, fraction * num_features), points)).astype(np.int64))
    return [int(n) for n in grid if 1 <= n <= num_features]


def check_fraction(fraction: float, name: str = "fraction") -> float:
    """``fraction`` as a float in (0, 1]: the largest n of the default grid, as a fraction of N.

    Raises:
        TypeError / ValueError: not a real number, or outside (0, 1].
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"{name} must be a number in (0, 1], got {fraction!r}")
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"{name} must lie in (0, 1] (the largest n of the grid as a fraction of N), got {fraction}")
    return float(fraction)


def _subset_seed(seed: int, n: int) -> int:
    """A generator seed from (seed, n): the subsets of one n do not depend on the other ns or the batch."""
    return (seed * 1_000_003 + n) % (2**63 - 1)


def draw_subsets(num_features: int, n: int, num_subsets: int, seed: int = 0) -> Tensor:
    """``num_subsets`` subsets of ``n`` distinct features out of ``num_features``, drawn uniformly.

    Each row is an independent uniform draw without replacement (the n smallest of N uniform keys), sorted
    ascending; rows may repeat. The draw depends only on (num_features, n, num_subsets, seed), through a
    ``torch.Generator`` seeded from ``seed`` and ``n``.

    Returns:
        LongTensor(num_subsets, n) of feature (or group) indices.
    """
    _check_int("num_features", num_features, 1)
    _check_int("num_subsets", num_subsets, 2)
    _check_n(n, num_features)
    generator = torch.Generator().manual_seed(_subset_seed(_check_int("seed", seed, None), n))
    keys = torch.rand(num_subsets, num_features, generator=generator)
    return keys.argsort(dim=1)[:, :n].sort(dim=1).values


def _check_int(name: str, value: Any, minimum: int | None) -> int:
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from None
    if isinstance(value, bool) or (minimum is not None and number < minimum):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return number


def _check_n(n: Any, num_features: int) -> int:
    number = _check_int("n", n, None)
    if not 1 <= number <= num_features:
        raise ValueError(
            f"n={number} is out of range: n counts removed features (or feature groups) and must lie in "
            f"1..{num_features} for inputs with {num_features}"
        )
    return number


@dataclass(frozen=True)
class SubsetPlan:
    """The ns and, for each, the subsets of features (or groups) to remove: shared by all samples and batches.

    Attributes:
        num_features: N, the number of features (or groups) the subsets are drawn from.
        ns: the subset sizes.
        subsets: one LongTensor(num_subsets, n) per n, from :func:`draw_subsets`.
        seed: the seed they were drawn with.
    """

    num_features: int
    ns: tuple[int, ...]
    subsets: tuple[Tensor, ...]
    seed: int

    @classmethod
    def draw(
        cls, num_features: int, ns: Iterable[int] | None, num_subsets: int, seed: int, *, max_fraction: float = 1.0
    ) -> SubsetPlan:
        """Validate ``ns`` (``None``: :func:`default_ns` up to ``max_fraction`` · N) and draw the subsets of
        every n. The subsets of one n depend on (N, n, num_subsets, seed) only, so the grid can grow or shrink
        without changing the subsets of the ns it keeps."""
        _check_int("num_subsets", num_subsets, 2)
        check_fraction(max_fraction, "max_fraction")
        if ns is None:
            sizes = default_ns(num_features, fraction=max_fraction)
        else:
            if isinstance(ns, int) or (isinstance(ns, Tensor) and ns.dim() == 0):
                raise TypeError(f"ns must be a sequence of ints (e.g. [1, 10, 100]), got {ns!r}")
            sizes = [_check_n(n, num_features) for n in ns]
            if not sizes:
                raise ValueError("ns is empty; give at least one subset size, or None for the default grid")
        subsets = tuple(draw_subsets(num_features, n, num_subsets, seed) for n in sizes)
        return cls(num_features, tuple(sizes), subsets, seed)

    @property
    def num_subsets(self) -> int:
        return self.subsets[0].shape[0]


@dataclass(frozen=True, eq=False)
class SensitivityResult:
    """Sensitivity-n of one attribution method on a set of samples.

    Attributes:
        ns: the subset sizes n (features, or groups when feature groups were used).
        per_sample: Tensor(B, len(ns)), float64: each sample's Pearson correlation over the subsets; NaN where
            it is undefined (attribution sums or output drops constant over the subsets, always so at n = N,
            where every subset is the whole feature set).
        num_subsets: subsets drawn per n.
        num_features: N, the number of features (or groups) n counts.
        seed: the seed of the subsets.
    """

    ns: list[int]
    per_sample: Tensor
    num_subsets: int
    num_features: int
    seed: int

    @property
    def valid(self) -> Tensor:
        """LongTensor(len(ns)): how many samples have a defined correlation at each n."""
        return (~self.per_sample.isnan()).sum(0)

    @property
    def correlation(self) -> Tensor:
        """Tensor(len(ns)): mean over the valid samples (NaN where none is valid)."""
        return self.per_sample.nanmean(0)

    @property
    def std(self) -> Tensor:
        """Tensor(len(ns)): sample standard deviation (ddof 1) over the valid samples; NaN below 2 of them."""
        valid = ~self.per_sample.isnan()
        count = valid.sum(0)
        centred = torch.where(valid, self.per_sample - self.correlation, torch.zeros_like(self.per_sample))
        variance = centred.square().sum(0) / (count - 1).clamp(min=1)
        return torch.where(count >= 2, variance.sqrt(), torch.full_like(variance, float("nan")))

    def to_rows(self) -> list[dict[str, float | int]]:
        """One row per n: ``{"n", "mean", "std", "count"}`` (NaN where undefined)."""
        return [
            {"n": n, "mean": float(mean), "std": float(std), "count": int(count)}
            for n, mean, std, count in zip(self.ns, self.correlation, self.std, self.valid, strict=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        """Summary and settings as plain Python values (JSON-ready except NaN)."""
        return {
            "ns": list(self.ns),
            "correlation": self.correlation.tolist(),
            "std": self.std.tolist(),
            "valid": self.valid.tolist(),
            "samples": self.per_sample.shape[0],
            "num_subsets": self.num_subsets,
            "num_features": self.num_features,
            "seed": self.seed,
        }

    @classmethod
    def concat(cls, results: Sequence[SensitivityResult]) -> SensitivityResult:
        """The results of several batches measured with the same ns, subsets and seed, as one."""
        if not results:
            raise ValueError("no results to concatenate")
        first = results[0]
        settings = (first.ns, first.num_subsets, first.num_features, first.seed)
        for other in results[1:]:
            if (other.ns, other.num_subsets, other.num_features, other.seed) != settings:
                raise ValueError("results measured with different ns, num_subsets, features or seed do not concatenate")
        per_sample = torch.cat([r.per_sample for r in results])
        return cls(list(first.ns), per_sample, first.num_subsets, first.num_features, first.seed)


def sensitivity_n(
    model: nn.Module,
    inputs: Tensor,
    attributions: Tensor,
    *,
    target: Target,
    ns: Iterable[int] | None = None,
    num_subsets: int = 100,
    baseline: float | Tensor = 0.0,
    feature_groups: Tensor | None = None,
    seed: int = 0,
    max_elements: int | None = None,
    forward_kwargs: ForwardKwargs = None,
    output: OutputSelector = None,
    position: Position = None,
    max_fraction: float = 1.0,
) -> SensitivityResult:
    """Sensitivity-n of ``attributions`` (Ancona et al., ICLR 2018, Sec. 4.1, Def. 4).

    For each n and each sample b, the Pearson correlation over ``num_subsets`` random subsets S of n features
    between Σ_{i ∈ S} R_i and S_c(x) - S_c(x_[x_S = x̄]); ``correlation`` is its mean over samples.
    Correlation 1 at every n means the attributions predict every removal exactly (as Gradient*Input does on
    a linear model).

    Args:
        model: the attributed model; evaluated in eval mode without gradients, its modes restored afterwards.
        inputs: x, Tensor (B, ...), float32 or float64.
        attributions: R, same shape as ``inputs``.
        target: class index c: an int, a sequence or LongTensor of length B, or ``None`` (the argmax, or the
            output itself for a one-output model). The target output is taken before any softmax.
        ns: subset sizes n (each in 1..N); ``None``: unique(round(geomspace(1, max_fraction · N, 20))). At
            n = N all subsets coincide: Sensitivity-N is completeness (see
            :func:`gradattr.metrics.completeness_gap`), and its correlation is NaN with ``valid`` 0.
        num_subsets: subsets per n (at least 2), the same for every sample.
        baseline: x̄, what a removed feature is set to: a number or a tensor broadcastable to ``inputs``.
        feature_groups: integer mask of group ids over a sample's features (e.g. ``gradattr.patches((1, 28,
            28), 4)``); then n counts groups, a removed group sets all its features to the baseline, and the
            attribution of a group is the sum over its features. ``None``: every feature its own group.
        seed: seed of the subsets; with the same seed every call draws the same subsets.
        max_elements: memory budget, input elements per forward pass (default :data:`ELEMENTS_PER_FORWARD`).
        forward_kwargs, output, position: as in :func:`gradattr.attribute`: extra keyword arguments of the
            model's forward (per-sample tensors follow each perturbed copy's sample), the tensor of a
            structured output that is explained, the position of a (B, T, V) output.
        max_fraction: where the default grid (``ns=None``) ends, as a fraction of N, in (0, 1]; 0.8 gives the
            grid of earlier versions (SPEC.md). Ignored when ``ns`` is given.

    Returns:
        A :class:`SensitivityResult` with ``ns``, ``correlation`` (len(ns)), ``per_sample`` (B, len(ns)),
        ``valid`` (samples with a defined correlation per n) and ``std``. A sample whose attribution sums or
        output drops do not vary over the subsets has NaN there and is left out of the mean (every sample, at
        n = N).

    Raises:
        ValueError / TypeError: attributions of another shape or not finite, n outside 1..N, num_subsets < 2,
            feature groups that do not fit or cover the features, ``max_fraction`` outside (0, 1], and the
            checks of :func:`gradattr.attribute` on inputs, target and baseline.

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Linear(16, 3)
        >>> x = torch.randn(8, 16)
        >>> r = gradattr.attribute(model, x, method="gradient_x_input", target=0)
        >>> res = gradattr.sensitivity_n(model, x, r, target=0, ns=[1, 4, 8])
        >>> bool((res.correlation > 0.999).all())
        True
    """
    grouping = _grouping(inputs, feature_groups)
    plan = SubsetPlan.draw(grouping.num_groups, ns, num_subsets, seed, max_fraction=max_fraction)
    per_sample = measure(
        model,
        inputs,
        {"attributions": attributions},
        target=target,
        plan=plan,
        baseline=baseline,
        grouping=grouping,
        max_elements=max_elements,
        forward_kwargs=forward_kwargs,
        output=output,
        position=position,
    )["attributions"]
    return SensitivityResult(list(plan.ns), per_sample, plan.num_subsets, plan.num_features, seed)


def _grouping(inputs: Any, feature_groups: Tensor | None) -> Grouping:
    if not isinstance(inputs, Tensor):
        raise TypeError(
            f"inputs must be one tensor (B, ...), got {type(inputs).__name__}; for a multi-input model, wrap it "
            "so that the attributed input is its only argument"
        )
    if inputs.dim() < 2:
        raise ValueError(
            f"inputs must be batch-first with at least one feature, shape (B, ...), got {tuple(inputs.shape)}"
        )
    return as_grouping(feature_groups, inputs.shape[1:], inputs.device)


def measure(
    model: nn.Module,
    inputs: Tensor,
    attributions: Mapping[str, Tensor],
    *,
    target: Target,
    plan: SubsetPlan,
    baseline: float | Tensor = 0.0,
    grouping: Grouping | Tensor | None = None,
    max_elements: int | None = None,
    forward_kwargs: ForwardKwargs = None,
    output: OutputSelector = None,
    position: Position = None,
) -> dict[str, Tensor]:
    """Per-sample Sensitivity-n of several attribution maps of the same inputs, sharing the forward passes.

    The output drops S_c(x) - S_c(x_[x_S = x̄]) depend only on the inputs, the target and the subsets, so
    they are computed once and correlated with each map's attribution sums.

    Args:
        model, inputs, target, baseline, max_elements, forward_kwargs, output, position: as in
            :func:`sensitivity_n`.
        attributions: name -> R (same shape as ``inputs``).
        plan: the ns and subsets (:meth:`SubsetPlan.draw`), drawn over ``grouping.num_groups`` features.
        grouping: a validated :class:`Grouping`, a group mask, or ``None`` (each feature its own group).

    Returns:
        name -> Tensor(B, len(plan.ns)), float64, NaN where the correlation is undefined.
    """
    if not isinstance(grouping, Grouping):
        grouping = _grouping(inputs, grouping)
    if grouping.num_groups != plan.num_features:
        raise ValueError(
            f"the subsets were drawn over {plan.num_features} features (or groups) but these inputs have "
            f"{grouping.num_groups}"
        )
    budget = ELEMENTS_PER_FORWARD if max_elements is None else _check_int("max_elements", max_elements, 1)
    maps = {name: flat_attributions(name, r, inputs) for name, r in attributions.items()}
    with preserved_model(model) as model, torch.no_grad():
        problem = build_problem(
            model, inputs, target, baseline, forward_kwargs=forward_kwargs, output=output, position=position,
            floating=inputs.is_floating_point(),  # token ids: removed by setting them to an id (a pad id)
        )  # fmt: skip
        group_sums = {name: grouping.sums(r) for name, r in maps.items()}
        columns: dict[str, list[Tensor]] = {name: [] for name in maps}
        reference = problem.scores(problem.inputs, problem.all_rows)
        # a drop or sum is constant when it varies by a few units in the last place of the outputs' precision
        rtol = ZERO_VARIANCE_ULPS * torch.finfo(reference.dtype).eps
        reference = reference.double()
        for subsets in plan.subsets:
            group_mask = torch.zeros(plan.num_subsets, grouping.num_groups, dtype=torch.bool, device=inputs.device)
            group_mask.scatter_(1, subsets.to(inputs.device), True)
            scores = _scores_without(problem, grouping.feature_mask(group_mask), budget)
            drops = reference.unsqueeze(1) - scores
            flat_drops = _constant(drops, torch.maximum(reference.abs(), scores.abs().amax(1)), rtol)
            for name, sums_per_group in group_sums.items():
                sums = sums_per_group @ group_mask.double().T  # (B, K): Σ_{g ∈ S_k} R_g
                correlation = pearson_per_sample(sums, drops)
                undefined = flat_drops | _constant(sums, sums.abs().amax(1), rtol)
                columns[name].append(correlation.masked_fill(undefined, float("nan")))
    return {name: torch.stack(values, dim=1).cpu() for name, values in columns.items()}


def _constant(values: Tensor, scale: Tensor, rtol: float) -> Tensor:
    """BoolTensor(B): rows of ``values`` (B, K) whose spread is within float rounding of ``scale`` (B,)."""
    return values.std(dim=1) <= rtol * scale


def _scores_without(problem: AttributionProblem, removed: Tensor, budget: int) -> Tensor:
    """S_c(x_[x_S = x̄]) for every sample and subset: Tensor(B, K), float64.

    The (B, K) grid of perturbed copies is cut into blocks of whole samples (or, for large inputs, of the
    subsets of one sample) of at most ``budget // N`` rows; a block is built by broadcasting the removal masks
    (K, N) against its samples' features and evaluated in one forward pass.
    """
    build = copies_with_baseline(problem, lambda samples, chosen: removed[chosen])
    return copy_scores(problem, removed.shape[0], build, budget)


def forwards_per_sample(plan: SubsetPlan) -> int:
    """Model evaluations per sample that :func:`measure` runs: one per subset and n, plus the input itself."""
    return 1 + plan.num_subsets * len(plan.ns)


__all__ = [
    "ELEMENTS_PER_FORWARD",
    "SensitivityResult",
    "SubsetPlan",
    "check_fraction",
    "default_ns",
    "draw_subsets",
    "forwards_per_sample",
    "measure",
    "sensitivity_n",
]
