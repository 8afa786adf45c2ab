"""The README's main job: ``gradattr demo`` on the embedded digits data, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

import gradattr
from gradattr.cli import app


def test_demo_trains_attributes_and_writes_figures(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--samples", "4", "--cache", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output and "DeepLIFT" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"] >= 0.9
    assert summary["completeness"]["deeplift"] < 1e-5  # exact up to float32 rounding
    assert summary["completeness"]["integrated_gradients"] < 2e-2
    assert summary["completeness"]["saliency"] > 0.1  # saliency is not complete
    names = summary["methods"]
    matrix = np.array(summary["correlation"])
    assert names == list(gradattr.METHODS)
    assert np.allclose(np.diag(matrix), 1.0)
    # Prop. 1 on the trained ReLU MLP: eps-LRP and Gradient*Input agree
    assert matrix[names.index("epsilon_lrp"), names.index("gradient_x_input")] > 0.999
    image = Image.open(out / "heatmaps.png")
    assert image.size[0] > image.size[1] / 2  # a grid: 4 rows, 7 columns
    arrays = np.load(out / "attributions.npz")
    assert arrays["deeplift"].shape == (4, 1, 8, 8)
