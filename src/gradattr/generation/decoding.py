"""Greedy continuation of a prompt, and the next-token logits a causal language model returns.

A HuggingFace model (it has ``generate``) continues the prompt with its own ``generate(do_sample=False)``,
which reuses the key/value cache; any other module mapping token ids (B, T) to logits (B, T, V) is called on
the whole sequence once per new token. A sample stops at its first end-of-sequence token: the positions
after it are padding (mask 0) and are not explained.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradattr.methods._model_call import OutputSelector, _element


def next_token_logits(model: nn.Module, out: Any, output: OutputSelector) -> Tensor:
    """The logits tensor (B, T, V) of a model output: the output itself, its ``.logits`` (a ``ModelOutput``
    or dict), or what ``output`` (a key, index or callable, as in :func:`gradattr.attribute`) picks."""
    if callable(output):
        value = output(out)
    elif isinstance(out, Tensor) and output is None:
        value = out
    else:
        value, _ = _element(type(model).__name__, out, output)
    if not isinstance(value, Tensor) or value.dim() != 3:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(
            f"{type(model).__name__} must return next-token logits (B, T, V) (or a ModelOutput with .logits); "
            f"got {shape}; pass output= to pick them"
        )
    return value


def position_ids(attention_mask: Tensor) -> Tensor:
    """Positions counted over real tokens only, ``cumsum(mask) - 1`` (0 at left padding), as HuggingFace's
    ``generate`` gives a left-padded batch: without them a padded sample would see shifted positions."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def accepts(model: nn.Module, keyword: str) -> bool:
    """Whether ``model.forward`` takes the keyword argument ``keyword`` (``attention_mask``, ``position_ids``:
    HuggingFace decoders take both; a plain module mapping ids to logits may take neither)."""
    parameters = inspect.signature(model.forward).parameters
    return keyword in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


def sequence_kwargs(model: nn.Module, attention_mask: Tensor) -> dict[str, Tensor]:
    """The mask and, where it has padding, the positions of a sequence, for the keywords ``model`` takes."""
    kwargs = {}
    if accepts(model, "attention_mask"):
        kwargs["attention_mask"] = attention_mask
        if accepts(model, "position_ids") and not bool(attention_mask.all()):
            kwargs["position_ids"] = position_ids(attention_mask)
    return kwargs


@dataclass(frozen=True)
class Continuation:
    """Prompt plus continuation: ``ids`` (B, P + G), ``attention_mask`` (B, P + G), and ``generated``
    BoolTensor(B, G): True where position P + i holds a generated (explained) token."""

    ids: Tensor
    attention_mask: Tensor
    generated: Tensor


def continuation(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    generated_ids: Tensor | None,
    max_new_tokens: int,
    eos_token_id: int | None,
    output: OutputSelector,
) -> Continuation:
    """The sequence to explain: ``input_ids`` followed by ``generated_ids``, or by up to ``max_new_tokens``
    greedy tokens (stopping per sample after ``eos_token_id``, default the model's ``config.eos_token_id``)."""
    if generated_ids is None:
        with torch.no_grad():
            generated_ids = _greedy(model, input_ids, attention_mask, max_new_tokens, eos_token_id, output)
    generated = torch.ones_like(generated_ids, dtype=torch.bool)
    if eos_token_id is not None and generated_ids.shape[1] > 1:  # after a sample's first EOS: padding
        is_eos = (generated_ids == eos_token_id).long()
        generated = (is_eos.cumsum(1) - is_eos) == 0
    ids = torch.cat([input_ids, generated_ids.to(input_ids.device)], dim=1)
    mask = torch.cat([attention_mask, generated.to(attention_mask)], dim=1)
    return Continuation(ids, mask, generated)


def _greedy(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Tensor,
    max_new_tokens: int,
    eos_token_id: int | None,
    output: OutputSelector,
) -> Tensor:
    """LongTensor(B, G): the argmax token at each step (G <= max_new_tokens: stops once every sample has
    emitted ``eos_token_id``)."""
    prompt = input_ids.shape[1]
    if hasattr(model, "generate") and hasattr(model, "config") and output is None:
        pad = eos_token_id if eos_token_id is not None else 0
        sequences = model.generate(
            input_ids, attention_mask=attention_mask, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            eos_token_id=eos_token_id, pad_token_id=pad,
        )  # fmt: skip
        return sequences[:, prompt:]
    ids, mask = input_ids, attention_mask
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for _ in range(max_new_tokens):
        logits = next_token_logits(model, model(ids, **sequence_kwargs(model, mask)), output)
        token = logits[:, -1].argmax(-1)
        if eos_token_id is not None:
            token = torch.where(done, torch.full_like(token, eos_token_id), token)
            done |= token == eos_token_id
        ids = torch.cat([ids, token[:, None]], dim=1)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        if bool(done.all()):
            break
    return ids[:, prompt:]
