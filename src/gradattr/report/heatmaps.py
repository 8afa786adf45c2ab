"""Heatmap grids: rows = samples, columns = the input and then one attribution map per method.

As in Ancona et al. (ICLR 2018, Fig. 2-4): a diverging colormap centred at 0 (red positive, blue negative),
the same colour scale for all methods of one sample so their maps can be compared, channels summed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor


def _image(t: Tensor) -> np.ndarray:
    """(C, H, W) or (H, W) -> (H, W), channels summed."""
    array = t.detach().cpu().double().numpy()
    return array.sum(0) if array.ndim == 3 else array


def heatmap_grid(
    inputs: Tensor,
    maps: Mapping[str, Tensor],
    path: str | Path,
    *,
    row_labels: Sequence[str] | None = None,
    percentile: float = 99.5,
) -> Path:
    """Write a PNG grid of attribution heatmaps and return its path.

    Args:
        inputs: images (B, C, H, W) or (B, H, W), shown in grey in the first column.
        maps: method name -> attributions of the inputs' shape.
        path: output PNG file.
        row_labels: one label per sample (e.g. "label 3, predicted 3").
        percentile: the colour scale of a row is ±(this percentile of |R| over all its maps), so a few extreme
            pixels do not wash out the rest.
    """
    names = list(maps)
    rows, columns = inputs.shape[0], len(names) + 1
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.6 * rows + 0.4), squeeze=False)
    for i in range(rows):
        images = [_image(maps[name][i]) for name in names]
        scale = float(np.percentile(np.abs(np.stack(images)), percentile)) or 1.0
        axes[i, 0].imshow(_image(inputs[i]), cmap="gray")
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=7)
        for j, image in enumerate(images, start=1):
            axes[i, j].imshow(image, cmap="bwr", vmin=-scale, vmax=scale)
    for j, title in enumerate(["input", *names]):
        axes[0, j].set_title(title.replace("_", " "), fontsize=8)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
