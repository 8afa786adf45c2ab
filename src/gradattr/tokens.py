"""Per-token relevance from attributions of a token embedding.

Attributing a text model's embedding layer (``gradattr.attribute(model, input_ids, method,
layer="bert.embeddings.word_embeddings")``) gives R of shape (B, T, D): one value per token and embedding
dimension. A token's relevance is the sum over its embedding,

    r_{b,t} = Σ_d R_{b,t,d}        and r_{b,t} = 0 where attention_mask_{b,t} = 0 (padding),

which keeps the methods' sums: Σ_t r_{b,t} = Σ_{t,d} R_{b,t,d} over the real tokens (for DeepLIFT and
Integrated Gradients, S_c(x) - S_c(x̄) when the padding's own share is 0, as it is with a model that
masks padding out of attention).
"""

from __future__ import annotations

import torch
from torch import Tensor


def token_attributions(attributions: Tensor, attention_mask: Tensor | None = None) -> Tensor:
    """One relevance per token: ``attributions`` (B, T, D, ...) summed over every dimension after T, with
    padding positions (``attention_mask == 0``) set to exactly 0.

    Args:
        attributions: attributions of a token embedding, (B, T, D) (or (B, T, *feature) of any rank >= 2).
        attention_mask: (B, T), nonzero for real tokens and 0 for padding (HuggingFace's mask), or ``None``
            (every position kept).

    Returns:
        Tensor (B, T) in the attributions' dtype and device.

    Example:
        >>> import torch, gradattr
        >>> r = torch.ones(2, 3, 4)
        >>> gradattr.token_attributions(r, torch.tensor([[1, 1, 1], [1, 1, 0]]))
        tensor([[4., 4., 4.],
                [4., 4., 0.]])
    """
    if not isinstance(attributions, Tensor):
        raise TypeError(f"attributions must be a tensor (B, T, D), got {type(attributions).__name__}")
    if attributions.dim() < 2:
        raise ValueError(
            f"attributions must have a batch and a token dimension, (B, T, D); got {tuple(attributions.shape)}"
        )
    per_token = attributions.sum(dim=tuple(range(2, attributions.dim()))) if attributions.dim() > 2 else attributions
    if attention_mask is None:
        return per_token
    if not isinstance(attention_mask, Tensor):
        attention_mask = torch.as_tensor(attention_mask)
    if attention_mask.shape != per_token.shape:
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)}; expected (B, T) = {tuple(per_token.shape)} "
            "of the attributions"
        )
    keep = attention_mask.to(per_token.device) != 0
    return torch.where(keep, per_token, torch.zeros((), dtype=per_token.dtype, device=per_token.device))
