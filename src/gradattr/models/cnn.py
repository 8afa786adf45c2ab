"""The paper's image CNNs (Ancona et al., ICLR 2018, Sec. 5 and appendix).

* MNIST CNN: two 3x3 convolutions (32, 64 filters), 2x2 max-pooling, a dense layer of 128 and the
  output layer.
* CIFAR-10 CNN: two blocks of two 3x3 convolutions (32 then 64 filters) each followed by 2x2
  max-pooling, a dense layer of 512 and the output layer. All its convolutions pad to keep
  the size, so it also fits 8x8 inputs.

Nonlinearities are applied functionally (``torch.relu``/``torch.tanh`` in ``forward``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gradattr.models.activation import Activation, activation_function


class MnistCNN(nn.Module):
    """``conv(32) -> act -> conv(64) -> act -> maxpool(2) [-> dropout] -> dense(128) -> act
    [-> dropout] -> dense(num_classes)``. Input ``(N, C, H, W)`` with H, W >= 6; output logits."""

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, activation: Activation = "relu", dropout: float = 0.0
    ) -> None:
        super().__init__()
        channels, height, width = _image_shape(input_shape)
        if min(height, width) < 6:
            raise ValueError(f"MnistCNN needs images of at least 6x6, got {height}x{width}")
        self.input_shape = (channels, height, width)
        self.activation = activation
        self._act = activation_function(activation)
        self.conv1 = nn.Conv2d(channels, 32, kernel_size=3)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc1 = nn.Linear(64 * ((height - 4) // 2) * ((width - 4) // 2), 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> logits ``(N, num_classes)``."""
        x = self._act(self.conv1(x))
        x = F.max_pool2d(self._act(self.conv2(x)), 2)
        x = self.dropout(torch.flatten(x, 1))
        return self.fc2(self.dropout(self._act(self.fc1(x))))

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"


class Cifar10CNN(nn.Module):
    """``[conv(32) -> act -> conv(32) -> act -> maxpool] -> [same with 64] [-> dropout] ->
    dense(512) -> act [-> dropout] -> dense(num_classes)``, all convolutions 3x3 with padding 1.
    Input ``(N, C, H, W)`` with H, W >= 4; output logits."""

    def __init__(
        self, input_shape: Sequence[int], num_classes: int, activation: Activation = "relu", dropout: float = 0.0
    ) -> None:
        super().__init__()
        channels, height, width = _image_shape(input_shape)
        if min(height, width) < 4:
            raise ValueError(f"Cifar10CNN needs images of at least 4x4, got {height}x{width}")
        self.input_shape = (channels, height, width)
        self.activation = activation
        self._act = activation_function(activation)
        self.conv1 = nn.Conv2d(channels, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.conv4 = nn.Conv2d(64, 64, kernel_size=3, padding=1)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc1 = nn.Linear(64 * (height // 4) * (width // 4), 512)
        self.fc2 = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> logits ``(N, num_classes)``."""
        x = F.max_pool2d(self._act(self.conv2(self._act(self.conv1(x)))), 2)
        x = F.max_pool2d(self._act(self.conv4(self._act(self.conv3(x)))), 2)
        x = self.dropout(torch.flatten(x, 1))
        return self.fc2(self.dropout(self._act(self.fc1(x))))

    def extra_repr(self) -> str:
        return f"activation={self.activation!r}"


def mnist_cnn(
    input_shape: Sequence[int] = (1, 28, 28),
    num_classes: int = 10,
    activation: Activation = "relu",
    dropout: float = 0.0,
) -> MnistCNN:
    """The paper's MNIST CNN for images of ``input_shape`` ``(C, H, W)``."""
    return MnistCNN(input_shape, num_classes, activation=activation, dropout=dropout)


def cifar10_cnn(
    input_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    activation: Activation = "relu",
    dropout: float = 0.0,
) -> Cifar10CNN:
    """The paper's CIFAR-10 CNN for images of ``input_shape`` ``(C, H, W)``."""
    return Cifar10CNN(input_shape, num_classes, activation=activation, dropout=dropout)


def _image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValueError(f"expected an image shape (C, H, W), got {tuple(input_shape)}")
    channels, height, width = (int(s) for s in input_shape)
    return channels, height, width
