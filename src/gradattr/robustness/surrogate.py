"""The softplus surrogate of a ReLU network, for attacks that differentiate a gradient map.

A ReLU network is piecewise linear: its input gradient is piecewise constant, so the gradient of a
gradient-based explanation w.r.t. the input (the second derivative) is zero almost everywhere and gives an
attack nothing to follow. Ghorbani et al. ("Interpretation of Neural Networks is Fragile", AAAI 2019, Sec. 3)
therefore take the attack's gradient through the same network with every ReLU replaced by a softplus,

    softplus_β(z) = (1/β) · log(1 + exp(β z)),    softplus_β'(z) = σ(β z),    softplus_β''(z) = β σ(β z)(1 - σ(β z)),

which tends to max(z, 0) as β → ∞ (|softplus_β(z) - max(z, 0)| ≤ log(2)/β); Dombrowski et al. ("Explanations
can be manipulated and geometry is to blame", NeurIPS 2019, Sec. 4) do the same. The replacement happens at
the op call (:class:`gradattr.engine.substitution.SubstitutionMode`): ``nn.ReLU`` (also reused),
``F.relu``, ``torch.relu`` and ``x.relu_()`` are all seen, and the user's model is not edited.
"""

from __future__ import annotations

import math
from functools import partial

import torch.nn.functional as F

from gradattr.engine.substitution import SubstitutionMode

_SOFTPLUS_THRESHOLD = 20.0
"""Above β z > 20, softplus_β(z) = z to float precision: evaluated linearly, as ``F.softplus`` does."""


def softplus_surrogate(beta: float = 10.0) -> SubstitutionMode:
    """A context in which every ReLU call computes softplus_β instead (Ghorbani et al. 2019, Sec. 3).

    Every rectifier entry of the engine's op table (:data:`gradattr.engine.ops.ELEMENTWISE` with
    ``rectifier=True``: ``torch.relu``, ``F.relu``, ``nn.ReLU``, ``relu_``, ReLU Elman RNNs) is replaced;
    other nonlinearities (tanh, sigmoid, leaky ReLU, ...) are left as they are. Modules, parameters and
    modes of the model are not touched.

    Args:
        beta: sharpness β > 0 of softplus_β(z) = log(1 + exp(β z)) / β; large β approaches ReLU
            (output error at most log(2)/β per unit), small β smooths more.

    Returns:
        A ``TorchFunctionMode``, used as a context manager.

    Example:
        >>> import torch
        >>> model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1))
        >>> with softplus_surrogate(beta=10.0):
        ...     smooth = model(torch.zeros(1, 2))
        >>> smooth.shape
        torch.Size([1, 1])
    """
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    softplus = partial(F.softplus, beta=float(beta), threshold=_SOFTPLUS_THRESHOLD)
    return SubstitutionMode(lambda entry: entry.rectifier, softplus)
