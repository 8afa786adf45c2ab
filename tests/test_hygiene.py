"""The user's model comes out exactly as it went in: after normal calls and after calls that raise."""

from __future__ import annotations

import copy
import warnings
from types import MethodType

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gradattr

pytestmark = pytest.mark.filterwarnings("ignore:Dirty is in training mode:UserWarning")


class Dirty(nn.Module):
    """Dropout and batch-norm in training mode, a frozen layer, a pre-existing .grad, a user hook."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 8)
        self.bn = nn.BatchNorm1d(8)
        self.drop = nn.Dropout(0.5)
        self.frozen = nn.Linear(8, 8)
        self.head = nn.Linear(8, 3)
        self.frozen.requires_grad_(False)
        self.fc.weight.grad = torch.full_like(self.fc.weight, 0.25)
        self.hook_calls = 0
        self.head.register_forward_hook(self._count)
        self.explode = False

    def _count(self, *_: object) -> None:
        self.hook_calls += 1

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.bn(self.fc(x)))
        h = torch.tanh(self.frozen(self.drop(h)))
        if self.explode:
            h = torch.cumprod(h, dim=1)  # no rule: raises mid-forward
        return self.head(h)


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "training": {name: m.training for name, m in model.named_modules()},
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "grad": {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()},
        "hooks": {
            name: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
            for name, m in model.named_modules()
        },
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["training"] == before["training"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), key  # bit-identical, running stats included
    for key, grad in before["grad"].items():
        assert (grad is None and after["grad"][key] is None) or torch.equal(grad, after["grad"][key]), key
    assert torch._C._len_torch_function_stack() == 0


INPUT_METHODS = [m for m in gradattr.METHODS if m not in gradattr.LAYER_METHODS]


@pytest.mark.parametrize("method", INPUT_METHODS)
def test_normal_call_restores_everything_and_warns_about_training_mode(method: str) -> None:
    model = Dirty()
    before = snapshot(model)
    x = torch.randn(5, 6)
    x_before = x.clone()
    with pytest.warns(UserWarning, match="training mode"):
        first = gradattr.attribute(model, x, method=method, target=1)
    assert_unchanged(model, before)
    assert torch.equal(x, x_before)
    second = gradattr.attribute(model, x, method=method, target=1)
    torch.testing.assert_close(first, second)  # eval mode: deterministic despite dropout
    assert model.hook_calls > 0  # the user's own hook still runs


@pytest.mark.parametrize("method", ["epsilon_lrp", "deeplift"])
def test_raising_mid_forward_restores_everything(method: str) -> None:
    model = Dirty()
    model.explode = True
    before = snapshot(model)
    with pytest.raises(gradattr.engine.UnsupportedOperationError):
        gradattr.attribute(model, torch.randn(4, 6), method=method, target=0)
    assert_unchanged(model, before)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"target": 7}, IndexError),
        ({"target": [0, 1]}, ValueError),
        ({"method": "integrated_gradients", "steps": 0}, ValueError),
        ({"method": "nope"}, ValueError),
    ],
)
def test_bad_arguments_restore_everything(kwargs: dict, error: type[Exception]) -> None:
    model = Dirty()
    before = snapshot(model)
    arguments = {"method": "deeplift", "target": 0, **kwargs}
    with pytest.raises(error):
        gradattr.attribute(model, torch.randn(4, 6), **arguments)
    assert_unchanged(model, before)


def test_layer_attribution_removes_its_hooks() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2)).eval()
    before = snapshot(model)
    tokens = torch.randint(0, 10, (2, 3))
    gradattr.attribute(model, tokens, method="deeplift", target=0, layer="0")
    assert_unchanged(model, before)
    with pytest.raises(IndexError):
        gradattr.attribute(model, tokens, method="deeplift", target=5, layer="0")
    assert_unchanged(model, before)


@pytest.mark.parametrize("method", gradattr.LAYER_METHODS)
def test_layer_reading_methods_restore_everything(method: str) -> None:
    """Grad-CAM hooks the named layer: removed afterwards, also when the target is out of range."""
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4))
    before = snapshot(model)
    x = torch.randn(2, 1, 8, 8)
    with pytest.warns(UserWarning, match="training mode"):
        gradattr.attribute(model, x, method=method, target=1, layer="2")
    assert_unchanged(model, before)
    with pytest.raises(IndexError), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gradattr.attribute(model, x, method=method, target=9, layer="2")
    assert_unchanged(model, before)


def test_deepcopy_equivalence_after_many_calls() -> None:
    """A model attributed many times computes exactly what an untouched copy computes."""
    model = Dirty().eval()
    twin = copy.deepcopy(model)
    x = torch.randn(3, 6)
    for method in INPUT_METHODS:
        gradattr.attribute(model, x, method=method, target=2)
    torch.testing.assert_close(model(x), twin(x), rtol=0, atol=0)


def _sequential_forward(self: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    for module in self:
        x = module(x)
    return x


@pytest.mark.parametrize("layer", [None, "1"])
def test_forward_rebound_on_the_instance_runs_the_view(layer: str | None) -> None:
    """``model.forward = MethodType(f, model)`` (as patching libraries do): the call's view runs f on itself,
    so eval mode and ``layer=`` hooks apply, and the result equals that of the same model without the patch.
    The model stays in training mode with dropout: a forward on the user's module would be random."""
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    patched = copy.deepcopy(plain)
    patched.forward = MethodType(_sequential_forward, patched)
    x = torch.randn(4, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("deeplift", "saliency", "integrated_gradients"):
            expected = gradattr.attribute(plain, x, method=method, target=1, layer=layer)
            got = gradattr.attribute(patched, x, method=method, target=1, layer=layer)
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert patched.training and patched.forward.__self__ is patched


class _WritesToItsInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        a.mul_(2)
        b.add_(1)
        return self.linear(a + b)


@pytest.mark.parametrize("method", ["occlusion", "shapley_sampling"])
def test_perturbation_methods_hand_the_model_copies_never_the_users_inputs(method: str) -> None:
    """Occlusion and Shapley give the model their perturbed copies uncopied; the unperturbed other input of a
    one-row batch must still be a copy, or a model writing to its inputs in place would write to the user's."""
    torch.manual_seed(0)
    a, b = torch.randn(1, 4), torch.randn(1, 4)
    before = (a.clone(), b.clone())
    gradattr.attribute(_WritesToItsInputs(), (a, b), method=method, target=0)
    assert torch.equal(a, before[0]) and torch.equal(b, before[1])
