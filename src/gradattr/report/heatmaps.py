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
from matplotlib.figure import Figure
from torch import Tensor

from gradattr.files import atomic_path
from gradattr.report.labels import method_label


def _map_image(t: Tensor) -> np.ndarray:
    """Attributions (C, H, W), (H, W) or (N,) -> (H, W), channels summed, a vector as one row."""
    array = t.detach().cpu().double().numpy()
    return array.sum(0) if array.ndim == 3 else array.reshape(1, -1) if array.ndim == 1 else array


def _input_image(t: Tensor) -> tuple[np.ndarray, str | None]:
    """An input scaled to [-1, 1] as something ``imshow`` draws: RGB for 3 channels, else grey."""
    array = t.detach().cpu().double().numpy()
    if array.ndim == 3 and array.shape[0] == 3:
        return np.clip((array.transpose(1, 2, 0) + 1) / 2, 0, 1), None
    return (array.sum(0) if array.ndim == 3 else array.reshape(1, -1) if array.ndim == 1 else array), "gray"


def row_scale(maps: Sequence[np.ndarray], percentile: float = 99.5) -> float:
    """The colour limit of one sample's maps: this percentile of |R| over all of them (1.0 if all are zero)."""
    return float(np.percentile(np.abs(np.concatenate([m.ravel() for m in maps])), percentile)) or 1.0


PLAIN_TEXT = {"parse_math": False, "usetex": False}
"""Labels (file and class names) are drawn as the text they are: a ``$`` never starts mathtext or LaTeX."""


def heatmap_figure(
    inputs: Tensor,
    maps: Mapping[str, Tensor],
    *,
    row_labels: Sequence[str] | None = None,
    percentile: float = 99.5,
    cell: float = 1.5,
    shared_scale: bool = True,
) -> Figure:
    """A matplotlib figure of attribution heatmaps (rows = samples, columns = input then methods).

    Args:
        inputs: images (B, C, H, W) or (B, H, W), shown in the first column (grey, or RGB for 3 channels).
        maps: method name -> attributions of the inputs' shape.
        row_labels: one label per sample (e.g. "label 3, predicted 3").
        percentile: the colour scale of a row is ±(this percentile of |R| over all its maps), so a few extreme
            pixels do not wash out the rest.
        cell: size of one image in inches.
        shared_scale: one colour scale per row, so the methods' maps compare (the paper's methods share the
            unit of the logit); ``False``: one scale per map, for methods on different scales (Grad-CAM,
            Guided Backprop).
    """
    names = list(maps)
    rows, columns = inputs.shape[0], len(names) + 1
    figure, axes = plt.subplots(rows, columns, figsize=(cell * columns, cell * rows + 0.4), squeeze=False)
    for i in range(rows):
        images = [_map_image(maps[name][i]) for name in names]
        scales = (
            [row_scale(images, percentile)] * len(images)
            if shared_scale
            else [row_scale([m], percentile) for m in images]
        )
        image, cmap = _input_image(inputs[i])
        axes[i, 0].imshow(image, cmap=cmap)
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=7, **PLAIN_TEXT)
        for j, (image, scale) in enumerate(zip(images, scales, strict=True), start=1):
            axes[i, j].imshow(image, cmap="bwr", vmin=-scale, vmax=scale)
    for j, title in enumerate(["input", *(method_label(n) for n in names)]):
        axes[0, j].set_title(title, fontsize=8, **PLAIN_TEXT)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    return figure


def heatmap_grid(
    inputs: Tensor,
    maps: Mapping[str, Tensor],
    path: str | Path,
    *,
    row_labels: Sequence[str] | None = None,
    percentile: float = 99.5,
) -> Path:
    """Write :func:`heatmap_figure` as a PNG and return its path."""
    figure = heatmap_figure(inputs, maps, row_labels=row_labels, percentile=percentile)
    with atomic_path(path) as partial:
        figure.savefig(partial, dpi=120, format="png")
    plt.close(figure)
    return Path(path)
