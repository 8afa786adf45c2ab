"""Sensitivity-n (Ancona et al., ICLR 2018, Sec. 4.1, Def. 4): exactness, a brute-force reference, seeding,
undefined cases and errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gradattr
from gradattr.metrics import SensitivityResult, SubsetPlan, default_ns, draw_subsets
from gradattr.metrics.sensitivity import measure


def mlp(features: int = 12, dtype: torch.dtype = torch.float32, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(features, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype).eval()


def inputs(batch: int, features: int, dtype: torch.dtype = torch.float32, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, features, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


# -- exactness on a linear model ---------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_linear_model_with_gradient_x_input_is_exact_at_every_n(bias: bool) -> None:
    torch.manual_seed(0)
    model = nn.Linear(40, 5, bias=bias)
    x = inputs(16, 40)
    target = torch.arange(16) % 5
    attributions = gradattr.attribute(model, x, method="gradient_x_input", target=target)
    result = gradattr.sensitivity_n(model, x, attributions, target=target)
    assert result.ns == default_ns(40) and result.ns[-1] == 40
    assert (result.valid[:-1] == 16).all() and result.valid[-1] == 0  # n = N: every subset is all features
    assert (result.per_sample[:, :-1] > 0.999).all(), result.correlation


def test_linear_model_exact_with_patches_and_a_single_output() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 1))
    x = inputs(6, 36).view(6, 1, 6, 6)
    attributions = gradattr.attribute(model, x, method="gradient_x_input")
    groups = gradattr.patches((1, 6, 6), 2)
    result = gradattr.sensitivity_n(model, x, attributions, target=None, feature_groups=groups, ns=[1, 3, 7])
    assert result.num_features == 9
    assert (result.per_sample > 0.999).all()


def test_random_attributions_score_near_zero() -> None:
    model = mlp(features=20)
    x = inputs(300, 20)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    result = gradattr.sensitivity_n(model, x, noise, target=0, num_subsets=50)
    assert result.ns[-1] == 20 and result.correlation[-1].isnan()
    assert result.correlation[:-1].abs().max() < 0.1, result.correlation


# -- the batched implementation against a plain one ------------------------------------------------------------


def pearson(a: list[float], b: list[float]) -> float:
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    covariance = sum((p - mean_a) * (q - mean_b) for p, q in zip(a, b, strict=True))
    spread_a = math.sqrt(sum((p - mean_a) ** 2 for p in a))
    spread_b = math.sqrt(sum((q - mean_b) ** 2 for q in b))
    return covariance / (spread_a * spread_b)


def brute_force(model, x, attributions, target, ns, num_subsets, seed, baseline) -> list[list[float]]:
    """One forward pass per sample and subset, sums and Pearson in plain Python."""
    rows = []
    for b in range(x.shape[0]):
        row = []
        full = float(model(x[b : b + 1])[0, target[b]])
        for n in ns:
            sums, drops = [], []
            for subset in draw_subsets(x.shape[1], n, num_subsets, seed).tolist():
                removed = x[b].clone()
                for i in subset:
                    removed[i] = baseline
                drops.append(full - float(model(removed.unsqueeze(0))[0, target[b]]))
                sums.append(sum(float(attributions[b, i]) for i in subset))
            row.append(pearson(sums, drops))
        rows.append(row)
    return rows


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_equals_brute_force_on_the_same_subsets(dtype: torch.dtype) -> None:
    model, x = mlp(dtype=dtype), inputs(5, 12, dtype)
    target = torch.tensor([0, 1, 2, 0, 1])
    attributions = gradattr.attribute(model, x, method="deeplift", target=target)
    ns, seed, baseline = [1, 2, 5, 9], 3, 0.25
    result = gradattr.sensitivity_n(
        model, x, attributions, target=target, ns=ns, num_subsets=20, seed=seed, baseline=baseline
    )
    with torch.no_grad():
        expected = torch.tensor(brute_force(model, x, attributions, target, ns, 20, seed, baseline))
    assert torch.allclose(result.per_sample, expected.double(), atol=1e-6, rtol=0)


# -- subsets and seeding ---------------------------------------------------------------------------------------


def test_subsets_are_distinct_in_range_and_uniform() -> None:
    subsets = draw_subsets(10, 3, 4000, seed=0)
    assert subsets.shape == (4000, 3)
    assert (subsets[:, 1:] > subsets[:, :-1]).all()  # sorted, hence distinct
    assert subsets.min() >= 0 and subsets.max() <= 9
    frequency = torch.bincount(subsets.reshape(-1), minlength=10).double() / 4000
    assert torch.allclose(frequency, torch.full((10,), 0.3, dtype=torch.float64), atol=0.03)


def test_same_seed_same_subsets_and_result_different_seed_different() -> None:
    assert torch.equal(draw_subsets(50, 7, 30, seed=4), draw_subsets(50, 7, 30, seed=4))
    assert not torch.equal(draw_subsets(50, 7, 30, seed=4), draw_subsets(50, 7, 30, seed=5))
    model, x = mlp(), inputs(8, 12)
    r = gradattr.attribute(model, x, method="gradient_x_input", target=1)
    first = gradattr.sensitivity_n(model, x, r, target=1, seed=4)
    again = gradattr.sensitivity_n(model, x, r, target=1, seed=4)
    other = gradattr.sensitivity_n(model, x, r, target=1, seed=5)
    assert torch.equal(first.per_sample.nan_to_num(7.0), again.per_sample.nan_to_num(7.0))
    assert not torch.allclose(first.per_sample[:, :-1], other.per_sample[:, :-1])  # n = N is NaN for any seed


def test_subsets_of_one_n_do_not_depend_on_the_other_ns() -> None:
    alone = SubsetPlan.draw(30, [6], 10, seed=2)
    among = SubsetPlan.draw(30, [1, 3, 6, 20], 10, seed=2)
    assert torch.equal(alone.subsets[0], among.subsets[2])


def test_result_does_not_depend_on_batch_split_or_memory_budget() -> None:
    model, x = mlp(), inputs(10, 12)
    target = torch.arange(10) % 3
    r = gradattr.attribute(model, x, method="integrated_gradients", target=target)
    whole = gradattr.sensitivity_n(model, x, r, target=target)
    halves = SensitivityResult.concat(
        [gradattr.sensitivity_n(model, x[s], r[s], target=target[s]) for s in (slice(0, 3), slice(3, 10))]
    )
    tiny_passes = gradattr.sensitivity_n(model, x, r, target=target, max_elements=12 * 7)
    assert torch.allclose(whole.per_sample, halves.per_sample, atol=1e-6, rtol=0, equal_nan=True)
    assert torch.allclose(whole.per_sample, tiny_passes.per_sample, atol=1e-6, rtol=0, equal_nan=True)


def test_target_forms_agree() -> None:
    model, x = mlp(), inputs(4, 12)
    r = gradattr.attribute(model, x, method="gradient_x_input", target=2)
    results = [
        gradattr.sensitivity_n(model, x, r, target=t, ns=[2, 4]).per_sample
        for t in (2, [2, 2, 2, 2], torch.full((4,), 2))
    ]
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


def test_per_sample_baseline_tensor() -> None:
    torch.manual_seed(0)
    model, x = nn.Linear(12, 2), inputs(3, 12)
    baseline = inputs(3, 12, seed=9)
    r = (x - baseline) * model.weight[1].detach()
    result = gradattr.sensitivity_n(model, x, r, target=1, baseline=baseline, ns=[1, 5])
    assert (result.per_sample > 0.999).all()


# -- undefined correlations ----------------------------------------------------------------------------------


def test_zero_variance_is_nan_excluded_from_the_mean_and_counted() -> None:
    torch.manual_seed(0)
    model, x = nn.Linear(12, 2), inputs(4, 12)
    x[0] = 0.0  # removing features of an all-baseline sample changes nothing: constant drops
    r = gradattr.attribute(model, x, method="gradient_x_input", target=0)
    r[1] = 0.0  # constant attribution sums
    result = gradattr.sensitivity_n(model, x, r, target=0, ns=[1, 3])
    assert result.per_sample[:2].isnan().all()
    assert (result.valid == 2).all()
    assert torch.allclose(result.correlation, result.per_sample[2:].mean(0))
    assert all(row["count"] == 2 for row in result.to_rows())


def test_variation_at_rounding_level_counts_as_constant() -> None:
    model, x = mlp(), inputs(3, 12)
    jitter = torch.randint(0, 4, x.shape, generator=torch.Generator().manual_seed(0)).double() * 1e-12
    result = gradattr.sensitivity_n(model, x, 0.5 + jitter, target=0, ns=[2, 6])
    assert result.per_sample.isnan().all()


def test_constant_model_and_removing_everything_give_nan_never_a_number() -> None:
    constant = nn.Linear(12, 2)
    nn.init.zeros_(constant.weight)
    x = inputs(3, 12)
    result = gradattr.sensitivity_n(constant, x, torch.randn_like(x), target=0, ns=[1, 12])
    assert result.per_sample.isnan().all() and (result.valid == 0).all() and result.correlation.isnan().all()
    model = mlp()
    everything = gradattr.sensitivity_n(model, x, torch.randn_like(x), target=0, ns=[12])
    assert everything.per_sample.isnan().all()


# -- the model comes back as it was ---------------------------------------------------------------------------


def test_model_is_evaluated_in_eval_mode_and_restored() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 16), nn.Dropout(0.5), nn.ReLU(), nn.Linear(16, 3))
    x = inputs(4, 12)
    r = torch.randn_like(x)
    model.train()
    with pytest.warns(UserWarning, match="training mode"):
        first = gradattr.sensitivity_n(model, x, r, target=0, ns=[2])
    assert model.training and all(p.requires_grad for p in model.parameters())
    with pytest.warns(UserWarning, match="training mode"):
        second = gradattr.sensitivity_n(model, x, r, target=0, ns=[2])
    assert torch.equal(first.per_sample, second.per_sample)  # dropout was off


# -- results ---------------------------------------------------------------------------------------------------


def test_result_rows_dict_and_std() -> None:
    per_sample = torch.tensor([[0.5, float("nan")], [0.7, 0.2], [0.9, float("nan")]], dtype=torch.float64)
    result = SensitivityResult([1, 4], per_sample, num_subsets=10, num_features=8, seed=0)
    rows = result.to_rows()
    assert rows[0] == {"n": 1, "mean": pytest.approx(0.7), "std": pytest.approx(0.2), "count": 3}
    assert rows[1]["mean"] == pytest.approx(0.2) and math.isnan(rows[1]["std"]) and rows[1]["count"] == 1
    summary = result.to_dict()
    assert summary["samples"] == 3 and summary["valid"] == [3, 1] and summary["ns"] == [1, 4]


def test_default_grid_matches_the_protocol() -> None:
    assert default_ns(784) == sorted({round(v) for v in torch.logspace(0, math.log10(784), 20).tolist()})
    assert default_ns(784, fraction=0.8) == sorted(
        {round(v) for v in torch.logspace(0, math.log10(0.8 * 784), 20).tolist()}
    )
    assert default_ns(1) == [1]
    assert default_ns(64)[-1] == 64
    assert default_ns(64, fraction=0.8)[-1] == 51


# -- errors ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        ({"attributions": torch.zeros(4, 11)}, ValueError, r"shape \(4, 11\).*expected.*\(4, 12\)"),
        ({"attributions": torch.full((4, 12), float("nan"))}, ValueError, "NaN"),
        ({"ns": [13]}, ValueError, r"n=13 .*1\.\.12"),
        ({"ns": [0]}, ValueError, r"n=0 .*1\.\.12"),
        ({"ns": [-2, 3]}, ValueError, r"n=-2"),
        ({"ns": []}, ValueError, "ns is empty"),
        ({"ns": 5}, TypeError, "sequence"),
        ({"ns": [2.5]}, TypeError, "n must be an int"),
        ({"num_subsets": 1}, ValueError, "num_subsets must be an int >= 2"),
        ({"feature_groups": torch.zeros(5, dtype=torch.long)}, ValueError, r"\(5,\) does not fit .*\(12,\)"),
        ({"feature_groups": torch.arange(12) * 2}, ValueError, "contiguous"),
        ({"feature_groups": torch.arange(12) - 1}, ValueError, "cover every feature"),
        ({"feature_groups": torch.zeros(12)}, TypeError, "integer group ids"),
        ({"target": 7}, IndexError, "out of range"),
        ({"max_elements": 0}, ValueError, "max_elements"),
    ],
)
def test_bad_arguments_raise_what_was_expected(change: dict, error: type, match: str) -> None:
    model, x = mlp(), inputs(4, 12)
    arguments = {"attributions": torch.randn(4, 12), "target": 0} | change
    attributions = arguments.pop("attributions")
    with pytest.raises(error, match=match):
        gradattr.sensitivity_n(model, x, attributions, **arguments)


def test_measure_refuses_subsets_drawn_for_other_inputs() -> None:
    model, x = mlp(), inputs(2, 12)
    plan = SubsetPlan.draw(10, [2], 5, seed=0)
    with pytest.raises(ValueError, match=r"drawn over 10 features .* have 12"):
        measure(model, x, {"r": torch.randn_like(x)}, target=0, plan=plan)


def test_tuple_inputs_are_refused() -> None:
    model, x = mlp(), inputs(2, 12)
    with pytest.raises(TypeError, match="one tensor"):
        gradattr.sensitivity_n(model, (x,), x, target=0)
