"""The quick demo: every method on an MLP trained on scikit-learn's digits (no download).

It checks on a trained network what Ancona et al. (ICLR 2018) prove: DeepLIFT and Integrated Gradients are
complete (Σ R = S_c(x) - S_c(0)), eps-LRP equals Gradient*Input on ReLU nets (Prop. 1), and the methods'
maps agree to the degree the paper reports.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import gradattr
from gradattr.data import load_digits
from gradattr.metrics import completeness_gap, correlation_matrix
from gradattr.models import mnist_mlp
from gradattr.report import heatmap_grid
from gradattr.training import train_or_load

DEMO_OPTIONS: dict[str, dict] = {"integrated_gradients": {"steps": 100}}


@dataclass
class DemoResult:
    """What the demo measured; ``to_json`` writes every number."""

    test_accuracy: float
    majority_rate: float
    samples: int
    seconds: dict[str, float]
    completeness: dict[str, float]
    methods: list[str]
    correlation: list[list[float]]
    files: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2)


def run_demo(
    out: str | Path, *, samples: int = 8, seed: int = 0, cache: str | Path | None = None, progress: bool = True
) -> DemoResult:
    """Train (or load) the digits MLP, attribute ``samples`` test digits with every method, write figures.

    Writes ``out/heatmaps.png`` (rows = digits, columns = methods), ``out/attributions.npz`` and
    ``out/summary.json``.

    Returns:
        A :class:`DemoResult`; ``completeness[m]`` is the mean |Σ R - (S_c(x) - S_c(0))| over the samples
        divided by the mean |S_c(x) - S_c(0)|.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_digits(seed=seed)
    model, trained = train_or_load(
        "digits-mlp",
        lambda: mnist_mlp(data.input_shape, data.num_classes),
        data,
        seed=seed,
        cache=cache,
        progress=progress,
    )
    x = data.test_x[:samples]
    target = model(x).argmax(1)
    maps: dict[str, Tensor] = {}
    seconds: dict[str, float] = {}
    completeness: dict[str, float] = {}
    with torch.no_grad():
        scale = (model(x) - model(torch.zeros_like(x)))[torch.arange(len(x)), target].abs().mean()
    for method in gradattr.METHODS:
        start = time.perf_counter()
        maps[method] = gradattr.attribute(model, x, method=method, target=target, **DEMO_OPTIONS.get(method, {}))
        seconds[method] = time.perf_counter() - start
        gap = completeness_gap(model, x, maps[method], target)
        completeness[method] = float(gap.abs().mean() / scale)
    names, matrix = correlation_matrix(maps)
    labels = [
        f"true {data.class_names[int(y)]}, predicted {data.class_names[int(p)]}"
        for y, p in zip(data.test_y, target, strict=False)
    ]
    figure = heatmap_grid(x, maps, out / "heatmaps.png", row_labels=labels)
    arrays = out / "attributions.npz"
    np.savez_compressed(arrays, inputs=x.numpy(), targets=target.numpy(), **{m: r.numpy() for m, r in maps.items()})
    result = DemoResult(
        test_accuracy=trained.test_accuracy,
        majority_rate=trained.majority_rate,
        samples=len(x),
        seconds=seconds,
        completeness=completeness,
        methods=names,
        correlation=matrix.tolist(),
        files=[str(figure), str(arrays), str(out / "summary.json")],
    )
    (out / "summary.json").write_text(result.to_json(), encoding="utf-8")
    return result
