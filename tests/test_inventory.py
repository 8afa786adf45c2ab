"""The engine reports the nonlinearities a model actually calls (the applicability of Props. 1–2 comes from
it, not from a flag): functional, reused and module ReLUs with max pooling are rectifiers only; a Tanh, a
hand-written GELU, attention or a norm are not; recurrent and unknown ops are named."""

from __future__ import annotations

import torch
from torch import nn

from gradattr.engine import inventory
from zoo_modern import BLOCKS, NewGELU

from zoo import FunctionalMLP, ReusedReLUMLP


def test_relu_networks_are_rectifiers_only_however_written() -> None:
    mlp = FunctionalMLP([4, 6, 5, 3], torch.relu)
    cnn = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 2))
    for model, x in ((mlp, torch.randn(2, 4)), (ReusedReLUMLP(mlp), torch.randn(2, 4)), (cnn, torch.randn(2, 1, 8, 8))):
        found = inventory(model, x)
        assert found.rectifiers_only, found.calls
    assert inventory(cnn, torch.randn(2, 1, 8, 8)).calls == {
        "torch.nn.functional.relu": 1,
        "torch.nn.functional.max_pool2d": 1,
    }
    reused = inventory(ReusedReLUMLP(mlp), torch.randn(2, 4))
    assert reused.calls == {"torch.nn.functional.relu": 2}  # one module, two calls


def test_other_nonlinearities_are_seen_and_named() -> None:
    tanh = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    assert inventory(tanh, torch.randn(2, 3)).calls == {"torch.tanh": 1}
    gelu = nn.Sequential(nn.Linear(3, 4), NewGELU(), nn.Linear(4, 2))
    assert not inventory(gelu, torch.randn(2, 3)).rectifiers_only
    lstm = nn.LSTM(3, 4, batch_first=True)
    found = inventory(nn.Sequential(lstm), torch.randn(2, 5, 3))
    assert found.kinds.get("torch.lstm") == "recurrent"
    torch.manual_seed(0)
    model, x = BLOCKS["llama"]()
    found = inventory(model, x)
    assert found.of_kind("softmax") == {"torch.softmax": 1}
    assert found.of_kind("elementwise")["torch.nn.functional.silu"] == 1
    assert not found.rectifiers_only


def test_unknown_ops_are_listed_not_raised() -> None:
    class Cumulative(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cumprod(x, dim=1)

    found = inventory(nn.Sequential(nn.Linear(3, 4), Cumulative()), torch.randn(2, 3))
    assert found.kinds == {"torch.cumprod": "unknown"}
    assert not found.rectifiers_only
