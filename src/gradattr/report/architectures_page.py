"""The report's section "Transformers against the paper's models": per data set, a table of each transformer
beside the MLPs/CNN (images) or text CNN/LSTM (text) trained on the same data, and what changes, in sentences
written from those numbers (:mod:`gradattr.experiments.architectures`) — every number in them is in the table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from gradattr.experiments.architectures import PAIRS, ArchitectureComparison, ModelFacts, pair_key
from gradattr.experiments.claims import COMPLETENESS_TOLERANCE
from gradattr.report.curves import architecture_figure
from gradattr.report.figures import data_uri
from gradattr.report.html import esc, figure, table
from gradattr.report.labels import method_label, short_label

TITLE = "Transformers against the paper's models"


def _value(value: float | None, kind: str) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    if kind == "gap":
        return f"{value:.1e}"
    if kind == "percent":
        return f"{100 * value:.1f} %"
    return f"{value:.2f}"


def _relation(mine: float, theirs: Sequence[float]) -> str:
    """``mine`` against the paper's models: above all of them, below all, or within their range."""
    if mine > max(theirs):
        return "higher than on every paper model"
    if mine < min(theirs):
        return "lower than on every paper model"
    return "within the paper models' range"


def _compared(
    what: str, transformer: ModelFacts, baselines: Sequence[ModelFacts], get: Callable[[ModelFacts], float], kind: str
) -> str | None:
    """The sentence "<what>: v on the <transformer>, <relation> (<model> v, ...)." or None when a value is
    missing."""
    mine = get(transformer)
    theirs = [(b.model, get(b)) for b in baselines]
    theirs = [(name, v) for name, v in theirs if math.isfinite(v)]
    if not math.isfinite(mine) or not theirs:
        return None
    listed = ", ".join(f"{esc(name)} {_value(v, kind)}" for name, v in theirs)
    relation = _relation(mine, [v for _, v in theirs])
    return f"{what}: {_value(mine, kind)} on the {esc(transformer.model)}, {relation} ({listed})."


def _get(mapping: str, key: str) -> Callable[[ModelFacts], float]:
    return lambda facts: getattr(facts, mapping).get(key, math.nan)


def findings(comparison: ArchitectureComparison, transformer: ModelFacts) -> list[str]:
    """What changes from the paper's models to ``transformer`` on this data set, as HTML sentences."""
    baselines = comparison.baselines
    lines = []
    if transformer.unavailable:
        names = ", ".join(method_label(m) for m in transformer.unavailable)
        method, reason = next(iter(transformer.unavailable.items()))
        lines.append(
            f"<b>{esc(names)} did not run on the {esc(transformer.model)}</b> (everything below is of the methods that "
            f"ran); {esc(method_label(method))}: {esc(reason)}"
        )
    else:
        lines.append(f"Every method of the study ran on the {esc(transformer.model)}.")
    best = transformer.best_method()
    if best is not None:
        others = [(b.model, pair) for b in baselines if (pair := b.best_method()) is not None]
        listed = ", ".join(f"{esc(name)}: {esc(method_label(m))} {v:.2f}" for name, (m, v) in others)
        lower = comparison.lower_sensitivity(transformer)
        measured = sum(math.isfinite(transformer.sensitivity_mean(m)) for m in comparison.methods)
        lines.append(
            f"Sensitivity-n averaged over n: the best method on the {esc(transformer.model)} is "
            f"{esc(method_label(best[0]))} ({best[1]:.2f}); on the paper's models {listed or '–'}. It is lower on "
            f"the {esc(transformer.model)} than on every paper model for {len(lower)} of {measured} methods"
            + (f" ({esc(', '.join(short_label(m) for m in lower))})." if lower else ".")
        )
    for method, what in (
        ("deeplift", "DeepLIFT's relative completeness gap"),
        ("integrated_gradients", "Integrated Gradients' completeness gap (its Riemann error)"),
        ("gradient_x_input", "Gradient*Input's completeness gap (0 only where the model is linear along x)"),
    ):
        line = _compared(what, transformer, baselines, _get("completeness", method), "gap")
        if line is not None and method == "deeplift":
            exact = transformer.completeness[method] < COMPLETENESS_TOLERANCE
            line += f" {'Exact' if exact else 'Not exact'} to float precision (tolerance {COMPLETENESS_TOLERANCE:g})."
        if line is not None:
            lines.append(line)
    for first, second in PAIRS:
        what = f"Agreement of {method_label(first)} and {method_label(second)} (mean Pearson of the maps)"
        line = _compared(what, transformer, baselines, _get("agreement", pair_key(first, second)), "r")
        if line is not None:
            lines.append(line)
    return lines


def _table(comparison: ArchitectureComparison) -> str:
    models = comparison.models
    headers = ["", *(f"{m.model}" for m in models)]

    def row(label: str, cells: list[str]) -> list[str]:
        return [label, *cells]

    rows = [
        row("test accuracy", [_value(m.accuracy, "percent") for m in models]),
        row("not measured", [esc(", ".join(short_label(k) for k in m.unavailable)) or "–" for m in models]),
    ]
    for method in comparison.methods:
        rows.append(row(f"Sensitivity-n, mean over n: {esc(short_label(method))}",
                        [_value(m.sensitivity_mean(method), "r") for m in models]))  # fmt: skip
    for end, name in ((0, "smallest"), (-1, "largest")):
        cells = []
        for m in models:
            scores = {k: m.sensitivity_at(k, end) for k in m.sensitivity}
            scores = {k: v for k, v in scores.items() if math.isfinite(v)}
            best = max(scores, key=scores.__getitem__) if scores else None
            n = m.ns[end] if m.ns else None
            cells.append(f"{esc(short_label(best))} {scores[best]:.2f} (n = {n})" if best else "–")
        rows.append(row(f"Sensitivity-n, best at the {name} n", cells))
    for method in ("deeplift", "integrated_gradients", "epsilon_lrp", "gradient_x_input"):
        rows.append(row(f"completeness gap: {esc(short_label(method))}",
                        [_value(m.completeness.get(method), "gap") for m in models]))  # fmt: skip
    for first, second in PAIRS:
        rows.append(row(f"agreement r: {esc(short_label(first))} vs {esc(short_label(second))}",
                        [_value(m.agreement.get(pair_key(first, second)), "r") for m in models]))  # fmt: skip
    return table(headers, rows, numeric=[False] + [True] * len(models))


def architectures_section(comparisons: Sequence[ArchitectureComparison]) -> str:
    """The section: for each data set, the table and the findings of each of its transformers."""
    parts = [
        f'<section><h2 id="transformers">{esc(TITLE)}</h2>'
        '<p class="note">Each transformer beside the paper\'s models trained on the same data, all measured in this '
        "run with the same methods, samples' kind, subsets and seed (the numbers of the sections below). "
        "Sensitivity-n: mean Pearson correlation per sample between Σ R over n removed features and the output "
        "drop; completeness gap: mean |Σ R − (S<sub>c</sub>(x) − S<sub>c</sub>(0))| / mean |S<sub>c</sub>(x) − "
        "S<sub>c</sub>(0)|; agreement: mean per-sample Pearson correlation of two methods' maps.</p>"
    ]
    for comparison in comparisons:
        parts.append(f"<h3>{esc(comparison.dataset)}: {esc(' and '.join(t.model for t in comparison.transformers))} "
                     f"against {esc(', '.join(b.model for b in comparison.baselines))}</h3>")  # fmt: skip
        parts.append(f'<p class="muted">features: {esc(comparison.features)}</p>')
        curves = figure(
            data_uri(architecture_figure(comparison), "svg"),
            "Sensitivity-n of each method on each model of this data set: the transformer solid, the paper's "
            "models dashed or dotted (mean Pearson correlation over the evaluation samples).",
            f"Sensitivity-n, transformers against the paper's models, {comparison.dataset}",
        )
        parts.append(_table(comparison) + curves)
        for transformer in comparison.transformers:
            items = "".join(f"<li>{line}</li>" for line in findings(comparison, transformer))
            parts.append(f"<h4>What changes on the {esc(transformer.model)}</h4><ul class='findings'>{items}</ul>")
    parts.append("</section>")
    return "".join(parts)
