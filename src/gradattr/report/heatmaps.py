"""Heatmap grids: rows = samples, columns = the input and then one attribution map per method.

As in Ancona et al. (ICLR 2018, Fig. 2-4): a diverging colormap centred at 0 (red positive, blue negative),
the same colour scale for all methods of one sample so their maps can be compared, channels summed; a colorbar
per row shows that scale.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
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

COLORBAR = "colorbar"
"""The matplotlib label (not drawn) of each row's colorbar axes, so tests and callers can find them."""

FONT_SIZE = 10
"""Points, for every label of the grid: about 13 px at the report's 110 dpi, and still 9 px or more when a
browser scales the figure down to the report's width."""


def _wrap(text: str, width: int) -> str:
    """Each line of ``text`` broken into lines of at most ``width`` characters at spaces; a longer word is broken
    after its underscores (``epsilon_plus_flat``), or else keeps its line."""
    return "\n".join(part for line in text.splitlines() for part in _wrap_line(line, width)) or text


def _wrap_line(line: str, width: int) -> list[str]:
    if not any(len(word) > width and "_" in word for word in line.split(" ")):
        return textwrap.wrap(line, width) or [""]
    lines, current = [], ""
    for word in line.split(" "):
        pieces = re.findall(r"[^_]*_|[^_]+", word) if len(word) > width else [word]
        for k, piece in enumerate(pieces):
            glue = "" if k or not current else " "
            if current and len(current) + len(glue) + len(piece) > width:
                lines.append(current)
                current = piece
            else:
                current += glue + piece
    return [*lines, current]


def heatmap_figure(
    inputs: Tensor,
    maps: Mapping[str, Tensor],
    *,
    row_labels: Sequence[str] | None = None,
    percentile: float = 99.5,
    cell: float | None = None,
    shared_scale: bool = True,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Figure:
    """A matplotlib figure of attribution heatmaps (rows = samples, columns = input then methods), with one
    colorbar per row at the right.

    Args:
        inputs: images (B, C, H, W) or (B, H, W), shown in the first column (grey, or RGB for 3 channels).
        maps: method name -> attributions of the inputs' shape.
        row_labels: one label per sample (e.g. "true 3, predicted 3"), wrapped onto lines of about a cell's width.
        percentile: the colour scale of a row is ±(this percentile of |R| over all its maps), so a few extreme
            pixels do not wash out the rest.
        cell: size of one image in inches (default: 1.3 in, smaller for many methods, so the grid is at most about
            11 in wide and its labels stay legible when a page scales it to its width).
        shared_scale: one colour scale per row, so the methods' maps compare (the paper's methods share the unit
            of the logit); the row's colorbar shows R in that unit. ``False``: each map divided by its own scale,
            for methods on different scales (Grad-CAM, Guided Backprop); the colorbar then shows R / scale from -1
            to 1 and each map's scale is written under it.
        method_options: row label -> its options, naming the column as :func:`method_label` does with them
            (patch occlusion as "Occlusion (4x4 patch)").
    """
    names = list(maps)
    rows, columns = inputs.shape[0], len(names) + 1
    cell = cell if cell is not None else min(1.3, 9.0 / columns)
    label_width = 1.0 if row_labels is not None else 0.2
    figure, axes = plt.subplots(
        rows, columns + 1, squeeze=False, width_ratios=[1.0] * columns + [0.07],
        figsize=(label_width + cell * columns + 1.1, (cell + (0.25 if not shared_scale else 0.0)) * rows + 0.7),
    )  # fmt: skip
    characters = max(8, round(cell * 72 / (0.6 * FONT_SIZE)))  # of the column titles and row labels per line
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
            axes[i, 0].set_ylabel(_wrap(row_labels[i], characters), fontsize=FONT_SIZE, **PLAIN_TEXT)
        limit = scales[0] if shared_scale else 1.0
        for j, (image, scale) in enumerate(zip(images, scales, strict=True), start=1):
            axes[i, j].imshow(image if shared_scale else image / scale, cmap="bwr", vmin=-limit, vmax=limit)
            if not shared_scale:
                axes[i, j].set_xlabel(f"scale {scale:.3g}", fontsize=FONT_SIZE - 1)
        bar = figure.colorbar(ScalarMappable(Normalize(-limit, limit), cmap="bwr"), cax=axes[i, -1],
                              ticks=[-limit, 0.0, limit], format="{x:.2g}")  # fmt: skip
        bar.ax.set_label(COLORBAR)
        bar.ax.tick_params(labelsize=FONT_SIZE - 1)
        bar.set_label("R" if shared_scale else "R / scale", fontsize=FONT_SIZE - 1)
    titles = [method_label(n, (method_options or {}).get(n)) for n in names]
    for j, title in enumerate(["input", *titles]):
        axes[0, j].set_title(_wrap(title, characters), fontsize=FONT_SIZE, **PLAIN_TEXT)
    for axis in axes[:, :-1].flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout(w_pad=0.3, h_pad=0.4 if shared_scale else 1.2)  # a map's scale is written under it
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
