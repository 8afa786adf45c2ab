"""Bad input gets a clear error that says what was expected."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import gradattr


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).eval()


X = torch.randn(5, 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"method": "lrp_plus"}, ValueError, "unknown method 'lrp_plus'; choose one of saliency"),
        (
            {"method": "deeplift", "steps": 3},
            TypeError,
            "deeplift got unknown option.*steps; its options are: max_pooling, strict",
        ),
        ({"target": 3}, IndexError, "target 3 is out of range: the model has 3 output"),
        ({"target": -1}, IndexError, "target -1 is out of range"),
        ({"target": torch.tensor([0, 1, 2, 0, 3])}, IndexError, "target 3 is out of range"),
        ({"target": [0, 1]}, ValueError, r"target has shape \(2,\); expected one class index per sample \(5,\)"),
        ({"target": torch.zeros(5)}, TypeError, "integer class indices"),
        ({"target": True}, TypeError, "not a bool"),
        ({"baseline": torch.zeros(3)}, ValueError, r"baseline of shape \(3,\) does not broadcast.*\(5, 4\)"),
        ({"baseline": float("nan")}, ValueError, "baseline is nan"),
        ({"baseline": torch.tensor([0.0, float("inf"), 0, 0])}, ValueError, "baseline contains 1 NaN or infinite"),
        ({"method": "integrated_gradients", "steps": 0}, ValueError, "steps must be an int >= 1"),
        ({"method": "integrated_gradients", "steps": 2.5}, TypeError, "steps must be an int or 'auto', got float 2.5"),
        ({"method": "saliency", "abs": "no"}, TypeError, "option abs must be True or False"),
        ({"method": "epsilon_lrp", "epsilon": "1e-4"}, TypeError, "option epsilon must be a number, got str"),
        ({"method": "epsilon_lrp", "epsilon": True}, TypeError, "option epsilon must be a number"),
        ({"method": "smoothgrad", "variant": 2}, TypeError, "option variant must be 'smoothgrad' or"),
        ({"method": "smoothgrad", "samples": 3.0}, TypeError, "option samples must be an int"),
        ({"method": "deeplift", "strict": 1}, TypeError, "option strict must be True or False"),
        ({"method": "epsilon_lrp", "epsilon": 0.0}, ValueError, "epsilon must be a number > 0"),
        ({"method": "epsilon_lrp", "epsilon": -1e-3}, ValueError, "epsilon must be a number > 0"),
        ({"method": "occlusion", "window": 5}, ValueError, r"occlusion window \(5,\) is larger than the features"),
        ({"method": "occlusion", "window": 0}, ValueError, "window must be a positive int"),
        ({"method": "occlusion", "stride": (1, 1)}, ValueError, "has more dimensions than the features"),
        ({"method": "saliency", "baseline": 0.5}, ValueError, "saliency does not use a baseline"),
        ({"method": "integrated_gradients", "batch_size": 0}, ValueError, "batch_size must be a positive int"),
        ({"layer": "encoder"}, ValueError, "model has no submodule 'encoder'; its submodules are: 0, 1, 2"),
    ],
)
def test_bad_arguments(model: nn.Module, kwargs: dict, error: type[Exception], pattern: str) -> None:
    arguments = {"method": "deeplift", "target": 0, **kwargs}
    with pytest.raises(error, match=pattern):
        gradattr.attribute(model, X, **arguments)


def test_numpy_inputs_are_converted_other_types_refused(model: nn.Module) -> None:
    expected = gradattr.attribute(model, X, "deeplift", target=0, baseline=X[:1] * 0.5)
    got = gradattr.attribute(model, X.numpy(), "deeplift", target=0, baseline=X[:1].numpy() * 0.5)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor or a numpy array, got list"):
        gradattr.attribute(model, X.tolist(), target=0)
    with pytest.raises(TypeError, match="numpy array of Python objects"):
        gradattr.attribute(model, np.array([[object()] * 4] * 5), target=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_refused(model: nn.Module, dtype: torch.dtype) -> None:
    with pytest.raises(TypeError, match=r"float32 or float64.*\.float\(\)"):
        gradattr.attribute(model.to(dtype), X.to(dtype), target=0)


class Log(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return torch.log(x)


class LogOfLinear(nn.Module):
    """log of a linear layer's output, inside a submodule: NaN for inputs where the output is negative."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Linear(4, 3), Log())

    def forward(self, x: Tensor) -> Tensor:
        return self.head(x)


class SqrtAtZero(nn.Module):
    """sqrt(x) is finite at 0, its derivative is not."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.sqrt(x).sum(1, keepdim=True)


def test_non_finite_inside_the_model_names_the_op() -> None:
    torch.manual_seed(0)
    with pytest.raises(FloatingPointError, match=r"from 'torch\.log' in module 'head\.1'"):
        gradattr.attribute(LogOfLinear(), torch.randn(6, 4), "saliency", target=0)
    with pytest.raises(FloatingPointError, match="target output is NaN or infinite"):
        gradattr.attribute(LogOfLinear(), torch.randn(6, 4), "occlusion", target=0)
    with pytest.raises(FloatingPointError, match="the forward pass is finite, so the backward pass produced it"):
        gradattr.attribute(SqrtAtZero(), torch.tensor([[0.0, 1.0]]), "saliency")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs(model: nn.Module, bad: float) -> None:
    x = X.clone()
    x[2, 1] = bad
    with pytest.raises(ValueError, match="inputs contains 1 NaN or infinite value"):
        gradattr.attribute(model, x, target=0)


def test_integer_inputs_point_to_layer_attribution(model: nn.Module) -> None:
    with pytest.raises(TypeError, match=r"floating inputs.*layer='embedding'"):
        gradattr.attribute(model, torch.ones(5, 4, dtype=torch.long), target=0)


def test_inputs_of_different_batch_sizes() -> None:
    class Two(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return a.sum(1, keepdim=True) + b.sum(1, keepdim=True)

    with pytest.raises(ValueError, match=r"inputs\[1\] has batch size 3, inputs\[0\] has 2"):
        gradattr.attribute(Two(), (torch.ones(2, 3), torch.ones(3, 3)))


def test_dtype_mismatch_between_model_and_inputs(model: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"model parameters are torch.float32, inputs are torch.float64"):
        gradattr.attribute(model, X.double(), target=0)


def test_model_returning_a_tuple_or_a_map() -> None:
    """A tuple's first element is explained unless output= picks another; a (B, T, V) output is read at
    position -1; an element that is not a tensor and a 4-D output are refused with what was expected."""

    class Pair(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, 2 * x

    class Map(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], 2, 2)

    class Named(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[str, torch.Tensor]:
            return "scores", x

    class Cube(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.view(x.shape[0], 1, 2, 2)

    one_hot = torch.zeros(5, 4)
    one_hot[:, 1] = 1
    torch.testing.assert_close(gradattr.attribute(Pair(), X, "saliency", target=1, abs=False), one_hot)
    torch.testing.assert_close(gradattr.attribute(Pair(), X, "saliency", target=1, abs=False, output=1), 2 * one_hot)
    last = gradattr.attribute(Map(), X, "saliency", target=0, abs=False)  # position -1: x[:, 2:4]
    torch.testing.assert_close(last, one_hot.roll(1, 1))
    with pytest.raises(TypeError, match=r"output\[0\] is str, not a tensor; pass output="):
        gradattr.attribute(Named(), X, method="saliency")
    with pytest.raises(ValueError, match=r"model output has shape \(5, 1, 2, 2\)"):
        gradattr.attribute(Cube(), X, method="saliency")


def test_non_module_model() -> None:
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        gradattr.attribute(lambda x: x, X)  # type: ignore[arg-type]


def test_single_output_model_and_argmax_target(model: nn.Module) -> None:
    single = nn.Linear(4, 1)
    r = gradattr.attribute(single, X, method="gradient_x_input")
    torch.testing.assert_close(r, X * single.weight.detach())
    argmax = model(X).argmax(1)
    for method in set(gradattr.METHODS) - set(gradattr.LAYER_METHODS):
        torch.testing.assert_close(
            gradattr.attribute(model, X, method=method), gradattr.attribute(model, X, method=method, target=argmax)
        )


def test_layer_called_twice_is_refused() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.fc(self.fc(x)))

    with pytest.raises(ValueError, match="called more than once per forward pass"):
        gradattr.attribute(Twice(), X, method="gradient_x_input", target=0, layer="fc")


def test_non_finite_attributions_are_an_error_with_a_hint() -> None:
    """eps-LRP through 200 LSTM steps: the sigmoid gates' multiplier f(z)/(z + eps) ~ 1/(2 eps) compounds to
    inf. That must raise, naming the remedy, and the remedy must give finite attributions."""

    class Recurrent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = nn.LSTM(4, 16, batch_first=True)
            self.head = nn.Linear(16, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.rnn(x)[0][:, -1])

    torch.manual_seed(0)
    model, x = Recurrent(), torch.randn(4, 200, 4)
    with pytest.raises(FloatingPointError, match=r"epsilon_lrp produced \d+ NaN or infinite.*gates='signal'"):
        gradattr.attribute(model, x, method="epsilon_lrp", target=0)
    assert torch.isfinite(gradattr.attribute(model, x, method="epsilon_lrp", target=0, gates="signal")).all()


def test_a_typo_in_a_wrapping_method_lists_its_own_options_and_its_base(model: nn.Module) -> None:
    with pytest.raises(TypeError) as error:
        gradattr.attribute(model, X, "smoothgrad", sampels=3)
    assert str(error.value) == (
        "smoothgrad got unknown option(s) sampels; its options are: base, samples, sigma, variant, seed, batch_size; "
        "those of its base saliency: abs"
    )
    with pytest.raises(TypeError, match=r"stepz; its options are: base, samples.*base integrated_gradients: steps, "):
        gradattr.attribute(model, X, "smoothgrad", base="integrated_gradients", stepz=3)


@pytest.mark.parametrize(
    ("model", "x", "message"),
    [
        (nn.Linear(1024, 5), torch.randn(4, 4096),
         "inputs has shape (4, 4096) but the model expects (4, 1024) (the model (Linear with 1024 input features))"),
        (nn.Sequential(nn.Flatten(), nn.Linear(1024, 5)), torch.randn(4, 1, 64, 64),
         "inputs has shape (4, 1, 64, 64) but the model expects (4, 1, 32, 32) (layer '1' (Linear with 1024 input "
         "features))"),
        (nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 5)),
         torch.randn(2, 1, 32, 32),
         "inputs has shape (2, 1, 32, 32) but the model expects (2, 3, 16, 16) (layer '0' (Conv2d with 3 input "
         "channels))"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)), torch.randn(2, 1, 10, 10),
         "inputs has shape (2, 1, 10, 10) but the model expects (2, 1, 8, 8) (layer '3' (Linear with 144 input "
         "features))"),
    ],
)  # fmt: skip
def test_a_wrong_input_size_names_the_inputs_shape_and_the_expected_one(
    model: nn.Module, x: Tensor, message: str
) -> None:
    """Not torch's "mat1 and mat2 shapes cannot be multiplied (4x4096 and 1024x5)" from inside the model: the
    user's shape, the shape the model runs on (confirmed by a pass), and the layer that refused it."""
    for method in ("saliency", "deeplift", "occlusion"):
        with pytest.raises(ValueError) as error:
            gradattr.attribute(model, x, method, target=0)
        assert str(error.value) == message
        assert "mat1" in str(error.value.__cause__) or "channels" in str(error.value.__cause__)


def test_inference_mode_tensors_are_copied_and_inference_mode_itself_refused(model: nn.Module) -> None:
    with torch.inference_mode():
        frozen, frozen_baseline = X.clone(), torch.full((1, 4), 0.5)
    assert frozen.is_inference()
    r = gradattr.attribute(model, frozen, "deeplift", target=0, baseline=frozen_baseline)
    torch.testing.assert_close(r, gradattr.attribute(model, X, "deeplift", target=0, baseline=0.5))
    with torch.inference_mode(), pytest.raises(RuntimeError) as error:
        gradattr.attribute(model, X, "saliency", target=0)
    assert str(error.value) == (
        "gradattr.attribute was called inside torch.inference_mode(), which turns off the gradients every method "
        "needs: call it outside that block (tensors made inside it are fine as inputs)"
    )


class ExtraDimension(nn.Module):
    """Output (B, 1, C) with ``first=False``; (1, B, C) (not batch first) with ``first=True``."""

    def __init__(self, first: bool) -> None:
        super().__init__()
        self.first = first
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x).unsqueeze(0 if self.first else 1)


def test_an_output_with_an_extra_dimension_is_read_or_reported_with_the_users_batch_size() -> None:
    torch.manual_seed(0)
    model = ExtraDimension(first=False)
    r = gradattr.attribute(model, X, "saliency", target=1)  # (5, 1, 3): the one position is read
    torch.testing.assert_close(r, model.fc.weight[1].abs().expand(5, 4))
    model.first = True
    with pytest.raises(ValueError) as error:
        gradattr.attribute(model, X, "saliency", target=1)
    assert str(error.value) == (
        "model output has shape (1, 5, 3) for 5 inputs; expected (5, C), (5,) or (5, T, V) (a position per sample is "
        "then explained): batch first"
    )
    with pytest.raises(ValueError) as error:  # an internal pass of 3 noisy copies per sample names the 5 inputs
        gradattr.attribute(model, X, "smoothgrad", target=1, samples=3)
    assert str(error.value).startswith(
        "model output has shape (1, 15, 3) for a pass of 15 rows made from your 5 inputs"
    )


def test_a_wrong_input_size_without_a_derivable_shape_keeps_torchs_reason() -> None:
    """8x7 has no square reading of 64 features: the layer, what it was given and torch's words; still a
    RuntimeError (as torch's error was) and a ValueError."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    with pytest.raises(RuntimeError) as error:
        gradattr.attribute(model, torch.randn(2, 1, 8, 7), "saliency", target=0)
    assert isinstance(error.value, ValueError)
    assert str(error.value) == (
        "inputs has shape (2, 1, 8, 7), which the model does not accept: layer '1' (Linear with 64 input features) "
        "was given (2, 56): mat1 and mat2 shapes cannot be multiplied (2x56 and 64x3)"
    )
