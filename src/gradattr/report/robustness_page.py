"""The robustness section of the study report (Nielsen et al., IEEE SPM 2022): standard vs adversarially
trained CNN, maps side by side, sanity-check curves, class sensitivity and the explanation attack."""

from __future__ import annotations

import math
from itertools import takewhile

import torch

from gradattr.experiments.class_activation_maps import CAM_METHODS
from gradattr.experiments.robustness_study import MODELS, RobustnessStudy
from gradattr.report.curves import randomisation_figure
from gradattr.report.figures import data_uri
from gradattr.report.heatmaps import heatmap_figure
from gradattr.report.html import badge, esc, figure, table
from gradattr.report.labels import method_label

TUTORIAL = (
    "Nielsen, Dera, Rasool, Ramachandran, Bouaynaya: Robust Explainability: A Tutorial on Gradient-Based "
    "Attribution Methods for Deep Neural Networks (IEEE Signal Processing Magazine, 2022)"
)
MODEL_TITLES = {"standard": "standard", "robust": "adversarially trained (PGD)"}


def _number(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.3f}"


def robustness_section(study: RobustnessStudy) -> str:
    """The section's HTML: findings, the comparison table, heatmaps, sanity checks, class sensitivity."""
    s = study.settings
    intro = (
        f"After {esc(TUTORIAL)}. Two copies of the paper's CNN on {esc(study.dataset)}, same data and seed: "
        f"one trained as usual, one trained on PGD adversarial examples (L∞, ε = {s.epsilon}, {s.train_steps} "
        f"steps per batch; Madry et al. 2018). Robust accuracy: PGD with {s.eval_steps} steps at the same ε. "
        f"Explanation attack (Ghorbani et al. 2019): {s.explanation_epsilon} L∞, top-k objective on saliency "
        f"maps, against random sign noise of the same size; {s.samples} test images."
    )
    parts = [
        '<section><h2 id="robustness">Robustness of explanations</h2>',
        f'<p class="note">{intro}</p>',
        "<h4>What we found</h4><ul>" + "".join(f"<li>{esc(line)}</li>" for line in findings(study)) + "</ul>",
        '<div class="figures"><div><h4>Standard vs adversarially trained</h4>',
        _comparison_table(study),
        "</div><div><h4>Class sensitivity</h4>",
        _class_table(study),
        "</div></div>",
        _heatmaps(study, _groups(study)),
        "<h4>Sanity checks: cascading parameter randomisation</h4>",
        _sanity(study),
        "</section>",
    ]
    return "".join(parts)


def findings(study: RobustnessStudy) -> list[str]:
    """Plain-language findings, each carrying its numbers."""
    c = study.comparison
    lines = [
        f"Adversarial training raised robust accuracy from {c.value('robust accuracy', 'standard'):.1%} to "
        f"{c.value('robust accuracy', 'robust'):.1%} (clean accuracy {c.value('accuracy', 'standard'):.1%} → "
        f"{c.value('accuracy', 'robust'):.1%}).",
        "The explanation attack kept the predicted label of "
        f"{c.value('label kept by explanation attack', 'standard'):.0%} / "
        f"{c.value('label kept by explanation attack', 'robust'):.0%} of the images and cut the top-k "
        "intersection of the saliency maps to "
        f"{c.value('top-k intersection under attack', 'standard'):.2f} (standard) and "
        f"{c.value('top-k intersection under attack', 'robust'):.2f} (robust), against "
        f"{c.value('top-k intersection under noise', 'standard'):.2f} / "
        f"{c.value('top-k intersection under noise', 'robust'):.2f} for random noise.",
    ]
    robust_better = [r["measure"] for r in c.rows if _better(r) == "robust"]
    lines.append(
        "The robust model is better on: " + (", ".join(robust_better) if robust_better else "none of the measures")
        + "."
    )  # fmt: skip
    for model in MODELS:
        failed = [method_label(m) for m, ok in study.sanity_passes(model).items() if not ok]
        lines.append(
            f"Sanity check, {MODEL_TITLES[model]} model: "
            + (f"{', '.join(failed)} kept their maps after every layer was randomised (fail)." if failed
               else "every method's maps changed (pass).")
        )  # fmt: skip
    return lines + _cam_findings(study)


UNCHANGED = 0.99
"""Mean Spearman of the absolute maps (sanity checks) or mean Spearman between classes (class sensitivity) from
which the findings call a method's maps unchanged: the same map after randomising a layer, or whatever the
class."""


def _cam_findings(study: RobustnessStudy) -> list[str]:
    """What the sanity checks and class sensitivity measured of the class activation maps, with the numbers:
    which pass, which keep their maps while the layers above theirs are randomised, which ignore the class."""
    cams = [m for m in study.settings.methods if m in CAM_METHODS]
    if not cams:
        return []
    passes = {model: study.sanity_passes(model) for model in MODELS}
    final = {model: {m: float(study.sanity[model].mean(m, "spearman_abs")[-1]) for m in cams} for model in MODELS}
    verdicts = []
    for method in cams:
        ok = [passes[model][method] for model in MODELS]
        word = "passes on both models" if all(ok) else "fails on both" if not any(ok) else "passes on one model"
        numbers = " / ".join(_number(final[model][method]) for model in MODELS)
        verdicts.append(f"{method_label(method)} {word} ({numbers})")
    lines = [
        f"Class activation maps at {study.settings.cam_layer}, cascading randomisation (mean Spearman of the "
        "absolute maps once every layer is random, standard / robust; pass: |value| < 0.5): "
        + "; ".join(verdicts) + "."
    ]
    for model in MODELS:
        result = study.sanity[model]
        for method in cams:
            values = zip(result.steps, result.mean(method, "spearman_abs").tolist(), strict=True)
            steps = [step for step, _ in takewhile(lambda pair: pair[1] >= UNCHANGED, values)]
            if not steps:
                continue
            below = result.steps[len(steps)] if len(steps) < len(result.steps) else None
            lines.append(
                f"{method_label(method)}, {MODEL_TITLES[model]} model: its maps stayed the same (mean Spearman "
                f"≥ {UNCHANGED}) while {', '.join(steps)} were randomised"
                + (f", and changed once {below} was: they read the activations at {study.settings.cam_layer}, not "
                   "the layers above." if below else ", and up to the last layer (fail).")
            )  # fmt: skip
    agnostic = {m: [study.classes[model].mean(m, "spearman") for model in MODELS] for m in cams}
    agnostic = {m: values for m, values in agnostic.items() if min(values) >= UNCHANGED}
    for method, values in agnostic.items():
        lines.append(
            f"{method_label(method)} is class-agnostic: the maps of each image's five most likely classes "
            f"correlate at {' / '.join(_number(v) for v in values)} (mean Spearman, standard / robust), the same "
            "map whatever class is asked for."
        )
    return lines


def _better(row: dict) -> str | None:
    standard, robust = row["standard"], row["robust"]
    if standard is None or robust is None or not (math.isfinite(standard) and math.isfinite(robust)):
        return None
    if standard == robust:
        return None
    higher = "robust" if robust > standard else "standard"
    return higher if row["better"] == "higher" else ({"robust": "standard", "standard": "robust"}[higher])


def _comparison_table(study: RobustnessStudy) -> str:
    rows = []
    for row in study.comparison.rows:
        winner = _better(row)
        cells = [f"<b>{_number(row[m])}</b>" if winner == m else _number(row[m]) for m in MODELS]
        rows.append([esc(row["measure"]), *cells, esc(f"{row['better']} is better")])
    return table(["measure", "standard", "robust", ""], rows, numeric=[False, True, True, False]) + (
        '<p class="note">Bold: the better model on that measure. Max-sensitivity: uniform noise in the same '
        "ε ball, maps normalised; infidelity: Gaussian perturbations, optimally scaled (Yeh et al. 2019).</p>"
    )


def _class_table(study: RobustnessStudy) -> str:
    methods = study.classes[MODELS[0]].methods
    rows = [
        [esc(method_label(m)), *(_number(study.classes[name].mean(m, "spearman")) for name in MODELS)] for m in methods
    ]
    return table(["method", "standard", "robust"], rows, numeric=[False, True, True]) + (
        '<p class="note">Mean Spearman correlation between the maps of each image\'s five most likely classes '
        "(all pairs). Low: the method explains the class asked for; high: the same map whatever the class.</p>"
    )


def _groups(study: RobustnessStudy) -> dict[str, list[str]]:
    """The study's methods in two figures: the gradient methods, and the class activation maps."""
    methods = study.settings.methods
    groups = {
        "gradient methods": [m for m in methods if m not in CAM_METHODS],
        "class activation maps": [m for m in methods if m in CAM_METHODS],
    }
    return {title: group for title, group in groups.items() if group}


def _heatmaps(study: RobustnessStudy, groups: dict[str, list[str]]) -> str:
    """One heatmap grid per group of methods, rows in pairs: each displayed image for the standard and the robust
    model."""
    count = study.inputs.shape[0]
    order = [(i, name) for i in range(count) for name in MODELS]
    inputs = torch.stack([study.inputs[i] for i, _ in order])
    names = study.class_names
    labels = [
        f"{name}:\ntrue {names[int(study.labels[i])]}, pred. {names[int(study.predictions[name][i])]}"
        for i, name in order
    ]
    parts = ["<h4>Maps, standard and robust model on the same images</h4>"]
    for title, methods in groups.items():
        maps = {m: torch.stack([study.maps[name][m][i] for i, name in order]) for m in methods}
        image = heatmap_figure(inputs, maps, row_labels=labels, shared_scale=False)
        where = f" at {study.settings.cam_layer}, upsampled to the image" if title == "class activation maps" else ""
        parts.append(figure(
            data_uri(image, "png"),
            f"{title.capitalize()}{where}. Pairs of rows: the same test image explained by the standard and by the "
            "adversarially trained model (each for its predicted class). Red positive, blue negative, white 0; "
            "each map divided by its own scale (99.5th percentile of |R|, written under it; the methods differ in "
            "scale), so each row's colorbar runs from −1 to 1.",
            f"Heatmaps of the standard and the robust model, {title}, {study.dataset}",
        ))  # fmt: skip
    return "".join(parts)


def _sanity(study: RobustnessStudy) -> str:
    results = {MODEL_TITLES[m]: study.sanity[m] for m in MODELS}
    curves = "".join(
        figure(
            data_uri(randomisation_figure(results, methods=methods), "svg"),
            f"{title.capitalize()}: mean Spearman correlation (absolute maps) between each method's maps on the "
            f"trained model and after randomising its layers from the top down, {study.settings.sanity_samples} "
            "test images. A method that explains the model falls towards 0; one that stays high is insensitive to "
            "the model (Adebayo et al. 2018).",
            f"Cascading randomisation curves, {title}",
        )
        for title, methods in _groups(study).items()
    )
    verdicts = {m: study.sanity_passes(m) for m in MODELS}
    methods = list(verdicts[MODELS[0]])
    rows = [
        [
            esc(method_label(method)),
            *(
                f"{badge('passes' if verdicts[m][method] else 'fails')} "
                f"<span class='muted'>{_number(float(study.sanity[m].mean(method, 'spearman_abs')[-1]))}</span>"
                for m in MODELS
            ),
        ]
        for method in methods
    ]
    verdict_table = table(["method", "standard", "robust"], rows) + (
        '<p class="note">Passes: |mean Spearman| of the absolute maps &lt; 0.5 once every layer is random (our '
        "bound; Adebayo et al. read the curves by eye).</p>"
    )
    return curves + verdict_table  # the curves at the page's full width: their labels stay legible
