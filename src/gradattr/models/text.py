"""Text classifiers over word embeddings, as in the paper's text experiments (Ancona et al.,
ICLR 2018, Sec. 5): a CNN (Kim, 2014) and an LSTM (Hochreiter & Schmidhuber, 1997).

Both take int64 token ids ``(N, L)`` and expose their ``nn.Embedding`` as the attribute
``embedding``: token-level attribution is computed on the embedding output ``(N, L, E)`` and
summed over ``E``, since gradients cannot be taken with respect to integer ids.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class TextCNN(nn.Module):
    """``embedding -> [conv1d(width k) -> ReLU -> max over time] for each k -> concat
    [-> dropout] -> dense(num_classes)``.

    Input int64 ``(N, L)`` with ``L >= max(kernel_sizes)``; output logits ``(N, num_classes)``.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embedding_dim: int = 64,
        kernel_sizes: Sequence[int] = (3, 4, 5),
        num_filters: int = 64,
        dropout: float = 0.0,
        padding_idx: int = 0,
    ) -> None:
        super().__init__()
        self.kernel_sizes = tuple(kernel_sizes)
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, num_filters, k) for k in self.kernel_sizes)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(num_filters * len(self.kernel_sizes), num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``(N, L)`` -> logits ``(N, num_classes)``."""
        if ids.shape[-1] < max(self.kernel_sizes):
            raise ValueError(
                f"TextCNN needs sequences of at least {max(self.kernel_sizes)} tokens, got {ids.shape[-1]}"
            )
        embedded = self.embedding(ids).transpose(1, 2)  # (N, E, L)
        pooled = [F.relu(conv(embedded)).amax(dim=2) for conv in self.convs]
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))


class TextLSTM(nn.Module):
    """``embedding -> LSTM -> last hidden state [-> dropout] -> dense(num_classes)``.

    Sequences are expected left-padded (as :class:`gradattr.data.TextDataset` stores them), so the
    last time step is the last real token. Input int64 ``(N, L)``; output logits.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embedding_dim: int = 64,
        hidden_size: int = 64,
        dropout: float = 0.0,
        padding_idx: int = 0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, batch_first=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(hidden_size, num_classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids ``(N, L)`` -> logits ``(N, num_classes)``."""
        _, (hidden, _) = self.lstm(self.embedding(ids))
        return self.fc(self.dropout(hidden[-1]))


def text_cnn(
    vocab_size: int,
    num_classes: int = 2,
    embedding_dim: int = 64,
    kernel_sizes: Sequence[int] = (3, 4, 5),
    num_filters: int = 64,
    dropout: float = 0.0,
) -> TextCNN:
    """Text CNN over a vocabulary of ``vocab_size`` (id 0 = padding)."""
    return TextCNN(
        vocab_size,
        num_classes,
        embedding_dim=embedding_dim,
        kernel_sizes=kernel_sizes,
        num_filters=num_filters,
        dropout=dropout,
    )


def text_lstm(
    vocab_size: int, num_classes: int = 2, embedding_dim: int = 64, hidden_size: int = 64, dropout: float = 0.0
) -> TextLSTM:
    """Text LSTM over a vocabulary of ``vocab_size`` (id 0 = padding)."""
    return TextLSTM(vocab_size, num_classes, embedding_dim=embedding_dim, hidden_size=hidden_size, dropout=dropout)
