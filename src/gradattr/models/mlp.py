"""The paper's MNIST multilayer perceptron (Ancona et al., ICLR 2018, Sec. 5 and appendix):
two hidden layers of 512 units, with ReLU or Tanh."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from gradattr.models.activation import Activation, activation_module


class MLP(nn.Module):
    """Flatten, then ``Linear -> activation [-> Dropout]`` per hidden layer, then a linear output.

    Activations are ``nn.ReLU``/``nn.Tanh`` modules. Input ``(N, *input_shape)``, output logits
    ``(N, num_classes)`` (no softmax).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (512, 512),
        activation: Activation = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_shape = tuple(input_shape)
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(self.input_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), activation_module(activation)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, *input_shape)`` -> logits ``(N, num_classes)``."""
        return self.layers(x)


def mnist_mlp(
    input_shape: Sequence[int] = (1, 28, 28),
    num_classes: int = 10,
    activation: Activation = "relu",
    hidden: Sequence[int] = (512, 512),
    dropout: float = 0.0,
) -> MLP:
    """MNIST MLP of the paper: 512-512 hidden units, ``activation`` ``"relu"`` or ``"tanh"``.

    ``input_shape`` and ``num_classes`` adapt it to other images, e.g. ``(1, 8, 8)`` digits.
    """
    return MLP(input_shape, num_classes, hidden=hidden, activation=activation, dropout=dropout)
