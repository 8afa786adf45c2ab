"""Ghorbani et al.'s attack on explanations, on a small CNN trained on the real digits data."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gradattr
from gradattr.data import Dataset, load_digits
from gradattr.metrics import spearman_per_sample, topk_intersection
from gradattr.models import mnist_cnn
from gradattr.robustness import (
    SECOND_ORDER_METHODS,
    differentiable_attribution,
    explanation_attack,
    random_sign_perturbation,
    softplus_surrogate,
)
from gradattr.training import train

EPSILON = 0.1
K = 8


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


@pytest.fixture(scope="module")
def cnn(digits: Dataset) -> nn.Module:
    torch.manual_seed(0)
    model, result = train(mnist_cnn((1, 8, 8), 10), digits, epochs=3, lr=3e-3, progress=False)
    assert result.test_accuracy > 0.9
    return model


@pytest.fixture(scope="module")
def samples(digits: Dataset) -> Tensor:
    return digits.test_x[:32]


@pytest.mark.parametrize(
    ("method", "options"),
    [("saliency", {}), ("saliency", {"abs": False}), ("gradient_x_input", {}), ("integrated_gradients", {"steps": 7})],
)
def test_differentiable_maps_equal_the_engine_maps(cnn: nn.Module, samples: Tensor, method: str, options: dict) -> None:
    """Same formula as gradattr.attribute on the real network, but with a graph back to the input."""
    x = samples[:6].double()
    model = cnn.double()
    try:
        target = model(x).argmax(1)
        expected = gradattr.attribute(model, x, method=method, target=target, **options)
        point = x.clone().requires_grad_()
        maps = differentiable_attribution(model, point, target, method, **options)
        torch.testing.assert_close(maps.detach(), expected, rtol=1e-10, atol=1e-12)
        with softplus_surrogate(beta=10.0):
            smooth = differentiable_attribution(model, point, target, method, **options)
            (second,) = torch.autograd.grad(smooth.pow(2).sum(), point)
        assert second.abs().max() > 0
    finally:
        cnn.float()


def test_integrated_gradients_baseline_option(cnn: nn.Module, samples: Tensor) -> None:
    x, target = samples[:3], torch.tensor([0, 1, 2])
    expected = gradattr.attribute(cnn, x, method="integrated_gradients", target=target, baseline=-1.0, steps=5)
    maps = differentiable_attribution(cnn, x, target, "integrated_gradients", steps=5, baseline=-1.0)
    torch.testing.assert_close(maps.detach(), expected, rtol=1e-5, atol=1e-6)


def test_topk_attack_keeps_labels_and_beats_random_noise(cnn: nn.Module, samples: Tensor) -> None:
    result = explanation_attack(cnn, samples, epsilon=EPSILON, k=K, steps=15, step_size=0.025, beta=30.0)
    attack, noise = result.attack, result.random
    assert bool(attack.label_kept.all())
    assert torch.equal(result.labels, cnn(samples).argmax(1))
    assert float(attack.linf.max()) <= EPSILON + 1e-6 and float(noise.linf.max()) <= EPSILON + 1e-6
    assert float(attack.inputs.min()) >= -1 and float(attack.inputs.max()) <= 1
    # The attack moves the map clearly more than random sign noise of the same size.
    assert float(attack.topk_intersection.mean()) < float(noise.topk_intersection.mean()) - 0.05
    assert float(attack.topk_intersection.mean()) < 0.85
    # The reported numbers are those of the real network's maps.
    before = gradattr.attribute(cnn, samples, method="saliency", target=result.labels)
    after = gradattr.attribute(cnn, attack.inputs, method="saliency", target=result.labels)
    torch.testing.assert_close(result.original_maps, before)
    torch.testing.assert_close(attack.topk_intersection, topk_intersection(before, after, K))
    torch.testing.assert_close(attack.spearman, spearman_per_sample(before, after), equal_nan=True)
    assert torch.equal(attack.label_kept, cnn(attack.inputs).argmax(1) == result.labels)
    lines = str(result).splitlines()
    assert lines[0].startswith("topk attack on saliency") and [line.split()[0] for line in lines[2:]] == [
        "attack",
        "random",
    ]


def test_attack_is_batched_per_sample(cnn: nn.Module, samples: Tensor) -> None:
    """A sample's result does not depend on the other samples in the batch."""
    options = {"epsilon": EPSILON, "k": K, "steps": 5}
    whole = explanation_attack(cnn, samples[:6], **options)
    part = explanation_attack(cnn, samples[2:4], **options)
    torch.testing.assert_close(part.attack.inputs, whole.attack.inputs[2:4])
    torch.testing.assert_close(part.attack.topk_intersection, whole.attack.topk_intersection[2:4])


def test_mass_center_attack_moves_the_centre_more_than_noise(cnn: nn.Module, samples: Tensor) -> None:
    result = explanation_attack(cnn, samples, epsilon=EPSILON, objective="mass_center", steps=10, step_size=0.025)

    def centre(maps: Tensor) -> Tensor:
        weights = maps.abs().sum(1).flatten(1)
        weights = weights / weights.sum(1, keepdim=True)
        rows, columns = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
        return torch.stack([weights @ rows.flatten(), weights @ columns.flatten()], dim=1)

    def shift(inputs: Tensor) -> Tensor:
        maps = gradattr.attribute(cnn, inputs, method="saliency", target=result.labels)
        return (centre(maps) - centre(result.original_maps)).norm(dim=1)

    assert bool(result.attack.label_kept.all())
    assert float(shift(result.attack.inputs).mean()) > 1.5 * float(shift(result.random.inputs).mean())


def test_integrated_gradients_attack(cnn: nn.Module, samples: Tensor) -> None:
    x = samples[:8]
    options = {"steps": 4}
    result = explanation_attack(
        cnn, x, epsilon=EPSILON, method="integrated_gradients", k=K, steps=5, method_options=options
    )
    assert bool(result.attack.label_kept.all())
    expected = gradattr.attribute(cnn, x, method="integrated_gradients", target=result.labels, **options)
    torch.testing.assert_close(result.original_maps, expected)
    assert float(result.attack.topk_intersection.mean()) < 1.0


def test_same_seed_same_result(cnn: nn.Module, samples: Tensor) -> None:
    first = explanation_attack(cnn, samples[:8], epsilon=EPSILON, steps=4, seed=3)
    second = explanation_attack(cnn, samples[:8], epsilon=EPSILON, steps=4, seed=3)
    other = random_sign_perturbation(samples[:8], EPSILON, seed=4)
    assert torch.equal(first.attack.inputs, second.attack.inputs)
    assert torch.equal(first.random.inputs, second.random.inputs)
    assert not torch.equal(first.random.inputs, other)
    assert torch.equal(first.random.inputs, random_sign_perturbation(samples[:8], EPSILON, seed=3))


def test_random_baseline_is_sign_noise_of_size_epsilon() -> None:
    x = torch.zeros(3, 1, 4, 4)
    noisy = random_sign_perturbation(x, 0.25, seed=0)
    assert set(noisy.unique().tolist()) == {-0.25, 0.25}
    clipped = random_sign_perturbation(torch.ones(2, 5), 0.25, bounds=(-1.0, 1.0), seed=0)
    assert float(clipped.max()) <= 1.0


class Flaky(nn.Module):
    """A small ReLU net with dropout and batch-norm that raises on its ``fail_at``-th call."""

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Dropout(0.5), nn.Linear(12, 3)
        )
        self.fail_at, self.calls = fail_at, 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("deliberate failure")
        return self.net(x)


def state(model: nn.Module) -> tuple:
    return (
        [m.training for m in model.modules()],
        [p.requires_grad for p in model.parameters()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def assert_same_state(model: nn.Module, before: tuple) -> None:
    modes, flags, tensors = state(model)
    assert modes == before[0] and flags == before[1]
    for name, value in before[2].items():
        assert torch.equal(tensors[name], value), name
    assert torch._C._len_torch_function_stack() == 0
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("fail_at", [None, 6])
def test_model_comes_back_unchanged(fail_at: int | None) -> None:
    torch.manual_seed(0)
    model = Flaky(fail_at).train()
    model.net[1].weight.requires_grad_(False)
    before = state(model)
    x = torch.rand(4, 1, 4, 4) * 2 - 1
    with pytest.warns(UserWarning, match="training mode"):
        if fail_at is None:
            explanation_attack(model, x, epsilon=0.1, steps=3)
        else:
            with pytest.raises(RuntimeError, match="deliberate"):
                explanation_attack(model, x, epsilon=0.1, steps=3)
    assert_same_state(model, before)


def test_bad_arguments(cnn: nn.Module, samples: Tensor) -> None:
    x = samples[:2]
    for epsilon in (0, -0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="epsilon must be a finite number > 0"):
            explanation_attack(cnn, x, epsilon=epsilon)
    with pytest.raises(ValueError, match=r"no second-order path.*saliency, gradient_x_input"):
        explanation_attack(cnn, x, epsilon=0.1, method="deeplift")
    with pytest.raises(ValueError, match="no second-order path"):
        differentiable_attribution(cnn, x, torch.tensor([0, 1]), "epsilon_lrp")
    with pytest.raises(TypeError, match="takes the options steps, baseline, not batch_size"):
        differentiable_attribution(cnn, x, torch.tensor([0, 1]), "integrated_gradients", batch_size=4)
    with pytest.raises(ValueError, match="unknown objective"):
        explanation_attack(cnn, x, epsilon=0.1, objective="targeted")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"k must be an int in 1\.\.64"):
        explanation_attack(cnn, x, epsilon=0.1, k=65)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        explanation_attack(cnn, x, epsilon=0.1, steps=0)
    with pytest.raises(ValueError, match="outside bounds"):
        explanation_attack(cnn, x * 3, epsilon=0.1)
    with pytest.raises(ValueError, match="bounds must be None or two finite numbers"):
        explanation_attack(cnn, x, epsilon=0.1, bounds=(1.0, -1.0))
    with pytest.raises(TypeError, match="unknown option"):
        explanation_attack(cnn, x, epsilon=0.1, method_options={"window": 2})
    assert SECOND_ORDER_METHODS == ("saliency", "gradient_x_input", "integrated_gradients")
    assert set(SECOND_ORDER_METHODS) <= set(gradattr.METHODS)


def test_without_bounds_the_attack_may_leave_the_data_range() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.full((2, 6), 0.99)
    result = explanation_attack(model, x, epsilon=0.5, bounds=None, steps=3, k=2)
    assert float(result.attack.linf.max()) <= 0.5 + 1e-6
    assert float((result.random.inputs - x).abs().min()) == pytest.approx(0.5)
    assert F.relu(torch.zeros(1)).item() == 0.0  # the surrogate is gone after the call
