"""Deletion / insertion, region perturbation (AOPC) and IROF against slow references written from the papers
(one forward pass per step and sample, float64 models), hand-computed curves, sanity orderings and errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gradattr
from gradattr.data import load_digits
from gradattr.metrics.perturbation import (
    chunk_bounds,
    deletion_auc,
    insertion_auc,
    irof,
    region_perturbation,
)

# -- slow references -----------------------------------------------------------------------------------------


def reference_score(model: nn.Module, point: Tensor, target: int, output: str) -> float:
    with torch.no_grad():
        logits = model(point.unsqueeze(0))[0].double()
    return float(logits.softmax(0)[target] if output == "probability" else logits[target])


def reference_curve(
    model: nn.Module,
    x: Tensor,
    attr: Tensor,
    target: int,
    groups: list[int],
    order: str,
    steps: int,
    baseline: Tensor,
    output: str,
    insertion: bool = False,
    rank_by_mean: bool = False,
) -> list[float]:
    """The paper's loop for one sample: rank the groups, remove (insert) the first round(k·G/L) of them."""
    flat_x, flat_r, flat_b = x.reshape(-1), attr.reshape(-1), baseline.expand_as(x).reshape(-1)
    count = max(groups) + 1
    members = [[i for i, g in enumerate(groups) if g == group] for group in range(count)]
    score = [sum(float(flat_r[i]) for i in m) / (len(m) if rank_by_mean else 1) for m in members]
    ranking = sorted(range(count), key=lambda g: (-score[g] if order == "morf" else score[g], g))
    curve = []
    for k in range(steps + 1):
        removed = ranking[: int(k * count / steps + 0.5)]
        point = (flat_b if insertion else flat_x).clone()
        for group in removed:
            for i in members[group]:
                point[i] = flat_x[i] if insertion else flat_b[i]
        curve.append(reference_score(model, point.view_as(x), target, output))
    return curve


def trapezoid(values: list[float], xs: list[float]) -> float:
    return sum((xs[i + 1] - xs[i]) * (values[i + 1] + values[i]) / 2 for i in range(len(values) - 1))


def predicted(model: nn.Module, x: Tensor) -> list[int]:
    with torch.no_grad():
        return model(x).argmax(1).tolist()


# -- models --------------------------------------------------------------------------------------------------


def random_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 64, 16), nn.Tanh(), nn.Linear(16, 10)
    ).double().eval()  # fmt: skip


@pytest.fixture(scope="module")
def digits() -> tuple[nn.Module, Tensor, Tensor]:
    """A small MLP trained on the digits for a few epochs (float64), with 24 test images and their labels."""
    data = load_digits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).double()
    x, y = torch.as_tensor(data.train_x).double(), torch.as_tensor(data.train_y).long()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        for batch in torch.randperm(len(x)).split(128):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    model.eval()
    test_x, test_y = torch.as_tensor(data.test_x[:24]).double(), torch.as_tensor(data.test_y[:24]).long()
    assert (model(test_x).argmax(1) == test_y).double().mean() > 0.8
    return model, test_x, test_y


def random_inputs(batch: int = 4, seed: int = 1) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 1, 8, 8, generator=generator, dtype=torch.float64) * 2 - 1
    return x, torch.randn(batch, 1, 8, 8, generator=generator, dtype=torch.float64)


# -- deletion and insertion ----------------------------------------------------------------------------------


@pytest.mark.parametrize("insertion", [False, True])
@pytest.mark.parametrize(("steps", "output"), [(20, "probability"), (7, "logit"), (64, "probability")])
def test_deletion_and_insertion_match_the_reference_on_a_random_model(insertion: bool, steps: int, output: str) -> None:
    model = random_cnn()
    x, attr = random_inputs()
    baseline = torch.full((1, 1, 8, 8), 0.25, dtype=torch.float64)
    metric = insertion_auc if insertion else deletion_auc
    result = metric(model, x, attr, steps=steps, baseline=baseline, output=output, max_elements=300)
    fractions = [int(k * 64 / steps + 0.5) / 64 for k in range(steps + 1)]
    for b, target in enumerate(predicted(model, x)):
        features = list(range(64))
        curve = reference_curve(model, x[b], attr[b], target, features, "morf", steps, baseline[0], output, insertion)
        assert result.curve[b].tolist() == pytest.approx(curve, abs=1e-9)
        assert float(result.per_sample[b]) == pytest.approx(trapezoid(curve, fractions), abs=1e-9)
    assert result.per_sample.dtype == torch.float64 and result.per_sample.shape == (4,)
    assert result.fractions.tolist() == pytest.approx(fractions)


def test_deletion_matches_the_reference_on_a_trained_model_with_labels_and_patches(digits) -> None:
    model, x, y = digits
    attr = gradattr.attribute(model, x, method="gradient_x_input", target=y)
    groups = gradattr.patches((1, 8, 8), (3, 3))  # 3x3 patches: 9 groups of 9, 6, 6, 4 features
    result = deletion_auc(model, x, attr, target=y, steps=4, feature_groups=groups)
    fractions = [int(k * 9 / 4 + 0.5) / 9 for k in range(5)]
    for b in range(len(x)):
        curve = reference_curve(model, x[b], attr[b], int(y[b]), groups.reshape(-1).tolist(), "morf", 4,
                                torch.zeros(1, 8, 8, dtype=torch.float64), "probability")  # fmt: skip
        assert result.curve[b].tolist() == pytest.approx(curve, abs=1e-9)
        assert float(result.per_sample[b]) == pytest.approx(trapezoid(curve, fractions), abs=1e-9)


def test_linear_model_gradient_x_input_deletion_curve_by_hand() -> None:
    """f(x) = w·x + b, zero baseline, exact Gradient*Input R_i = w_c,i x_i: the logit after removing the c_k most
    relevant features is f(x) - Σ of their R."""
    torch.manual_seed(0)
    model = nn.Linear(10, 3).double()
    x = torch.randn(5, 10, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 0, 1])
    attr = model.weight[target].detach() * x
    result = deletion_auc(model, x, attr, target=target, steps=4, output="logit")
    assert chunk_bounds(10, 4).tolist() == [0, 3, 5, 8, 10]  # 2.5 and 7.5 round up
    start = model(x).detach().gather(1, target[:, None]).squeeze(1)
    ranked = attr.sort(dim=1, descending=True).values
    expected = torch.stack([start - ranked[:, :c].sum(1) for c in (0, 3, 5, 8, 10)], dim=1)
    torch.testing.assert_close(result.curve, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(result.curve[:, -1], model.bias.detach()[target], rtol=0, atol=1e-12)


def test_default_steps_and_argmax_target() -> None:
    model = random_cnn()
    x, attr = random_inputs()
    result = deletion_auc(model, x, attr)
    assert result.curve.shape == (4, 21)
    explicit = deletion_auc(model, x, attr, target=predicted(model, x))
    torch.testing.assert_close(result.per_sample, explicit.per_sample)
    few = deletion_auc(nn.Linear(3, 2).double(), x[:, 0, 0, :3], attr[:, 0, 0, :3])
    assert few.curve.shape == (4, 4)  # min(20, N)


def test_occlusion_deletion_beats_random_attributions_on_digits(digits) -> None:
    model, x, y = digits
    occlusion = gradattr.attribute(model, x, method="occlusion", target=y)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = deletion_auc(model, x, occlusion, target=y)
    chance = deletion_auc(model, x, noise, target=y)
    assert ours.mean < chance.mean - 0.1, (ours.mean, chance.mean)
    assert insertion_auc(model, x, occlusion, target=y).mean > insertion_auc(model, x, noise, target=y).mean


# -- region perturbation -------------------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_region_perturbation_matches_the_reference_aopc(order: str, digits) -> None:
    model, x, y = digits
    attr = gradattr.attribute(model, x, method="saliency", target=y)
    groups = gradattr.patches((1, 8, 8), 2)
    result = region_perturbation(model, x, attr, target=y, feature_groups=groups, order=order)
    assert result.curve.shape == (24, 17)  # one region per step
    for b in range(len(x)):
        curve = reference_curve(model, x[b], attr[b], int(y[b]), groups.reshape(-1).tolist(), order, 16,
                                torch.zeros(1, 8, 8, dtype=torch.float64), "logit")  # fmt: skip
        assert result.curve[b].tolist() == pytest.approx(curve, abs=1e-9)
        aopc = sum(curve[0] - value for value in curve) / len(curve)  # Samek et al. Eq. 12, k = 0..L
        assert float(result.per_sample[b]) == pytest.approx(aopc, abs=1e-9)


def test_lerf_curve_lies_above_morf(digits) -> None:
    model, x, y = digits
    attr = gradattr.attribute(model, x, method="occlusion", target=y)
    morf = region_perturbation(model, x, attr, target=y, steps=16)
    lerf = region_perturbation(model, x, attr, target=y, steps=16, order="lerf")
    assert (lerf.curve.mean(0)[1:-1] > morf.curve.mean(0)[1:-1]).all()
    assert morf.mean > lerf.mean


# -- IROF ----------------------------------------------------------------------------------------------------


def test_irof_matches_the_reference_with_given_segments(digits) -> None:
    model, x, y = digits
    x, y = x[:6], y[:6]
    attr = gradattr.attribute(model, x, method="gradient_x_input", target=y)
    generator = np.random.default_rng(0)
    segments = np.stack(
        [(np.arange(64).reshape(8, 8) // (8 + 8 * b)) * 7 + generator.integers(0, 2, (8, 8)) for b in range(6)]
    )  # fmt: skip  (uneven, gappy labels; different counts per image)
    result = irof(model, x, attr, target=y, segments=segments)
    for b in range(6):
        _, labels = np.unique(segments[b], return_inverse=True)
        count = int(labels.max()) + 1
        mean = x[b].mean(dim=(1, 2), keepdim=True)
        curve = reference_curve(model, x[b], attr[b], int(y[b]), labels.reshape(-1).tolist(), "morf", count, mean,
                                "probability", rank_by_mean=True)  # fmt: skip
        normalised = [value / curve[0] for value in curve]
        expected = 1 - trapezoid(normalised, [k / count for k in range(count + 1)])
        assert float(result.per_sample[b]) == pytest.approx(expected, abs=1e-9)
        assert result.curve[b, : count + 1].tolist() == pytest.approx(curve, abs=1e-9)


def test_irof_slic_segments_and_missing_scikit_image(digits, monkeypatch) -> None:
    model, x, y = digits
    attr = gradattr.attribute(model, x[:4], method="occlusion", target=y[:4])
    result = irof(model, x[:4], attr, target=y[:4], n_segments=16)
    assert result.per_sample.shape == (4,) and bool(((result.per_sample > -1) & (result.per_sample < 1)).all())
    monkeypatch.setitem(sys.modules, "skimage.segmentation", None)
    with pytest.raises(ImportError, match=r"gradattr\[test\]"):
        irof(model, x[:4], attr, target=y[:4])


# -- batching, hygiene, errors -------------------------------------------------------------------------------


def test_memory_budget_does_not_change_the_results_and_the_model_is_left_unchanged() -> None:
    model = random_cnn().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x, attr = random_inputs(batch=5)
    full = region_perturbation(model, x, attr, steps=64)
    for budget in (1, 64 * 3, 64 * 70):
        small = region_perturbation(model, x, attr, steps=64, max_elements=budget)
        torch.testing.assert_close(small.curve, full.curve, rtol=0, atol=1e-12)
    assert model.training and all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_errors() -> None:
    model = random_cnn()
    x, attr = random_inputs()
    with pytest.raises(ValueError, match="steps"):
        deletion_auc(model, x, attr, steps=65)
    with pytest.raises(ValueError, match="order"):
        region_perturbation(model, x, attr, order="random")
    with pytest.raises(ValueError, match="output"):
        deletion_auc(model, x, attr, output="softmax")
    with pytest.raises(ValueError, match="shape"):
        deletion_auc(model, x, attr[:, :, :4])
    with pytest.raises(ValueError, match="segments"):
        irof(model, x, attr, segments=np.zeros((4, 8, 7), dtype=int))
    with pytest.raises(ValueError, match="logit"):
        deletion_auc(nn.Linear(64, 1).double(), x.flatten(1), attr.flatten(1))
