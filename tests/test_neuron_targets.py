"""Neuron and channel targets, ``target=(layer, unit)``: every method explains the unit exactly as it explains
the output of the model truncated after that layer with the unit as its output."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

import gradattr


class Net(nn.Module):
    """A CNN written with functional activations, a reused module and a tail the neuron never needs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.features = nn.Conv2d(4, 5, 3)
        self.pool = nn.AvgPool2d(2)
        self.head = nn.Linear(5 * 2 * 2, 3)

    def trunk(self, x: Tensor) -> Tensor:
        return torch.tanh(self.features(torch.relu(self.conv(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.pool(self.trunk(x)).flatten(1))


class Unit(nn.Module):
    """The reference: the model truncated after ``features`` (before the tanh), its output the unit summed."""

    def __init__(self, net: Net, unit: tuple[int, ...], layer: str) -> None:
        super().__init__()
        self.net, self.unit, self.layer = net, unit, layer

    def forward(self, x: Tensor) -> Tensor:
        a = self.net.features(torch.relu(self.net.conv(x)))
        return a[(slice(None), *self.unit)].reshape(len(x), -1).sum(1)


METHODS: list[tuple[str, dict[str, Any]]] = [
    ("saliency", {}),
    ("gradient_x_input", {}),
    ("integrated_gradients", {"steps": 16, "gap_tolerance": None}),
    ("deeplift", {}),
    ("epsilon_lrp", {}),
    ("occlusion", {"window": (1, 3, 3)}),
    ("shapley_sampling", {"samples": 3}),
    ("smoothgrad", {"samples": 4}),
    ("guided_backprop", {}),
    ("deconvnet", {}),
    ("gradient_shap", {"samples": 4}),
    ("deeplift_shap", {}),
    ("gradcam", {"layer": "conv", "upsample": False}),
]


@pytest.fixture(scope="module")
def net() -> Net:
    torch.manual_seed(0)
    return Net().double().eval()


@pytest.mark.parametrize(("method", "options"), METHODS, ids=[m for m, _ in METHODS])
@pytest.mark.parametrize("unit", [(2,), (1, 2, 3)], ids=["channel", "activation"])
def test_a_neuron_target_equals_the_truncated_model(net: Net, method: str, options: dict[str, Any],
                                                    unit: tuple[int, ...]) -> None:  # fmt: skip
    """``features`` is called on the pre-activation: its output (before the model's tanh) is the unit."""
    x = torch.randn(3, 1, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    target = ("features", unit[0] if len(unit) == 1 else unit)
    ours = gradattr.attribute(net, x, method=method, target=target, **options)
    reference = gradattr.attribute(Unit(net, unit, "features"), x, method=method, **_for_reference(options))
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-13)


def _for_reference(options: dict[str, Any]) -> dict[str, Any]:
    return {**options, "layer": "net.conv"} if "layer" in options else options


def test_the_layer_may_be_given_as_a_module_and_the_tail_is_not_evaluated(net: Net) -> None:
    class Broken(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = net

        def forward(self, x: Tensor) -> Tensor:
            self.body(x)
            raise AssertionError("the forward pass must stop at the target layer")

    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    by_module = gradattr.attribute(Broken(), x, method="deeplift", target=(net.features, 0))
    by_name = gradattr.attribute(net, x, method="deeplift", target=("features", 0))
    torch.testing.assert_close(by_module, by_name, rtol=0, atol=0)
    assert not net.features._forward_hooks, "the user's module must not keep a hook"


def test_a_token_unit_of_a_transformer_layer() -> None:
    torch.manual_seed(2)
    encoder = nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).double().eval()
    model = nn.Sequential(nn.Linear(4, 8), encoder, nn.Flatten(), nn.Linear(5 * 8, 2)).double().eval()
    x = torch.randn(2, 5, 4, dtype=torch.float64)
    ours = gradattr.attribute(model, x, method="deeplift", target=("1", (3, 6)))
    truncated = nn.Sequential(model[0], model[1])

    class Token(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = truncated

        def forward(self, x: Tensor) -> Tensor:
            return self.body(x)[:, 3, 6]

    torch.testing.assert_close(ours, gradattr.attribute(Token(), x, method="deeplift"), rtol=0, atol=1e-13)
    gap = ours.sum((1, 2)) - (Token()(x) - Token()(torch.zeros_like(x)))
    assert float(gap.abs().max()) < 1e-10


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        (("features", 9), IndexError, r"unit \(9,\) is out of range for the output of layer 'features', which has"),
        (("nowhere", 1), ValueError, "layer 'nowhere' is not a submodule; its submodules: conv, features, pool, head"),
        (("features", 1.5), TypeError, "an int or a tuple of ints"),
        (("features",), ValueError, r"a neuron target is \(layer, unit\)"),
    ],
)
def test_a_wrong_neuron_target_is_named(net: Net, target: Any, error: type[Exception], message: str) -> None:
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    with pytest.raises(error, match=message):
        gradattr.attribute(net, x, method="saliency", target=target)


def test_output_and_position_do_not_apply_to_a_neuron(net: Net) -> None:
    with pytest.raises(ValueError, match="output= and position= do not apply"):
        gradattr.attribute(net, torch.randn(2, 1, 8, 8, dtype=torch.float64), target=("features", 1), output=0)


def test_reading_an_attributed_layer_runs_the_model_only_up_to_it() -> None:
    """With ``layer=``, the pass that reads the layer's output stops at the layer (as a neuron target's pass
    does): for a token embedding nothing after it runs, so the head runs once, in the gradient pass."""
    model = torch.nn.Sequential(torch.nn.Embedding(20, 4), torch.nn.Flatten(), torch.nn.Linear(12, 3))
    calls: list[int] = []
    model[2].register_forward_hook(lambda module, args, out: calls.append(out.shape[0]))
    ids = torch.tensor([[1, 2, 3], [4, 5, 6]])
    r = gradattr.attribute(model, ids, "saliency", target=1, layer="0", abs=False)
    assert calls == [2]
    torch.testing.assert_close(r, model[2].weight[1].detach().view(3, 4).expand(2, 3, 4))
