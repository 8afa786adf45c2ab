"""Grad-CAM++, HiResCAM, XGrad-CAM, LayerCAM and Eigen-CAM against float64 references written here from their
formulas (the layer's activations A and the gradient g of S_c taken by hand with a hook and autograd), the
reading of token layers with ``reshape="auto"``, and maps that find the patch holding the class evidence."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gradattr
from gradattr.methods.layer_layout import auto_layout
from hf_zoo import hf_model

DTYPE = torch.float64
TOLERANCE: dict[str, float] = {"rtol": 1e-8, "atol": 1e-12}
GRADIENT_CAMS = ("gradcam_plus_plus", "hirescam", "xgradcam", "layercam")
CAMS = (*GRADIENT_CAMS, "eigencam")


def cnn() -> nn.Sequential:
    """1x12x12 -> conv -> ReLU -> maxpool -> conv (layer "3", 4x4) -> ReLU -> conv 1x1 -> flatten -> linear."""
    torch.manual_seed(0)
    layers = [nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 2), nn.ReLU(), nn.Conv2d(6, 5, 1),
              nn.Flatten(), nn.Linear(5 * 4 * 4, 5)]  # fmt: skip
    return nn.Sequential(*layers).to(DTYPE).eval()


class FunctionalNet(nn.Module):
    """Functional ReLUs and one convolution applied twice before the layer ``head_conv`` that is read."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.stem = nn.Conv2d(1, 4, 3)
        self.twice = nn.Conv2d(4, 4, 3, padding=1)
        self.head_conv = nn.Conv2d(4, 6, 3)
        self.head = nn.Linear(6 * 8 * 8, 5)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.stem(x))
        h = F.relu(self.twice(F.relu(self.twice(h))))
        return self.head(F.relu(self.head_conv(h)).flatten(1))


def activations_and_gradient(model: nn.Module, layer: nn.Module, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """A = the layer's output and g = ∂(Σ_i S_c(x_i))/∂A, by a forward hook and autograd."""
    seen: list[Tensor] = []
    handle = layer.register_forward_hook(lambda module, args, output: seen.append(output))
    try:
        scores = model(x).gather(1, target.unsqueeze(1)).sum()
    finally:
        handle.remove()
    (gradient,) = torch.autograd.grad(scores, seen[0])
    return seen[0].detach(), gradient


def plus_plus(a: Tensor, g: Tensor) -> Tensor:
    """Grad-CAM++: α = g²/(2g² + Σ_ab A·g³ + 1e-6), 0 where g = 0; w_k = Σ_ab α ReLU(g); Σ_k w_k A_k."""
    total = a.sum((2, 3), keepdim=True)
    alpha = torch.where(g != 0, g**2 / (2 * g**2 + total * g**3 + 1e-6), torch.zeros_like(g))
    return ((alpha * g.clamp(min=0)).sum((2, 3), keepdim=True) * a).sum(1)


def xgrad(a: Tensor, g: Tensor) -> Tensor:
    return ((g * a).sum((2, 3), keepdim=True) / (a.sum((2, 3), keepdim=True) + 1e-7) * a).sum(1)


def eigen(a: Tensor, g: Tensor) -> Tensor:
    """The projection on the top eigenvector of the covariance over positions (eigh, not SVD), its sign so that
    it correlates positively with the channel sums."""
    maps = []
    for sample in a:
        m = sample.flatten(1).T
        m = m - m.mean(0)
        _, vectors = torch.linalg.eigh(m.T @ m)
        projection = m @ vectors[:, -1]
        sign = 1.0 if float(projection @ sample.flatten(1).sum(0)) >= 0 else -1.0
        maps.append(sign * projection.reshape(sample.shape[1:]))
    return torch.stack(maps)


REFERENCES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "gradcam_plus_plus": plus_plus,
    "hirescam": lambda a, g: (g * a).sum(1),
    "xgradcam": xgrad,
    "layercam": lambda a, g: (g.clamp(min=0) * a).sum(1),
    "eigencam": eigen,
}


def by_hand(method: str, model: nn.Module, layer: nn.Module, x: Tensor, target: Tensor, relu: bool) -> Tensor:
    cam = REFERENCES[method](*activations_and_gradient(model, layer, x, target)).unsqueeze(1)
    return cam.clamp(min=0) if relu else cam


X = torch.randn(6, 1, 12, 12, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
TARGET = torch.arange(6) % 5


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("method", CAMS)
def test_cams_equal_their_formulas(method: str, relu: bool) -> None:
    for model, name in ((cnn(), "3"), (FunctionalNet().to(DTYPE).eval(), "head_conv")):
        layer = dict(model.named_modules())[name]
        expected = by_hand(method, model, layer, X, TARGET, relu)
        got = gradattr.attribute(model, X, method=method, layer=name, target=TARGET, relu=relu, upsample=False)
        torch.testing.assert_close(got, expected, **TOLERANCE)
        # a layer before a ReLU: LayerCAM's ReLU(g) is 0 where A < 0, so its map is never negative
        assert expected.abs().max() > 1e-3 and (relu or method == "layercam" or (expected < 0).any())
        upsampled = gradattr.attribute(model, X, method=method, layer=name, target=TARGET, relu=relu)
        torch.testing.assert_close(upsampled, F.interpolate(got, size=(12, 12), mode="bilinear"), **TOLERANCE)


def test_gradcam_plus_plus_is_zero_where_the_gradient_is() -> None:
    """The conv before a ReLU and a max-pool: g = 0 where A < 0 and off the pooled maxima; α is 0 there, not
    NaN, and a channel whose gradient is 0 everywhere gets weight 0."""
    model = cnn()
    model[5].weight.data[:, 2] = 0.0  # channel 2 of layer "3" no longer reaches the output
    pooled = nn.Sequential(model[:5], nn.MaxPool2d(2), nn.Flatten(), nn.Linear(6 * 2 * 2, 5)).to(DTYPE).eval()
    for net in (model, pooled):
        a, g = activations_and_gradient(net, net[3] if net is model else net[0][3], X, TARGET)
        assert (g == 0).float().mean() > 0.3
        got = gradattr.attribute(net, X, method="gradcam_plus_plus", layer="3" if net is model else "0.3",
                                 target=TARGET, upsample=False, relu=False)  # fmt: skip
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, plus_plus(a, g).unsqueeze(1), **TOLERANCE)


def test_eigencam_is_class_agnostic_and_needs_no_gradient() -> None:
    model = cnn()
    first = gradattr.attribute(model, X, method="eigencam", layer="3", target=0)
    torch.testing.assert_close(gradattr.attribute(model, X, method="eigencam", layer="3", target=4), first)
    with torch.no_grad():
        torch.testing.assert_close(gradattr.attribute(model, X, method="eigencam", layer="3"), first)


class PatchReader(nn.Module):
    """A ViT-like model whose class c reads only patch ``PATCHES[c]``: 4x4 patches of a 1x16x16 image embedded
    with non-negative weights, a CLS token in front, a token layer (Linear + ReLU, non-negative weights) and a
    head that takes class c's logit from its patch's token alone, with non-negative weights."""

    PATCHES = (5, 10, 0, 15)

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.embed = nn.Conv2d(1, 8, 4, stride=4, bias=False)
        self.cls = nn.Parameter(torch.randn(1, 1, 8))
        self.tokens = nn.Sequential(nn.Linear(8, 8, bias=False), nn.ReLU())
        self.readout = nn.Parameter(torch.rand(4, 8))
        with torch.no_grad():
            self.embed.weight.abs_()
            self.tokens[0].weight.abs_()

    def forward(self, x: Tensor) -> Tensor:
        patches = self.embed(x).flatten(2).transpose(1, 2)
        tokens = self.tokens(torch.cat([self.cls.expand(len(x), -1, -1), patches], 1))
        return (tokens[:, 1 + torch.tensor(self.PATCHES)] * self.readout).sum(-1)


@pytest.mark.parametrize("method", ("gradcam", *GRADIENT_CAMS))
def test_the_map_peaks_at_the_patch_holding_the_class_evidence(method: str) -> None:
    """Each sample has a bright patch where its target class reads (and a dimmer one elsewhere): the map of the
    (B, 1 + 16, D) token layer read with reshape="auto" peaks there, for every gradient CAM."""
    model = PatchReader().to(DTYPE).eval()
    target = torch.tensor([0, 1, 2, 3, 1, 0])
    x = torch.rand(6, 1, 16, 16, generator=torch.Generator().manual_seed(4), dtype=DTYPE) * 0.5
    for i, c in enumerate(target.tolist()):
        for patch, brightness in ((PatchReader.PATCHES[c], 3.0), (PatchReader.PATCHES[c - 1], 1.5)):
            row, column = divmod(patch, 4)
            x[i, :, 4 * row : 4 * row + 4, 4 * column : 4 * column + 4] += brightness
    cam = gradattr.attribute(model, x, method=method, layer="tokens", target=target, reshape="auto", upsample=False)
    assert cam.shape == (6, 1, 4, 4)
    assert cam.flatten(1).argmax(1).tolist() == [PatchReader.PATCHES[c] for c in target.tolist()]


@pytest.mark.parametrize("method", ("gradcam", "guided_gradcam", *CAMS))
@pytest.mark.parametrize(("name", "layer", "tokens"), [("vit", "vit.layers.0", 17), ("swin", "swin.layernorm", 16)])
def test_hf_token_layers_are_read_as_their_grid(method: str, name: str, layer: str, tokens: int) -> None:
    """HF ViT (a CLS token and a 4x4 grid) at an encoder layer's output; HF Swin at its final LayerNorm (its
    stages and blocks return tuples): reshape="auto" gives the same numbers as the rearrangement by hand."""
    case = hf_model(name)
    grid = 4

    def by_hand_reshape(a: Tensor) -> Tensor:
        return a[:, tokens - grid * grid :].transpose(1, 2).reshape(len(a), -1, grid, grid)

    options = {} if method == "guided_gradcam" else {"upsample": False}
    run = lambda reshape: gradattr.attribute(case.model, case.inputs, method=method, layer=layer, target=1,  # noqa: E731
                                             reshape=reshape, **options)  # fmt: skip
    auto = run("auto")
    assert auto.shape == (case.inputs.shape if method == "guided_gradcam" else (2, 1, grid, grid))
    torch.testing.assert_close(auto, run(by_hand_reshape), rtol=0, atol=0)
    assert auto.abs().max() > 0


def layout_of(layer: nn.Module, shape: tuple[int, ...]) -> Tensor:
    return auto_layout(layer, "layer", torch.zeros(shape))(torch.arange(float(torch.Size(shape).numel())).view(shape))


def test_auto_layout_rules() -> None:
    """Leading tokens: the smallest s with T - s square (none, CLS, CLS + distillation, CLS + 4 registers);
    channels-last maps permuted; convolution outputs kept, (B, C, L) of a Conv1d included."""
    for leading in (0, 1, 2, 5):
        tokens = torch.arange(2 * (leading + 9) * 3, dtype=torch.float).view(2, leading + 9, 3)
        got = auto_layout(nn.Linear(3, 3), None, tokens)(tokens)
        assert torch.equal(got, tokens[:, leading:].transpose(1, 2).reshape(2, 3, 3, 3))
    assert torch.equal(layout_of(nn.LayerNorm(5), (2, 3, 3, 5)), layout_of(nn.Identity(), (2, 3, 3, 5)))
    assert layout_of(nn.LayerNorm(5), (2, 3, 4, 5)).shape == (2, 5, 3, 4)
    assert layout_of(nn.Identity(), (2, 3, 3, 5)).shape == (2, 5, 3, 3)
    assert layout_of(nn.Identity(), (2, 8, 7, 7)).shape == (2, 8, 7, 7)
    assert layout_of(nn.Conv2d(3, 3, 1), (2, 3, 3, 5)).shape == (2, 3, 3, 5)
    assert layout_of(nn.Conv1d(3, 10, 1), (2, 10, 7)).shape == (2, 10, 7)


@pytest.mark.parametrize("method", CAMS)
def test_layers_without_a_map_are_refused_naming_their_shape(method: str) -> None:
    model, tokens = nn.Sequential(nn.Linear(4, 16), nn.Flatten(), nn.Linear(35 * 16, 3)), torch.randn(2, 35, 4)
    refused = r"'0' \(Linear\) gives \(2, 35, 16\): tokens by features.*reshape=\"auto\""
    with pytest.raises(ValueError, match=refused):
        gradattr.attribute(model, tokens, method=method, layer="0", target=0)
    with pytest.raises(ValueError, match=r"output \(2, 35, 16\) as \(B, T, D\) tokens, but T = 35 is not a square"):
        gradattr.attribute(model, tokens, method=method, layer="0", target=0, reshape="auto")
    with pytest.raises(ValueError, match=r"cannot read layer '2' \(Linear\)'s output \(2, 3\) as a map"):
        gradattr.attribute(model, tokens, method=method, layer="2", target=0, reshape="auto")
    with pytest.raises(ValueError, match=r"'7' \(Linear\) gives \(6, 5\): no spatial dimensions"):
        gradattr.attribute(cnn(), X, method=method, layer="7", target=0)
    with pytest.raises(TypeError, match=r"reshape must be None, \"auto\" or a function .*got str 'tokens'"):
        gradattr.attribute(cnn(), X, method=method, layer="3", target=0, reshape="tokens")
