"""The small transformers of the study: shapes, padding, and every method on them (tiny sizes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import gradattr
from gradattr.data import load_digits
from gradattr.methods import LAYER_METHODS
from gradattr.models import TextTransformer, VisionTransformer, build_model, text_transformer, vision_transformer


def tiny_vit(shape: tuple[int, int, int] = (1, 8, 8)) -> VisionTransformer:
    torch.manual_seed(0)
    return vision_transformer(shape, 5, dim=8, depth=2, heads=2).eval()


def tiny_text() -> TextTransformer:
    torch.manual_seed(0)
    return text_transformer(40, 3, embedding_dim=8, depth=2, heads=2, max_len=32).eval()


def token_ids(batch: int = 3, length: int = 10, padding: int = 3) -> torch.Tensor:
    ids = torch.randint(1, 40, (batch, length), generator=torch.Generator().manual_seed(0))
    ids[0, :padding] = 0  # left-padded, as TextDataset stores reviews
    return ids


@pytest.mark.parametrize("shape, patch", [((1, 8, 8), 2), ((1, 28, 28), 4), ((3, 32, 32), 4)])
def test_vit_patches_and_logits(shape: tuple[int, int, int], patch: int) -> None:
    model = tiny_vit(shape)
    assert model.patch_size == patch
    assert model.pos_embed.shape[1] == (shape[1] // patch) * (shape[2] // patch) + 1  # patches and the class token
    assert not any(isinstance(m, nn.Softmax) for m in model.modules())
    out = model(torch.randn(4, *shape))
    assert out.shape == (4, 5) and torch.isfinite(out).all()


def test_vit_refuses_images_that_do_not_split_into_patches() -> None:
    with pytest.raises(ValueError, match="3x3 patches"):
        vision_transformer((1, 8, 8), 10, patch_size=3)
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        vision_transformer((1, 8, 8), 10, dim=8, heads=3)


def test_text_transformer_ignores_padding() -> None:
    """Padding (id 0) is never attended to and not pooled; positions count from the end: a left-padded review
    gives the logits of the same review without padding."""
    model = tiny_text()
    ids = token_ids(padding=0)
    padded = torch.cat([torch.zeros(3, 5, dtype=torch.long), ids], dim=1)
    torch.testing.assert_close(model(padded), model(ids), rtol=1e-5, atol=1e-6)
    assert isinstance(model.embedding, nn.Embedding) and model.embedding.padding_idx == 0


def test_text_transformer_all_padding_and_too_long() -> None:
    model = tiny_text()
    assert torch.isfinite(model(torch.zeros(2, 6, dtype=torch.long))).all()
    with pytest.raises(ValueError, match="at most 32 tokens"):
        model(torch.ones(1, 33, dtype=torch.long))


def test_build_model_sizes_the_vit_for_digits() -> None:
    model = build_model("vision_transformer", load_digits(seed=0), dim=8, heads=2)
    assert isinstance(model, VisionTransformer) and model.input_shape == (1, 8, 8) and model.patch_size == 2


def _methods(text: bool) -> list[str]:
    """Every method; Grad-CAM's need a convolution (the ViT's patch embedding), which the text model lacks."""
    return [m for m in gradattr.METHODS if not (text and m in LAYER_METHODS)]


def _options(method: str) -> dict[str, object]:
    options: dict[str, dict[str, object]] = {
        "integrated_gradients": {"steps": 8},
        "smoothgrad": {"samples": 3},
        "shapley_sampling": {"samples": 2},
        **{layer_method: {"layer": "patch_embed"} for layer_method in LAYER_METHODS},
    }
    return options.get(method, {})


@pytest.mark.parametrize("method", _methods(text=False))
def test_every_method_on_the_vit_is_finite(method: str) -> None:
    model = tiny_vit()
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    attributions = gradattr.attribute(model, x, method=method, target=torch.tensor([0, 1, 2]), **_options(method))
    assert attributions.shape == x.shape and torch.isfinite(attributions).all()
    assert attributions.abs().sum() > 0


@pytest.mark.parametrize("method", _methods(text=True))
def test_every_method_on_the_text_transformer_is_finite(method: str) -> None:
    model = tiny_text()
    ids = token_ids()
    attributions = gradattr.attribute(model, ids, method=method, target=1, layer="embedding", **_options(method))
    assert attributions.shape == (*ids.shape, 8) and torch.isfinite(attributions).all()
    assert attributions.abs().sum() > 0


def _logits_with_embedding(model: TextTransformer, ids: torch.Tensor, embedded: torch.Tensor) -> torch.Tensor:
    """The model's logits with its embedding output replaced by ``embedded``."""
    handle = model.embedding.register_forward_hook(lambda _m, _i, _o: embedded)
    try:
        with torch.no_grad():
            return model(ids)
    finally:
        handle.remove()


@pytest.mark.parametrize("model_name", ["vit", "text"])
def test_deeplift_is_complete_on_the_transformers(model_name: str) -> None:
    """Σ R = S_c(x) − S_c(x̄) to float precision (float64), with zero and random baselines."""
    model = (tiny_vit() if model_name == "vit" else tiny_text()).double()
    rows, target = torch.arange(3), torch.tensor([0, 1, 2])
    if model_name == "vit":
        x = torch.rand(3, 1, 8, 8, dtype=torch.float64) * 2 - 1
        baselines = [torch.zeros_like(x), torch.rand_like(x) - 0.5]
    else:
        x = token_ids()
        baselines = [torch.zeros(3, 10, 8, dtype=torch.float64), torch.randn(3, 10, 8, dtype=torch.float64) * 0.1]
    for baseline in baselines:
        if model_name == "vit":
            relevance = gradattr.attribute(model, x, method="deeplift", target=target, baseline=baseline)
            with torch.no_grad():
                delta = (model(x) - model(baseline))[rows, target]
        else:
            relevance = gradattr.attribute(model, x, method="deeplift", target=target, baseline=baseline,
                                           layer="embedding")  # fmt: skip
            with torch.no_grad():
                delta = (model(x) - _logits_with_embedding(model, x, baseline))[rows, target]
        gap = relevance.flatten(1).sum(1) - delta
        assert gap.abs().max() <= 1e-6 * delta.abs().max(), (gap, delta)
