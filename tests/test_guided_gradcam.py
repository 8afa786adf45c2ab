"""Guided Backprop, Deconvnet, Grad-CAM and Guided Grad-CAM against Captum 0.9 and by hand.

Captum implements Guided Backprop and Deconvnet with hooks on ``nn.ReLU`` modules, so on module-ReLU
networks it is an independent reference (float64, ``EXACT``); on functional ``F.relu`` its hooks never run
and it returns the plain gradient, which these tests show while checking gradattr against the module twin.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from captum.attr import Deconvolution, GuidedBackprop, GuidedGradCam, LayerAttribution, LayerGradCam, Saliency
from torch import Tensor, nn

import gradattr
from gradattr.models import mnist_cnn, text_cnn

from zoo import FunctionalMLP, InplaceReLUMLP, ReusedReLUMLP

EXACT: dict[str, float] = {"rtol": 1e-10, "atol": 1e-12}
DTYPE = torch.float64


def cnn() -> nn.Sequential:
    """1x12x12 -> conv (10x10) -> ReLU -> maxpool -> conv (3x3) -> tanh -> conv -> ReLU -> flatten -> linear."""
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(1, 4, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3),
            nn.Tanh(),
            nn.Conv2d(6, 5, 1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(5 * 3 * 3, 5),
        )
        .to(DTYPE)
        .eval()
    )


def captum(explainer: Any, *args: Any, **kwargs: Any) -> Tensor:
    constructor_args, call = args[:-1], args[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return explainer(*constructor_args).attribute(call, **kwargs).detach()


X = torch.randn(6, 1, 12, 12, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
TARGET = torch.arange(6) % 5


@pytest.mark.parametrize(("method", "peer"), [("guided_backprop", GuidedBackprop), ("deconvnet", Deconvolution)])
def test_match_captum_on_module_relu_cnn(method: str, peer: Any) -> None:
    model = cnn()
    expected = captum(peer, model, X, target=TARGET)
    got = gradattr.attribute(model, X, method=method, target=TARGET)
    torch.testing.assert_close(got, expected, **EXACT)
    plain = captum(Saliency, model, X, target=TARGET, abs=False)
    assert (got - plain).abs().max() > 1e-3  # the rule changed something


@pytest.mark.parametrize(("method", "peer"), [("guided_backprop", GuidedBackprop), ("deconvnet", Deconvolution)])
def test_functional_relu_gets_the_rule(method: str, peer: Any) -> None:
    """F.relu, a reused nn.ReLU and in-place ReLUs give exactly the module-ReLU twin's map; Captum gives
    the plain gradient on the functional model (its module hooks never fire there)."""
    torch.manual_seed(3)
    functional = FunctionalMLP([10, 16, 16, 4], F.relu).to(DTYPE)
    twin = functional.as_sequential()
    x = torch.randn(8, 10, dtype=DTYPE)
    expected = captum(peer, twin, x, target=1)
    for model in (functional, ReusedReLUMLP(functional), InplaceReLUMLP(functional)):
        torch.testing.assert_close(gradattr.attribute(model, x, method=method, target=1), expected, **EXACT)
    captum_functional = captum(peer, functional, x, target=1)
    plain = captum(Saliency, functional, x, target=1, abs=False)
    torch.testing.assert_close(captum_functional, plain, **EXACT)
    assert (expected - plain).abs().max() > 1e-3


def test_guided_backprop_needs_no_rule_for_softmax() -> None:
    """Guided Backprop is the plain gradient away from ReLUs, so a softmax inside the model keeps its plain
    gradient (equal to Captum), while DeepLIFT uses its exact softmax rule (complete)."""
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 6), nn.Softmax(dim=1), nn.Linear(6, 2)).to(DTYPE)
    x = torch.randn(3, 4, dtype=DTYPE)
    expected = captum(GuidedBackprop, model, x, target=0)
    torch.testing.assert_close(gradattr.attribute(model, x, method="guided_backprop", target=0), expected, **EXACT)
    deeplift = gradattr.attribute(model, x, method="deeplift", target=0)
    delta = model(x)[:, 0] - model(torch.zeros_like(x))[:, 0]
    torch.testing.assert_close(deeplift.sum(1), delta, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("layer", "size"), [("0", (10, 10)), ("6", (3, 3))])
def test_gradcam_matches_captum_layer_gradcam(layer: str, size: tuple[int, int]) -> None:
    model = cnn()
    module = dict(model.named_modules())[layer]
    at_layer = captum(LayerGradCam, model, module, X, target=TARGET, relu_attributions=True)
    assert at_layer.shape == (6, 1, *size)
    got = gradattr.attribute(model, X, method="gradcam", target=TARGET, layer=layer, upsample=False)
    torch.testing.assert_close(got, at_layer, **EXACT)
    for mode, captum_mode in (("linear", "bilinear"), ("nearest", "nearest"), ("area", "area")):
        upsampled = LayerAttribution.interpolate(at_layer, (12, 12), interpolate_mode=captum_mode)
        got = gradattr.attribute(model, X, method="gradcam", target=TARGET, layer=layer, interpolation=mode)
        torch.testing.assert_close(got, upsampled, **EXACT)


def test_gradcam_without_relu_keeps_negative_evidence() -> None:
    model = cnn()
    signed = captum(LayerGradCam, model, model[3], X, target=TARGET)
    got = gradattr.attribute(model, X, method="gradcam", target=TARGET, layer=model[3], relu=False, upsample=False)
    torch.testing.assert_close(got, signed, **EXACT)
    assert (signed < 0).any()


def test_guided_gradcam_matches_captum() -> None:
    model = cnn()
    expected = captum(GuidedGradCam, model, model[3], X, target=TARGET, interpolate_mode="nearest")
    got = gradattr.attribute(model, X, method="guided_gradcam", target=TARGET, layer="3", interpolation="nearest")
    torch.testing.assert_close(got, expected, **EXACT)


def test_gradcam_on_a_functional_relu_model_by_hand() -> None:
    """The paper's MNIST CNN applies ReLU functionally; Grad-CAM of conv2 computed by hand with a hook."""
    torch.manual_seed(2)
    model = mnist_cnn((1, 10, 10), 4).to(DTYPE).eval()
    x = torch.randn(3, 1, 10, 10, dtype=DTYPE)
    stored: list[Tensor] = []
    handle = model.conv2.register_forward_hook(lambda m, i, o: stored.append(o))
    logits = model(x)
    handle.remove()
    activations = stored[0]
    (grad,) = torch.autograd.grad(logits[:, 2].sum(), activations)
    cam = (grad.mean((2, 3), keepdim=True) * activations).sum(1, keepdim=True).clamp(min=0).detach()
    expected = F.interpolate(cam, size=(10, 10), mode="bilinear")
    got = gradattr.attribute(model, x, method="gradcam", target=2, layer="conv2")
    torch.testing.assert_close(got, expected, **EXACT)


def test_gradcam_on_text_conv_upsamples_over_tokens() -> None:
    """A 1-D convolution over token embeddings: the map is linear-interpolated to one value per token."""
    torch.manual_seed(0)
    model = text_cnn(30, 2).eval()
    tokens = torch.randint(1, 30, (4, 12))
    got = gradattr.attribute(model, tokens, method="gradcam", target=1, layer="convs.0", upsample=False)
    cam = gradattr.attribute(model, tokens, method="gradcam", target=1, layer="convs.0")
    assert cam.shape == tokens.shape and cam.dtype == torch.float32
    torch.testing.assert_close(cam, F.interpolate(got, size=12, mode="linear").squeeze(1))


def test_gradcam_errors_name_the_problem() -> None:
    model = cnn()
    with pytest.raises(ValueError, match="pass layer="):
        gradattr.attribute(model, X, method="gradcam")
    with pytest.raises(ValueError, match=r"channels first with spatial dimensions.*'8' \(Linear\) gives \(6, 5\)"):
        gradattr.attribute(model, X, method="gradcam", layer="8")
    with pytest.raises(ValueError, match="interpolation must be one of"):
        gradattr.attribute(model, X, method="gradcam", layer="3", interpolation="cubic")
    with pytest.raises(ValueError, match="no submodule 'conv9'"):
        gradattr.attribute(model, X, method="gradcam", layer="conv9")
    with pytest.raises(ValueError, match="does not use a baseline"):
        gradattr.attribute(model, X, method="gradcam", layer="3", baseline=0.5)
    reused = nn.Sequential(model[0], model[1], model[1], model[2], model[3])
    with pytest.raises(ValueError, match="more than once"):
        gradattr.attribute(reused, X, method="gradcam", layer="1", target=0)
    tokens = torch.randint(1, 30, (2, 12))
    with pytest.raises(TypeError, match="floating input"):
        gradattr.attribute(text_cnn(30, 2), tokens, method="guided_gradcam", layer="convs.0", target=0)


class Tokens(nn.Module):
    """Token features (B, T, 4) -> Linear -> a transformer block -> mean over tokens -> 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(4, 16)
        self.block = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.head = nn.Linear(16, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.block(self.embed(x)).mean(1))


@pytest.mark.parametrize(("layer", "kind"), [("embed", "Linear"), ("block", "TransformerEncoderLayer")])
@pytest.mark.parametrize("method", ["gradcam", "guided_gradcam"])
def test_gradcam_refuses_a_layer_without_spatial_dimensions_unless_reshaped(layer: str, kind: str, method: str) -> None:
    """A (B, T, D) output was read as T channels of a D-long map (a meaningless map, constant over tokens);
    now refused, naming the layer and its output shape; with reshape= the map is over the tokens."""
    torch.manual_seed(0)
    model, x = Tokens().eval(), torch.randn(2, 9, 4)
    with pytest.raises(ValueError) as error:
        gradattr.attribute(model, x, method, layer=layer, target=0)
    assert str(error.value).startswith(
        "Grad-CAM needs a layer whose output is channels first with spatial dimensions (B, K, *spatial); "
        f"layer '{layer}' ({kind}) gives (2, 9, 16): tokens by features, features last, no spatial dimensions. "
        "Choose a convolutional layer (e.g. the last one), or pass reshape="
    )
    if method == "guided_gradcam":
        return
    per_token = gradattr.attribute(model, x, "gradcam", layer=layer, target=0, upsample=False, relu=False,
                                   reshape=lambda a: a.transpose(1, 2))  # fmt: skip
    with torch.enable_grad():  # by hand: alpha_d = mean over tokens of dS/dA, map_t = sum_d alpha_d A_td
        seen = {}
        handle = getattr(model, layer).register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
        score = model(x)[:, 0].sum()
        handle.remove()
        (gradient,) = torch.autograd.grad(score, seen["a"])
    expected = (gradient.mean(1, keepdim=True) * seen["a"]).sum(-1).detach()
    torch.testing.assert_close(per_token.squeeze(1), expected)
    with pytest.raises(ValueError, match=r"reshape must give \(B, K, \*spatial\) with B = 2; it gave \(2, 16\)"):
        gradattr.attribute(model, x, "gradcam", layer=layer, target=0, reshape=lambda a: a[:, 0])
