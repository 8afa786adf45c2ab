"""Sanity checks (Adebayo et al. 2018): model parameter and label randomisation.

The tables are checked against a plain loop written here (deepcopy, reset one layer with the documented seed,
``gradattr.attribute``, scipy's Spearman, top-k by sets); the science on a digits MLP trained for two epochs
(gradient maps decorrelate after the full cascade, a model-independent edge detector does not); and the
promise that the user's model comes out bit-identical, also when a method raises midway.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from torch import Tensor, nn

import gradattr
from gradattr.data import Dataset, load_digits
from gradattr.models import mnist_cnn, mnist_mlp
from gradattr.robustness import sanity
from gradattr.robustness.sanity import (
    data_randomisation,
    model_randomisation,
    permuted_labels,
    randomisation_order,
    reinitialise,
)

MLP_LAYERS = ["layers.5", "layers.3", "layers.1"]  # mnist_mlp(hidden=(32, 32)): Linear modules, output first
GRADIENT_METHODS = ["saliency", "gradient_x_input", "integrated_gradients", "deeplift"]
OPTIONS = {"integrated_gradients": {"steps": 16}}
TRAINING = {"epochs": 2, "lr": 1e-2, "progress": False}


def digits_mlp() -> nn.Module:
    return mnist_mlp((1, 8, 8), 10, hidden=(32, 32))


def edge_detector(model: nn.Module, inputs: Tensor, target: Tensor | None) -> Tensor:
    """Gradient magnitude of the image itself: a "map" that never looks at the model."""
    dx = torch.zeros_like(inputs)
    dy = torch.zeros_like(inputs)
    dx[..., :, 1:] = inputs[..., :, 1:] - inputs[..., :, :-1]
    dy[..., 1:, :] = inputs[..., 1:, :] - inputs[..., :-1, :]
    return (dx.square() + dy.square()).sqrt()


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


@pytest.fixture(scope="module")
def trained(digits: Dataset) -> nn.Module:
    torch.manual_seed(0)
    model, result = gradattr.train(digits_mlp(), digits, seed=0, **TRAINING)
    assert result.test_accuracy > 0.8  # a model that learned something, else the test below says nothing
    return model


def snapshot(model: nn.Module) -> dict[str, Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def assert_bit_identical(model: nn.Module, before: dict[str, Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for name, value in before.items():
        assert torch.equal(after[name], value), name


# -- which layers, in which order ------------------------------------------------------------------------------
class Shuffled(nn.Module):
    """Definition order head, block, stem, unused; call order stem, block (twice), head, then the model's own
    ``scale``; ``unused`` has parameters but is never called."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(6, 3)
        self.block = nn.Linear(6, 6)
        self.stem = nn.Linear(4, 6)
        self.unused = nn.Linear(2, 2)
        self.scale = nn.Parameter(torch.tensor([1.0, 2.0, 3.0]))

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.stem(x))
        h = torch.relu(self.block(torch.relu(self.block(h))))
        return self.head(h) * self.scale


def test_order_follows_the_forward_pass_not_the_definition() -> None:
    with pytest.warns(UserWarning, match="never called.*unused"):
        layers = randomisation_order(Shuffled(), torch.randn(2, 4))
    assert [name for name, _ in layers] == ["(model)", "head", "block", "stem"]


def test_reinitialise_is_seeded_and_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    model = Shuffled()
    state = torch.get_rng_state()
    first, second = copy.deepcopy(model), copy.deepcopy(model)
    reinitialise(first.stem, seed=7)  # reset_parameters: kaiming-uniform weight, uniform bias
    reinitialise(second.stem, seed=7)
    reinitialise(first, seed=7)  # the model's own `scale` has no reset_parameters: redrawn N(0, std(scale)^2)
    reinitialise(second, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.stem.weight, second.stem.weight) and torch.equal(first.scale, second.scale)
    assert not torch.equal(first.stem.weight, model.stem.weight) and not torch.equal(first.scale, model.scale)
    assert torch.equal(first.head.weight, model.head.weight)  # recurse=False: children keep their weights
    bound = 1 / math.sqrt(4)  # nn.Linear's initialiser: |w| <= 1/sqrt(fan_in)
    assert first.stem.weight.abs().max() <= bound


# -- the table against a plain loop --------------------------------------------------------------------------
def reference_scores(
    model: nn.Module, x: Tensor, target: Tensor, method: str, mode: str, top: int, options: dict
) -> dict[str, list[list[float]]]:
    """Adebayo's procedure written out: deepcopy, reset the layers top down with the documented seeds,
    attribute, then scipy Spearman (signed, absolute), scikit-image SSIM of the maps scaled to [0, 1] (7 x 7
    window: the 8 x 8 digits are smaller than the Gaussian window) and top-k sets per sample."""
    original = gradattr.attribute(model, x, method=method, target=target, **options)
    scores: dict[str, list[list[float]]] = {"spearman": [], "spearman_abs": [], "ssim": [], "topk_intersection": []}
    cascade = copy.deepcopy(model)
    for index, name in enumerate(MLP_LAYERS):
        work = cascade if mode == "cascading" else copy.deepcopy(model)
        torch.manual_seed(sanity._layer_seed(0, index))
        work.get_submodule(name).reset_parameters()
        maps = gradattr.attribute(work, x, method=method, target=target, **options)
        a, b = original.reshape(len(x), -1).numpy(), maps.reshape(len(x), -1).numpy()
        scores["spearman"].append([spearmanr(u, v).statistic for u, v in zip(a, b, strict=True)])
        scores["spearman_abs"].append([spearmanr(abs(u), abs(v)).statistic for u, v in zip(a, b, strict=True)])
        images = [(unit_range(u).reshape(8, 8), unit_range(v).reshape(8, 8)) for u, v in zip(a, b, strict=True)]
        scores["ssim"].append([structural_similarity(u, v, win_size=7, data_range=1.0) for u, v in images])
        tops = [(set(np.argsort(-abs(u))[:top]), set(np.argsort(-abs(v))[:top])) for u, v in zip(a, b, strict=True)]
        scores["topk_intersection"].append([len(s & t) / top for s, t in tops])
    return scores


def unit_range(values: np.ndarray) -> np.ndarray:
    """Adebayo et al.'s ``normalize_image``: (x - min) / (max - min), in float64."""
    values = values.astype(np.float64)
    return (values - values.min()) / (values.max() - values.min())


@pytest.mark.parametrize("mode", ["cascading", "independent"])
@pytest.mark.parametrize("method", ["saliency", "gradient_x_input", "integrated_gradients"])
def test_table_matches_a_plain_loop(trained: nn.Module, digits: Dataset, mode: str, method: str) -> None:
    x = digits.test_x[:12]
    options = OPTIONS.get(method, {})
    result = model_randomisation(trained, x, [method], mode=mode, method_options={method: options} if options else None)
    target = trained(x).argmax(1)
    expected = reference_scores(trained, x, target, method, mode, result.top_features, options)
    assert result.steps == tuple(MLP_LAYERS) and result.top_features == 6  # 10 % of 64 pixels
    assert result.measures == ["spearman", "spearman_abs", "ssim", "topk_intersection"]
    for measure, values in expected.items():
        torch.testing.assert_close(result.scores[method][measure], torch.tensor(values, dtype=torch.float64))
    rows = [r for r in result.rows() if r["measure"] == "spearman_abs"]
    assert [r["layer"] for r in rows] == MLP_LAYERS and [r["step"] for r in rows] == [1, 2, 3]
    for row, values in zip(rows, expected["spearman_abs"], strict=True):
        assert row["mean"] == pytest.approx(np.mean(values)) and row["std"] == pytest.approx(np.std(values, ddof=1))
        assert row["count"] == 12


# -- which weights change ----------------------------------------------------------------------------------
class StateProbe:
    """A "method" that records which parameters of the model it is handed differ from the original ones, and
    checks that the user's model stays as it was while the test runs; raises at call ``fail_at`` if set."""

    def __init__(self, user_model: nn.Module, fail_at: int | None = None) -> None:
        self.user_model = user_model
        self.original = snapshot(user_model)
        self.changed: list[set[str]] = []
        self.fail_at = fail_at

    def __call__(self, model: nn.Module, inputs: Tensor, target: Tensor | None) -> Tensor:
        assert model is not self.user_model
        assert_bit_identical(self.user_model, self.original)
        state = model.state_dict()
        self.changed.append({name for name, value in self.original.items() if not torch.equal(state[name], value)})
        if self.fail_at is not None and len(self.changed) == self.fail_at:
            raise RuntimeError("method failed at the second randomised layer")
        return gradattr.attribute(model, inputs, method="saliency", target=target)


def layer_parameters(*layers: str) -> set[str]:
    return {f"{layer}.{kind}" for layer in layers for kind in ("weight", "bias")}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("cascading", [set(), layer_parameters("layers.5"), layer_parameters("layers.5", "layers.3"),
                       layer_parameters(*MLP_LAYERS)]),
        ("independent", [set(), layer_parameters("layers.5"), layer_parameters("layers.3"),
                         layer_parameters("layers.1")]),
    ],
)  # fmt: skip
def test_each_step_randomises_exactly_the_intended_layers(
    trained: nn.Module, digits: Dataset, mode: str, expected: list[set[str]]
) -> None:
    probe = StateProbe(trained)
    model_randomisation(trained, digits.test_x[:4], {"probe": probe}, mode=mode)
    assert probe.changed == expected  # call 0: the original maps; then one call per layer
    assert_bit_identical(trained, probe.original)


def test_user_model_is_bit_identical_after_a_method_raises_midway(trained: nn.Module, digits: Dataset) -> None:
    model = copy.deepcopy(trained).train()  # training mode and a frozen layer must survive as well
    model.layers[1].weight.requires_grad_(False)
    parameters = list(model.parameters())
    probe = StateProbe(model, fail_at=3)
    with pytest.raises(RuntimeError, match="second randomised layer"):
        model_randomisation(model, digits.test_x[:4], {"probe": probe})
    assert probe.changed[2] == layer_parameters("layers.5", "layers.3")  # it did fail with two layers random
    assert_bit_identical(model, probe.original)
    assert list(model.parameters()) == parameters and model.training
    assert [p.requires_grad for p in model.parameters()] == [False, True, True, True, True, True]


def test_first_steps_agree_across_modes_and_the_seed_matters(trained: nn.Module, digits: Dataset) -> None:
    x = digits.test_x[:16]
    cascading = model_randomisation(trained, x, "saliency", mode="cascading", seed=0)
    independent = model_randomisation(trained, x, "saliency", mode="independent", seed=0)
    other_seed = model_randomisation(trained, x, "saliency", mode="cascading", seed=1)
    first = cascading.scores["saliency"]["spearman"][0]
    assert torch.equal(first, independent.scores["saliency"]["spearman"][0])  # only the top layer is random
    assert not torch.equal(first, other_seed.scores["saliency"]["spearman"][0])
    assert not torch.equal(cascading.scores["saliency"]["spearman"][1], independent.scores["saliency"]["spearman"][1])


# -- the science ---------------------------------------------------------------------------------------------
def test_full_cascade_decorrelates_gradient_maps_but_not_an_edge_detector(trained: nn.Module, digits: Dataset) -> None:
    methods: dict[str, str | Callable] = {name: name for name in GRADIENT_METHODS} | {"edge": edge_detector}
    result = model_randomisation(trained, digits.test_x[:64], methods, method_options=OPTIONS, keep_maps=True)
    final = {name: float(result.mean(name, "spearman_abs")[-1]) for name in methods}
    assert abs(final["saliency"]) < 0.2  # measured -0.01: the map of a random network is unrelated
    for name in ("gradient_x_input", "integrated_gradients", "deeplift"):
        # |x| still shapes |x * gradient| (Adebayo et al.'s input-dominated methods), measured ~0.18 vs -0.01
        assert final["saliency"] + 0.1 < final[name] < 0.4
    assert result.mean("edge", "spearman_abs").tolist() == [1.0, 1.0, 1.0]
    assert result.mean("edge", "ssim").tolist() == [1.0, 1.0, 1.0]
    assert abs(float(result.mean("saliency", "ssim")[-1])) < 0.2  # measured -0.02
    assert result.passes() == {name: name != "edge" for name in methods}
    assert result.passes(threshold=0.15)["gradient_x_input"] is False
    assert result.maps is not None and result.maps["saliency"].shape == (4, 64, 1, 8, 8)
    assert torch.equal(result.maps["saliency"][0], gradattr.attribute(trained, digits.test_x[:64], "saliency"))


@pytest.mark.skipif("guided_backprop" not in gradattr.METHODS, reason="guided_backprop is not registered")
def test_guided_backprop_survives_the_cascade_on_a_cnn(digits: Dataset) -> None:
    """Adebayo et al.'s headline: Guided Backprop's maps barely change when the CNN is randomised (its ReLU
    backward discards the negative gradients that carry the top layers' information), plain gradients do."""
    torch.manual_seed(0)
    model, trained = gradattr.train(mnist_cnn((1, 8, 8), 10), digits, epochs=3, progress=False)
    assert trained.test_accuracy > 0.8
    result = model_randomisation(model, digits.test_x[:64], ["saliency", "guided_backprop"])
    final = {name: float(result.mean(name, "spearman_abs")[-1]) for name in result.methods}
    assert final["guided_backprop"] > 0.6  # measured 0.70 (0.79 for the signed map, 0.79 SSIM)
    assert final["saliency"] < final["guided_backprop"] - 0.2  # measured 0.39
    assert result.passes() == {"saliency": True, "guided_backprop": False}


def test_data_randomisation_matches_manual_training(trained: nn.Module, digits: Dataset) -> None:
    methods = {"saliency": "saliency", "edge": edge_detector}
    result = data_randomisation(digits_mlp, digits, methods, samples=32, seed=0, **TRAINING)
    # the same procedure by hand: same initial weights (seed 0), permuted labels, the same training settings
    x, y = digits.test_x[:32], digits.test_y[:32]
    models = []
    for data in (digits, permuted_labels(digits, seed=0)):
        torch.manual_seed(0)
        models.append(gradattr.train(digits_mlp(), data, seed=0, **TRAINING)[0])
    maps = [gradattr.attribute(m, x, "saliency", target=y) for m in models]
    expected = [spearmanr(a.reshape(-1), b.reshape(-1)).statistic for a, b in zip(*maps, strict=True)]
    torch.testing.assert_close(result.scores["saliency"]["spearman"][0], torch.tensor(expected, dtype=torch.float64))
    assert result.steps == ("permuted labels",)
    assert result.training["true labels"].test_accuracy > 0.8
    assert result.training["permuted labels"].test_accuracy < 0.25  # it learned no digit (chance is 0.1)
    assert float(result.mean("saliency")[0]) < 0.3  # measured 0.16
    assert result.passes() == {"saliency": True, "edge": False}


def test_data_randomisation_uses_a_given_model_and_keeps_it(trained: nn.Module, digits: Dataset) -> None:
    before = snapshot(trained)
    result = data_randomisation(digits_mlp, digits, "saliency", model=trained, samples=8, **TRAINING)
    assert list(result.training) == ["permuted labels"]
    assert_bit_identical(trained, before)


def test_permuted_labels_keep_the_class_counts(digits: Dataset) -> None:
    permuted = permuted_labels(digits, seed=3)
    assert torch.equal(permuted.train_y.sort().values, digits.train_y.sort().values)
    assert (permuted.train_y != digits.train_y).float().mean() > 0.8
    assert permuted.test_y is digits.test_y and permuted.train_x is digits.train_x


def test_rows_and_csv(tmp_path, trained: nn.Module, digits: Dataset) -> None:
    result = model_randomisation(trained, digits.test_x[:8], ["saliency", "deeplift"], measures=["spearman"])
    rows = result.rows()
    assert len(rows) == 2 * 3 and list(rows[0]) == list(sanity.COLUMNS)
    text = result.to_csv(tmp_path / "sanity.csv").read_text(encoding="utf-8").splitlines()
    assert text[0] == ",".join(sanity.COLUMNS) and len(text) == 7
    assert text[1].startswith("saliency,1,layers.5,spearman,")
    assert "layers.5" in str(result) and "deeplift" in str(result)


# -- bad input -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "sideways"}, ValueError, "mode must be one of cascading, independent"),
        ({"methods": []}, ValueError, "no methods"),
        ({"methods": ["saliency", "saliency"]}, ValueError, "listed twice"),
        ({"methods": ["gradient_times_input"]}, ValueError, "unknown method 'gradient_times_input'"),
        ({"methods": {"mine": 3}}, TypeError, "must be a method name or a callable"),
        ({"method_options": {"deeplift": {}}}, ValueError, "method_options for deeplift"),
        ({"method_options": {"saliency": {"steps": 3}}}, TypeError, "unknown option"),
        ({"measures": ["ssim2"]}, ValueError, "unknown or no measures"),
        ({"top_features": 65}, ValueError, r"top_features must be an int in 1\.\.64"),
        ({"target": torch.zeros(4)}, TypeError, "integer class indices"),
        ({"inputs": [[0.0]]}, TypeError, "inputs must be a torch.Tensor"),
    ],
)
def test_bad_arguments(trained: nn.Module, digits: Dataset, kwargs: dict, error: type, match: str) -> None:
    arguments = {"inputs": digits.test_x[:4], "methods": ["saliency"]} | kwargs
    with pytest.raises(error, match=match):
        model_randomisation(trained, **arguments)


def test_bad_threshold_and_measure(trained: nn.Module, digits: Dataset) -> None:
    result = model_randomisation(trained, digits.test_x[:4], "saliency", measures=["spearman"])
    with pytest.raises(ValueError, match=r"threshold must lie in \(0, 1\]"):
        result.passes(threshold=0.0)
    with pytest.raises(ValueError, match="unknown measure 'spearman_abs'"):
        result.passes()
    with pytest.raises(ValueError, match="samples must be a positive int"):
        data_randomisation(digits_mlp, digits, "saliency", samples=0)
