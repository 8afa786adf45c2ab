"""forward_kwargs=, output= and position= on models written by hand, against the same model with each sample's
extra argument bound by hand (one call per sample): every batched pass must give each row its own sample's
value (IG steps, occlusion windows, Shapley orderings, SmoothGrad copies, Sensitivity-n subsets, metric
perturbations, memory-budget splits). Also Grad-CAM on a multi-input model and token_attributions."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import gradattr
from gradattr.metrics import completeness_gap, infidelity, max_sensitivity

B, F, C = 3, 6, 4
X = torch.randn(B, F, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
MASK = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 0, 1, 0, 1, 0], [0, 1, 1, 1, 1, 1]], dtype=torch.float64)
TARGET = torch.tensor([0, 3, 1])


class Masked(nn.Module):
    """A model with a per-sample extra argument: the mask is multiplied into the input."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(F, 8), nn.Tanh(), nn.Linear(8, C)).double()

    def forward(self, x: Tensor, mask: Tensor, scale: float = 1.0) -> Tensor:
        return self.body(x * mask) * scale


class Bound(nn.Module):
    """``Masked`` with one sample's mask bound by hand (shared by every row of a pass)."""

    def __init__(self, model: Masked, mask: Tensor) -> None:
        super().__init__()
        self.model, self.mask = model, mask

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x, self.mask.expand(x.shape[0], -1), scale=2.0)


MODEL = Masked()
KWARGS = {"mask": MASK, "scale": 2.0}  # a per-sample tensor and a plain value


def _per_sample(method: str, **options: object) -> Tensor:
    rows = [
        gradattr.attribute(Bound(MODEL, MASK[b : b + 1]), X[b : b + 1], method, target=int(TARGET[b]), **options)
        for b in range(B)
    ]
    return torch.cat(rows)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("saliency", {}),
        ("gradient_x_input", {}),
        ("deeplift", {}),
        ("integrated_gradients", {"steps": 20}),
        ("integrated_gradients", {"steps": 20, "max_memory": 2_000}),  # many passes: rows split by the budget
        ("occlusion", {"window": 2}),
        ("shapley_sampling", {"samples": 3}),
    ],
)
def test_per_sample_kwargs_equal_binding_by_hand(method: str, options: dict) -> None:
    got = gradattr.attribute(MODEL, X, method, target=TARGET, forward_kwargs=KWARGS, **options)
    expected = _per_sample(method, **{k: v for k, v in options.items() if k != "max_memory"})
    assert expected.abs().max() > 0
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_a_mask_bound_for_the_whole_batch_breaks_occlusion() -> None:
    """Why forward_kwargs exists: a (B, F) mask held by the model does not fit the (windows x B) rows."""
    whole = Bound(MODEL, MASK)
    with pytest.raises(RuntimeError, match="size of the tensor"):
        gradattr.attribute(whole, X, "occlusion", target=TARGET)


def test_smoothgrad_copies_get_their_samples_mask() -> None:
    """The noisy copies by hand (seeded CPU generator, one draw of the batch per copy, σ relative to each
    sample's range), each explained with its own sample's mask bound."""
    samples, sigma = 4, 0.2
    got = gradattr.attribute(
        MODEL, X, "smoothgrad", target=TARGET, forward_kwargs=KWARGS, samples=samples, sigma=sigma, abs=False
    )
    generator = torch.Generator().manual_seed(0)
    scale = (X.amax(1) - X.amin(1)).unsqueeze(1) * sigma
    total = torch.zeros_like(X)
    for _ in range(samples):
        noisy = X + torch.randn(X.shape, generator=generator, dtype=X.dtype) * scale
        for b in range(B):
            model = Bound(MODEL, MASK[b : b + 1])
            total[b] += gradattr.attribute(model, noisy[b : b + 1], "saliency", target=int(TARGET[b]), abs=False)[0]
    torch.testing.assert_close(got, total / samples, rtol=1e-10, atol=1e-12)


def test_sensitivity_n_subsets_get_their_samples_mask() -> None:
    r = gradattr.attribute(MODEL, X, "gradient_x_input", target=TARGET, forward_kwargs=KWARGS)
    got = gradattr.sensitivity_n(MODEL, X, r, target=TARGET, ns=[1, 2, 4], num_subsets=10, forward_kwargs=KWARGS)
    for b in range(B):
        one = gradattr.sensitivity_n(
            Bound(MODEL, MASK[b : b + 1]), X[b : b + 1], r[b : b + 1], target=int(TARGET[b]), ns=[1, 2, 4],
            num_subsets=10,
        )  # fmt: skip
        torch.testing.assert_close(got.per_sample[b], one.per_sample[0], equal_nan=True)
    assert bool(torch.isfinite(got.per_sample).any())


def test_evaluate_cuts_per_sample_kwargs_with_its_batches() -> None:
    labels = TARGET
    table = gradattr.evaluate(
        MODEL, (X, labels), ["gradient_x_input", "occlusion"], ns=[1, 3], num_subsets=8, batch_size=2,
        progress=False, forward_kwargs=KWARGS,
    )  # fmt: skip
    for b in range(B):
        one = gradattr.evaluate(
            Bound(MODEL, MASK[b : b + 1]), (X[b : b + 1], labels[b : b + 1]), ["gradient_x_input", "occlusion"],
            ns=[1, 3], num_subsets=8, progress=False,
        )  # fmt: skip
        for name in ("gradient_x_input", "occlusion"):
            torch.testing.assert_close(
                table.results[name].per_sample[b], one.results[name].per_sample[0], equal_nan=True
            )


def test_metrics_give_each_perturbed_copy_its_samples_mask() -> None:
    r = gradattr.attribute(MODEL, X, "saliency", target=TARGET, forward_kwargs=KWARGS, abs=False)

    def halve(x: Tensor, generator: torch.Generator) -> Tensor:
        return x * 0.5

    got = infidelity(MODEL, X, r, TARGET, perturbation=halve, samples=2, forward_kwargs=KWARGS)
    gaps = completeness_gap(MODEL, X, r, TARGET, forward_kwargs=KWARGS)
    for b in range(B):
        model = Bound(MODEL, MASK[b : b + 1])
        one = infidelity(model, X[b : b + 1], r[b : b + 1], int(TARGET[b]), perturbation=halve, samples=2)
        torch.testing.assert_close(got[b], one[0])
        torch.testing.assert_close(gaps[b], completeness_gap(model, X[b : b + 1], r[b : b + 1], int(TARGET[b]))[0])
    # max-sensitivity by hand: δ_k = r(2U - 1) from a generator seeded 0, explanations with the bound masks
    radius, samples = 0.1, 3
    sens = max_sensitivity(MODEL, X, "saliency", TARGET, radius=radius, samples=samples, forward_kwargs=KWARGS)
    generator = torch.Generator().manual_seed(0)
    changes = []
    for _ in range(samples):
        moved = X + (torch.rand(X.shape, generator=generator, dtype=X.dtype) * 2 - 1) * radius
        maps = torch.cat([
            gradattr.attribute(Bound(MODEL, MASK[b : b + 1]), moved[b : b + 1], "saliency", target=int(TARGET[b]))
            for b in range(B)
        ])  # fmt: skip
        changes.append((maps - gradattr.attribute(MODEL, X, "saliency", TARGET, forward_kwargs=KWARGS)).norm(dim=1))
    torch.testing.assert_close(sens, torch.stack(changes).amax(0))


def test_layer_attribution_with_kwargs() -> None:
    """Token ids through an embedding, a per-sample mask after it: each IG step and occlusion window keeps
    its sample's mask, and padding (mask 0) gets exactly 0 from token_attributions."""

    class Text(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(1)
            self.embedding = nn.Embedding(20, 5).double()
            self.head = nn.Linear(5, 2).double()

        def forward(self, ids: Tensor, attention_mask: Tensor) -> dict[str, Tensor]:
            hidden = torch.tanh(self.embedding(ids)) * attention_mask.unsqueeze(-1)
            return {"hidden": hidden, "logits": self.head(hidden.sum(1))}

    model = Text()
    ids = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    r = gradattr.attribute(model, ids, "integrated_gradients", target=1, layer="embedding", steps=200,
                           forward_kwargs={"attention_mask": mask})  # fmt: skip
    tokens = gradattr.token_attributions(r, mask)
    assert bool((tokens[mask == 0] == 0).all())
    with torch.no_grad():  # completeness: Σ_t r_t = S(x) - S(embedding = 0), to the Riemann error
        delta = model(ids, mask)["logits"][:, 1] - model.head.bias[1]
    torch.testing.assert_close(tokens.sum(1), delta, rtol=1e-2, atol=1e-6)
    # occlusion of one token = its drop, computed by hand with the mask
    occluded = gradattr.token_attributions(
        gradattr.attribute(model, ids, "occlusion", target=1, layer="embedding", window=(1, 5),
                           forward_kwargs={"attention_mask": mask}), mask,
    )  # fmt: skip
    weights = model.head.weight[1].detach()
    with torch.no_grad():
        expected = (torch.tanh(model.embedding(ids)) @ weights) * mask
    torch.testing.assert_close(occluded, expected)


def test_output_selection_and_squeezing() -> None:
    class Out(nn.Module):
        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind = kind
            self.linear = nn.Linear(F, C).double()

        def forward(self, x: Tensor) -> object:
            y = self.linear(x)
            if self.kind == "dict":
                return {"features": x, "logits": y}
            if self.kind == "list":
                return [y, x]
            return y[:, :1].view(-1, 1, 1, 1)

    weight = Out("dict").linear.weight
    for kind in ("dict", "list"):
        model = Out(kind)
        r = gradattr.attribute(model, X, "saliency", target=2, abs=False)  # default: "logits" / the first element
        torch.testing.assert_close(r, model.linear.weight[2].detach().expand(B, F))
    model = Out("dict")
    feature = gradattr.attribute(model, X, "saliency", target=1, output="features", abs=False)
    torch.testing.assert_close(feature[:, 1], torch.ones(B, dtype=X.dtype))
    assert weight is not None
    single = Out("cube")  # (B, 1, 1, 1): one output per sample
    torch.testing.assert_close(gradattr.attribute(single, X, "gradient_x_input"), X * single.linear.weight[0].detach())
    with pytest.raises(TypeError, match=r"output=2\.5|output must be"):
        gradattr.attribute(model, X, "saliency", output=2.5)  # type: ignore[arg-type]
    with pytest.raises(IndexError, match=r"output=5 is out of range: Out's output has 2 element"):
        gradattr.attribute(Out("list"), X, "saliency", output=5)
    with pytest.raises(TypeError, match="returned a tensor; leave output=None"):
        gradattr.attribute(single, X, "saliency", output="logits")
    with pytest.raises(ValueError, match=r"position= picks a sequence position of a \(B, T, V\) output"):
        gradattr.attribute(model, X, "saliency", position=0)


def test_forward_kwargs_errors() -> None:
    with pytest.raises(TypeError, match="forward_kwargs must be a dict"):
        gradattr.attribute(MODEL, X, "saliency", forward_kwargs=[MASK])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="forward_kwargs keys must be argument names"):
        gradattr.attribute(MODEL, X, "saliency", forward_kwargs={1: MASK})  # type: ignore[dict-item]
    bad = {"attention_mask": torch.ones(B + 1, F)}
    with pytest.raises(ValueError, match=r"forward_kwargs\['attention_mask'\] has batch size 4, the inputs have 3"):
        gradattr.attribute(MODEL, X, "saliency", forward_kwargs=bad)


def test_position_on_a_sequence_output() -> None:
    """(B, T, V) outputs: position per sample, negative positions, out of range and wrong length."""

    class Sequence(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x.view(x.shape[0], 3, 2).cumsum(1)  # row t: sum of the first t + 1 pairs

    x = torch.randn(2, 6, dtype=torch.float64)
    r = gradattr.attribute(Sequence(), x, "saliency", target=1, position=torch.tensor([0, -2]), abs=False)
    expected = torch.tensor([[0, 1, 0, 0, 0, 0], [0, 1, 0, 1, 0, 0]], dtype=x.dtype)
    torch.testing.assert_close(r, expected)
    default = gradattr.attribute(Sequence(), x, "saliency", target=0, abs=False)  # -1: every pair
    torch.testing.assert_close(default, torch.tensor([[1.0, 0] * 3] * 2, dtype=x.dtype))
    with pytest.raises(IndexError, match=r"position -4 is out of range"):
        gradattr.attribute(Sequence(), x, "saliency", position=[0, -4])
    with pytest.raises(TypeError, match="position must hold integer positions"):
        gradattr.attribute(Sequence(), x, "saliency", position=torch.tensor([0.0, 1.0]))


def test_gradcam_on_a_multi_input_model_returns_the_layer_map() -> None:
    """Two images through one conv (channels concatenated): Grad-CAM at the layer's resolution, (B, 1, h, w),
    equal to ReLU(Σ_k mean(∂S/∂A_k) A_k) by hand; Guided Grad-CAM upsamples it to each input."""

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(2)
            self.conv = nn.Conv2d(2, 3, 3).double()
            self.head = nn.Linear(3 * 4 * 4, 2).double()

        def forward(self, a: Tensor, b: Tensor) -> Tensor:
            return self.head(torch.relu(self.conv(torch.cat([a, b], 1))).flatten(1))

    model = Two()
    a, b = torch.randn(2, 1, 6, 6, dtype=torch.float64), torch.randn(2, 1, 6, 6, dtype=torch.float64)
    cam = gradattr.attribute(model, (a, b), "gradcam", target=1, layer="conv")
    activations = model.conv(torch.cat([a, b], 1)).detach().requires_grad_()
    score = model.head(torch.relu(activations).flatten(1))[:, 1].sum()
    (gradient,) = torch.autograd.grad(score, activations)
    expected = (gradient.mean((2, 3), keepdim=True) * activations.detach()).sum(1, keepdim=True).clamp(min=0)
    assert expected.abs().max() > 0
    torch.testing.assert_close(cam, expected)
    guided = gradattr.attribute(model, (a, b), "guided_gradcam", target=1, layer="conv")
    assert isinstance(guided, tuple) and [g.shape for g in guided] == [a.shape, b.shape]
    gb = gradattr.attribute(model, (a, b), "guided_backprop", target=1)
    upsampled = torch.nn.functional.interpolate(expected, size=(6, 6), mode="bilinear")
    for g, backprop in zip(guided, gb, strict=True):
        torch.testing.assert_close(g, backprop * upsampled)


def test_token_attributions() -> None:
    r = torch.arange(24, dtype=torch.float32).view(2, 3, 4)
    torch.testing.assert_close(gradattr.token_attributions(r), r.sum(-1))
    masked = gradattr.token_attributions(r, torch.tensor([[1, 1, 0], [0, 1, 1]]))
    torch.testing.assert_close(masked, torch.tensor([[6.0, 22.0, 0.0], [0.0, 70.0, 86.0]]))
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 4\); expected \(B, T\) = \(2, 3\)"):
        gradattr.token_attributions(r, torch.ones(2, 4))
    with pytest.raises(ValueError, match="batch and a token dimension"):
        gradattr.token_attributions(torch.ones(3))
