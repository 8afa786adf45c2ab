"""The default grid of n reaches N (issue 18, item 1): ``max_fraction`` cuts it (0.8: the grid of earlier
versions), n = N is NaN with no valid sample and no warning (Sensitivity-N is completeness), the other ns keep
their subsets and values, and curves end at the last defined n."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import gradattr
from gradattr import distributed
from gradattr.metrics import SubsetPlan, default_ns
from gradattr.report.curves import sensitivity_figure


def old_grid(num_features: int) -> list[int]:
    """The default grid before issue 18, as SPEC.md states it: unique(round(geomspace(1, 0.8 N, 20)))."""
    grid = np.unique(np.round(np.geomspace(1.0, max(1.0, 0.8 * num_features), 20)).astype(np.int64))
    return [int(n) for n in grid if 1 <= n <= num_features]


def mlp(features: int = 12) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(features, 16), nn.Tanh(), nn.Linear(16, 3)).eval()


def inputs(batch: int, features: int = 12) -> torch.Tensor:
    return torch.rand(batch, features, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("num_features", [1, 2, 7, 12, 49, 64, 300, 784, 3072])
def test_grid_ends_at_n_and_max_fraction_gives_the_old_grid(num_features: int) -> None:
    grid = default_ns(num_features)
    assert grid[0] == 1 and grid[-1] == num_features and grid == sorted(set(grid))
    assert grid == sorted({round(v) for v in np.geomspace(1, num_features, 20)})
    assert default_ns(num_features, fraction=0.8) == old_grid(num_features)
    assert SubsetPlan.draw(num_features, None, 2, 0, max_fraction=0.8).ns == tuple(old_grid(num_features))
    assert SubsetPlan.draw(num_features, None, 2, 0).ns == tuple(grid)


@pytest.mark.parametrize("fraction", [0, -0.5, 1.01, float("nan")])
def test_max_fraction_outside_the_unit_interval_is_refused(fraction: float) -> None:
    model, x = mlp(), inputs(2)
    with pytest.raises(ValueError, match="max_fraction must lie in"):
        gradattr.sensitivity_n(model, x, x, target=0, max_fraction=fraction)
    with pytest.raises(ValueError, match="max_fraction must lie in"):
        gradattr.evaluate(model, x, ["saliency"], target="predicted", max_fraction=fraction, progress=False)
    with pytest.raises(ValueError, match="max_fraction must lie in"):  # checked before Ray is needed
        distributed.evaluate(model, x, ["saliency"], target="predicted", max_fraction=fraction, progress=False)


def test_max_fraction_must_be_a_number() -> None:
    with pytest.raises(TypeError, match="max_fraction must be a number"):
        SubsetPlan.draw(10, None, 2, 0, max_fraction=True)


def test_n_equal_to_n_features_is_nan_with_no_valid_sample_and_no_warning() -> None:
    model, x = mlp(), inputs(6)
    r = gradattr.attribute(model, x, method="deeplift", target=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = gradattr.sensitivity_n(model, x, r, target=1)
        rows = result.to_rows()
        summary = result.to_dict()
    assert result.ns[-1] == 12
    assert result.per_sample[:, -1].isnan().all() and result.valid[-1] == 0
    assert result.correlation[-1].isnan() and result.std[-1].isnan()
    assert result.valid[:-1].eq(6).all() and result.correlation[:-1].isfinite().all()
    assert rows[-1]["n"] == 12 and rows[-1]["count"] == 0 and math.isnan(rows[-1]["mean"])
    assert summary["valid"][-1] == 0


def test_points_below_n_are_those_of_the_old_grid() -> None:
    """The subsets of an n depend on (N, n, num_subsets, seed) alone: extending the grid changes no point (the
    grids share most ns; the others, e.g. 10 of the old grid for N = 12, are given as ``ns`` when wanted)."""
    model, x = mlp(), inputs(8)
    r = gradattr.attribute(model, x, method="integrated_gradients", target=2, steps=16)
    full = gradattr.sensitivity_n(model, x, r, target=2, seed=3)
    old = gradattr.sensitivity_n(model, x, r, target=2, seed=3, max_fraction=0.8)
    assert old.ns == old_grid(12)
    shared = [n for n in old.ns if n in full.ns]
    assert len(shared) >= len(old.ns) - 2
    assert torch.equal(
        full.per_sample[:, [full.ns.index(n) for n in shared]], old.per_sample[:, [old.ns.index(n) for n in shared]]
    )
    explicit = gradattr.sensitivity_n(model, x, r, target=2, seed=3, ns=old.ns)
    assert torch.equal(explicit.per_sample, old.per_sample)
    full_plan, old_plan = SubsetPlan.draw(784, None, 100, 3), SubsetPlan.draw(784, None, 100, 3, max_fraction=0.8)
    for n in set(full_plan.ns) & set(old_plan.ns):
        assert torch.equal(full_plan.subsets[full_plan.ns.index(n)], old_plan.subsets[old_plan.ns.index(n)])


def test_evaluate_reaches_n_and_the_curve_ends_at_the_last_defined_point() -> None:
    model, x = mlp(), inputs(10)
    y = torch.arange(10) % 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = gradattr.evaluate(model, (x, y), ["saliency", "gradient_x_input"], num_subsets=10, progress=False)
        text = str(table)
        figure = sensitivity_figure(table)
    old = gradattr.evaluate(
        model, (x, y), ["saliency", "gradient_x_input"], num_subsets=10, progress=False, max_fraction=0.8
    )
    assert table.ns == default_ns(12) and old.ns == old_grid(12)
    counts = table.pivot("count")[2]
    assert (counts[:, -1] == 0).all() and (counts[:, :-1] == 10).all()
    assert text.splitlines()[1].split()[len(table.ns)] == "nan"
    shared = [n for n in old.ns if n in table.ns]
    for name in table.methods:
        new_columns = table.results[name].per_sample[:, [table.ns.index(n) for n in shared]]
        assert torch.equal(new_columns, old.results[name].per_sample[:, [old.ns.index(n) for n in shared]])
    axis = figure.axes[0]
    for line in axis.get_lines()[: len(table.methods)]:  # then the axhline at 0
        xs, ys = line.get_xdata(), line.get_ydata()
        assert list(xs) == table.ns and np.isnan(ys[-1]) and np.isfinite(ys[:-1]).all()
    assert axis.dataLim.x1 == table.ns[-2]  # the x range ends at the last defined n
