"""Layer-by-layer LRP written from Montavon et al. (2019) in numpy, float64: the independent reference for
gradattr's layer rules and composites.

Every linear op of a small ``nn.Sequential`` (Linear, Conv2d, AvgPool2d, Flatten) becomes a dense matrix
``M`` (out × in, read off the op by feeding it unit vectors) and a bias vector; the rules are then the sums of
the paper over ``j`` (inputs) and ``k`` (outputs), with no autograd and none of gradattr's code. ReLU passes
relevance unchanged (Zennit's ``Pass``); the output relevance is the target logit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

Rule = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(a, M, b, M_ones, R_out) -> R_in for one sample: a (J,), M (K, J), b (K,), M_ones the op's receptive-field
pattern (1 where input j feeds output k), R_out (K,)."""


def stab(d: np.ndarray, eps: float) -> np.ndarray:
    return d + eps * np.where(d >= 0, 1.0, -1.0)


def dense(op: nn.Module, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(M, b) with op(a) = M a + b for inputs of ``shape`` (one sample), float64."""
    size = int(np.prod(shape))
    with torch.no_grad():
        b = op(torch.zeros(1, *shape, dtype=torch.float64)).reshape(-1)
        columns = op(torch.eye(size, dtype=torch.float64).reshape(size, *shape)).reshape(size, -1) - b
    return columns.T.numpy(), b.numpy()


def receptive(op: nn.Module, shape: tuple[int, ...]) -> np.ndarray:
    """1 where input j feeds output k (the op with all weights 1)."""
    ones = _with_weights(op, torch.ones_like)
    return (np.abs(dense(ones, shape)[0]) > 0).astype(np.float64)


def _with_weights(op: nn.Module, modify: Callable[[torch.Tensor], torch.Tensor]) -> nn.Module:
    import copy

    changed = copy.deepcopy(op)
    with torch.no_grad():
        if getattr(changed, "weight", None) is not None:
            changed.weight.copy_(modify(changed.weight))
        if getattr(changed, "bias", None) is not None:
            changed.bias.zero_()
    return changed


def epsilon(eps: float) -> Rule:
    def rule(a, M, b, ones, R):
        z = M @ a + b
        return np.array([sum(a[j] * M[k, j] / stab(z[k], eps) * R[k] for k in range(len(R))) for j in range(len(a))])

    return rule


def _split(a: np.ndarray, M: np.ndarray, b_pos: np.ndarray, w_on_pos: np.ndarray, w_on_neg: np.ndarray):
    """contributions c_kj = a⁺_j w_on_pos_kj + a⁻_j w_on_neg_kj and their sums plus b_pos."""
    c = np.maximum(a, 0)[None, :] * w_on_pos + np.minimum(a, 0)[None, :] * w_on_neg
    return c, c.sum(1) + b_pos


def z_plus(eps: float = 1e-6) -> Rule:
    def rule(a, M, b, ones, R):
        c, d = _split(a, M, np.maximum(b, 0), np.maximum(M, 0), np.minimum(M, 0))
        return (c / stab(d, eps)[:, None] * R[:, None]).sum(0)

    return rule


def alpha_beta(alpha: float, beta: float, eps: float = 1e-6) -> Rule:
    def rule(a, M, b, ones, R):
        cp, dp = _split(a, M, np.maximum(b, 0), np.maximum(M, 0), np.minimum(M, 0))
        cn, dn = _split(a, M, np.minimum(b, 0), np.minimum(M, 0), np.maximum(M, 0))
        share = alpha * cp / stab(dp, eps)[:, None] - beta * cn / stab(dn, eps)[:, None]
        return (share * R[:, None]).sum(0)

    return rule


def gamma(g: float, eps: float = 1e-6) -> Rule:
    def rule(a, M, b, ones, R):
        z = M @ a + b
        up, down = M + g * np.maximum(M, 0), M + g * np.minimum(M, 0)
        cp, dp = _split(a, M, b + g * np.maximum(b, 0), up, down)
        cn, dn = _split(a, M, b + g * np.minimum(b, 0), down, up)
        share = np.where(z[:, None] > 0, cp / stab(dp, eps)[:, None], 0)
        share = share + np.where(z[:, None] < 0, cn / stab(dn, eps)[:, None], 0)
        return (share * R[:, None]).sum(0)

    return rule


def flat(eps: float = 1e-6) -> Rule:
    def rule(a, M, b, ones, R):
        return (ones / stab(ones.sum(1), eps)[:, None] * R[:, None]).sum(0)

    return rule


def w_square(eps: float = 1e-6) -> Rule:
    def rule(a, M, b, ones, R):
        return (M**2 / stab((M**2).sum(1) + b**2, eps)[:, None] * R[:, None]).sum(0)

    return rule


def z_box(low: float | np.ndarray, high: float | np.ndarray, eps: float = 1e-6) -> Rule:
    """zB with bounds per input feature (arrays of the flattened input's length) or one for all."""

    def rule(a, M, b, ones, R):
        c = a[None, :] * M - np.multiply(low, np.maximum(M, 0)) - np.multiply(high, np.minimum(M, 0))
        d = c.sum(1) + b - np.maximum(b, 0) - np.minimum(b, 0)
        return (c / stab(d, eps)[:, None] * R[:, None]).sum(0)

    return rule


def lrp(model: nn.Sequential, x: torch.Tensor, target: int, rules: Callable[[int, nn.Module], Rule]) -> np.ndarray:
    """Relevance of one sample ``x`` (shape of one input) for ``target``; ``rules(i, op)``: the rule at layer
    ``i`` (position in the Sequential)."""
    activations, shapes = [x.double().unsqueeze(0)], []
    with torch.no_grad():
        for op in model:
            shapes.append(tuple(activations[-1].shape[1:]))
            activations.append(op(activations[-1]))
    R = np.zeros(activations[-1].numel())
    R[target] = float(activations[-1].reshape(-1)[target])
    for i in range(len(model) - 1, -1, -1):
        op, a = model[i], activations[i].reshape(-1).numpy()
        if isinstance(op, (nn.ReLU, nn.Flatten)):
            continue  # ReLU: pass; Flatten: a reshape
        M, b = dense(op, shapes[i])
        R = rules(i, op)(a, M, b, receptive(op, shapes[i]), R)
    return R.reshape(x.shape)
