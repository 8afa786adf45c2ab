"""Rules at linear layers (linear, conv, and products with one input-dependent factor): LRP's layer rules.

In gradient×input form a rule at a layer ``z = W a + b`` maps the gradient ``g_z`` of its output to the
gradient ``g_a`` of its input, and ``R_a = a ⊙ g_a`` (Montavon et al., "Layer-Wise Relevance Propagation:
An Overview", 2019). The default is the plain gradient (the paper's eps-LRP and DeepLIFT put their rules at
the nonlinearities only: Ancona et al., ICLR 2018, Sec. 3). This slot holds the layer rules of LRP
composites (Zennit's z⁺, αβ, γ, box); the ε rule is here:

* :class:`EpsilonLayer` — ``R_j = Σ_k a_j w_jk / (z_k + ε sign z_k) · R_k`` (Bach et al. 2015), i.e.
  ``g_a = Wᵀ (g_z ⊙ z / (z + ε sign z))``: the output's gradient is scaled, then the plain backward applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from gradattr.rules.products import scale_gradient_by


class LayerRule(Protocol):
    needs_reference: bool

    def apply(self, out: Tensor) -> Tensor:
        """The layer's output ``z`` with this rule's backward (an output modifier)."""
        ...


@dataclass(frozen=True)
class EpsilonLayer:
    """ε-LRP at a layer (Bach et al. 2015): ``g_a = Wᵀ (g_z ⊙ z / (z + ε·sign z))``, sign(0) := +1."""

    epsilon: float = 1e-4
    needs_reference: bool = False

    def apply(self, out: Tensor) -> Tensor:
        z = out.detach()
        stabiliser = torch.where(z >= 0, self.epsilon, -self.epsilon).to(z.dtype)
        return scale_gradient_by(out, z / (z + stabiliser))
