"""GradientSHAP and expected gradients: Integrated Gradients averaged over a distribution of baselines, with
the path point drawn at random (Lundberg & Lee, NeurIPS 2017, "A Unified Approach to Interpreting Model
Predictions"; Erion et al., Nature Machine Intelligence 2021, "Improving performance of deep learning models
with axiomatic attribution priors and expected gradients", Eq. 4).

    R_i = E_{b ~ D, α ~ U(0, 1), ε ~ N(0, σ²)} [ (x'_i − b_i) · ∂S_c/∂x̃_i (x̃) ],   x' = x + ε,
    x̃ = b + α (x' − b),

estimated with ``samples`` draws (b, α, ε) per input, D the uniform distribution over the K references given
as ``baseline``. Expected gradients is the same estimator without input noise (σ = 0, the default), the
references drawn from the data. In expectation Σ_i R_i = S_c(x) − E_b S_c(b) (completeness of IG for each
reference, when σ = 0); on a linear model every draw gives w ⊙ (x − b), so one reference gives it exactly.
The draws are Captum's ``GradientShap`` ones (a reference index and α per draw; noise added to the input
and used in x' − b as well), from a CPU generator seeded with ``seed``: the reference indices, then the α of
all draws, then the noise draw by draw. Draw ``s`` is the same for every sample of the batch (each sample's
estimate stays unbiased), so a sample gets the same attributions alone or in any batch, however the draws
are split into passes.
"""

from __future__ import annotations

import math

import torch
from torch import Generator, Tensor

from gradattr.engine import modified_gradient
from gradattr.methods._batching import GRADIENT_ROWS_PER_PASS, copies_per_pass
from gradattr.methods._problem import AttributionProblem, check_positive_int


def draws(references: int, samples: int, seed: int) -> tuple[Tensor, Tensor, Generator]:
    """The reference index (LongTensor(samples)) and α (float64 Tensor(samples)) of every draw, and the
    generator that then gives the input noise, one ``randn(input.shape[1:])`` per draw and input."""
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(references, (samples,), generator=generator)
    alphas = torch.rand(samples, generator=generator, dtype=torch.float64)
    return picks, alphas, generator


def gradient_shap(
    problem: AttributionProblem,
    *,
    samples: int = 50,
    sigma: float = 0.0,
    seed: int = 0,
    batch_size: int | None = None,
) -> tuple[Tensor, ...]:
    """GradientSHAP attributions: the mean of (x' − b) ⊙ ∇S_c over random references and path points.

    Args:
        problem: validated inputs x (B, ...), target c, and ``references`` (K, ...): the baseline
            distribution (``attribute``'s ``baseline``; ``None`` is one zero reference).
        samples: draws (b, α, ε) per input.
        sigma: standard deviation of the Gaussian noise added to the input, in the input's units (Captum's
            ``stdevs``); 0 (default) gives expected gradients.
        seed: seed of the draws.
        batch_size: most rows (draws × samples) per forward pass; default from a memory budget.

    Returns:
        One tensor per input, shape of the input.

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Linear(3, 1)
        >>> x, refs = torch.ones(2, 3), torch.zeros(4, 3)
        >>> r = gradattr.attribute(model, x, method="gradient_shap", baseline=refs, samples=8)
        >>> torch.allclose(r, model.weight.detach() * x)
        True
    """
    check_positive_int("samples", samples)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
    assert problem.references is not None, "gradient_shap needs the problem's reference distribution"
    problem.resolve_target()
    rows = problem.all_rows
    picks, alphas, generator = draws(problem.references[0].shape[0], samples, seed)
    totals = [torch.zeros_like(x) for x in problem.inputs]
    per_chunk = copies_per_pass(problem, batch_size, GRADIENT_ROWS_PER_PASS)
    for first in range(0, samples, per_chunk):
        drawn = slice(first, min(samples, first + per_chunk))
        copies = drawn.stop - drawn.start
        points, deltas = [], []
        for x, refs in zip(problem.inputs, problem.references, strict=True):
            shape = (copies, 1, *[1] * (x.dim() - 1))
            moved = x.unsqueeze(0)
            if sigma > 0:
                noise = [torch.randn(x.shape[1:], generator=generator, dtype=x.dtype) for _ in range(copies)]
                moved = moved + sigma * torch.stack(noise).unsqueeze(1).to(x.device)
            start = refs[picks[drawn].to(x.device)].unsqueeze(1)
            alpha = alphas[drawn].to(dtype=x.dtype, device=x.device).view(shape)
            delta = (moved - start).expand(copies, *x.shape)
            points.append((start + alpha * delta).reshape(-1, *x.shape[1:]))
            deltas.append(delta)
        gradients = modified_gradient(problem, tuple(points), rows.repeat(copies))
        for total, delta, g in zip(totals, deltas, gradients, strict=True):
            total += (delta * g.view(delta.shape)).sum(0)
    return tuple(total / samples for total in totals)
