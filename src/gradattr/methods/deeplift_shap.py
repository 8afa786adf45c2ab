"""DeepLiftSHAP: DeepLIFT averaged over a distribution of references (Lundberg & Lee, NeurIPS 2017, Sec. 4.2
"Deep SHAP"; the estimator of Captum's ``DeepLiftShap``).

    R_i = (1/K) Σ_k (x_i − b_ki) · g_i(x; b_k),

g(x; b_k) the DeepLIFT modified gradient with reference b_k (:mod:`gradattr.methods.deeplift`: Rescale at
nonlinearities, the Shapley split at products, the exact softmax multiplier), so the attributions sum to
S_c(x) − (1/K) Σ_k S_c(b_k) wherever DeepLIFT is complete. The K references of ``baseline`` are processed in
chunks: each chunk's rows (reference-major, every sample against every reference of the chunk) go through one
recording pass over their references and one rule pass, within the memory budget.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gradattr import rulesets
from gradattr.engine import modified_gradient
from gradattr.methods._batching import GRADIENT_ROWS_PER_PASS, copies_per_pass
from gradattr.methods._problem import AttributionProblem
from gradattr.rulesets import MaxPooling


def deeplift_shap(
    problem: AttributionProblem,
    *,
    max_pooling: MaxPooling = "route",
    strict: bool = True,
    batch_size: int | None = None,
) -> tuple[Tensor, ...]:
    """The mean over the K references of the DeepLIFT contributions to S_c(x) − S_c(b_k).

    Args:
        problem: validated inputs x (B, ...), target c, and ``references`` (K, ...) (``attribute``'s
            ``baseline``; ``None`` is one zero reference, which gives DeepLIFT).
        max_pooling: as for DeepLIFT: ``"route"`` or ``"exact"``.
        strict: raise on an op without a rule; ``False`` warns and uses its plain gradient.
        batch_size: most rows (references × samples) per chunk; default from a memory budget.

    Returns:
        One tensor per input, shape of the input, summing to S_c(x) − (1/K) Σ_k S_c(b_k) per sample.

    Example:
        >>> import torch, gradattr
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()
        >>> x, refs = torch.randn(3, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
        >>> r = gradattr.attribute(model, x, method="deeplift_shap", baseline=refs)
        >>> bool(torch.allclose(r.sum(1), model(x).squeeze(1) - model(refs).mean()))
        True
    """
    assert problem.references is not None, "deeplift_shap needs the problem's reference distribution"
    problem.resolve_target()
    rules = rulesets.deeplift().with_max_pooling(max_pooling)
    batch, rows = problem.batch_size, problem.all_rows
    count = problem.references[0].shape[0]
    totals = [torch.zeros_like(x) for x in problem.inputs]
    per_chunk = copies_per_pass(problem, batch_size, GRADIENT_ROWS_PER_PASS)
    for first in range(0, count, per_chunk):
        chunk = min(per_chunk, count - first)
        points = tuple(x.repeat(chunk, *[1] * (x.dim() - 1)) for x in problem.inputs)
        references = tuple(r[first : first + chunk].repeat_interleave(batch, dim=0) for r in problem.references)
        gradients = modified_gradient(problem, points, rows.repeat(chunk), rules, references, strict=strict)
        for total, x, b, g in zip(totals, points, references, gradients, strict=True):
            total += ((x - b) * g).view(chunk, *total.shape).sum(0)
    return tuple(total / count for total in totals)
