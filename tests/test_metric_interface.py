"""The evaluation runner with the metric interface (issue 17, item 1): any mix of metrics beside Sensitivity-n,
per-sample values equal to the metric computed on the maps directly, Sensitivity-n unchanged, one checkpoint
that resumes with identical numbers, and the Ray executor running the same metrics on its shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import gradattr
from gradattr.evaluation import EvaluatedBatch, MetricResult, PerSampleMetric, SensitivityN
from gradattr.metrics.sensitivity import SubsetPlan, measure

METHODS = ["saliency", "gradient_x_input", "deeplift"]
SETTINGS: dict[str, Any] = {"ns": [1, 4, 16], "num_subsets": 12, "batch_size": 4, "progress": False, "seed": 3}


def l1(attributions: Tensor) -> Tensor:
    """Σ|R| per sample (a 'map' metric)."""
    return attributions.abs().flatten(1).sum(1).double()


def mass_inside(attributions: Tensor, masks: Tensor) -> Tensor:
    """Σ_mask R⁺ / Σ R⁺ per sample (a 'mask' metric)."""
    positive = attributions.clamp(min=0).flatten(1).double()
    return (positive * masks.flatten(1)).sum(1) / positive.sum(1)


def drop_curve(function: nn.Module, x: Tensor, attributions: Tensor, *, target: Tensor) -> Tensor:
    """The target's logit with the top 0, 8, 16 features (by R) set to 0: a curve per sample ('model' metric)."""
    order = attributions.flatten(1).argsort(1, descending=True)
    points = []
    for k in (0, 8, 16):
        removed = torch.zeros_like(x.flatten(1)).scatter(1, order[:, :k], 1.0).bool()
        points.append(function(x.flatten(1).masked_fill(removed, 0.0).view_as(x)).gather(1, target[:, None])[:, 0])
    return torch.stack(points, 1).double()


def model_and_data() -> tuple[nn.Module, Tensor, Tensor, Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = torch.randn(10, 1, 8, 8)
    y = torch.randint(0, 3, (10,))
    masks = torch.rand(10, 1, 8, 8) > 0.5
    return model, x, y, masks


def metrics(masks: Tensor) -> list[PerSampleMetric]:
    return [PerSampleMetric("l1", l1), PerSampleMetric("mass", mass_inside, "mask", masks),
            PerSampleMetric("drop", drop_curve, "model")]  # fmt: skip


def test_every_metric_equals_the_metric_on_the_maps_and_sensitivity_n_is_unchanged() -> None:
    model, x, y, masks = model_and_data()
    plain = gradattr.evaluate(model, (x, y), METHODS, **SETTINGS)
    table = gradattr.evaluate(model, (x, y), METHODS, metrics=metrics(masks), **SETTINGS)
    for name in METHODS:
        assert torch.equal(table.results[name].per_sample, plain.results[name].per_sample)
        maps = gradattr.attribute(model, x, method=name, target=y)
        assert torch.allclose(table.metrics["l1"].per_sample[name], l1(maps), rtol=1e-6)  # float32, 4 vs 10 rows
        assert torch.allclose(table.metrics["mass"].per_sample[name], mass_inside(maps, masks), rtol=1e-6)
        expected = drop_curve(model, x, maps, target=y)
        assert table.metrics["drop"].per_sample[name].shape == (10, 3)
        assert torch.allclose(table.metrics["drop"].per_sample[name], expected, rtol=1e-6, atol=1e-6), name
    assert set(table.metrics["drop"].mean()) == set(METHODS) and len(table.metrics["drop"].mean()["saliency"]) == 3
    assert {"metric l1", "metric mass", "metric drop"} <= set(table.seconds)
    assert table.to_dict()["metrics"][0]["metric"] == "l1"


def test_sensitivity_n_as_a_metric_is_sensitivity_n() -> None:
    model, x, y, _ = model_and_data()
    maps = {name: gradattr.attribute(model, x, method=name, target=y) for name in METHODS}
    metric = SensitivityN([1, 4, 16], 12, seed=3)
    values = metric.measure(EvaluatedBatch(x, y, maps, model, x, 0, model))
    plan = SubsetPlan.draw(64, [1, 4, 16], 12, 3)
    expected = measure(model, x, maps, target=y, plan=plan)
    assert all(torch.equal(values[name], expected[name]) for name in METHODS)


class Stop(Exception):
    pass


class StopAt:
    """An ``on_batch`` observer that raises at a given batch (a killed run), with no state of its own."""

    def __init__(self, batch: int | None) -> None:
        self.batch, self.seen = batch, 0

    def __call__(self, batch: EvaluatedBatch) -> None:
        self.seen += 1
        if self.seen == self.batch:
            raise Stop

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def test_a_killed_evaluation_resumes_with_identical_metric_values(tmp_path: Path) -> None:
    model, x, y, masks = model_and_data()
    reference = gradattr.evaluate(model, (x, y), METHODS, metrics=metrics(masks), **SETTINGS)
    checkpoint = tmp_path / "run.pt"
    with pytest.raises(Stop):
        gradattr.evaluate(model, (x, y), METHODS, metrics=metrics(masks), checkpoint=checkpoint,
                          on_batch=StopAt(3), **SETTINGS)  # fmt: skip
    resumed = gradattr.evaluate(model, (x, y), METHODS, metrics=metrics(masks), checkpoint=checkpoint,
                                on_batch=StopAt(None), **SETTINGS)  # fmt: skip
    assert resumed.resumed == 2
    for name in ("l1", "mass", "drop"):
        for label in METHODS:
            assert torch.equal(resumed.metrics[name].per_sample[label], reference.metrics[name].per_sample[label])
    other = gradattr.evaluate(model, (x, y), METHODS, metrics=metrics(masks)[:1], checkpoint=checkpoint, **SETTINGS)
    assert other.resumed == 0  # other metrics: another key, measured afresh


def test_metric_results_merge_in_data_order_and_masks_follow_the_samples() -> None:
    model, x, y, masks = model_and_data()
    whole = gradattr.evaluate(model, (x, y), METHODS, metrics=metrics(masks), **SETTINGS)
    first = gradattr.evaluate(model, (x[:4], y[:4]), METHODS, metrics=[m.for_samples(0, 4) for m in metrics(masks)],
                              **SETTINGS)  # fmt: skip
    rest = gradattr.evaluate(model, (x[4:], y[4:]), METHODS, metrics=[m.for_samples(4, 10) for m in metrics(masks)],
                             **SETTINGS)  # fmt: skip
    for name in ("l1", "mass", "drop"):
        merged = MetricResult.concat(name, [first.metrics[name].per_sample, rest.metrics[name].per_sample])
        for label in METHODS:
            assert torch.equal(merged.per_sample[label], whole.metrics[name].per_sample[label])


def test_bad_metrics_are_refused_by_name() -> None:
    model, x, y, masks = model_and_data()
    with pytest.raises(ValueError, match="distinct"):
        gradattr.evaluate(model, (x, y), METHODS, metrics=[PerSampleMetric("l1", l1)] * 2, **SETTINGS)
    with pytest.raises(TypeError, match="Metric objects"):
        gradattr.evaluate(model, (x, y), METHODS, metrics=[l1], **SETTINGS)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="masks for 4 samples"):
        gradattr.evaluate(model, (x, y), METHODS, metrics=[PerSampleMetric("m", mass_inside, "mask", masks[:4])],
                          **SETTINGS)  # fmt: skip


def test_model_metrics_at_a_layer_replay_each_sample_from_its_own_tokens() -> None:
    from gradattr.evaluation import LayerFunction

    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(30, 4), nn.Flatten(), nn.Linear(24, 2)).eval()
    ids, y = torch.randint(1, 30, (5, 6)), torch.randint(0, 2, (5,))
    drop = PerSampleMetric("drop", drop_curve_tokens, "model")
    table = gradattr.evaluate(model, (ids, y), ["gradient_x_input"], layer="0", ns=[1, 2], num_subsets=5,
                              progress=False, metrics=[drop])  # fmt: skip
    maps = gradattr.attribute(model, ids, method="gradient_x_input", target=y, layer="0")
    for i in range(5):
        function = LayerFunction.of(model, ids[i : i + 1], "0")
        expected = drop_curve_tokens(function, function.layer_output, maps[i : i + 1], target=y[i : i + 1])
        assert torch.allclose(table.metrics["drop"].per_sample["gradient_x_input"][i], expected[0], atol=1e-6)


def drop_curve_tokens(function: nn.Module, x: Tensor, attributions: Tensor, *, target: Tensor) -> Tensor:
    """The target's logit with the embedding entries of the top 0, 4, 8 attributions set to 0."""
    order = attributions.flatten(1).argsort(1, descending=True)
    points = []
    for k in (0, 4, 8):
        removed = torch.zeros_like(x.flatten(1)).scatter(1, order[:, :k], 1.0).bool()
        rows = x.flatten(1).masked_fill(removed, 0.0).view_as(x)
        points.append(function(rows).gather(1, target[:, None])[:, 0])
    return torch.stack(points, 1).double()


def test_named_metrics_run_in_one_evaluation_and_equal_the_functions() -> None:
    from gradattr import metrics as quality
    from gradattr.evaluation import NAMED, named_metric, named_metrics

    model, x, y, masks = model_and_data()
    chosen = named_metrics(["sparseness", "pointing_game", "deletion_auc", "faithfulness_correlation"],
                           masks=masks, options={"deletion_auc": {"steps": 8}})  # fmt: skip
    table = gradattr.evaluate(model, (x, y), METHODS, metrics=chosen, **SETTINGS)
    for name in METHODS:
        maps = gradattr.attribute(model, x, method=name, target=y)
        assert torch.allclose(table.metrics["sparseness"].per_sample[name], quality.sparseness(maps), atol=1e-6)
        assert torch.equal(table.metrics["pointing_game"].per_sample[name], quality.pointing_game(maps, masks))
        deletion = quality.deletion_auc(model, x, maps, target=y, steps=8).per_sample
        assert torch.allclose(table.metrics["deletion_auc"].per_sample[name], deletion, atol=1e-6)
        faithful = quality.faithfulness_correlation(model, x, maps, target=y)
        assert torch.allclose(table.metrics["faithfulness_correlation"].per_sample[name], faithful, atol=1e-6,
                              equal_nan=True)  # fmt: skip
    assert set(NAMED) >= {"sparseness", "pointing_game", "deletion_auc", "road", "irof", "monotonicity"}
    with pytest.raises(ValueError, match="unknown metric 'sparsity'; choose from sparseness"):
        named_metric("sparsity")
    with pytest.raises(ValueError, match="ground-truth masks"):
        named_metric("pointing_game")
    with pytest.raises(ValueError, match="not among"):
        named_metrics(["sparseness"], options={"road": {}})


def test_groups_sum_the_maps_of_complexity_and_group_the_removals() -> None:
    from gradattr import metrics as quality
    from gradattr.evaluation import named_metrics

    model, x, y, _ = model_and_data()
    groups = gradattr.patches((1, 8, 8), 4)
    chosen = named_metrics(["sparseness", "deletion_auc"], groups=groups)
    assert chosen[1].options["feature_groups"] is groups and chosen[1].groups is None
    table = gradattr.evaluate(model, (x, y), ["gradient_x_input"], metrics=chosen, **SETTINGS)
    maps = gradattr.attribute(model, x, method="gradient_x_input", target=y)
    patch_sums = torch.stack([maps.flatten(1)[:, (groups.flatten() == g)].sum(1) for g in range(4)], 1)
    assert torch.allclose(table.metrics["sparseness"].per_sample["gradient_x_input"],
                          quality.sparseness(patch_sums), atol=1e-6)  # fmt: skip
    deletion = quality.deletion_auc(model, x, maps, target=y, feature_groups=groups).per_sample
    assert torch.allclose(table.metrics["deletion_auc"].per_sample["gradient_x_input"], deletion, atol=1e-6)


def test_method_metrics_run_each_rows_method_with_its_options() -> None:
    """Random logit and input invariance run the row's method themselves (its options included): the runner's
    values equal the functions called with that method; a required option is asked for by name."""
    from gradattr import metrics as quality
    from gradattr.evaluation import named_metric, named_metrics

    model, x, y, _ = model_and_data()
    rows = {"saliency": "saliency", "ig": "integrated_gradients", "ig_coarse": "integrated_gradients"}
    options = {"ig": {"steps": 16}, "ig_coarse": {"steps": 2}}
    chosen = named_metrics(["random_logit", "input_invariance"],
                           options={"random_logit": {"similarity": "spearman"}, "input_invariance": {"shift": 0.5}})
    table = gradattr.evaluate(model, (x, y), rows, method_options=options, metrics=chosen, **SETTINGS)
    for label, method in rows.items():
        own = options.get(label, {})
        expected = torch.cat([quality.random_logit(model, x[i : i + 4], method, y[i : i + 4], method_options=own,
                                                   similarity="spearman") for i in range(0, 10, 4)])  # fmt: skip
        assert torch.allclose(table.metrics["random_logit"].per_sample[label], expected, atol=1e-9, equal_nan=True)
        shifted = quality.input_invariance(model, x, method, 0.5, y, method_options=own).per_sample
        assert torch.allclose(table.metrics["input_invariance"].per_sample[label], shifted, atol=1e-6)
    coarse, fine = (table.metrics["random_logit"].per_sample[k] for k in ("ig_coarse", "ig"))
    assert not torch.allclose(coarse, fine, equal_nan=True)  # each row ran with its own steps
    with pytest.raises(ValueError, match="metric 'input_invariance' needs the option\\(s\\) shift"):
        named_metric("input_invariance")

    torch.manual_seed(0)
    text = nn.Sequential(nn.Embedding(30, 4), nn.Flatten(), nn.Linear(24, 2)).eval()
    ids, labels = torch.randint(1, 30, (5, 6)), torch.randint(0, 2, (5,))
    with pytest.raises(ValueError, match="runs each method on the model's inputs itself: not with layer="):
        gradattr.evaluate(text, (ids, labels), ["saliency"], layer="0", ns=[1], num_subsets=3, progress=False,
                          metrics=[named_metric("random_logit")])  # fmt: skip


def test_curve_metrics_keep_curves_also_at_a_layer() -> None:
    """deletion_curve keeps (B, steps + 1) per sample, at the inputs and at a layer (one sample at a time)."""
    from gradattr import metrics as quality
    from gradattr.evaluation import LayerFunction, named_metrics

    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(30, 4), nn.Flatten(), nn.Linear(24, 2)).eval()
    ids, y = torch.randint(1, 30, (5, 6)), torch.randint(0, 2, (5,))
    chosen = named_metrics(["deletion_curve"], groups=torch.arange(6).repeat_interleave(4).view(6, 4),
                           options={"deletion_curve": {"steps": 3}})  # fmt: skip
    table = gradattr.evaluate(model, (ids, y), ["saliency"], layer="0", ns=[1, 2], num_subsets=5, progress=False,
                              metrics=chosen)  # fmt: skip
    curves = table.metrics["deletion_curve"].per_sample["saliency"]
    assert curves.shape == (5, 4)
    maps = gradattr.attribute(model, ids, method="saliency", target=y, layer="0")
    one = LayerFunction.of(model, ids[:1], "0")
    expected = quality.deletion_auc(one.for_sample(0), one.layer_output, maps[:1], target=y[:1], steps=3,
                                    feature_groups=torch.arange(6).repeat_interleave(4).view(6, 4)).curve  # fmt: skip
    assert torch.allclose(curves[0], expected[0], atol=1e-6)
