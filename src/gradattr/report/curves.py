"""Line charts: Sensitivity-n curves (Ancona et al., ICLR 2018, Fig. 3-4), correlation against n on a log
axis, per model and per method across models (transformers against the paper's models); and sanity-check
curves (Adebayo et al. 2018, Fig. 2), similarity against the randomised layers.

A Sensitivity-n curve ends at its last defined point: at n = N (the default grid's end) every subset is the
whole feature set, the correlation is NaN (Sensitivity-N is completeness), and a NaN is neither drawn nor
counted in the axis limits."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from gradattr.evaluation import MetricResult, SensitivityTable
from gradattr.experiments.architectures import ArchitectureComparison
from gradattr.metrics.perturbation import chunk_bounds
from gradattr.report.labels import METHOD_COLOURS, method_label
from gradattr.robustness import SanityResult

FONT_SIZE = 10
"""Points, of the axis labels and legends: legible when a page shows the figure at its natural size or a little
smaller (tick labels one point less)."""


def sensitivity_figure(
    table: SensitivityTable,
    *,
    features: str = "features",
    title: str | None = None,
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Figure:
    """One line per method: mean Pearson correlation over samples against n (log scale), ±1 s.e. band; a line
    ends at its last defined n (NaN at n = N).

    Args:
        table: the :func:`gradattr.evaluate` result.
        features: what n counts, for the axis label (e.g. "4x4 patches", "tokens").
        title: optional figure title.
        method_options: the rows' ``method_options`` of :func:`gradattr.evaluate`, for the legend
            (:func:`~gradattr.report.labels.method_label`: "Occlusion (4x4 patch)").
    """
    methods, ns, means = table.pivot("mean")
    stds, counts = table.pivot("std")[2], table.pivot("count")[2]
    figure, axis = plt.subplots(figsize=(7.6, 3.8))
    for method, mean, std, count in zip(methods, means, stds, counts, strict=True):
        colour = METHOD_COLOURS.get(method)
        label = method_label(method, (method_options or {}).get(method))
        axis.plot(ns, mean, marker="o", markersize=3, linewidth=1.6, color=colour, label=label)
        error = np.where(count > 1, std / np.sqrt(np.maximum(count, 1)), np.nan)
        axis.fill_between(ns, mean - error, mean + error, color=colour, alpha=0.15, linewidth=0)
    axis.set_xscale("log")
    axis.set_xlabel(f"n ({features} removed)", fontsize=FONT_SIZE)
    axis.set_ylabel("Pearson correlation", fontsize=FONT_SIZE)
    axis.tick_params(labelsize=FONT_SIZE - 1)
    low = np.nanmin(means) if np.isfinite(means).any() else 0.0
    axis.set_ylim(min(-0.05, math.floor(low * 10) / 10), 1.05)
    axis.axhline(0, color="#bbbbbb", linewidth=0.8)
    axis.grid(True, which="both", alpha=0.25)
    axis.spines[["top", "right"]].set_visible(False)
    if title:
        axis.set_title(title, fontsize=FONT_SIZE + 1)
    axis.legend(fontsize=FONT_SIZE, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    figure.tight_layout()
    return figure


def removal_figure(
    curves: Mapping[str, MetricResult],
    num_features: int,
    *,
    features: str = "features",
    method_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Figure:
    """One panel per curve metric (``deletion_curve``, ``insertion_curve``): the target's mean softmax
    probability against the fraction of ``features`` deleted (inserted into the baseline) in order of
    decreasing attribution (Petsiuk et al., BMVC 2018), one line per method; the area under a line is the
    method's mean deletion (insertion) AUC. Step k of L sits at the fraction c_k / G of the ``num_features``
    features (groups) G (:func:`~gradattr.metrics.perturbation.chunk_bounds`)."""
    figure, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves) + 1.6, 3.4), squeeze=False)
    for axis, (name, result) in zip(axes[0], curves.items(), strict=True):
        for method, values in result.per_sample.items():
            mean = values.double().nanmean(0).numpy()
            fractions = chunk_bounds(num_features, mean.shape[0] - 1).numpy() / num_features
            axis.plot(fractions, mean, linewidth=1.6, color=METHOD_COLOURS.get(method),
                      label=method_label(method, (method_options or {}).get(method)))  # fmt: skip
        verb = "deleted" if name.startswith("deletion") else "inserted"
        axis.set_xlabel(f"fraction of {features} {verb}", fontsize=FONT_SIZE)
        axis.set_ylabel("probability of the target", fontsize=FONT_SIZE)
        axis.set_title(f"{name.split('_')[0]} ({'lower' if verb == 'deleted' else 'higher'} is better)",
                       fontsize=FONT_SIZE)  # fmt: skip
        axis.set_ylim(-0.02, 1.02)
        axis.tick_params(labelsize=FONT_SIZE - 1)
        axis.grid(True, alpha=0.25)
        axis.spines[["top", "right"]].set_visible(False)
    axes[0][-1].legend(fontsize=FONT_SIZE, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       borderaxespad=0)  # fmt: skip
    figure.tight_layout()
    return figure


def randomisation_figure(
    results: dict[str, SanityResult], *, measure: str = "spearman_abs", methods: Sequence[str] | None = None
) -> Figure:
    """One panel per model: mean ``measure`` between original and randomised maps against the cascade of
    randomised layers (top layer first; "none" = the trained model, similarity 1), one line per method.

    Args:
        results: panel title (e.g. "standard") -> cascading :func:`~gradattr.robustness.model_randomisation`.
        measure: the similarity plotted (default Spearman of the absolute maps, as Adebayo et al.).
        methods: the methods drawn (default: all of each result's).
    """
    figure, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results) + 1.6, 3.6), squeeze=False, sharey=True)
    for axis, (title, result) in zip(axes[0], results.items(), strict=True):
        steps = ["none", *result.steps]
        for method in methods if methods is not None else result.methods:
            values = [1.0, *result.mean(method, measure).tolist()]
            axis.plot(steps, values, marker="o", markersize=3, linewidth=1.6, color=METHOD_COLOURS.get(method),
                      label=method_label(method))  # fmt: skip
        axis.set_title(title, fontsize=FONT_SIZE + 1)
        axis.set_xlabel("randomised up to layer (top first)", fontsize=FONT_SIZE)
        axis.tick_params(labelsize=FONT_SIZE - 1)
        axis.axhline(0, color="#bbbbbb", linewidth=0.8)
        axis.grid(True, alpha=0.25)
        axis.spines[["top", "right"]].set_visible(False)
    axes[0, 0].set_ylabel("Spearman |R| to original" if measure == "spearman_abs" else measure, fontsize=FONT_SIZE)
    axes[0, 0].set_ylim(-0.4, 1.05)
    axes[0, -1].legend(fontsize=FONT_SIZE, frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                       borderaxespad=0)  # fmt: skip
    figure.tight_layout()
    return figure


MODEL_STYLES = ("--", ":", "-.", (0, (5, 1, 1, 1)))
"""Line styles of the paper's models in :func:`architecture_figure` (the transformers are solid)."""


def architecture_figure(comparison: ArchitectureComparison) -> Figure:
    """Sensitivity-n of each method (one panel per method), one line per model: the transformers solid and
    thick, the paper's models on the same data dashed; correlation against n on a log axis, each line ending at
    its last defined n (NaN at n = N)."""
    methods = [m for m in comparison.methods if any(m in facts.sensitivity for facts in comparison.models)]
    columns = min(3, max(1, len(methods)))
    rows = max(1, math.ceil(len(methods) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.7 * rows + 0.5), squeeze=False, sharey=True,
                                layout="constrained")  # fmt: skip
    styles = iter(MODEL_STYLES * len(comparison.baselines))
    lines = [(facts, "-", 2.2) if facts.transformer else (facts, next(styles), 1.3) for facts in comparison.models]
    for axis, method in zip(axes.flat, methods, strict=False):
        for facts, style, width in lines:
            if method in facts.sensitivity:
                axis.plot(facts.ns, facts.sensitivity[method], linestyle=style, linewidth=width,
                          color=METHOD_COLOURS.get(method), label=facts.model)  # fmt: skip
        axis.set_title(method_label(method), fontsize=FONT_SIZE + 1)
        axis.set_xscale("log")
        axis.axhline(0, color="#bbbbbb", linewidth=0.8)
        axis.grid(True, which="both", alpha=0.25)
        axis.spines[["top", "right"]].set_visible(False)
        axis.tick_params(labelsize=FONT_SIZE - 1)
    for axis in axes.flat[len(methods) :]:
        axis.set_visible(False)
    for axis in axes[:, 0]:
        axis.set_ylabel("Pearson correlation", fontsize=FONT_SIZE)
    for axis in axes.flat[max(0, len(methods) - columns) : len(methods)]:  # the lowest panel of each column
        axis.set_xlabel(f"n ({comparison.features} removed)", fontsize=FONT_SIZE)
    axes.flat[0].set_ylim(-0.3, 1.05)
    handles = [Line2D([], [], color="#444444", linestyle=style, linewidth=width, label=facts.model)
               for facts, style, width in lines]  # fmt: skip
    figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=FONT_SIZE, frameon=False)
    return figure
