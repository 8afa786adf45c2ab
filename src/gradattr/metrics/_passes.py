"""Forward passes over perturbed copies of a batch within a memory budget, shared by the removal metrics
(Sensitivity-n, deletion / insertion, region perturbation, IROF, ROAD).

A metric has K perturbed copies of each of the B samples. :func:`copy_scores` cuts the (B, K) grid into
blocks of whole samples (or, for large inputs, of the copies of one sample) of at most ``budget // N`` rows,
asks the metric to build each block (by broadcasting, without a Python loop over its rows) and evaluates it in
one forward pass, without gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from gradattr.methods._batching import ELEMENTS_PER_CHUNK
from gradattr.methods._problem import AttributionProblem
from gradattr.metrics._sampling import count

Build = Callable[[slice, slice], Tensor]
"""``build(samples, copies) -> Tensor(s, k, ...)``: the chosen copies of the chosen samples, each shaped like
(or flattened from) one sample of the inputs."""

Score = Callable[[Tensor, Tensor], Tensor]
"""``score(points (R, ...), index (R,)) -> Tensor(R, ...)``: a score per row; ``index`` is each row's sample."""


def budget(max_elements: int | None) -> int:
    """Input elements per forward pass: ``max_elements`` checked (an int >= 1), or the methods' budget
    (:data:`gradattr.metrics.sensitivity.ELEMENTS_PER_FORWARD`)."""
    return ELEMENTS_PER_CHUNK if max_elements is None else count("max_elements", max_elements)


def copies_with_baseline(problem: AttributionProblem, baselined: Callable[[slice, slice], Tensor]) -> Build:
    """A :data:`Build` of copies of the inputs with some features at the baseline: ``baselined(samples,
    copies)`` gives their masks, BoolTensor (s, k, N) or (1, k, N) (True: at x̄)."""
    inputs = problem.inputs[0]
    flat = inputs.reshape(inputs.shape[0], 1, -1)
    baseline = problem.baselines[0].reshape(problem.baselines[0].shape[0], 1, -1)

    def build(samples: slice, copies: slice) -> Tensor:
        fill = baseline if baseline.shape[0] == 1 else baseline[samples]
        return torch.where(baselined(samples, copies), fill, flat[samples])

    return build


def target_scores(problem: AttributionProblem) -> Score:
    """The target's pre-softmax output of each row (``problem.scores``)."""
    return lambda points, index: problem.scores((points,), index)


def copy_scores(
    problem: AttributionProblem, copies: int, build: Build, budget: int, score: Score | None = None
) -> Tensor:
    """Scores of every copy of every sample: Tensor(B, K, ...), float64.

    Args:
        problem: the validated model call; its inputs (B, ...) fix the batch and the shape of a row.
        copies: K, the perturbed copies per sample.
        build: makes a block of copies (see :data:`Build`).
        budget: input elements per forward pass (at least one row per pass).
        score: the score of each row (default: the target's pre-softmax output, ``problem.scores``).
    """
    inputs = problem.inputs[0]
    batch, shape = inputs.shape[0], inputs.shape[1:]
    score = target_scores(problem) if score is None else score
    rows_per_pass = max(1, budget // max(1, shape.numel()))
    samples_per_pass = max(1, rows_per_pass // copies)
    copies_per_pass = min(copies, rows_per_pass)
    result: Tensor | None = None
    for first in range(0, batch, samples_per_pass):
        samples = slice(first, min(first + samples_per_pass, batch))
        index = torch.arange(samples.start, samples.stop, device=inputs.device)
        for low in range(0, copies, copies_per_pass):
            chosen = slice(low, min(low + copies_per_pass, copies))
            width = chosen.stop - chosen.start
            points = build(samples, chosen).reshape(-1, *shape)
            values = score(points, index.repeat_interleave(width)).double()
            if result is None:
                result = torch.empty(batch, copies, *values.shape[1:], dtype=torch.float64, device=inputs.device)
            result[samples, chosen] = values.view(-1, width, *values.shape[1:])
    return torch.empty(batch, copies, dtype=torch.float64, device=inputs.device) if result is None else result
