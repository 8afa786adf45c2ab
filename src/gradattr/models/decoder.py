"""A small causal language model: a GPT-style decoder (Radford et al. 2019) for the generation demo.

``token embedding + learned positions -> pre-norm blocks with causal self-attention (position t attends to
0..t) -> LayerNorm -> dense(vocabulary)``: next-token logits (N, T, V), no softmax. The token embedding is
``model.embedding`` (also ``model.get_input_embeddings()``, as HuggingFace models name it), so that
:func:`gradattr.generation.attribute_generation` finds it. Prompts are not padded (the model takes no mask).
"""

from __future__ import annotations

import torch
from torch import nn

from gradattr.models.transformer import ViTBlock


class TextDecoder(nn.Module):
    """``embedding(ids) + position(0..T-1) -> causal blocks -> LayerNorm -> dense(vocab_size)``."""

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int = 64,
        depth: int = 2,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        max_len: int = 512,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.position = nn.Embedding(max_len, embedding_dim)
        self.blocks = nn.ModuleList(
            ViTBlock(embedding_dim, heads, mlp_ratio, dropout, causal=True) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embedding_dim)
        self.head = nn.Linear(embedding_dim, vocab_size)

    def get_input_embeddings(self) -> nn.Embedding:
        """The token embedding (HuggingFace's name for it)."""
        return self.embedding

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``(N, T)`` -> next-token logits ``(N, T, vocab_size)``."""
        length = ids.shape[-1]
        if length > self.max_len:
            raise ValueError(f"TextDecoder takes at most {self.max_len} tokens, got {length}")
        x = self.embedding(ids) + self.position(torch.arange(length, device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def text_decoder(
    vocab_size: int,
    embedding_dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    max_len: int = 512,
    dropout: float = 0.0,
    seed: int | None = None,
) -> TextDecoder:
    """A small causal decoder over a vocabulary of ``vocab_size`` tokens; its random weights come from
    ``seed`` (without touching the global random state) when it is given."""
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        return TextDecoder(vocab_size, embedding_dim, depth, heads, max_len=max_len, dropout=dropout)
