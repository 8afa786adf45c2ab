"""A small ResNet-style CNN (He et al., 2016): residual blocks with BatchNorm and global average
pooling. Not one of the paper's MNIST/CIFAR networks, but the shape of model users bring; it
exercises attribution through skip connections and normalisation layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    """``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))`` with 3x3 convolutions; the shortcut
    is a 1x1 convolution + BatchNorm when the stride or width changes, else the identity."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` -> ``(N, out_channels, ceil(H/stride), ceil(W/stride))``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stem ``conv3x3 -> BN -> ReLU``, then stages of residual blocks whose width doubles (and
    resolution halves) from stage to stage, adaptive average pooling and a linear output layer.
    Input ``(N, C, H, W)`` of any size; output logits ``(N, num_classes)``."""

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, width: int = 16, stages: int = 3, blocks_per_stage: int = 1
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ValueError(f"expected an image shape (C, H, W), got {tuple(input_shape)}")
        self.input_shape = tuple(int(s) for s in input_shape)
        self.stem = nn.Sequential(
            nn.Conv2d(self.input_shape[0], width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        )
        blocks: list[nn.Module] = []
        channels = width
        for stage in range(stages):
            out_channels = width * 2**stage
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(ResidualBlock(channels, out_channels, stride))
                channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> logits ``(N, num_classes)``."""
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def small_resnet(
    input_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    width: int = 16,
    stages: int = 3,
    blocks_per_stage: int = 1,
) -> SmallResNet:
    """A small ResNet for images of ``input_shape`` ``(C, H, W)``."""
    return SmallResNet(input_shape, num_classes, width=width, stages=stages, blocks_per_stage=blocks_per_stage)
