"""Integrated Gradients (Sundararajan et al. 2017; Ancona et al., ICLR 2018, Sec. 2.1, Eq. 4).

R_i = (x_i - x̄_i) · (1/m) Σ_{k=1..m} ∂S_c(x̃)/∂x̃_i at x̃ = x̄ + (k/m)(x - x̄): the right Riemann sum of the
path integral, as in the paper's reference code. Completeness Σ_i R_i = S_c(x) - S_c(x̄) holds up to the
Riemann error, which vanishes as m grows (like 1/m once the steps resolve the path).

The gap is checked on every call: when the relative gap (see :func:`relative_gap`) of some sample exceeds
``gap_tolerance`` a :class:`CompletenessWarning` says by how much and about how many steps would be needed,
estimated from the gaps at m/2 and m steps (the even-numbered points of the m-step sum are the m/2-step sum,
so the second count costs no gradient). ``steps="auto"`` doubles the steps from :data:`AUTO_START_STEPS`
until the gap is within the tolerance or ``max_steps`` is reached, reusing every gradient already taken
(doubling m adds only the odd-numbered points of the finer grid); each pass stays within the memory budget
and the memory used does not grow with the steps.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

import torch
from torch import Tensor

from gradattr.engine import modified_gradient
from gradattr.methods._batching import GRADIENT_ROWS_PER_PASS, copies_per_pass
from gradattr.methods._problem import AttributionProblem, check_positive_int

GAP_TOLERANCE = 0.05
"""Default ``gap_tolerance``: the largest relative completeness gap accepted without a warning (5 %)."""
AUTO_START_STEPS = 32
"""``steps="auto"`` starts here and doubles."""
AUTO_MAX_STEPS = 2048
"""Default ``max_steps`` of ``steps="auto"``: at most 20x the work of the default 100 steps."""
_SLOWER_THAN_1_OVER_M = 0.75  # gap(m) / gap(m/2) above this: the 1/m regime (ratio 0.5) is not reached yet


class CompletenessWarning(UserWarning):
    """Integrated Gradients' attributions miss S_c(x) - S_c(x̄) by more than the tolerance (issued at most once
    per :func:`gradattr.attribute` call)."""


_warned: ContextVar[list[bool] | None] = ContextVar("gradattr_completeness_warned", default=None)


@contextmanager
def one_completeness_warning() -> Iterator[None]:
    """Within this context (one :func:`gradattr.attribute` call) at most one :class:`CompletenessWarning` is
    issued, however many times Integrated Gradients runs (SmoothGrad over IG runs it per pass)."""
    token = _warned.set([False])
    try:
        yield
    finally:
        _warned.reset(token)


def relative_gap(gap: Tensor, at_input: Tensor, at_baseline: Tensor) -> Tensor:
    """|gap| / max(|S_c(x) - S_c(x̄)|, 0.1 · max(|S_c(x)|, |S_c(x̄)|), 1e-12), per sample.

    The gap is measured against the change it should explain; a change below a tenth of the output itself is
    measured against that tenth, so a sample whose output barely moves does not turn a small absolute gap
    (rounding, a kink between two steps) into a large relative one.
    """
    change = (at_input - at_baseline).abs()
    floor = (0.1 * torch.maximum(at_input.abs(), at_baseline.abs())).clamp_min(1e-12)
    return gap.abs() / torch.maximum(change, floor)


def integrated_gradients(
    problem: AttributionProblem,
    *,
    steps: int | Literal["auto"] = 100,
    batch_size: int | None = None,
    gap_tolerance: float | None = GAP_TOLERANCE,
    max_steps: int = AUTO_MAX_STEPS,
) -> tuple[Tensor, ...]:
    """Path-integrated gradients from the baseline to the input.

    Args:
        problem: validated inputs x (B, ...), baselines x̄ (1 or B, ...), target c.
        steps: number m >= 1 of Riemann steps, or ``"auto"``: start at 32 steps and double until every
            sample's relative completeness gap is within ``gap_tolerance`` (or ``max_steps`` is reached).
        batch_size: most rows (interpolated copies) per forward pass; default from a memory budget.
        gap_tolerance: largest relative completeness gap (:func:`relative_gap`) accepted without a
            :class:`CompletenessWarning` (default 0.05); ``None`` skips the check (and its two forward passes
            at x and x̄) and, with ``steps="auto"``, is an error.
        max_steps: upper bound of ``steps="auto"`` (default 2048); ignored with an int ``steps``.

    Returns:
        One tensor per input, shape of the input.

    Warns:
        CompletenessWarning: the relative gap of some sample exceeds ``gap_tolerance``; the message gives the
        gap, the sample, and the steps the 1/m law asks for (from the gaps at m/2 and m steps).

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Linear(3, 1)
        >>> r = gradattr.attribute(model, torch.ones(2, 3), method="integrated_gradients", steps=10)
        >>> torch.allclose(r, model.weight.detach().expand(2, 3))
        True
    """
    auto = steps == "auto"
    if auto:
        check_positive_int("max_steps", max_steps)
        if gap_tolerance is None:
            raise ValueError('steps="auto" doubles the steps until the gap is within gap_tolerance; pass a number')
    else:
        check_positive_int("steps", steps)
    if gap_tolerance is not None and not (isinstance(gap_tolerance, (int, float)) and gap_tolerance > 0):
        raise ValueError(f"gap_tolerance must be a positive number or None, got {gap_tolerance!r}")
    problem.resolve_target()
    deltas = tuple(x - b for x, b in zip(problem.inputs, problem.baselines, strict=True))
    path = _Path(problem, deltas, copies_per_pass(problem, batch_size, GRADIENT_ROWS_PER_PASS))
    if gap_tolerance is None:
        return path.attributions(path.gradient_sum(range(1, steps + 1), steps), steps)

    from gradattr.metrics.completeness import endpoint_scores, problem_gap  # metrics imports gradattr.methods

    scores = endpoint_scores(problem)

    def relative(totals: tuple[Tensor, ...], m: int) -> Tensor:
        return relative_gap(problem_gap(problem, path.attributions(totals, m), scores), *scores)

    previous: tuple[int, Tensor] | None = None  # (m/2, its relative gap): the second step count
    if auto:
        m = min(AUTO_START_STEPS, max_steps)
        totals = path.gradient_sum(range(1, m + 1), m)
        rel = relative(totals, m)
        while bool((rel > gap_tolerance).any()) and 2 * m <= max_steps:
            previous = (m, rel)
            odd = path.gradient_sum(range(1, 2 * m, 2), 2 * m)
            totals = tuple(t + o for t, o in zip(totals, odd, strict=True))
            m *= 2
            rel = relative(totals, m)
    else:
        m = steps
        if m % 2 == 0:  # the even points k = 2, 4, ..., m are the m/2-step sum
            even = path.gradient_sum(range(2, m + 1, 2), m)
            odd = path.gradient_sum(range(1, m, 2), m)
            totals = tuple(e + o for e, o in zip(even, odd, strict=True))
            previous = (m // 2, relative(even, m // 2))
        else:
            totals = path.gradient_sum(range(1, m + 1), m)
        rel = relative(totals, m)
    attributions = path.attributions(totals, m)
    if bool((rel > gap_tolerance).any()):
        _warn(_message(problem, rel, m, previous, gap_tolerance, auto, max_steps, scores))
    return attributions


class _Path:
    """Gradient sums over points x̄ + (k/m)(x - x̄) of the straight path, in passes that fit the budget."""

    def __init__(self, problem: AttributionProblem, deltas: tuple[Tensor, ...], per_chunk: int) -> None:
        self.problem, self.deltas, self.per_chunk = problem, deltas, per_chunk

    def gradient_sum(self, ks: range, m: int) -> tuple[Tensor, ...]:
        """Σ_{k in ks} ∂S_c/∂x̃ at x̃ = x̄ + (k/m)(x - x̄), one tensor per input."""
        problem, deltas = self.problem, self.deltas
        batch = problem.batch_size
        totals = [torch.zeros_like(x) for x in problem.inputs]
        ks_all = torch.tensor(list(ks), dtype=deltas[0].dtype, device=deltas[0].device)
        for first in range(0, ks_all.numel(), self.per_chunk):
            alphas = ks_all[first : first + self.per_chunk] / m
            points = tuple(
                (b + alphas.to(d.dtype).view(-1, *[1] * d.dim()) * d).reshape(-1, *d.shape[1:])
                for b, d in zip(problem.baselines, deltas, strict=True)
            )
            index = problem.all_rows.repeat(alphas.numel())
            gradients = modified_gradient(problem, points, index)
            for total, g in zip(totals, gradients, strict=True):
                total += g.view(alphas.numel(), batch, *g.shape[1:]).sum(0)
        return tuple(totals)

    def attributions(self, totals: tuple[Tensor, ...], m: int) -> tuple[Tensor, ...]:
        return tuple(d * total / m for d, total in zip(self.deltas, totals, strict=True))


def _warn(message: str) -> None:
    state = _warned.get()
    if state is not None:
        if state[0]:
            return
        state[0] = True
    warnings.warn(message, CompletenessWarning, stacklevel=4)


def _message(
    problem: AttributionProblem,
    rel: Tensor,
    m: int,
    previous: tuple[int, Tensor] | None,
    tolerance: float,
    auto: bool,
    max_steps: int,
    scores: tuple[Tensor, Tensor],
) -> str:
    """What the gap is, and how many steps the 1/m law asks for, estimated from the gaps at m/2 and m."""
    worst = int(rel.argmax())
    over = int((rel > tolerance).sum())
    change = float(scores[0][worst] - scores[1][worst])
    stopped = f'; steps="auto" stopped at max_steps={max_steps}' if auto else ""
    head = (
        f"integrated_gradients: completeness gap {float(rel[worst]):.1%} of S_c(x) - S_c(x̄) = {change:.4g} at "
        f"{m} steps (sample {worst}; {over} of {problem.batch_size} sample(s) above the tolerance "
        f"{tolerance:.1%}{stopped})"
    )
    needed = math.ceil(m * float(rel.max()) / tolerance)  # gap ∝ 1/m from the gap at m steps alone
    if previous is None:
        estimate = f"the right-Riemann error falls like 1/m, so about {needed} steps would be needed"
    else:
        m_half, rel_half = previous
        ratio = float(rel[worst] / rel_half[worst].clamp_min(1e-30))
        # gap = C/m: C per sample as the mean of the two counts' estimates; the steps for the largest C.
        c = (rel_half * m_half + rel * m) / 2
        if ratio <= _SLOWER_THAN_1_OVER_M:
            needed = max(math.ceil(float(c.max()) / tolerance), m + 1)
            estimate = (
                f"the gap fell from {float(rel_half[worst]):.1%} at {m_half} steps to {float(rel[worst]):.1%} "
                f"(like 1/m), so about {needed} steps would be needed"
            )
        else:
            estimate = (
                f"the gap fell only from {float(rel_half[worst]):.1%} at {m_half} steps to "
                f"{float(rel[worst]):.1%}, slower than 1/m: the path changes sharply within a step of 1/{m} (a "
                f"LayerNorm or softmax near a zero baseline, kinks of ReLUs or max pooling), so at least {needed} "
                "steps would be needed, likely more"
            )
    advice = (
        "raise max_steps, or use a baseline away from the sharp part of the path"
        if auto
        else f'pass steps={needed} or steps="auto" (doubles from {AUTO_START_STEPS} up to max_steps)'
    )
    return f"{head}: {estimate}; {advice}. The gap per sample: gradattr.attribute(..., return_gap=True)."
