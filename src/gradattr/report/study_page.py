"""The study report: one self-contained HTML page per :class:`~gradattr.experiments.results.Study`.

Layout: a header with the run's summary; a table of models (accuracy against the majority rate); how the run
differs from the paper's study (data sets, models, samples, the n grid, method options), read off the run; the paper's
claims against our measurements for every model; the transformers against the paper's models on the same data
(when the run has a transformer); one section per data set with, per model, the heatmap grid
(or text samples with tokens coloured by attribution), the Sensitivity-n curves with the protocol they were
measured with, the method-agreement
table, the claims and the timings; the robustness section (standard vs adversarially trained CNN) and the
language-model section (a decoder's continuations of reviews, explained token by token) when they were run;
and the settings, versions and command line to rerun it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from gradattr.evaluation import CURVES, LOWER_IS_BETTER
from gradattr.experiments.claims import HOLDS, Claim
from gradattr.experiments.class_activation_maps import token_grid
from gradattr.experiments.protocol import Protocol
from gradattr.experiments.results import Study
from gradattr.experiments.study import ModelStudy
from gradattr.files import write_text
from gradattr.report.architectures_page import architectures_section
from gradattr.report.curves import removal_figure, sensitivity_figure
from gradattr.report.figures import data_uri
from gradattr.report.heatmaps import heatmap_figure, row_scale
from gradattr.report.html import badge, document, esc, figure, table
from gradattr.report.labels import method_label, short_label
from gradattr.report.language_model_page import TITLE as LANGUAGE_MODEL
from gradattr.report.language_model_page import language_model_section
from gradattr.report.robustness_page import robustness_section
from gradattr.report.tokens import token_spans

PAPER = (
    "Ancona, Ceolini, Öztireli, Gross: Towards better understanding of gradient-based attribution methods for "
    "Deep Neural Networks (ICLR 2018)"
)
DIFFERENCES = "Differences from the paper"
PROP2_NOTE = (
    "Prop. 2 holds only for networks without additive biases: the trained models have biases, so DeepLIFT and "
    "Gradient*Input differ on them; the check zeroes every bias of the same trained weights, where the two must "
    "agree exactly. Prop. 1 is a limit ε → 0: ε-LRP is run at the default ε = 1e-4 and again at ε = 1e-8."
)


def anchor(text: str) -> str:
    """An id for a heading."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _number(value: float, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def render_study(study: Study) -> str:
    """The report of ``study`` as one HTML string (figures embedded as base64 PNG/SVG)."""
    datasets = list(dict.fromkeys(m.subject.dataset for m in study.models))
    comparisons = study.architectures()
    sections = ["Summary", DIFFERENCES, "Paper claims", *(["Transformers"] if comparisons else []), *datasets,
                *(["Robustness"] if study.robustness else []), *([LANGUAGE_MODEL] if study.language_model else []),
                "Settings"]  # fmt: skip
    claims = {id(m): study.claims(m) for m in study.models}
    verdicts = Counter(c.verdict for rows in claims.values() for c in rows)
    header = (
        f"<h1>{esc(study.title)}</h1><p>The Sensitivity-n study and propositions of {esc(PAPER)}, measured "
        "again on the data and models below, with the differences listed under their heading.</p>"
        "<nav>" + "".join(f'<a href="#{anchor(t)}">{esc(t)}</a>' for t in sections) + "</nav>"
    )
    cards = [
        (str(len(study.models)), f"models on {len(datasets)} data set{'s' * (len(datasets) != 1)}"),
        (f"{verdicts[HOLDS]} / {verdicts[HOLDS] + verdicts['does not hold']}", "paper claims hold"),  # checked ones
        (str(sum(v for k, v in verdicts.items() if k in ("does not hold",))), "claims that do not hold"),
        (f"{study.seconds / 60:.1f} min", "wall time, training included"),
    ]
    body = ['<div class="cards">']
    body += [f'<div class="card"><div class="big">{esc(b)}</div><div class="label">{esc(t)}</div></div>'
             for b, t in cards]  # fmt: skip
    body.append("</div>")
    body.append(_summary(study, claims))
    body.append(_differences(study))
    body.append(_claims_overview(study, claims))
    if comparisons:
        body.append(architectures_section(comparisons))
    for dataset in datasets:
        body.append(_dataset_section(study, dataset, claims))
    if study.robustness is not None:
        body.append(robustness_section(study.robustness))
    if study.language_model is not None:
        body.append(language_model_section(study.language_model, anchor(LANGUAGE_MODEL)))
    body.append(_settings(study))
    footer = f"Generated by gradattr {esc(study.environment['gradattr'])} on {esc(study.started)}."
    return document(study.title, header, "".join(body), footer)


def write_study(study: Study, out: str | Path) -> list[Path]:
    """Write ``report.html``, ``results.json`` and the CSV files into ``out``; return their paths."""
    out = Path(out)
    files = study.write(out)
    path = out / "report.html"
    write_text(path, render_study(study))
    return [path, *files]


def _summary(study: Study, claims: dict[int, list[Claim]]) -> str:
    rows = []
    for m in study.models:
        training = m.subject.training
        held = sum(c.verdict == HOLDS for c in claims[id(m)])
        checked = sum(c.verdict in (HOLDS, "does not hold") for c in claims[id(m)])
        rows.append(
            [
                esc(m.subject.dataset),
                esc(m.subject.model_name),
                _percent(training.test_accuracy) if training else "–",
                _percent(training.majority_rate) if training else "–",
                f"{training.seconds:.1f} s" if training and training.epochs else "–",  # epochs 0: not trained here
                str(int(m.subject.inputs.shape[0])),
                esc(m.subject.features.description),
                f"{held} / {checked}",
            ]
        )
    headers = ["data set", "model", "test accuracy", "majority class", "training", "evaluated", "features",
               "claims hold"]  # fmt: skip
    return (
        '<section><h2 id="summary">Summary</h2>'
        + table(headers, rows, numeric=[False, False, True, True, True, True, False, True])
        + '<p class="note">Test accuracy against the rate of always predicting the majority class; training time '
        "of the cached run that produced the weights. Claims hold: of those that apply to the model.</p></section>"
    )


def _differences(study: Study) -> str:
    """The section listing how this run differs from the paper's study, in plain sentences."""
    items = "".join(f"<li>{esc(line)}</li>" for line in study.differences())
    return (
        f'<section><h2 id="{anchor(DIFFERENCES)}">{DIFFERENCES}</h2><ul class="differences">{items}</ul>'
        '<p class="note">Read off this run: its data sets, models and each model\'s Sensitivity-n protocol '
        "(printed under its curves and in results.json, models[].protocol).</p></section>"
    )


def _verdict(claim: Claim) -> str:
    """The verdict's badge, and beside it why, where the cause is known."""
    reason = f" <span class='muted'>({esc(claim.reason)})</span>" if claim.reason else ""
    return badge(claim.verdict) + reason


def _claims_overview(study: Study, claims: dict[int, list[Claim]]) -> str:
    names = [c.claim for c in claims[id(study.models[0])]] if study.models else []
    headers = ["paper claim", *(f"{m.subject.dataset} · {m.subject.model_name}" for m in study.models)]
    rows = [
        [esc(name), *(f"{_verdict(claims[id(m)][i])}<br><span class='muted'>{esc(claims[id(m)][i].measured)}"
                      "</span>" for m in study.models)]
        for i, name in enumerate(names)
    ]  # fmt: skip
    return (
        '<section><h2 id="paper-claims">Paper claims vs our measurement</h2>'
        + table(headers, rows)
        + f'<p class="note">{esc(PROP2_NOTE)} Relative differences are ‖R<sub>a</sub> − R<sub>b</sub>‖ / '
        "‖R<sub>b</sub>‖, the largest over samples; completeness gaps are mean |Σ R − (S<sub>c</sub>(x) − "
        "S<sub>c</sub>(0))| / mean |S<sub>c</sub>(x) − S<sub>c</sub>(0)|.</p></section>"
    )


def _dataset_section(study: Study, dataset: str, claims: dict[int, list[Claim]]) -> str:
    parts = [f'<section><h2 id="{anchor(dataset)}">{esc(dataset)}</h2>']
    if dataset in study.datasets:
        parts.append(f'<p class="note">{esc(study.datasets[dataset])}</p>')
    for m in study.models:
        if m.subject.dataset == dataset:
            parts.append(_model_block(m, claims[id(m)], study.protocol(m)))
    parts.append("</section>")
    return "".join(parts)


def _model_block(m: ModelStudy, claims: list[Claim], protocol: Protocol) -> str:
    subject = m.subject
    training = subject.training
    title = f"{subject.model_name}"
    line = (
        f"test accuracy {_percent(training.test_accuracy)} (majority class {_percent(training.majority_rate)}); "
        if training
        else ""
    ) + f"{int(subject.inputs.shape[0])} evaluation samples; features: {subject.features.description}"
    parts = [f'<h3 id="{anchor(subject.dataset + "-" + title)}">{esc(title)}</h3><p class="muted">{esc(line)}</p>']
    if m.unavailable:
        items = "".join(f"<li><b>{esc(_label(m, k))}</b>: n/a: {esc(v)}</li>" for k, v in m.unavailable.items())
        parts.append(f'<div class="unavailable">Not measured on this model:<ul>{items}</ul></div>')
    attributions = _token_samples(m) if subject.is_text else _heatmaps(m)
    curves = ""
    if m.sensitivity is not None:
        curves = (
            figure(
                data_uri(
                    sensitivity_figure(
                        m.sensitivity, features=subject.features.description, method_options=_label_options(m)
                    ),
                    "svg",
                ),
                f"Sensitivity-n: mean Pearson correlation over {m.sensitivity.samples} samples between Σ R over n "
                f"removed {subject.features.description} and the output drop (band: ±1 s.e.).",
                f"Sensitivity-n curves, {subject.dataset}, {subject.model_name}",
            )
            + f'<p class="protocol"><b>Protocol:</b> {esc(protocol.summary())}</p>'
        )
    parts.append(attributions + _cam_heatmaps(m))  # the page's full width: its labels stay legible
    parts.append(f'<div class="figures"><div>{curves}</div><div>')
    parts.append("<h4>Method agreement</h4>" + _correlation_table(m))
    parts.append("<h4>Timings</h4>" + _timings_table(m) + "</div></div>")
    rows = [[esc(c.claim), esc(c.expected), esc(c.measured), _verdict(c)] for c in claims]
    met = f'<p class="muted">nonlinearities met: {esc(m.ops.summary())}</p>'
    parts.append("<h4>Paper claims</h4>" + met + table(["claim", "paper", "measured", "verdict"], rows))
    if m.sensitivity is not None and m.sensitivity.metrics:
        parts.append("<h4>Which method is most faithful?</h4>" + _quality_table(m) + _removal_curves(m))
    return "".join(parts)


def _removal_curves(m: ModelStudy) -> str:
    """The deletion and insertion curves measured (:data:`~gradattr.evaluation.CURVES`), as one figure."""
    curves = {name: r for name, r in m.sensitivity.metrics.items() if name in CURVES}  # type: ignore[union-attr]
    if not curves:
        return ""
    features = m.subject.features.description
    groups = next(iter(m.sensitivity.results.values())).num_features  # type: ignore[union-attr]
    svg = data_uri(removal_figure(curves, groups, features=features, method_options=_label_options(m)), "svg")
    return figure(
        svg,
        f"Deletion and insertion (Petsiuk et al. 2018): mean probability of the target over "
        f"{m.sensitivity.samples} samples as the {features} are deleted (inserted) in order of decreasing "  # type: ignore[union-attr]
        "attribution; the area under a line is the AUC of the table.",
        f"Deletion and insertion curves, {m.subject.dataset}, {m.subject.model_name}",
    )


def _quality_table(m: ModelStudy) -> str:
    """Methods x quality metrics: each metric's mean over the samples and the method's rank under it (1 = best;
    lower is better for the metrics of :data:`~gradattr.evaluation.LOWER_IS_BETTER`), and the mean rank."""
    results = {name: r for name, r in m.sensitivity.metrics.items() if name not in CURVES}  # type: ignore[union-attr]
    means = {name: {label: float(np.nanmean(np.atleast_1d(v))) for label, v in r.mean().items()}
             for name, r in results.items()}  # fmt: skip
    ranks: dict[str, dict[str, int]] = {}
    for name, values in means.items():
        score = {label: value if name in LOWER_IS_BETTER else -value for label, value in values.items()}
        # rank = 1 + the methods strictly better: ties share a rank
        ranks[name] = {label: 1 + sum(other < score[label] for other in score.values()) for label in score}
    rows = []
    for label in m.methods:
        cells = [f"{means[name][label]:.3g} ({ranks[name][label]})" for name in means]
        mean_rank = sum(ranks[name][label] for name in means) / len(means)
        rows.append([esc(_label(m, label)), *cells, f"{mean_rank:.1f}"])
    headers = ["method", *(f"{name.replace('_', ' ')} {'↓' if name in LOWER_IS_BETTER else '↑'}" for name in means),
               "mean rank"]  # fmt: skip
    return table(headers, rows, numeric=[False] + [True] * (len(means) + 1)) + (
        f'<p class="note">Mean over {m.sensitivity.samples} samples (rank among the methods; ↑ higher is better, '  # type: ignore[union-attr]
        "↓ lower). Definitions: gradattr.metrics.</p>"
    )


def _row_labels(m: ModelStudy) -> list[str]:
    names = m.subject.class_names
    return [
        f"true {names[int(t)]}, predicted {names[int(p)]}"
        for t, p in zip(m.display_targets, m.display_predictions, strict=True)
    ]


def _label_options(m: ModelStudy) -> dict[str, dict[str, Any]]:
    """The row options that name a row (patch occlusion) where features are patches; on tokens an occlusion
    window of (1, width) is one token, Occlusion-1 of the paper, and keeps that name."""
    return m.method_options if "patches" in m.subject.features.description else {}


def _label(m: ModelStudy, name: str) -> str:
    return method_label(name, _label_options(m).get(name))


def _short(m: ModelStudy, name: str) -> str:
    return short_label(name, _label_options(m).get(name))


def _heatmaps(m: ModelStudy) -> str:
    if not m.display_maps and not m.lrp_maps:
        return '<p class="note">No attribution maps (no method ran on this model).</p>'
    image = heatmap_figure(m.display_inputs, {**m.display_maps, **m.lrp_maps}, row_labels=_row_labels(m),
                           method_options=_label_options(m))  # fmt: skip
    lrp = (
        f" The last column is LRP under the composite {m.subject.lrp_composite} (z+ at the convolutions, ε at the "
        "dense layers, flat at the first layer; gradattr.attribute(..., method='lrp', composite=...)): its "
        "relevance is in the logit's unit like the others'; it is shown, not measured."
        if m.lrp_maps
        else ""
    )
    return figure(
        data_uri(image, "png"),
        "Rows: test samples; columns: the input, then each method. Red positive, blue negative, white 0; one "
        "colour scale per row (±the 99.5th percentile of |R| over its maps), shown by the row's colorbar." + lrp,
        f"Attribution heatmaps, {m.subject.dataset}, {m.subject.model_name}",
    )


def _cam_heatmaps(m: ModelStudy) -> str:
    """The class activation maps of the displayed samples at the model's token layer ('' without them)."""
    if not m.cam_maps:
        return ""
    subject = m.subject
    layer = str(subject.cam_layer)
    grid = token_grid(subject.model, m.display_inputs, layer)
    cells = "x".join(str(side) for side in grid)
    image = heatmap_figure(m.display_inputs, m.cam_maps, row_labels=_row_labels(m), shared_scale=False)
    return "<h4>Class activation maps</h4>" + figure(
        data_uri(image, "png"),
        f"Grad-CAM and its family computed on {layer}, the LayerNorm at the input of the last block: its "
        f"{math.prod(grid)} patch tokens (the class token left out) read as a {cells} grid (reshape='auto'), "
        "one value per patch, drawn over the patch's pixels. The last block's output reaches the head only "
        "through the class token, so every gradient-weighted map (and Ablation-CAM) would be 0 there. Same "
        "samples and classes as above; red positive, white 0; each map divided by its own scale (99.5th "
        "percentile of |R|, written under it), so each row's colorbar runs from −1 to 1.",
        f"Class activation maps, {subject.dataset}, {subject.model_name}",
    )


def _token_samples(m: ModelStudy) -> str:
    if not m.display_maps or m.subject.tokens is None:
        return '<p class="note">No attributions (no method ran on this model).</p>'
    blocks = ["<h4>Text samples</h4>"]
    for i, label in enumerate(_row_labels(m)):
        tokens = m.subject.tokens(m.display_inputs[i])
        maps = {name: r[i].double().numpy() for name, r in m.display_maps.items()}
        scale = row_scale(list(maps.values()))
        rows = [
            [esc(_short(m, name)), token_spans(tokens, list(r[-len(tokens) :] if tokens else r[:0]), scale)]
            for name, r in maps.items()
        ]
        blocks.append(
            f'<p class="muted">Sample {i + 1}: {esc(label)}</p>' + table(["method", "tokens"], rows, css="tokens")
        )
    blocks.append(
        '<p class="note">Each token coloured by its attribution (summed over the embedding): red for, blue '
        "against the attributed class; one scale per sample. Hover a token for its value.</p>"
    )
    return "".join(blocks)


def _correlation_table(m: ModelStudy) -> str:
    if not m.methods:
        return '<p class="note">–</p>'
    matrix = np.array(m.correlation, dtype=float)

    def cell(value: float) -> str:
        if not math.isfinite(value):
            return "–"
        shade = max(0.0, min(1.0, value))
        return f'<span class="shade" style="background:rgba(59,91,219,{0.06 + 0.44 * shade:.2f})">{value:.2f}</span>'

    rows = [[esc(_short(m, a)), *(cell(v) for v in row)] for a, row in zip(m.methods, matrix, strict=True)]
    unit = "per-token " if m.subject.is_text else ""
    return table(["", *(_short(m, a) for a in m.methods)], rows, numeric=[False] + [True] * len(m.methods)) + (
        f'<p class="note">Mean Pearson correlation of the {unit}maps over samples.</p>'
    )


def _timings_table(m: ModelStudy) -> str:
    rows = [
        [esc(_label(m, name) if name in m.methods else name), f"{1e3 * seconds:.2f}"]
        for name, seconds in m.seconds_per_sample.items()
    ]
    return table(["method", "ms per sample"], rows, numeric=[False, True]) + (
        '<p class="note">Attribution time per sample (batched); sensitivity-n: its forward passes per sample, '
        "shared by all methods.</p>"
    )


def _plain(value: object) -> str:
    """Lists as comma-separated words."""
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def _settings(study: Study) -> str:
    settings = study.settings.to_dict() | study.options
    rows = [[esc(k), esc(_plain(v))] for k, v in settings.items() if k != "evaluation_samples"]
    rows += [[esc(f"samples: {k}"), esc(v)] for k, v in study.options.get("evaluation_samples", {}).items()]
    environment = [[esc(k), esc(v)] for k, v in study.environment.items()]
    return (
        '<section><h2 id="settings">Settings</h2><h4>Command</h4>'
        f"<pre>{esc(study.command)}</pre>"
        '<div class="figures"><div><h4>Study settings</h4>'
        + table(["setting", "value"], rows)
        + "</div><div><h4>Environment</h4>"
        + table(["", "version"], environment)
        + "</div></div>"
        '<p class="note">Seeds fix the data split, the initial weights, training and the Sensitivity-n subsets '
        "(the same subsets for every method and sample). Sensitivity-n: the Pearson correlation per sample, "
        "then the mean; each model's features, n grid, subsets, samples and removal are printed under its "
        "curves. "
        "Models are cached; rerun the command above to reproduce every number in results.json.</p></section>"
    )
