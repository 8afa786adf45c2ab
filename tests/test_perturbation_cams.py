"""Score-CAM and Ablation-CAM against float64 references written from the formulas, one channel at a time."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import gradattr
from gradattr.methods._problem import build_problem
from gradattr.methods.perturbation_cams import _channel_positions, _suffix_is_exact, ablation_scores

TOLERANCE = 1e-8


class SmallCNN(nn.Module):
    """conv -> ReLU -> conv (the explained layer ``body``) -> ReLU -> pool -> linear; ``dead`` channels of
    ``body`` get a bias so negative that their map is constant (0 after the ReLU)."""

    def __init__(self, skip: bool = False, concat: bool = False, dead: int = 0) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 6, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(6, 6, 3, stride=2, padding=1), nn.ReLU())
        self.head = nn.Linear(12 if concat else 6, 4)
        self.skip, self.concat = skip, concat
        with torch.no_grad():
            self.body[0].bias[:dead] = -1e3

    def forward(self, x: Tensor) -> Tensor:
        h = self.stem(x).relu()
        a = self.body(h)
        if self.skip:  # the layer's output mixed with a tensor from before it
            a = a + F.avg_pool2d(h, 2)
        if self.concat:
            a = torch.cat([a, F.avg_pool2d(h, 2)], dim=1)
        return self.head(F.adaptive_avg_pool2d(a, 1).flatten(1))


def _model(**kwargs: bool | int) -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN(**kwargs).double().eval()


def _activations(model: nn.Module, x: Tensor) -> Tensor:
    seen: list[Tensor] = []
    handle = model.body.register_forward_hook(lambda module, args, out: seen.append(out.detach().clone()))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


def _upsampled(cam: Tensor, x: Tensor) -> Tensor:
    return F.interpolate(cam.unsqueeze(1), size=x.shape[-2:], mode="bilinear").expand_as(x)


def reference_scorecam(model: nn.Module, x: Tensor, target: list[int]) -> Tensor:
    """ReLU(Σ_k softmax_k(S_c(x ⊙ M_k)) A^k), M_k the min-max normalised upsampled map (0 if constant)."""
    activations = _activations(model, x)
    cams = []
    for b, c in enumerate(target):
        scores = []
        for k in range(activations.shape[1]):
            up = F.interpolate(activations[b, k][None, None], size=x.shape[-2:], mode="bilinear")[0, 0]
            low, high = up.min(), up.max()
            mask = (up - low) / (high - low) if high > low else torch.zeros_like(up)
            with torch.no_grad():
                scores.append(model(x[b : b + 1] * mask)[0, c])
        weights = torch.softmax(torch.stack(scores), dim=0)
        cams.append((weights[:, None, None] * activations[b]).sum(0).clamp(min=0))
    return torch.stack(cams)


def reference_ablationcam(model: nn.Module, x: Tensor, target: list[int]) -> Tensor:
    """ReLU(Σ_k (y_c - y_c^k) / y_c A^k), y_c^k with channel k of the layer's output set to 0."""
    activations = _activations(model, x)
    cams = []
    for b, c in enumerate(target):
        with torch.no_grad():
            y = model(x[b : b + 1])[0, c]
        weights = []
        for k in range(activations.shape[1]):

            def ablate(module: nn.Module, args: tuple, out: Tensor, k: int = k) -> Tensor:
                out = out.clone()
                out[:, k] = 0
                return out

            handle = model.body.register_forward_hook(ablate)
            with torch.no_grad():
                weights.append((y - model(x[b : b + 1])[0, c]) / y)
            handle.remove()
        cams.append((torch.stack(weights)[:, None, None] * activations[b]).sum(0).clamp(min=0))
    return torch.stack(cams)


REFERENCES = {"scorecam": reference_scorecam, "ablationcam": reference_ablationcam}
INPUT = torch.randn(3, 2, 12, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
TARGET = [0, 2, 1]


@pytest.mark.parametrize("method", sorted(REFERENCES))
@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("model_options", [{}, {"skip": True}, {"dead": 3}], ids=["plain", "skip", "dead"])
def test_matches_reference(method: str, upsample: bool, model_options: dict) -> None:
    model = _model(**model_options)
    expected = REFERENCES[method](model, INPUT, TARGET)
    result = gradattr.attribute(model, INPUT, method=method, layer="body", target=TARGET, upsample=upsample)
    if upsample:
        torch.testing.assert_close(result, _upsampled(expected, INPUT), rtol=0, atol=TOLERANCE)
    else:
        torch.testing.assert_close(result, expected.unsqueeze(1), rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("method", sorted(REFERENCES))
def test_batch_size_one_equals_default_without_nan(method: str) -> None:
    """Half the channels constant (pytorch-grad-cam's NaN of small batches, PR #173): the same finite map."""
    model = _model(dead=3)
    default = gradattr.attribute(model, INPUT, method=method, layer="body", target=TARGET)
    one = gradattr.attribute(model, INPUT, method=method, layer="body", target=TARGET, batch_size=1)
    assert torch.isfinite(one).all()
    torch.testing.assert_close(one, default, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("method", sorted(REFERENCES))
def test_per_sample_targets_follow_the_rows(method: str) -> None:
    model = _model()
    batched = gradattr.attribute(model, INPUT, method=method, layer="body", target=TARGET)
    alone = [
        gradattr.attribute(model, INPUT[b : b + 1], method=method, layer="body", target=c) for b, c in enumerate(TARGET)
    ]
    torch.testing.assert_close(batched, torch.cat(alone), rtol=0, atol=TOLERANCE)
    assert not torch.allclose(batched, gradattr.attribute(model, INPUT, method=method, layer="body", target=0))


class Gained(nn.Module):
    """The small CNN with a per-sample keyword argument used after the layer: logits x ``gain`` (B, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = _model(skip=True)

    def forward(self, x: Tensor, gain: Tensor) -> Tensor:
        return self.inner(x) * gain


@pytest.mark.parametrize("method", sorted(REFERENCES))
def test_per_sample_forward_kwargs_follow_the_rows(method: str) -> None:
    model, gain = Gained(), torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64)
    layer = "inner.body"
    batched = gradattr.attribute(model, INPUT, method=method, layer=layer, target=TARGET, forward_kwargs={"gain": gain})
    alone = [
        gradattr.attribute(model, INPUT[b : b + 1], method=method, layer=layer, target=c,
                           forward_kwargs={"gain": gain[b : b + 1]})
        for b, c in enumerate(TARGET)
    ]  # fmt: skip
    torch.testing.assert_close(batched, torch.cat(alone), rtol=0, atol=TOLERANCE)


def test_scorecam_evaluates_each_distinct_mask_once() -> None:
    """3 of 6 channels are constant: one zero mask for them, so 4 masked rows per sample, not 6."""
    model = _model(dead=3)
    rows: list[int] = []
    handle = model.stem.register_forward_pre_hook(lambda module, args: rows.append(args[0].shape[0]))
    gradattr.attribute(model, INPUT, method="scorecam", layer="body", target=TARGET)
    handle.remove()
    assert sum(rows) == len(INPUT) + 4 * len(INPUT)  # the activations' pass, then the masked inputs


@pytest.mark.parametrize("model_options", [{"skip": True}, {"concat": True}], ids=["skip", "concat"])
def test_ablation_after_the_layer_equals_full_passes(model_options: dict) -> None:
    """Running only the part after the layer on the ablated rows gives the full passes' scores where one row
    broadcasts (a skip connection around the layer); a concatenation with the pre-layer tensor cannot, and the
    probe sends it to the full passes."""
    model = _model(**model_options)
    problem = build_problem(model, INPUT, TARGET, None, floating=False)
    full = ablation_scores(problem, model.body, "body", None, None, suffix=False)
    positions = _channel_positions(problem, model.body, "body", None)
    channels = torch.arange(-1, 2)
    with torch.no_grad():
        exact = _suffix_is_exact(problem, model.body, positions, channels)
    if model_options.get("skip"):
        assert exact
        suffix = ablation_scores(problem, model.body, "body", None, 4, suffix=True)
        torch.testing.assert_close(suffix, full, rtol=0, atol=TOLERANCE)
    else:
        assert not exact
    torch.testing.assert_close(ablation_scores(problem, model.body, "body", None, None), full, rtol=0, atol=TOLERANCE)
    expected = reference_ablationcam(model, INPUT, TARGET)
    result = gradattr.attribute(model, INPUT, method="ablationcam", layer="body", target=TARGET, upsample=False)
    torch.testing.assert_close(result, expected.unsqueeze(1), rtol=0, atol=TOLERANCE)


def test_ablation_with_reshape_ablates_the_channel_where_it_lies() -> None:
    """A channels-last reading of the layer (reshape permutes): channel k is zeroed in the raw output's last
    dimension, so the result equals the channels-first model's."""

    class ChannelsLast(nn.Module):
        def __init__(self, inner: SmallCNN) -> None:
            super().__init__()
            self.inner = inner
            self.body = nn.Identity()

        def forward(self, x: Tensor) -> Tensor:
            a = self.body(self.inner.body(self.inner.stem(x).relu()).permute(0, 2, 3, 1))
            return self.inner.head(a.mean(dim=(1, 2)))

    inner = _model()
    plain = gradattr.attribute(inner, INPUT, method="ablationcam", layer="body", target=TARGET)
    permuted = gradattr.attribute(
        ChannelsLast(inner), INPUT, method="ablationcam", layer="body", target=TARGET,
        reshape=lambda a: a.permute(0, 3, 1, 2),
    )  # fmt: skip
    torch.testing.assert_close(permuted, plain, rtol=0, atol=TOLERANCE)
    with pytest.raises(ValueError, match="only rearrange"):
        gradattr.attribute(inner, INPUT, method="ablationcam", layer="body", target=TARGET, reshape=lambda a: a * 0.5)


def test_errors_name_the_input() -> None:
    model = _model()
    with pytest.raises(ValueError, match="batch_size"):
        gradattr.attribute(model, INPUT, method="scorecam", layer="body", batch_size=0)
    with pytest.raises(ValueError, match="scorecam masks the model's input"):
        gradattr.attribute(model, INPUT.long(), method="scorecam", layer="body")
    zero = _model()
    with torch.no_grad():
        zero.head.weight.zero_()
        zero.head.bias.zero_()
    with pytest.raises(FloatingPointError, match="divides by the target score"):
        gradattr.attribute(zero, INPUT, method="ablationcam", layer="body", target=0)
