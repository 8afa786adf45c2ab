"""Everything runs on the inputs' device: every method and metric on CUDA equals the CPU result.

Skipped (saying why) on machines without a GPU; CI here has none, a developer machine or the project's GPU
runner does.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import gradattr
from gradattr import memory, metrics

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

OPTIONS = {
    "integrated_gradients": {"steps": 8},
    "occlusion": {"window": (1, 3, 3)},
    "shapley_sampling": {"samples": 2, "feature_groups": gradattr.patches((1, 9, 9), 3)},
    "smoothgrad": {"samples": 4},
    **{method: {"layer": "2"} for method in gradattr.LAYER_METHODS},
}


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return (
        nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(3), nn.Flatten(), nn.Linear(36, 5)
        )
        .double()
        .eval()
    )


@pytest.mark.parametrize("method", gradattr.METHODS)
def test_method_on_cuda_equals_cpu(method: str) -> None:
    model = cnn()
    x = torch.randn(6, 1, 9, 9, dtype=torch.float64)
    expected = gradattr.attribute(model, x, method, target=2, **OPTIONS.get(method, {}))
    gpu_model = copy.deepcopy(model).cuda()
    got = gradattr.attribute(gpu_model, x.cuda(), method, target=2, **OPTIONS.get(method, {}))
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-9, atol=1e-10)


def test_sensitivity_and_metrics_on_cuda() -> None:
    model = cnn()
    x = torch.randn(6, 1, 9, 9, dtype=torch.float64)
    maps = gradattr.attribute(model, x, "gradient_x_input", target=1)
    expected = gradattr.sensitivity_n(model, x, maps, target=1, ns=[3, 30], num_subsets=8)
    gpu_model = copy.deepcopy(model).cuda()
    got = gradattr.sensitivity_n(gpu_model, x.cuda(), maps.cuda(), target=1, ns=[3, 30], num_subsets=8)
    torch.testing.assert_close(got.per_sample.cpu(), expected.per_sample, rtol=1e-9, atol=1e-10, equal_nan=True)
    assert metrics.max_sensitivity(gpu_model, x.cuda(), "saliency", target=1).device.type == "cuda"


def test_default_budget_is_half_the_free_gpu_memory() -> None:
    free, _ = torch.cuda.mem_get_info(torch.device("cuda"))
    assert abs(memory.budget(torch.device("cuda")) - free // 2) < 64 * 2**20
