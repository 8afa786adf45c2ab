"""Class sensitivity (Nielsen et al. 2022): maps of the top-k classes compared pairwise.

On a linear model the maps are known in closed form (saliency |W_c|, Gradient*Input x ⊙ W_c), so the
expected matrices are computed here directly with scipy; a counting method checks that all k targets are
explained in one batched call; a digits MLP shows that gradient maps are class sensitive and an edge
detector is not.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import Tensor, nn

import gradattr
from gradattr.data import load_digits
from gradattr.models import mnist_cnn, mnist_mlp
from gradattr.robustness.class_sensitivity import COLUMNS, class_sensitivity, top_classes


@pytest.fixture(scope="module")
def linear() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(12, 7).double()


@pytest.fixture(scope="module")
def x() -> Tensor:
    return torch.randn(4, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def expected_matrix(rows: np.ndarray) -> np.ndarray:
    """Spearman between every pair of rows (k, N), by scipy."""
    k = len(rows)
    return np.array([[spearmanr(rows[i], rows[j]).statistic for j in range(k)] for i in range(k)])


def test_linear_saliency_and_gradient_x_input_are_analytic(linear: nn.Linear, x: Tensor) -> None:
    result = class_sensitivity(linear, x, ["saliency", "gradient_x_input"], k=5, top_features=3)
    assert result.measures == ["spearman", "spearman_abs", "topk_intersection"]  # no SSIM for flat maps
    weights = linear.weight.detach().numpy()
    classes = linear(x).detach().topk(5, dim=1).indices
    assert torch.equal(result.classes, classes)
    for b in range(len(x)):
        chosen = weights[classes[b].numpy()]  # (5, 12): W_c for the sample's top-5 classes, most likely first
        saliency = np.abs(chosen)  # |dS_c/dx| = |W_c| whatever x is
        product = x[b].numpy() * chosen  # x ⊙ W_c
        np.testing.assert_allclose(result.matrices["saliency"]["spearman"][b], expected_matrix(saliency), atol=1e-12)
        np.testing.assert_allclose(
            result.matrices["gradient_x_input"]["spearman"][b], expected_matrix(product), atol=1e-12
        )
        np.testing.assert_allclose(
            result.matrices["gradient_x_input"]["spearman_abs"][b], expected_matrix(np.abs(product)), atol=1e-12
        )
        tops = [set(np.argsort(-np.abs(row))[:3]) for row in product]
        overlap = np.array([[len(s & t) / 3 for t in tops] for s in tops])
        np.testing.assert_allclose(result.matrices["gradient_x_input"]["topk_intersection"][b], overlap)
    pairs = torch.triu_indices(5, 5, offset=1)
    per_sample = result.matrices["saliency"]["spearman"][:, pairs[0], pairs[1]].mean(1)
    assert result.mean("saliency", "spearman") == pytest.approx(float(per_sample.mean()))
    assert result.mean_matrix("saliency").diagonal().tolist() == [1.0] * 5


class Counting:
    """A method that records what it is asked and answers with saliency."""

    def __init__(self) -> None:
        self.calls: list[tuple[Tensor, Tensor]] = []

    def __call__(self, model: nn.Module, inputs: Tensor, target: Tensor | None) -> Tensor:
        assert target is not None
        self.calls.append((inputs.clone(), target.clone()))
        return gradattr.attribute(model, inputs, method="saliency", target=target)


def test_all_classes_in_one_batched_call(linear: nn.Linear, x: Tensor) -> None:
    counting = Counting()
    result = class_sensitivity(linear, x, {"counting": counting, "saliency": "saliency"}, k=3, keep_maps=True)
    assert len(counting.calls) == 1
    inputs, targets = counting.calls[0]
    assert torch.equal(inputs, x.repeat_interleave(3, dim=0))  # sample-major: rows b*3 + i
    assert torch.equal(targets, result.classes.reshape(-1))
    assert result.maps is not None and result.maps["saliency"].shape == (4, 3, 12)
    assert torch.equal(result.maps["saliency"][2, 1], linear.weight[result.classes[2, 1]].detach().abs())
    assert torch.equal(result.matrices["counting"]["spearman"], result.matrices["saliency"]["spearman"])


def edge_detector(model: nn.Module, inputs: Tensor, target: Tensor | None) -> Tensor:
    """Gradient magnitude of the image itself: the same map whatever the class."""
    dx = torch.zeros_like(inputs)
    dy = torch.zeros_like(inputs)
    dx[..., :, 1:] = inputs[..., :, 1:] - inputs[..., :, :-1]
    dy[..., 1:, :] = inputs[..., 1:, :] - inputs[..., :-1, :]
    return (dx.square() + dy.square()).sqrt()


def test_trained_digits_model_gradient_maps_are_class_sensitive() -> None:
    digits = load_digits()
    torch.manual_seed(0)
    model, trained = gradattr.train(
        mnist_mlp((1, 8, 8), 10, hidden=(32, 32)), digits, epochs=2, lr=1e-2, progress=False
    )
    assert trained.test_accuracy > 0.8
    methods = {"saliency": "saliency", "gradient_x_input": "gradient_x_input", "edge": edge_detector}
    result = class_sensitivity(model, digits.test_x[:64], methods)
    assert result.classes.shape == (64, 5)
    assert result.measures == ["spearman", "spearman_abs", "ssim", "topk_intersection"]
    assert result.mean("edge") == result.mean("edge", "ssim") == result.mean("edge", "topk_intersection") == 1.0
    assert result.mean("saliency") < 0.5  # measured 0.31
    # signed x * gradient: the class decides the sign pattern, so the ranks are nearly unrelated (measured 0.02)
    assert abs(result.mean("gradient_x_input")) < 0.15
    # in magnitude the input's |x| is shared by all classes: more alike than the signed maps (measured 0.38)
    assert result.mean("gradient_x_input", "spearman_abs") > result.mean("gradient_x_input") + 0.2
    rows = result.rows()
    assert [(r["method"], r["measure"]) for r in rows][:2] == [("saliency", "spearman"), ("saliency", "spearman_abs")]
    assert list(rows[0]) == list(COLUMNS) and rows[0]["count"] == 64
    assert rows[0]["mean"] == pytest.approx(result.mean("saliency"))


@pytest.mark.skipif("guided_backprop" not in gradattr.METHODS, reason="guided_backprop is not registered")
def test_guided_backprop_is_less_class_sensitive_than_the_gradient() -> None:
    """Guided Backprop's maps hardly depend on the class (they reconstruct the image; Nie et al. 2018);
    the plain gradient's do, on the same CNN and samples."""
    digits = load_digits()
    torch.manual_seed(0)
    model, trained = gradattr.train(mnist_cnn((1, 8, 8), 10), digits, epochs=3, progress=False)
    assert trained.test_accuracy > 0.8
    result = class_sensitivity(model, digits.test_x[:64], ["saliency", "guided_backprop"], measures=["spearman"])
    assert result.mean("guided_backprop") > 0.75  # measured 0.84
    assert result.mean("saliency") < result.mean("guided_backprop") - 0.15  # measured 0.58


def test_rows_csv_and_text(tmp_path, linear: nn.Linear, x: Tensor) -> None:
    result = class_sensitivity(linear, x, ["saliency", "gradient_x_input"], measures=["spearman"])
    lines = result.to_csv(tmp_path / "classes.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 3 and lines[1].startswith("saliency,spearman,")
    assert "gradient_x_input" in str(result)


class OneOutput(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sum(1)


@pytest.mark.parametrize(
    ("model", "kwargs", "error", "match"),
    [
        (None, {"k": 8}, ValueError, r"k must be an int in 2\.\.7"),
        (None, {"k": 1}, ValueError, r"k must be an int in 2\.\.7"),
        (OneOutput(), {}, ValueError, r"needs \(B, C\) class scores"),
        (None, {"methods": []}, ValueError, "no methods"),
        (None, {"measures": ["pearson2"]}, ValueError, "unknown or no measures"),
        (None, {"methods": {"bad": lambda model, inputs, target: inputs[:1]}}, ValueError, "expected maps with 20"),
    ],
)
def test_bad_arguments(linear: nn.Linear, x: Tensor, model, kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        class_sensitivity(model if model is not None else linear, x, **kwargs)


def test_top_classes_are_sorted(linear: nn.Linear, x: Tensor) -> None:
    classes = top_classes(linear, x, 7)
    logits = linear(x).detach()
    assert torch.equal(logits.gather(1, classes), logits.sort(dim=1, descending=True).values)
