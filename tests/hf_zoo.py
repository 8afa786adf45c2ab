"""Tiny HuggingFace models with random weights, built from small configs (no downloads), as users call them.

``hf_models()`` returns one :class:`HFCase` per architecture and attention implementation ("eager" and
"sdpa"): the model in eval mode, example inputs, the keyword arguments it is called with (an attention mask
with padding for text models) and the dotted name of its token embedding (``None`` for vision models).
Text inputs are right-padded (the second sample ends in 2 padding tokens): for a causal LM, explain each
sample's last real token with ``position=last_token(case)`` (the default, -1, is a padding position of the
second sample; left padding is avoided because HF's eager causal mask turns the fully masked rows of the
padding queries into NaN in float64). Everything is seeded: two calls build equal models.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import pytest
import torch
from torch import Tensor, nn

transformers = pytest.importorskip("transformers")

ATTENTION = ("eager", "sdpa")
VOCAB, LENGTH, BATCH, LABELS = 100, 6, 2, 3
IMAGE = (3, 16, 16)


class HFCase(NamedTuple):
    """One tiny model: ``model(inputs, **forward_kwargs)`` as gradattr calls it (``inputs`` positional)."""

    name: str
    model: nn.Module
    inputs: Tensor
    forward_kwargs: dict[str, Any]
    embedding: str | None


def _text() -> tuple[Tensor, dict[str, Any]]:
    """Token ids (B, T) from 1..VOCAB-1 and a mask whose second sample ends in 2 padding tokens (id 0)."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (BATCH, LENGTH), generator=generator)
    mask = torch.ones(BATCH, LENGTH, dtype=torch.long)
    mask[1, LENGTH - 2 :] = 0
    ids[1, LENGTH - 2 :] = 0
    return ids, {"attention_mask": mask}


def _pixels() -> tuple[Tensor, dict[str, Any]]:
    return torch.randn(BATCH, *IMAGE, generator=torch.Generator().manual_seed(2)), {}


_SMALL = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64}
_DECODER = {**_SMALL, "num_key_value_heads": 2, "vocab_size": VOCAB, "max_position_embeddings": 64}

# name -> (model class, config class, config arguments, inputs factory, token embedding)
_SPECS: dict[str, tuple[str, str, dict[str, Any], Callable[[], tuple[Tensor, dict[str, Any]]], str | None]] = {
    "bert": (
        "BertForSequenceClassification", "BertConfig", {**_SMALL, "vocab_size": VOCAB, "num_labels": LABELS},
        _text, "bert.embeddings.word_embeddings",
    ),
    "distilbert": (
        "DistilBertForSequenceClassification", "DistilBertConfig",
        {"vocab_size": VOCAB, "dim": 32, "n_layers": 2, "n_heads": 4, "hidden_dim": 64, "num_labels": LABELS},
        _text, "distilbert.embeddings.word_embeddings",
    ),
    "roberta": (
        "RobertaForSequenceClassification", "RobertaConfig",
        {**_SMALL, "vocab_size": VOCAB, "num_labels": LABELS, "pad_token_id": 0},
        _text, "roberta.embeddings.word_embeddings",
    ),
    "gpt2": (
        "GPT2LMHeadModel", "GPT2Config",
        {"vocab_size": VOCAB, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64,
         "bos_token_id": VOCAB - 1, "eos_token_id": VOCAB - 1},
        _text, "transformer.wte",
    ),
    "llama": ("LlamaForCausalLM", "LlamaConfig", _DECODER, _text, "model.embed_tokens"),
    "qwen2": ("Qwen2ForCausalLM", "Qwen2Config", _DECODER, _text, "model.embed_tokens"),
    "gemma": (
        "GemmaForCausalLM", "GemmaConfig", {**_DECODER, "head_dim": 8},
        _text, "model.embed_tokens",
    ),
    "vit": (
        "ViTForImageClassification", "ViTConfig",
        {**_SMALL, "image_size": IMAGE[1], "patch_size": 4, "num_channels": IMAGE[0], "num_labels": LABELS},
        _pixels, None,
    ),
    "swin": (
        "SwinForImageClassification", "SwinConfig",
        {"image_size": IMAGE[1], "patch_size": 2, "num_channels": IMAGE[0], "embed_dim": 16, "depths": [1, 1],
         "num_heads": [2, 2], "window_size": 4, "num_labels": LABELS},
        _pixels, None,
    ),
}  # fmt: skip

NAMES: tuple[str, ...] = tuple(_SPECS)
CAUSAL_LMS: tuple[str, ...] = ("gpt2", "llama", "qwen2", "gemma")


def hf_model(name: str, attention: str = "eager", seed: int = 0) -> HFCase:
    """The tiny ``name`` model (one of :data:`NAMES`) with ``attn_implementation=attention``, eval mode."""
    model_class, config_class, arguments, inputs, embedding = _SPECS[name]
    config = getattr(transformers, config_class)(**arguments, attn_implementation=attention)
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(config).eval()
    if model.config._attn_implementation != attention:
        raise AssertionError(f"{name}: asked for {attention} attention, got {model.config._attn_implementation}")
    x, kwargs = inputs()
    return HFCase(f"{name}-{attention}", model, x, kwargs, embedding)


def last_token(case: HFCase) -> Tensor:
    """LongTensor(B): each sample's last real position (for ``position=`` of a causal LM)."""
    return case.forward_kwargs["attention_mask"].sum(1) - 1


def hf_models(names: Sequence[str] = NAMES, attention: Sequence[str] = ATTENTION) -> list[HFCase]:
    """Every model of ``names`` with every attention implementation: a list of
    ``(name, model, inputs, forward_kwargs, token embedding or None)``."""
    return [hf_model(name, impl) for name in names for impl in attention]
