"""PGD (L∞ and L2), robust accuracy, adversarial training and the standard-vs-robust comparison, on digits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradattr.data import Dataset, load_digits
from gradattr.models import mnist_cnn, mnist_mlp
from gradattr.robustness import PGD, adversarial_train, compare_models, robust_accuracy
from gradattr.training import accuracy, train

TRAINING = {"epochs": 4, "lr": 3e-3, "progress": False}
EPSILON = 0.3  # L∞ radius on inputs in [-1, 1]: 15% of the range


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def fresh_cnn() -> nn.Module:
    torch.manual_seed(0)
    return mnist_cnn((1, 8, 8), 10)


@pytest.fixture(scope="module")
def standard(digits: Dataset) -> nn.Module:
    return train(fresh_cnn(), digits, **TRAINING)[0]


@pytest.fixture(scope="module")
def robust(digits: Dataset) -> nn.Module:
    return adversarial_train(fresh_cnn(), digits, attack=PGD(EPSILON, steps=3), **TRAINING)[0]


@pytest.fixture(scope="module")
def batch(digits: Dataset) -> tuple[Tensor, Tensor]:
    return digits.test_x[:64], digits.test_y[:64]


def losses(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return F.cross_entropy(model(x), y, reduction="none")


@pytest.mark.parametrize(("norm", "epsilon"), [("linf", 0.1), ("l2", 1.0)])
def test_pgd_stays_in_the_ball_and_the_data_range_and_raises_the_loss(
    standard: nn.Module, batch: tuple[Tensor, Tensor], norm: str, epsilon: float
) -> None:
    x, y = batch
    adversarial = PGD(epsilon, norm=norm, steps=5, seed=0)(standard, x, y)
    delta = (adversarial - x).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= epsilon * (1 + 1e-5)
    assert float(size.max()) >= 0.9 * epsilon  # it uses the budget
    assert float(adversarial.min()) >= -1 and float(adversarial.max()) <= 1
    assert adversarial.shape == x.shape and adversarial.dtype == x.dtype and not adversarial.requires_grad
    clean, attacked = losses(standard, x, y), losses(standard, adversarial, y)
    assert float(attacked.mean()) > float(clean.mean()) + 0.2
    assert float((attacked >= clean - 1e-6).double().mean()) > 0.95


def reference_pgd(
    model: nn.Module, x: Tensor, y: Tensor, start: Tensor, norm: str, epsilon: float, alpha: float, steps: int
) -> Tensor:
    """Madry et al.'s PGD written out sample by sample, as a plain loop."""
    rows = []
    for i in range(len(x)):
        x_i = x[i : i + 1]
        delta = (x_i + start[i : i + 1]).clamp(-1, 1) - x_i
        for _ in range(steps):
            point = (x_i + delta).clamp(-1, 1).requires_grad_()
            loss = F.cross_entropy(model(point), y[i : i + 1])
            (gradient,) = torch.autograd.grad(loss, point)
            if norm == "linf":
                delta = (delta + alpha * gradient.sign()).clamp(-epsilon, epsilon)
            else:
                delta = delta + alpha * gradient / gradient.norm().clamp_min(1e-12)
                delta = delta * min(1.0, epsilon / max(float(delta.norm()), 1e-12))
            delta = (x_i + delta).clamp(-1, 1) - x_i
        rows.append((x_i + delta).clamp(-1, 1))
    return torch.cat(rows)


@pytest.mark.parametrize(("norm", "epsilon"), [("linf", 0.2), ("l2", 1.5)])
def test_pgd_matches_a_plain_loop_for_a_fixed_start(
    standard: nn.Module, batch: tuple[Tensor, Tensor], norm: str, epsilon: float
) -> None:
    x, y = batch[0][:6].double(), batch[1][:6]
    model = standard.double()
    try:
        generator = torch.Generator().manual_seed(5)
        spread = epsilon / 4 if norm == "linf" else epsilon / 4 / math.sqrt(x[0].numel())  # inside the ball
        start = (torch.rand(x.shape, generator=generator, dtype=x.dtype) * 2 - 1) * spread
        attack = PGD(epsilon, norm=norm, steps=6, step_size=epsilon / 3)
        expected = reference_pgd(model, x, y, start, norm, epsilon, epsilon / 3, 6)
        torch.testing.assert_close(attack(model, x, y, start=start), expected, rtol=1e-9, atol=1e-10)
    finally:
        standard.float()


def test_random_start_is_uniform_in_the_ball_and_seeded(standard: nn.Module, batch: tuple[Tensor, Tensor]) -> None:
    x, y = batch
    for norm, epsilon in (("linf", 0.2), ("l2", 1.0)):
        seeded = PGD(epsilon, norm=norm, steps=2, seed=7)
        assert torch.equal(seeded(standard, x, y), seeded(standard, x, y))
        assert not torch.equal(seeded(standard, x, y), PGD(epsilon, norm=norm, steps=2, seed=8)(standard, x, y))
        unseeded = PGD(epsilon, norm=norm, steps=2)
        torch.manual_seed(1)
        first = unseeded(standard, x, y)
        torch.manual_seed(1)
        assert torch.equal(first, unseeded(standard, x, y))
    start = PGD(0.5, norm="l2")._start(torch.zeros(4000, 4))
    radius = start.norm(dim=1)
    assert float(radius.max()) <= 0.5 + 1e-6
    assert float((radius <= 0.5 * 0.5 ** (1 / 4)).double().mean()) == pytest.approx(0.5, abs=0.03)  # half volume
    linf = PGD(0.5)._start(torch.zeros(4000, 4))
    assert float(linf.abs().max()) <= 0.5 and float(linf.mean().abs()) < 0.02


def test_robust_accuracy_is_the_accuracy_on_the_attacked_inputs(
    standard: nn.Module, batch: tuple[Tensor, Tensor]
) -> None:
    x, y = batch
    attack = PGD(0.1, steps=4, seed=0)
    value = robust_accuracy(standard, x, y, attack, batch_size=64)
    assert value == accuracy(standard, attack(standard, x, y), y)
    assert value < accuracy(standard, x, y)
    assert robust_accuracy(standard, x, y, attack, batch_size=10) == value  # batches are independent


class Recorder:
    """A ``perturb`` that records how it was called and returns the batch unchanged."""

    def __init__(self) -> None:
        self.calls: list[tuple[bool, int]] = []

    def __call__(self, model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        self.calls.append((model.training, len(x)))
        return x


def test_train_perturbs_every_batch_in_the_same_loop(digits: Dataset) -> None:
    """An identity ``perturb`` is called once per batch, in training mode, and changes nothing."""
    torch.manual_seed(0)
    plain, _ = train(mnist_mlp((1, 8, 8), 10), digits, epochs=1, progress=False)
    recorder = Recorder()
    torch.manual_seed(0)
    perturbed, _ = train(mnist_mlp((1, 8, 8), 10), digits, epochs=1, progress=False, perturb=recorder)
    fit = len(digits.train_y) - round(0.1 * len(digits.train_y))
    assert len(recorder.calls) == math.ceil(fit / 128) and all(training for training, _ in recorder.calls)
    assert sum(size for _, size in recorder.calls) == fit
    for a, b in zip(plain.state_dict().values(), perturbed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_adversarial_training_raises_robust_accuracy(standard: nn.Module, robust: nn.Module, digits: Dataset) -> None:
    x, y = digits.test_x[:200], digits.test_y[:200]
    attack = PGD(EPSILON, steps=10, seed=0)
    standard_robust, robust_robust = robust_accuracy(standard, x, y, attack), robust_accuracy(robust, x, y, attack)
    assert robust_robust > standard_robust + 0.15
    assert accuracy(robust, x, y) > 0.85  # still a good classifier on clean data
    assert not robust.training


def test_adversarial_training_is_deterministic(digits: Dataset) -> None:
    options = {"attack": PGD(0.2, steps=2), "epochs": 1, "progress": False}
    torch.manual_seed(0)
    first, _ = adversarial_train(mnist_mlp((1, 8, 8), 10), digits, **options)
    torch.manual_seed(0)
    second, _ = adversarial_train(mnist_mlp((1, 8, 8), 10), digits, **options)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_compare_models_table(standard: nn.Module, robust: nn.Module, digits: Dataset) -> None:
    table = compare_models(
        standard, robust, digits, attack=PGD(EPSILON, steps=5, seed=0), samples=48, explanation_steps=5
    )
    measures = [row["measure"] for row in table.rows]
    assert measures[:2] == ["accuracy", "robust accuracy"]
    assert "top-k intersection under attack" in measures and "top-k intersection under noise" in measures
    assert table.value("robust accuracy", "robust") > table.value("robust accuracy", "standard")
    assert table.value("label kept by explanation attack", "standard") == 1.0
    for row in table.rows:
        assert 0.0 <= row["standard"] <= 1.0 or math.isnan(row["standard"])
    text = str(table)
    assert text.splitlines()[0].split() == ["measure", "standard", "robust", "better"]
    assert len(text.splitlines()) == len(table.rows) + 1
    assert table.to_dict()["settings"]["samples"] == 48
    with pytest.raises(KeyError, match="no measure 'speed'"):
        table.value("speed", "robust")


class BatchNormNet(nn.Module):
    """Batch-norm and dropout (mode-dependent) and a forward that can be made to raise."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 10)
        )
        self.fail = False

    def forward(self, x: Tensor) -> Tensor:
        if self.fail:
            raise RuntimeError("deliberate failure")
        return self.net(x)


def test_model_is_attacked_in_eval_mode_and_restored(batch: tuple[Tensor, Tensor]) -> None:
    torch.manual_seed(0)
    model = BatchNormNet().train()
    model.net[1].bias.requires_grad_(False)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = batch
    attack = PGD(0.1, steps=2, seed=0)
    adversarial = attack(model, x, y)
    model.eval()
    assert torch.equal(adversarial, attack(model, x, y))  # eval mode: deterministic, running statistics
    model.train()
    model.fail = True
    with pytest.raises(RuntimeError, match="deliberate"):
        attack(model, x, y)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    for name, value in model.state_dict().items():
        assert torch.equal(value, buffers[name]), name  # running statistics untouched
    assert all(p.grad is None for p in model.parameters())


def test_bad_arguments(batch: tuple[Tensor, Tensor], digits: Dataset) -> None:
    for epsilon in (0, -1.0, math.nan, math.inf, True):
        with pytest.raises(ValueError, match="epsilon must be a finite number > 0"):
            PGD(epsilon)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown norm 'l1'; choose one of 'linf', 'l2'"):
        PGD(0.1, norm="l1")
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        PGD(0.1, steps=0)
    with pytest.raises(ValueError, match="step_size must be"):
        PGD(0.1, step_size=-1.0)
    with pytest.raises(ValueError, match="bounds must be None or two finite numbers"):
        PGD(0.1, bounds=(0.0, math.inf))
    x, y = batch
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(ValueError, match="outside bounds"):
        PGD(0.1)(model, x * 2, y)
    with pytest.raises(ValueError, match="labels have shape"):
        PGD(0.1)(model, x, y[:3])
    with pytest.raises(ValueError, match="64 inputs but 3 labels"):
        robust_accuracy(model, x, y[:3], PGD(0.1))
    with pytest.raises(TypeError, match="sets perturb itself"):
        adversarial_train(model, digits, perturb=PGD(0.1))
    assert PGD(0.1, steps=4).alpha == pytest.approx(2.5 * 0.1 / 4)
