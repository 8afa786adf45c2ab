"""Concurrent calls on one shared model give the serial results and leave the model as it was: nothing of
the user's model is written during a call (the engine evaluates a per-call view), and per-call settings
(memory budget, rule set, references) live in the call, not in globals."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

import gradattr
from test_hygiene import assert_unchanged, snapshot
from zoo_modern import ViTBlock

OPTIONS = {
    "integrated_gradients": {"steps": 4},
    "smoothgrad": {"samples": 2},
    "shapley_sampling": {"samples": 1},
    **{method: {"layer": "patch"} for method in gradattr.LAYER_METHODS},
}
THREADS, CALLS = 4, 50


def test_concurrent_calls_equal_serial_calls_and_leave_the_model_untouched() -> None:
    torch.manual_seed(0)
    model = ViTBlock().double()
    model.train()  # dropout/batch-norm free, but training flags must survive concurrent calls too
    for parameter in model.parameters():
        parameter.grad = torch.full_like(parameter, 0.5)
    before = snapshot(model)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    serial = {m: gradattr.attribute(model, x, method=m, target=1, **OPTIONS.get(m, {})) for m in gradattr.METHODS}

    def work(thread: int) -> list[str]:
        wrong = []
        budget = "64MB" if thread % 2 else None  # per-thread memory budgets must not leak between threads
        for call in range(CALLS):
            method = gradattr.METHODS[(call + thread) % len(gradattr.METHODS)]
            got = gradattr.attribute(model, x, method=method, target=1, max_memory=budget, **OPTIONS.get(method, {}))
            if not torch.allclose(got, serial[method], rtol=1e-10, atol=1e-12):
                wrong.append(method)
        return wrong

    with ThreadPoolExecutor(THREADS) as pool:
        failures = [m for wrong in pool.map(work, range(THREADS)) for m in wrong]
    assert failures == []
    assert_unchanged(model, before)
    assert all(p.requires_grad for p in model.parameters())
    assert model.training


def test_every_method_concurrently_fifty_times() -> None:
    """4 threads x 50 calls of each method on one model."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 6 * 6, 4), nn.Tanh(),
                          nn.Linear(4, 3)).double()  # fmt: skip
    before = snapshot(model)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    options = {**OPTIONS, **{method: {"layer": "0"} for method in gradattr.LAYER_METHODS}}
    for method in gradattr.METHODS:
        expected = gradattr.attribute(model, x, method=method, target=0, **options.get(method, {}))

        def work(_: int, method: str = method, expected: torch.Tensor = expected) -> bool:
            return all(
                torch.allclose(
                    gradattr.attribute(model, x, method=method, target=0, **options.get(method, {})),
                    expected,
                    rtol=1e-10,
                    atol=1e-12,
                )
                for _ in range(CALLS)
            )

        with ThreadPoolExecutor(THREADS) as pool:
            assert all(pool.map(work, range(THREADS))), method
    assert_unchanged(model, before)
