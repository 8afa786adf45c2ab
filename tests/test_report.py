"""The study report: rendered by a real browser (Debian's headless chromium), numbers that match the API."""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import chromium_page
import gradattr
from gradattr.cli import app
from gradattr.data import load_digits
from gradattr.experiments.class_activation_maps import CAM_METHODS
from gradattr.experiments.recipes import DATASETS, evaluation_set
from gradattr.report.labels import method_label
from gradattr.report.tokens import token_colour, token_spans
from gradattr.robustness import PGD, model_randomisation, robust_accuracy
from gradattr.training import train_or_load

SAMPLES, SUBSETS = 12, 20
TINY = ["--quick", "--models", "mlp-relu,text-cnn", "--samples", str(SAMPLES), "--num-subsets", str(SUBSETS),
        "--display", "2", "--no-progress"]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny quick run (digits MLP and drug-review text CNN): (report directory, model cache)."""
    root = tmp_path_factory.mktemp("reproduce")
    out, cache = root / "report", root / "cache"
    result = CliRunner().invoke(app, ["reproduce", *TINY, "--out", str(out), "--cache", str(cache)])
    assert result.exit_code == 0, result.output
    return out, cache


def test_report_renders_in_chromium(tiny_run: tuple[Path, Path]) -> None:
    reason = chromium_page.missing_reason()
    if reason:
        pytest.skip(reason)
    out, _ = tiny_run
    screenshot = out / "screenshot.png"
    with chromium_page.chromium() as driver:
        facts = chromium_page.page_facts(driver, out / "report.html", screenshot)
        shots = chromium_page.element_screenshots(driver, "section:has(ul.differences), div:has(> p.protocol)",
                                                  out / "new-parts")  # fmt: skip
    assert len(shots) == 3 and all(shot.stat().st_size > 5_000 for shot in shots)
    headings = facts["headings"]
    for heading in ("Summary", "Differences from the paper", "Paper claims vs our measurement", "Digits", "MLP (ReLU)",
                    "Drug reviews", "Text CNN", "Robustness of explanations", "Settings"):  # fmt: skip
        assert heading in headings, headings
    images = facts["images"]
    # digits heatmaps, two Sensitivity-n curves and two deletion/insertion figures (text samples are HTML);
    # robustness heatmaps and sanity curves, each for the gradient methods and for the class activation maps
    assert len(images) == 9
    assert {"Deletion and insertion curves, Digits, MLP (ReLU)", "Deletion and insertion curves, Drug reviews, Text CNN"
            } <= {alt for *_, alt in images}  # fmt: skip
    for (complete, width, height, alt), (shown, source) in zip(images, facts["shown"], strict=True):
        assert complete and width > 100 and height > 100, alt
        # figures label in 9 pt or more: 9 px or more on screen where a figure point is a pixel or more
        natural_points = width * (72 / 110 if source.startswith("data:image/png") else 3 / 4)  # 110 dpi; SVG in pt
        assert shown / natural_points >= 1.0, (alt, shown, width)
    overflow = facts["overflow"]
    assert overflow["scrollWidth"] <= overflow["clientWidth"] and overflow["wide"] == [], overflow
    assert overflow["scrolled"] == [], overflow  # nothing to scroll sideways either (the command line wraps)
    # under each Sensitivity-n figure the protocol it was measured with, shown
    protocols = {p["alt"]: p for p in facts["protocols"]}
    assert len(protocols) == 2 and all(p["visible"] for p in protocols.values()), protocols
    digits = protocols["Sensitivity-n curves, Digits, MLP (ReLU)"]["protocol"]
    assert digits.startswith("Protocol: N = 64 pixels; n = 1,"), digits
    text = protocols["Sensitivity-n curves, Drug reviews, Text CNN"]["protocol"]
    assert f"{SUBSETS} subsets per n; {SAMPLES} test samples" in text and "removed tokens:" in text
    assert any("MNIST is replaced by" in item for item in facts["differences"]), facts["differences"]
    assert any("IMDB is replaced by drug reviews" in item for item in facts["differences"])
    assert facts["token_spans"] >= 2 * 6 * 64  # two text samples, six methods, 64 tokens each
    assert facts["errors"] == []
    assert screenshot.stat().st_size > 50_000


def test_report_is_self_contained(tiny_run: tuple[Path, Path]) -> None:
    page = (tiny_run[0] / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "http://" not in page and "https://" not in page
    assert page.count('src="data:image/') == 9  # heatmaps, 2 + 2 curve figures, 2 + 2 robustness


def test_results_agree_with_the_api(tiny_run: tuple[Path, Path]) -> None:
    out, cache = tiny_run
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    entry = next(m for m in results["models"] if m["dataset"] == "Digits" and m["model"] == "MLP (ReLU)")
    recipe = next(r for r in DATASETS if r.key == "digits")
    model_recipe = next(m for m in recipe.models if m.key == "mlp-relu")
    data = load_digits(seed=0)
    model, _ = train_or_load("digits-mlp-relu", lambda: model_recipe.build(data), data, seed=0, cache=cache,
                             progress=False, **model_recipe.training)  # fmt: skip
    x, y = evaluation_set(data, SAMPLES)
    maps = gradattr.attribute(model, x, method="deeplift", target=y)
    rows = [r for r in entry["sensitivity_n"]["rows"] if r["method"] == "deeplift"]
    direct = gradattr.sensitivity_n(model, x, maps, target=y, ns=[r["n"] for r in rows], num_subsets=SUBSETS, seed=0)
    for row, value in zip(rows, direct.correlation.tolist(), strict=True):
        assert (row["mean"] is None and math.isnan(value)) or row["mean"] == pytest.approx(value, abs=1e-9)
    gap = gradattr.metrics.completeness_gap(model, x, maps, y).abs().mean()
    with torch.no_grad():
        delta = (model(x) - model(torch.zeros_like(x)))[torch.arange(len(x)), y].abs().mean()
    assert entry["completeness_relative_gap"]["deeplift"] == pytest.approx(float(gap / delta), rel=1e-3, abs=1e-9)
    assert entry["training"]["test_accuracy"] > 0.9
    claims = {c["claim"]: c["verdict"] for c in entry["claims"]}
    assert claims["DeepLIFT is complete: Σ R = S_c(x) − S_c(0)"] == "holds"
    assert claims["Prop. 2: DeepLIFT = Gradient*Input on bias-free ReLU networks (zero baseline)"] == "holds"


def test_csvs_hold_the_numbers_of_the_json(tiny_run: tuple[Path, Path]) -> None:
    out, _ = tiny_run
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    rows = sum(len(m["sensitivity_n"]["rows"]) for m in results["models"])
    lines = (out / "sensitivity_n.csv").read_text(encoding="utf-8").strip().splitlines()
    assert lines[0] == "dataset,model,method,n,mean,std,count" and len(lines) == rows + 1
    for name in ("models", "claims", "correlation", "timings", "robustness_comparison", "sanity_checks",
                 "class_sensitivity"):  # fmt: skip
        assert (out / f"{name}.csv").stat().st_size > 50


def test_robustness_numbers_agree_with_the_api(tiny_run: tuple[Path, Path]) -> None:
    """The section's robust accuracy and sanity verdicts, recomputed from the cached models."""
    out, cache = tiny_run
    section = json.loads((out / "results.json").read_text(encoding="utf-8"))["robustness"]
    settings = section["settings"]
    assert settings["samples"] == SAMPLES and settings["sanity_samples"] == SAMPLES
    data = load_digits(seed=0)
    recipe = next(m for m in next(r for r in DATASETS if r.key == "digits").models if m.key == "cnn")
    attack = PGD(settings["epsilon"], steps=settings["eval_steps"], seed=settings["seed"])
    x, y = data.test_x[:SAMPLES], data.test_y[:SAMPLES]
    rows = {row["measure"]: row for row in section["comparison"]["rows"]}
    for name, key, options in (
        ("standard", "digits-cnn", {}),
        ("robust", "digits-cnn-pgd", {"perturb": PGD(settings["epsilon"], steps=settings["train_steps"])}),
    ):
        model, _ = train_or_load(key, lambda: recipe.build(data), data, seed=0, cache=cache, progress=False,
                                 **recipe.training, **options)  # fmt: skip
        assert rows["robust accuracy"][name] == pytest.approx(robust_accuracy(model, x, y, attack), abs=1e-12)
        layers = {m: {"layer": settings["cam_layer"]} for m in settings["methods"] if m in gradattr.LAYER_METHODS}
        sanity = model_randomisation(model, x, list(settings["methods"]), seed=0, method_options=layers)
        assert section["sanity_checks"][name]["passes"] == sanity.passes()
    assert rows["robust accuracy"]["robust"] > rows["robust accuracy"]["standard"]


def test_the_robustness_section_has_the_cam_family(tiny_run: tuple[Path, Path]) -> None:
    """Grad-CAM and its family beside the gradient methods: in the settings, the sanity and class-sensitivity
    tables (JSON and CSV), their own heatmap grid and randomisation curves, and the findings' verdicts."""
    out, _ = tiny_run
    section = json.loads((out / "results.json").read_text(encoding="utf-8"))["robustness"]
    assert set(CAM_METHODS) <= set(section["settings"]["methods"])
    for model in ("standard", "robust"):
        assert set(CAM_METHODS) <= set(section["sanity_checks"][model]["passes"])
        assert set(CAM_METHODS) <= set(section["class_sensitivity"][model])
    for name in ("sanity_checks", "class_sensitivity"):
        with (out / f"{name}.csv").open(encoding="utf-8") as rows:
            methods = {(row["model"], row["method"]) for row in csv.DictReader(rows)}
        assert {(model, m) for model in ("standard", "robust") for m in CAM_METHODS} <= methods, name
    page = (out / "report.html").read_text(encoding="utf-8")
    for alt in ("Heatmaps of the standard and the robust model, class activation maps, Digits",
                "Heatmaps of the standard and the robust model, gradient methods, Digits",
                "Cascading randomisation curves, class activation maps",
                "Cascading randomisation curves, gradient methods"):  # fmt: skip
        assert f'alt="{alt}"' in page, alt
    verdicts = []
    for m in CAM_METHODS:
        passes = [section["sanity_checks"][model]["passes"][m] for model in ("standard", "robust")]
        word = "passes on both models" if all(passes) else "fails on both" if not any(passes) else "passes on one model"
        verdicts.append(f"{method_label(m)} {word} (")
    cams = next(line for line in section_findings(page) if line.startswith("Class activation maps at conv2"))
    assert all(verdict in cams for verdict in verdicts), cams


def section_findings(page: str) -> list[str]:
    """The items of the robustness section's "What we found" list, unescaped."""
    section = page[page.index('id="robustness"') :]
    found = section[section.index("<h4>What we found</h4><ul>") : section.index("</ul>")]
    return [html.unescape(item.split("</li>")[0]) for item in found.split("<li>")[1:]]


def test_token_colours_are_diverging_and_escaped() -> None:
    white = [int(c) for c in token_colour(0.0, 1.0)[4:-1].split(",")]
    assert min(white) >= 250  # zero is (nearly) white
    assert token_colour(1.0, 1.0) == "rgb(255, 0, 0)" and token_colour(-5.0, 1.0) == "rgb(0, 0, 255)"
    html = token_spans(["<b>", "ok"], [0.5, -0.5], 1.0)
    assert "&lt;b&gt;" in html and html.count('class="tok"') == 2
    with pytest.raises(ValueError, match="2 tokens but 1 scores"):
        token_spans(["a", "b"], [1.0], 1.0)


def test_class_names_with_dollar_signs_are_drawn_as_text() -> None:
    """A class or file name such as "$\\frac{1$" went into matplotlib as mathtext and crashed the heatmap (or,
    balanced, was typeset as math); it is drawn as the text it is."""
    import io

    import matplotlib.pyplot as plt

    from gradattr.report import heatmap_figure
    from gradattr.report.heatmaps import COLORBAR

    labels = ["a.png: class $\\frac{1$", "price in $: class $x^2$"]
    maps = {"saliency": torch.randn(2, 1, 8, 8)}
    figure = heatmap_figure(torch.randn(2, 1, 8, 8), maps, row_labels=labels)
    figure.savefig(io.BytesIO(), format="png")  # raised ParseSyntaxException: Expected \frac{num}{den}
    drawn = [axis.yaxis.label for axis in figure.axes if axis.get_ylabel() and axis.get_label() != COLORBAR]
    assert [" ".join(text.get_text().split("\n")) for text in drawn] == labels  # long labels wrap onto lines
    assert not any(text.get_parse_math() or text.get_usetex() for text in drawn)
    plt.close(figure)


def _figure_extent(artist: object, figure: object) -> object:
    """``artist``'s drawn bounding box (display coordinates) after ``figure`` is drawn."""
    return artist.get_window_extent(figure.canvas.get_renderer())  # type: ignore[attr-defined]


@pytest.mark.parametrize("shared_scale", [True, False])
def test_heatmaps_have_a_colorbar_per_row_and_legible_labels(shared_scale: bool) -> None:
    """Each row of a heatmap grid has its colorbar (the colour scale is per row), spanning the row's real range
    when the methods share it, −1 to 1 of each map's own scale otherwise; every label is 9 pt or more."""
    import matplotlib.pyplot as plt

    from gradattr.report import heatmap_figure
    from gradattr.report.heatmaps import COLORBAR, row_scale

    torch.manual_seed(0)
    methods = ["saliency", "gradient_x_input", "integrated_gradients", "epsilon_lrp", "deeplift", "occlusion"]
    maps = {name: torch.randn(3, 1, 8, 8) * (k + 1) for k, name in enumerate(methods)}
    labels = ["true 3, predicted 3", "true 8, predicted 1", "true 0, predicted 0"]
    figure = heatmap_figure(torch.randn(3, 1, 8, 8), maps, row_labels=labels, shared_scale=shared_scale)
    figure.canvas.draw()
    bars = [axis for axis in figure.axes if axis.get_label() == COLORBAR]
    assert len(bars) == 3
    for i, bar in enumerate(bars):
        limit = row_scale([maps[name][i, 0].double().numpy() for name in methods]) if shared_scale else 1.0
        assert bar.get_ylim() == pytest.approx((-limit, limit))
    texts = [t for axis in figure.axes for t in (axis.title, axis.xaxis.label, axis.yaxis.label) if t.get_text()]
    texts += [t for bar in bars for t in bar.get_yticklabels() if t.get_text()]
    assert len(texts) >= 7 + 3 + 3 * 3 and min(t.get_fontsize() for t in texts) >= 9
    plt.close(figure)


def _comparison() -> object:
    """A transformer beside two of the paper's models on one data set, five methods (two rows of panels)."""
    from gradattr.experiments.architectures import ArchitectureComparison, ModelFacts

    ns = [1, 2, 4, 8, 16, 32]
    methods = ["saliency", "gradient_x_input", "integrated_gradients", "epsilon_lrp", "deeplift"]

    def facts(model: str, transformer: bool, start: float) -> ModelFacts:
        curve = [start - 0.12 * k for k in range(len(ns))]
        return ModelFacts(model, transformer, 0.9, 0.1, 12, {}, ns, dict.fromkeys(methods, curve), {}, {})

    return ArchitectureComparison("Digits", "pixels", methods, [facts("ViT", True, 0.95)],
                                  [facts("MLP (ReLU)", False, 0.9), facts("CNN", False, 0.8)])  # fmt: skip


def test_curve_legends_sit_outside_the_plots() -> None:
    """The Sensitivity-n legend used to sit on the curves (high at small n, inside the axes): it, and the
    legend of the transformers' panels, are drawn outside every axes; the figures are 7 in wide or more."""
    import matplotlib.pyplot as plt

    from gradattr.evaluation import SensitivityTable
    from gradattr.metrics.sensitivity import SensitivityResult
    from gradattr.report import sensitivity_figure
    from gradattr.report.curves import architecture_figure

    ns = [1, 2, 4, 8, 16, 32, 64]
    curve = torch.tensor([1.0 - 0.15 * k for k in range(len(ns))], dtype=torch.float64)
    methods = ["saliency", "gradient_x_input", "integrated_gradients", "epsilon_lrp", "deeplift", "occlusion"]
    table = SensitivityTable({name: SensitivityResult(ns, torch.stack([curve, curve - 0.05 * k]), 20, 64, 0)
                              for k, name in enumerate(methods)})  # fmt: skip
    for figure in (sensitivity_figure(table, features="pixels"), architecture_figure(_comparison())):
        figure.canvas.draw()
        legends = [*figure.legends, *(axis.get_legend() for axis in figure.axes if axis.get_legend())]
        assert len(legends) == 1 and figure.get_size_inches()[0] >= 7
        box = _figure_extent(legends[0], figure)
        for axis in figure.axes:
            if axis.get_visible():
                assert not box.overlaps(_figure_extent(axis.patch, figure)), axis.get_title()
        plt.close(figure)


def test_long_column_titles_break_after_underscores() -> None:
    """A composite's name is broken after an underscore, not inside a word; other titles wrap at spaces."""
    from gradattr.report.heatmaps import _wrap

    assert _wrap(method_label("lrp (epsilon_plus_flat)"), 16) == "LRP (epsilon_\nplus_flat)"
    assert _wrap(method_label("lrp (epsilon_alpha2_beta1_flat)"), 16) == "LRP (epsilon_\nalpha2_beta1_\nflat)"
    assert _wrap("Integrated Gradients", 16) == "Integrated\nGradients" and _wrap("a_b c", 16) == "a_b c"
