"""GradientSHAP / expected gradients and DeepLiftSHAP: against their definitions, against Captum with the same
draws, and against the mean of gradattr's own DeepLIFT calls."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gradattr
from gradattr.methods.gradient_shap import draws

captum_attr = pytest.importorskip("captum.attr")


class ResidualCNN(nn.Module):
    """Conv, functional ReLU, a reused module, a residual add, max pooling, a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.inner = nn.Conv2d(4, 4, 3, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(4 * 3 * 3, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.conv(x))
        h = self.act(h + self.inner(self.act(self.inner(h))))
        return self.head(nn.functional.max_pool2d(h, 2).flatten(1))


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return ResidualCNN().double().eval()


def _data(batch: int = 3, references: int = 5) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 2, 6, 6, generator=generator, dtype=torch.float64)
    return x, torch.randn(references, 2, 6, 6, generator=generator, dtype=torch.float64)


def test_gradient_shap_on_a_linear_model_is_w_times_x_minus_b() -> None:
    model = nn.Linear(4, 2).double()
    x = torch.randn(3, 4, dtype=torch.float64)
    reference = torch.randn(1, 4, dtype=torch.float64)
    r = gradattr.attribute(model, x, method="gradient_shap", target=1, baseline=reference, samples=7)
    torch.testing.assert_close(r, model.weight.detach()[1] * (x - reference), rtol=0, atol=1e-14)


def _replay_captum_draws(monkeypatch: pytest.MonkeyPatch, x: Tensor, samples: int, references: int, seed: int,
                         sigma: float) -> None:  # fmt: skip
    """Make Captum's np.random.choice / np.random.uniform / torch.normal return gradattr's draws, in Captum's
    row order (sample i, draw s) -> row i·samples + s; gradattr's draw s is the same for every sample."""
    picks, alphas, generator = draws(references, samples, seed)
    noise = torch.stack([torch.randn(x.shape[1:], generator=generator, dtype=x.dtype) for _ in range(samples)])
    batch = x.shape[0]
    monkeypatch.setattr(np.random, "choice", lambda k, n: picks.repeat(batch).numpy()[:n])
    monkeypatch.setattr(np.random, "uniform", lambda low, high, n: alphas.repeat(batch).numpy()[:n])
    by_row = noise.repeat(batch, *[1] * (x.dim() - 1))
    # Captum holds σ as a float32 tensor (0.2 -> 0.200000003): the replay scales by the float64 σ
    monkeypatch.setattr(torch, "normal", lambda mean, std: by_row * sigma)


@pytest.mark.parametrize("sigma", [0.0, 0.2])
def test_gradient_shap_equals_captum_with_the_same_draws(monkeypatch: pytest.MonkeyPatch, sigma: float) -> None:
    model = _model()
    x, references = _data()
    samples, seed = 6, 3
    ours = gradattr.attribute(
        model, x, method="gradient_shap", target=2, baseline=references, samples=samples, sigma=sigma, seed=seed
    )
    _replay_captum_draws(monkeypatch, x, samples, references.shape[0], seed, sigma)
    theirs = captum_attr.GradientShap(model).attribute(
        x, references, n_samples=samples, stdevs=sigma, target=2
    )
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-10, atol=1e-12)


def test_gradient_shap_does_not_depend_on_the_batching() -> None:
    """Neither on the passes the draws are split into nor on the other samples of the batch."""
    model = _model()
    x, references = _data()
    options: dict[str, Any] = {"baseline": references, "samples": 9, "sigma": 0.1, "target": 0}
    whole = gradattr.attribute(model, x, method="gradient_shap", **options)
    rowwise = gradattr.attribute(model, x, method="gradient_shap", batch_size=1, **options)
    torch.testing.assert_close(whole, rowwise, rtol=0, atol=1e-13)
    alone = gradattr.attribute(model, x[2:], method="gradient_shap", **options)
    torch.testing.assert_close(whole[2:], alone, rtol=0, atol=1e-13)


def test_expected_gradients_is_gradient_shap() -> None:
    model = _model()
    x, references = _data()
    a = gradattr.attribute(model, x, method="expected_gradients", baseline=references, samples=5)
    b = gradattr.attribute(model, x, method="gradient_shap", baseline=references, samples=5)
    assert torch.equal(a, b)


def test_gradient_shap_is_complete_in_expectation() -> None:
    """Σ R → S_c(x) − mean_k S_c(b_k) as the draws grow (Monte-Carlo error ~ 1/√n)."""
    model = _model()
    x, references = _data(batch=2, references=3)
    r, gap = gradattr.attribute(
        model, x, method="gradient_shap", baseline=references, samples=4000, target=1, return_gap=True
    )
    at_x = model(x)[:, 1]
    expected = at_x - model(references)[:, 1].mean()
    torch.testing.assert_close(r.sum((1, 2, 3)) - expected, gap)
    assert float((gap.abs() / expected.abs()).max().detach()) < 0.05


def test_deeplift_shap_is_the_mean_of_deeplift_over_the_references() -> None:
    model = _model()
    x, references = _data()
    exact = {"target": 1, "max_pooling": "exact"}  # DeepLIFT is complete through max pooling as ReLU trees
    r, gap = gradattr.attribute(model, x, method="deeplift_shap", baseline=references, return_gap=True, **exact)
    each = [gradattr.attribute(model, x, method="deeplift", baseline=b[None], **exact) for b in references]
    torch.testing.assert_close(r, torch.stack(each).mean(0), rtol=0, atol=1e-13)
    expected = model(x)[:, 1] - model(references)[:, 1].mean()
    torch.testing.assert_close(r.sum((1, 2, 3)), expected.detach(), rtol=0, atol=1e-12)
    assert float(gap.abs().max()) < 1e-12
    chunked = gradattr.attribute(model, x, method="deeplift_shap", baseline=references, batch_size=1, **exact)
    torch.testing.assert_close(chunked, r, rtol=0, atol=1e-13)


def test_deeplift_shap_equals_captum_on_module_relus() -> None:
    torch.manual_seed(4)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 8), nn.ReLU(), nn.Linear(8, 3)
    ).double()
    x, references = _data()
    ours = gradattr.attribute(model, x, method="deeplift_shap", baseline=references, target=0)
    theirs = captum_attr.DeepLiftShap(model).attribute(x, references, target=0)
    torch.testing.assert_close(ours, theirs.detach(), rtol=1e-10, atol=1e-12)


def test_a_reference_distribution_of_the_wrong_shape_is_refused_by_name() -> None:
    model = _model()
    x, _ = _data()
    with pytest.raises(ValueError, match=r"baseline of shape \(4, 2, 5, 6\) is not a set of references \(K, 2, 6, 6\)"):
        gradattr.attribute(model, x, method="gradient_shap", baseline=torch.zeros(4, 2, 5, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="base must be one of"):
        gradattr.attribute(model, x, method="smoothgrad", base="deeplift_shap")


def test_one_reference_row_without_batch_dimension_and_none_are_accepted() -> None:
    model = _model()
    x, references = _data()
    one = gradattr.attribute(model, x, method="deeplift_shap", baseline=references[0], target=2)
    assert torch.equal(one, gradattr.attribute(model, x, method="deeplift_shap", baseline=references[:1], target=2))
    zero = gradattr.attribute(model, x, method="deeplift_shap", target=2)
    torch.testing.assert_close(zero, gradattr.attribute(model, x, method="deeplift", target=2), rtol=0, atol=1e-13)


def test_the_shap_methods_and_a_token_neuron_on_a_huggingface_vit() -> None:
    """On HF's ViT (attention, GELU, LayerNorm): DeepLiftSHAP is the mean of DeepLIFT over the references and
    complete; GradientSHAP runs; a neuron target on a token of an encoder layer equals the truncated model."""
    hf_zoo = pytest.importorskip("hf_zoo")
    case = next(c for c in hf_zoo.hf_models() if c.name == "vit-eager")
    model = case.model.double()
    x = case.inputs.double()
    references = torch.randn(3, *x.shape[1:], dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    r, gap = gradattr.attribute(model, x, method="deeplift_shap", baseline=references, target=1, return_gap=True)
    each = [gradattr.attribute(model, x, method="deeplift", baseline=b[None], target=1) for b in references]
    torch.testing.assert_close(r, torch.stack(each).mean(0), rtol=0, atol=1e-12)
    assert float(gap.abs().max()) < 1e-8  # float64 rounding through softmax and LayerNorm decompositions
    shap = gradattr.attribute(model, x, method="gradient_shap", baseline=references, target=1, samples=3)
    assert bool(torch.isfinite(shap).all()) and float(shap.abs().sum()) > 0

    class Token(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vit = model.vit

        def forward(self, pixels: Tensor) -> Tensor:
            hidden = self.vit.embeddings(pixels)
            return self.vit.layers[0](hidden)[:, 2, 5]

    ours = gradattr.attribute(model, x, method="deeplift", target=("vit.layers.0", (2, 5)))
    torch.testing.assert_close(ours, gradattr.attribute(Token(), x, method="deeplift"), rtol=0, atol=1e-12)
