"""Small models written the ways users write them, for the engine tests.

Each family has a plain ``nn.Sequential`` twin with the same weights, so results on the model "as written"
(functional activations, a reused module, in-place ops, residual blocks) can be compared with results on a
model every peer handles.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "F.relu": F.relu,
    "torch.relu": torch.relu,
    "Tensor.relu": lambda t: t.relu(),
    "Tensor.relu_": lambda t: t.clone().relu_(),
    "F.relu(inplace)": lambda t: F.relu(t.clone(), inplace=True),
    "F.leaky_relu": lambda t: F.leaky_relu(t, 0.2),
    "F.elu": F.elu,
    "F.elu(inplace)": lambda t: F.elu(t.clone(), 0.7, True),
    "F.selu": F.selu,
    "F.celu": lambda t: F.celu(t, 0.5),
    "F.gelu": F.gelu,
    "F.gelu(tanh)": lambda t: F.gelu(t, approximate="tanh"),
    "F.silu": F.silu,
    "F.mish": F.mish,
    "F.softplus": F.softplus,
    "F.softplus(beta)": lambda t: F.softplus(t, beta=2.0, threshold=5.0),
    "torch.sigmoid": torch.sigmoid,
    "Tensor.sigmoid_": lambda t: t.clone().sigmoid_(),
    "F.logsigmoid": F.logsigmoid,
    "F.hardsigmoid": F.hardsigmoid,
    "F.hardswish": F.hardswish,
    "F.hardtanh": F.hardtanh,
    "F.relu6": F.relu6,
    "torch.tanh": torch.tanh,
    "Tensor.tanh_": lambda t: t.clone().tanh_(),
    "F.softsign": F.softsign,
    "torch.clamp": lambda t: torch.clamp(t, min=-0.5, max=0.8),
    "Tensor.abs": lambda t: t.abs(),
}
"""Every way of calling a nonlinearity the engine must intercept."""


class FunctionalMLP(nn.Module):
    """Linear layers with a functional activation between them (no activation modules at all)."""

    def __init__(self, sizes: list[int], activation: Callable[[Tensor], Tensor], bias: bool = True) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b, bias=bias) for a, b in itertools.pairwise(sizes))
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)

    def as_sequential(self, activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
        """The same network as an ``nn.Sequential`` with one activation module per layer (shared weights)."""
        modules: list[nn.Module] = []
        for layer in self.layers[:-1]:
            modules += [layer, activation()]
        return nn.Sequential(*modules, self.layers[-1])


class ReusedReLUMLP(nn.Module):
    """One ``nn.ReLU`` module called after every hidden layer."""

    def __init__(self, mlp: FunctionalMLP) -> None:
        super().__init__()
        self.layers = mlp.layers
        self.relu = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = self.relu(layer(x))
        return self.layers[-1](x)


class InplaceReLUMLP(nn.Module):
    """``nn.ReLU(inplace=True)`` and ``x.relu_()`` whose return values are discarded."""

    def __init__(self, mlp: FunctionalMLP) -> None:
        super().__init__()
        self.layers = mlp.layers
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers[:-1]):
            x = layer(x)
            if i % 2:
                x.relu_()
            else:
                x = self.relu(x)
        return self.layers[-1](x)


class ResidualCNN(nn.Module):
    """Conv + BatchNorm + ReLU, a residual block (functional relu on the sum), adaptive average pooling."""

    def __init__(self, channels: int = 6, classes: int = 4, activation: Callable[[Tensor], Tensor] = F.relu) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, classes)
        self.activation = activation
        with torch.no_grad():  # non-trivial running statistics, as after training
            for bn in (self.bn, self.bn1):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.2, 0.2)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.bn(self.stem(x)))
        r = self.conv2(self.relu(self.bn1(self.conv1(h))))
        h = self.activation(h + r)
        return self.head(torch.flatten(self.pool(h), 1))


class TanhSoftplusMix(nn.Module):
    """tanh, softplus and a sigmoid module, mixing modules and functions."""

    def __init__(self, n_in: int = 5, hidden: int = 7, classes: int = 3) -> None:
        super().__init__()
        self.a = nn.Linear(n_in, hidden)
        self.b = nn.Linear(hidden, hidden)
        self.c = nn.Linear(hidden, hidden)
        self.sigmoid = nn.Sigmoid()
        self.out = nn.Linear(hidden, classes)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.tanh(self.a(x))
        h = F.softplus(self.b(h))
        h = self.sigmoid(self.c(h))
        return self.out(h)


class TwoInputNet(nn.Module):
    """A multi-input model: an image branch and a vector branch joined by concatenation."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.vec = nn.Linear(4, 5)
        self.head = nn.Linear(3 * 4 * 4 + 5, 3)

    def forward(self, image: Tensor, vector: Tensor) -> Tensor:
        a = F.elu(self.conv(image)).flatten(1)
        b = torch.tanh(self.vec(vector))
        return self.head(torch.cat([a, b], dim=1))


class BagOfEmbeddings(nn.Module):
    """Token ids -> embedding -> tanh of a linear layer -> mean over tokens -> logits."""

    def __init__(self, vocab: int = 20, dim: int = 6, classes: int = 2) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)
        self.proj = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, classes)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.out(torch.tanh(self.proj(self.embedding(tokens))).mean(1))


def completeness_gap(model: nn.Module, x: Tensor, baseline: Tensor, attribution: Tensor, target: int) -> Tensor:
    """Per-sample |Σ R - (S_c(x) - S_c(x̄))| relative to |S_c(x) - S_c(x̄)| + 1e-3."""
    with torch.no_grad():
        delta = model(x)[:, target] - model(baseline.expand_as(x))[:, target]
    total = attribution.reshape(x.shape[0], -1).sum(1)
    return (total - delta).abs() / (delta.abs() + 1e-3)
