"""The memory budget: passes split to fit it give the unsplit results; an out-of-memory pass is retried."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

import gradattr
from gradattr import memory
from gradattr.engine.backward import rows_per_pass
from gradattr.methods._problem import build_problem

DTYPE = torch.float64
TINY = "64KB"  # far below one pass of the batch below: every method must split its passes


class CountingCNN(nn.Module):
    """conv -> ReLU -> pool -> linear, counting the rows of every forward pass."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.head = nn.Linear(6 * 6 * 6, 4)
        self.passes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.passes.append(x.shape[0])
        h = torch.max_pool2d(torch.relu(self.conv(x)), 2)
        return self.head(h.flatten(1))


X = torch.randn(48, 1, 12, 12, generator=torch.Generator().manual_seed(1), dtype=DTYPE)


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("saliency", {}),
        ("deeplift", {"baseline": 0.1}),
        ("deeplift", {"baseline": X.flip(0) * 0.5}),  # per-sample references are split with their rows
        ("epsilon_lrp", {}),
        ("integrated_gradients", {"steps": 6}),
        ("occlusion", {"window": (1, 4, 4), "stride": (1, 4, 4)}),
        ("shapley_sampling", {"samples": 2, "feature_groups": gradattr.patches((1, 12, 12), 4)}),
        ("smoothgrad", {"samples": 3}),
    ],
)
def test_a_tiny_budget_splits_passes_and_changes_nothing(method: str, options: dict) -> None:
    model = CountingCNN().to(DTYPE)
    expected = gradattr.attribute(model, X, method, target=1, **options)
    unbounded = max(model.passes)
    model.passes.clear()
    got = gradattr.attribute(model, X, method, target=1, max_memory=TINY, **options)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert max(model.passes) < min(unbounded, X.shape[0])  # the passes really were split


@pytest.mark.parametrize("method", ["saliency", "deeplift", "integrated_gradients", "occlusion"])
def test_argmax_target_is_the_whole_batch_argmax_when_passes_are_split(method: str) -> None:
    model = CountingCNN().to(DTYPE)
    expected = gradattr.attribute(model, X, method, target=model(X).argmax(1))
    torch.testing.assert_close(gradattr.attribute(model, X, method, max_memory=TINY), expected, rtol=1e-12, atol=1e-12)


def test_rows_per_pass_follows_the_budget() -> None:
    model = CountingCNN().to(DTYPE)
    problem = build_problem(model, X, 1, None)
    with memory.memory_budget("200KB"):
        small = rows_per_pass(problem, problem.inputs, problem.all_rows)
    with memory.memory_budget("800KB"):
        large = rows_per_pass(problem, problem.inputs, problem.all_rows)
    per_row = memory.bytes_per_row(model, lambda rows: X[:rows], next(iter(memory._row_bytes[model])))
    assert small == 200_000 // per_row and large == 800_000 // per_row and 1 <= small < large < X.shape[0]


def test_sensitivity_n_under_a_budget() -> None:
    model = CountingCNN().to(DTYPE)
    maps = gradattr.attribute(model, X, "gradient_x_input", target=1)
    expected = gradattr.sensitivity_n(model, X, maps, target=1, ns=[4, 40], num_subsets=10)
    with gradattr.memory_budget(TINY):
        got = gradattr.sensitivity_n(model, X, maps, target=1, ns=[4, 40], num_subsets=10)
    torch.testing.assert_close(got.per_sample, expected.per_sample, rtol=1e-12, atol=1e-12, equal_nan=True)


class RunsOutOfMemory(CountingCNN):
    """Raises the allocator's error for passes of more than 5 rows, as a GPU would."""

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] > 5:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().forward(x)


def test_out_of_memory_is_retried_with_smaller_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_warned_oom", False)
    model = RunsOutOfMemory().to(DTYPE)
    reference = CountingCNN().to(DTYPE)
    reference.load_state_dict(model.state_dict())
    for method in ("saliency", "deeplift", "occlusion"):
        with pytest.warns(ResourceWarning, match="out of memory on .* rows; retrying"):
            got = gradattr.attribute(model, X[:8], method, target=2)
        memory._warned_oom = False
        torch.testing.assert_close(got, gradattr.attribute(reference, X[:8], method, target=2), rtol=1e-12, atol=1e-14)


def test_other_errors_are_not_retried() -> None:
    class Broken(CountingCNN):
        def forward(self, x: Tensor) -> Tensor:
            raise RuntimeError("shape mismatch in head")

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="shape mismatch"):
            gradattr.attribute(Broken(), torch.randn(8, 1, 12, 12), "saliency", target=0)


@pytest.mark.parametrize(
    ("text", "value"), [(1024, 1024), ("512MB", 512 * 10**6), ("2 GiB", 2 * 2**30), ("1.5kb", 1500), (None, None)]
)
def test_parse_memory(text: object, value: int | None) -> None:
    assert memory.parse_memory(text) == value


@pytest.mark.parametrize(("bad", "error"), [("lots", ValueError), ("3 parsecs", ValueError), (0, ValueError),
                                             (True, TypeError), (2.5, TypeError)])  # fmt: skip
def test_bad_budgets(bad: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="max_memory"):
        memory.set_max_memory(bad)  # type: ignore[arg-type]


def test_set_max_memory_is_global_until_reset() -> None:
    try:
        gradattr.set_max_memory("1MB")
        assert memory.budget(torch.device("cpu")) == 10**6
        with gradattr.memory_budget("2MB"):
            assert memory.budget(torch.device("cpu")) == 2 * 10**6
        assert memory.budget(torch.device("cpu")) == 10**6
    finally:
        gradattr.set_max_memory(None)
    assert memory.budget(torch.device("cpu")) > 10**6  # the default: a quarter of the available RAM
