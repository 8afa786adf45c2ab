"""Occlusion of tokens for every generated token at once: one forward pass per occluded token, not per
(occluded token, generated token) pair.

Occluding token j (its embedding set to ``value``) changes the logits at every later position in one
forward pass, so the drop of every step's score comes from the same pass (Zeiler & Fergus 2014; Ancona et
al., ICLR 2018, Sec. 2.2, Occlusion-1 over tokens):

    M[b, i, j] = S_i(x) − S_i(x with e_j := value),   S_i = logit_{P+i−1}(x_{P+i}) [− logit_{P+i−1}(a_i)].

That is ``gradattr.attribute(..., method="occlusion", window=(1, D), value=value)`` of the sequence cut after
position P + i − 1, for all i from L − 1 passes over the whole sequence instead of G·(L − 1) (the model is
causal: occluding a later token leaves S_i unchanged, which the caller checks).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gradattr.engine import preserved_model
from gradattr.engine.hygiene import view_of
from gradattr.generation.decoding import Continuation, next_token_logits, sequence_kwargs
from gradattr.memory import budget
from gradattr.methods._model_call import OutputSelector

ACTIVATIONS_PER_TOKEN = 16
"""Widths of the embedding a forward pass without gradients keeps alive per token, besides the logits
(a generous bound for transformer blocks: the attention's q, k, v and output, the MLP's 4x hidden layer)."""


def step_scores(logits: Tensor, ids: Tensor, prompt_length: int, contrast: Tensor | None) -> Tensor:
    """S_i of every step from logits (R, L, V) of rows of one sequence ``ids`` (L,) (or of R sequences
    (R, L)): (R, G), each the logit of the token generated at P + i at position P + i − 1, minus the
    contrast token's logit (``contrast``: (G,) or (R, G))."""
    before = logits[:, prompt_length - 1 : -1]
    generated = ids[..., prompt_length:].expand(before.shape[:2])
    score = before.gather(-1, generated[..., None].to(before.device))[..., 0]
    if contrast is None:
        return score
    return score - before.gather(-1, contrast.expand(before.shape[:2])[..., None].to(before.device))[..., 0]


def occlusion_rows(
    model: nn.Module,
    sequence: Continuation,
    prompt_length: int,
    contrast: Tensor | None,
    embedding: nn.Module,
    output: OutputSelector,
    value: float,
    batch_size: int | None,
) -> Tensor:
    """Drops (B, G, L): ``[b, i, j]`` is step i's score drop when token j is occluded (0 for padding and for
    the last position, an input of no step). ``batch_size`` caps the occluded copies per forward pass;
    by default they fill the memory budget (logits plus :data:`ACTIVATIONS_PER_TOKEN` embedding widths per
    token)."""
    samples, length = sequence.ids.shape
    drops = torch.zeros(samples, sequence.generated.shape[1], length)
    with preserved_model(model, warn=False) as view, torch.no_grad():
        layer = view_of(view, embedding)
        for b in range(samples):
            ids = sequence.ids[b : b + 1]
            kwargs = sequence_kwargs(view, sequence.attention_mask[b : b + 1])
            own = None if contrast is None else contrast[b]
            logits = next_token_logits(view, view(ids, **kwargs), output)
            full = step_scores(logits, ids, prompt_length, own)
            drops = drops.to(full.dtype)
            tokens = sequence.attention_mask[b, :-1].nonzero()[:, 0]
            rows = batch_size or _rows_per_pass(logits, layer, ids)
            for chunk in tokens.split(rows):
                occluded = _occluded(view, layer, ids, kwargs, chunk, value, output)
                drops[b, :, chunk] = (full - step_scores(occluded, ids, prompt_length, own)).T.cpu()
    return drops


def _occluded(
    view: nn.Module,
    layer: nn.Module,
    ids: Tensor,
    kwargs: dict[str, Tensor],
    tokens: Tensor,
    value: float,
    output: OutputSelector,
) -> Tensor:
    """Logits (R, L, V) of R copies of ``ids``, copy r with token ``tokens[r]``'s embedding set to ``value``."""
    copies = tokens.numel()
    row = torch.arange(copies)

    def occlude(module: nn.Module, args: Any, out: Tensor) -> Tensor:
        out = out.expand(copies, *out.shape[1:]).clone()
        out[row, tokens.to(out.device)] = value
        return out

    handle = layer.register_forward_hook(occlude)
    try:
        expanded = {name: tensor.expand(copies, *tensor.shape[1:]) for name, tensor in kwargs.items()}
        return next_token_logits(view, view(ids.expand(copies, -1), **expanded), output)
    finally:
        handle.remove()


def _rows_per_pass(logits: Tensor, layer: nn.Module, ids: Tensor) -> int:
    """Occluded copies per forward pass under the memory budget."""
    width = getattr(layer, "embedding_dim", logits.shape[-1])
    per_row = ids.shape[1] * (logits.shape[-1] + ACTIVATIONS_PER_TOKEN * width) * logits.element_size()
    return max(1, budget(logits.device) // per_row)
