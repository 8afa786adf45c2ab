"""The softplus surrogate: every ReLU call, however written, becomes softplus_β; nothing else changes."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradattr.robustness import softplus_surrogate

Activation = Callable[[Tensor], Tensor]


class AllReluSpellings(nn.Module):
    """ReLU as a reused module, ``F.relu``, ``torch.relu``, ``Tensor.relu``, ``relu_`` and ``F.relu(inplace)``.

    ``act`` replaces every one of them, to build the hand-written softplus twin.
    """

    def __init__(self, act: Activation | None = None) -> None:
        super().__init__()
        self.act = act
        self.first, self.second, self.third = nn.Linear(5, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.relu = nn.ReLU()
        self.conv = nn.Conv1d(1, 2, 3, padding=1)

    def _activate(self, spelling: Activation, z: Tensor) -> Tensor:
        return self.act(z) if self.act is not None else spelling(z)

    def forward(self, x: Tensor) -> Tensor:
        h = self._activate(self.relu, self.first(x))
        h = self._activate(self.relu, self.second(h) + h)  # the same module again
        h = self._activate(F.relu, h - 0.1)
        h = self._activate(torch.relu, h * 2 - 0.3)
        h = self._activate(lambda t: t.relu(), h - 0.2)
        h = h + 0.05
        h = self._activate(lambda t: t.relu_(), h)
        c = self.conv(h.unsqueeze(1)).flatten(1)[:, :8]
        h = self._activate(lambda t: F.relu(t, inplace=True), c - 0.1)
        return self.third(h)


def twins(beta: float) -> tuple[nn.Module, nn.Module]:
    """The ReLU model and the same weights with every ReLU written as softplus_β by hand."""
    torch.manual_seed(0)
    model = AllReluSpellings().double()
    twin = AllReluSpellings(lambda z: F.softplus(z, beta=beta, threshold=20.0)).double()
    twin.load_state_dict(model.state_dict())
    return model, twin


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "flags": [p.requires_grad for p in model.parameters()],
        "modules": [type(m) for m in model.modules()],
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["modes"] == before["modes"] and after["flags"] == before["flags"]
    assert after["modules"] == before["modules"] and after["hooks"] == before["hooks"]
    for name, value in before["state"].items():
        assert torch.equal(after["state"][name], value), name
    assert torch._C._len_torch_function_stack() == 0


def test_every_relu_spelling_becomes_exactly_softplus() -> None:
    model, twin = twins(beta=2.0)
    x = torch.randn(6, 5, dtype=torch.float64)
    with softplus_surrogate(beta=2.0):
        surrogate = model(x)
    torch.testing.assert_close(surrogate, twin(x), rtol=0, atol=1e-12)
    assert (surrogate - model(x)).abs().max() > 1e-2  # it really is not the ReLU network


def test_large_beta_matches_the_relu_outputs() -> None:
    model, _ = twins(beta=1.0)
    x = torch.randn(64, 5, dtype=torch.float64)
    plain = model(x)
    for beta, tolerance in ((1e2, 0.2), (1e4, 2e-3), (1e6, 2e-5)):
        with softplus_surrogate(beta=beta):
            smooth = model(x)
        assert (smooth - plain).abs().max() < tolerance, beta  # |softplus_β - relu| <= log(2)/β per unit


def test_second_derivative_is_nonzero_and_that_of_the_softplus_network() -> None:
    """ReLU nets have zero Hessian a.e.; the surrogate's equals the hand-written softplus net's."""
    model, twin = twins(beta=3.0)
    x = torch.randn(4, 5, dtype=torch.float64)
    direction = torch.randn_like(x)

    def hessian_vector(net: nn.Module, surrogate: bool) -> Tensor:
        point = x.clone().requires_grad_()
        with softplus_surrogate(beta=3.0) if surrogate else torch.enable_grad():
            gradient = torch.autograd.grad(net(point)[:, 0].sum(), point, create_graph=True)[0]
            return torch.autograd.grad((gradient * direction).sum(), point)[0]

    assert hessian_vector(model, surrogate=False).abs().max() == 0
    smooth = hessian_vector(model, surrogate=True)
    assert smooth.abs().max() > 1e-3
    torch.testing.assert_close(smooth, hessian_vector(twin, surrogate=False), rtol=1e-10, atol=1e-12)


def test_other_nonlinearities_are_left_alone() -> None:
    x = torch.randn(3, 7)
    with softplus_surrogate(beta=1.0):
        values = [torch.tanh(x), torch.sigmoid(x), F.leaky_relu(x, 0.1), F.elu(x), F.relu6(x), x.clamp(min=0)]
        rectified = F.relu(x)
    expected = [torch.tanh(x), torch.sigmoid(x), F.leaky_relu(x, 0.1), F.elu(x), F.relu6(x), x.clamp(min=0)]
    for value, reference in zip(values, expected, strict=True):
        assert torch.equal(value, reference)
    torch.testing.assert_close(rectified, F.softplus(x))


def test_inplace_relu_keeps_writing_in_place() -> None:
    z = torch.randn(5)
    original = z.clone()
    with softplus_surrogate(beta=4.0):
        out = z.relu_()
    assert out is z
    torch.testing.assert_close(z, F.softplus(original, beta=4.0))
    leaf = torch.randn(5, requires_grad=True)
    h = leaf * 1.0
    with softplus_surrogate(beta=4.0):
        h.relu_()
    expected = F.softplus(leaf.detach(), beta=4.0)
    torch.testing.assert_close(h.detach(), expected)
    (gradient,) = torch.autograd.grad(h.sum(), leaf)
    torch.testing.assert_close(gradient, torch.sigmoid(4.0 * leaf.detach()))


def test_relu_recurrent_network_is_unrolled_with_softplus() -> None:
    torch.manual_seed(0)
    rnn = nn.RNN(3, 4, nonlinearity="relu", batch_first=True)
    x = torch.randn(2, 5, 3)
    with softplus_surrogate(beta=2.0):
        output, last = rnn(x)
    h = torch.zeros(2, 4)
    steps = []
    for t in range(5):
        z = x[:, t] @ rnn.weight_ih_l0.T + rnn.bias_ih_l0 + h @ rnn.weight_hh_l0.T + rnn.bias_hh_l0
        h = F.softplus(z, beta=2.0)
        steps.append(h)
    torch.testing.assert_close(output, torch.stack(steps, dim=1))
    torch.testing.assert_close(last[0], h)


def test_model_is_untouched_also_when_the_forward_raises() -> None:
    model, _ = twins(beta=1.0)
    model.train()
    model.second.weight.requires_grad_(False)
    before = snapshot(model)
    x = torch.randn(2, 5, dtype=torch.float64)
    plain = model(x)
    with softplus_surrogate(beta=5.0):
        model(x)
    assert_unchanged(model, before)
    with pytest.raises(RuntimeError), softplus_surrogate(beta=5.0):
        model(torch.randn(2, 4, dtype=torch.float64))  # wrong width: the first linear layer raises
    assert_unchanged(model, before)
    assert torch.equal(model(x), plain)  # ReLU again once the context is left


@pytest.mark.parametrize("beta", [0, -1.0, math.nan, math.inf, True, "10"])
def test_invalid_beta_is_refused(beta: object) -> None:
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        softplus_surrogate(beta=beta)  # type: ignore[arg-type]
