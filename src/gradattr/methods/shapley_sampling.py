"""Shapley value sampling (Castro et al. 2009; Štrumbelj & Kononenko 2010; Ancona et al., ICLR 2018, Sec. 2.2).

The Shapley value of feature (group) g for the target logit is the mean, over orderings π of the G groups,
of its marginal contribution when added after the groups that precede it:

    φ_g = E_π [ S_c(x_{P_π(g) ∪ {g}}) - S_c(x_{P_π(g)}) ]

where x_P keeps the groups in P and sets every other feature to the baseline. It is estimated from
``samples`` random orderings (5 in the paper's reference code), the same orderings for every sample of the
batch. Each ordering is one walk from the baseline to the input adding one group per step, so its G
marginal contributions cost G forward passes and sum exactly to S_c(x) - S_c(x̄) (completeness holds for
any number of samples). A group's value is spread evenly over its features, so summing R over a group
gives φ_g (the convention of the paper's Sensitivity-n and of occlusion).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from gradattr.groups import Grouping, as_grouping
from gradattr.methods._batching import copies_per_pass
from gradattr.methods._problem import AttributionProblem, check_positive_int

FeatureGroups = Tensor | Sequence[Tensor | None] | None


def _groupings(problem: AttributionProblem, feature_groups: FeatureGroups) -> list[Grouping]:
    """One validated grouping per attributed input (``None``: every feature its own group)."""
    count = len(problem.inputs)
    if isinstance(feature_groups, (tuple, list)):
        if len(feature_groups) != count:
            raise ValueError(f"feature_groups has {len(feature_groups)} entries for {count} inputs")
        masks = list(feature_groups)
    elif feature_groups is None or count == 1:
        masks = [feature_groups] * count
    else:
        raise ValueError(f"with {count} inputs, feature_groups must be a tuple with one mask (or None) per input")
    return [as_grouping(m, x.shape[1:], x.device) for m, x in zip(masks, problem.inputs, strict=True)]


def shapley_sampling(
    problem: AttributionProblem,
    *,
    samples: int = 5,
    feature_groups: FeatureGroups = None,
    seed: int = 0,
    batch_size: int | None = None,
) -> tuple[Tensor, ...]:
    """Shapley values of feature groups by permutation sampling, all steps in large forward batches.

    Args:
        problem: validated inputs x (B, ...), baselines x̄ (the value of an absent feature), target c.
        samples: number of random orderings of the groups.
        feature_groups: integer mask of group ids 0..G-1 per sample (e.g. ``gradattr.patches(...)``), or a
            tuple with one mask (or ``None``) per input; ``None``: every feature is its own group.
        seed: seed of the orderings (the same orderings for every sample).
        batch_size: most rows (perturbed copies) per forward pass; default from a memory budget.

    Returns:
        One tensor per input, shape of the input; per sample the values sum to S_c(x) - S_c(x̄).

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Linear(3, 1)
        >>> r = gradattr.attribute(model, torch.ones(2, 3), method="shapley_sampling")
        >>> torch.allclose(r, model.weight.detach().expand(2, 3))
        True
    """
    check_positive_int("samples", samples)
    groupings = _groupings(problem, feature_groups)
    sizes = [g.num_groups for g in groupings]
    offsets = [sum(sizes[:i]) for i in range(len(sizes))]
    total = sum(sizes)
    batch, rows = problem.batch_size, problem.all_rows
    flat_x = [x.reshape(batch, -1) for x in problem.inputs]
    flat_b = [b.reshape(b.shape[0], -1) for b in problem.baselines]
    generator = torch.Generator().manual_seed(seed)
    per_chunk = copies_per_pass(problem, batch_size)
    phi = flat_x[0].new_zeros(batch, total)
    problem.resolve_target()
    with torch.no_grad():
        start = tuple(b.expand(batch, *b.shape[1:]) for b in problem.baselines)
        empty = problem.scores(start, rows)
        for _ in range(samples):
            order = torch.randperm(total, generator=generator).to(phi.device)
            rank = torch.empty_like(order)
            rank[order] = torch.arange(total, device=phi.device)
            previous = empty
            for first in range(0, total, per_chunk):
                steps = torch.arange(first, min(first + per_chunk, total), device=phi.device)
                present = rank.unsqueeze(0) <= steps.unsqueeze(1)  # (S, G): groups in after each step
                points = tuple(
                    torch.where(
                        grouping.feature_mask(present[:, offset : offset + grouping.num_groups]).unsqueeze(1),
                        x.unsqueeze(0),
                        b.unsqueeze(0),
                    ).reshape(-1, *shape[1:])
                    for grouping, offset, x, b, shape in zip(
                        groupings, offsets, flat_x, flat_b, (x.shape for x in problem.inputs), strict=True
                    )
                )
                index = rows.repeat(steps.numel())
                scores = problem.scores(points, index, scratch=True).view(steps.numel(), batch)
                gains = scores - torch.cat([previous.unsqueeze(0), scores[:-1]])
                phi[:, order[steps]] += gains.T.to(phi.dtype)
                previous = scores[-1]
    phi /= samples
    results = []
    for grouping, offset, x in zip(groupings, offsets, problem.inputs, strict=True):
        counts = torch.bincount(grouping.ids, minlength=grouping.num_groups).to(phi.dtype)
        per_feature = phi[:, offset + grouping.ids] / counts[grouping.ids]
        results.append(per_feature.view_as(x))
    return tuple(results)
