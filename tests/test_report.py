"""The study report: rendered by a real browser (Debian's headless chromium), numbers that match the API."""

from __future__ import annotations

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
from gradattr.experiments.recipes import DATASETS, evaluation_set
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
    headings = facts["headings"]
    for heading in ("Summary", "Paper claims vs our measurement", "Digits", "MLP (ReLU)", "Drug reviews", "Text CNN",
                    "Robustness of explanations", "Settings"):  # fmt: skip
        assert heading in headings, headings
    images = facts["images"]
    # digits heatmaps, two Sensitivity-n curves (text samples are HTML); robustness heatmaps and sanity curves
    assert len(images) == 5
    for complete, width, height, alt in images:
        assert complete and width > 100 and height > 100, alt
    assert facts["token_spans"] >= 2 * 6 * 64  # two text samples, six methods, 64 tokens each
    assert facts["errors"] == []
    assert screenshot.stat().st_size > 50_000


def test_report_is_self_contained(tiny_run: tuple[Path, Path]) -> None:
    page = (tiny_run[0] / "report.html").read_text(encoding="utf-8")
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert "http://" not in page and "https://" not in page
    assert page.count('src="data:image/') == 5


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
        sanity = model_randomisation(model, x, list(settings["methods"]), seed=0,
                                     method_options={"gradcam": {"layer": settings["cam_layer"]}})  # fmt: skip
        assert section["sanity_checks"][name]["passes"] == sanity.passes()
    assert rows["robust accuracy"]["robust"] > rows["robust accuracy"]["standard"]


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

    labels = ["a.png: class $\\frac{1$", "price in $: class $x^2$"]
    maps = {"saliency": torch.randn(2, 1, 8, 8)}
    figure = heatmap_figure(torch.randn(2, 1, 8, 8), maps, row_labels=labels)
    figure.savefig(io.BytesIO(), format="png")  # raised ParseSyntaxException: Expected \frac{num}{den}
    drawn = [axis.yaxis.label for axis in figure.axes[::2]]
    assert [text.get_text() for text in drawn] == labels
    assert not any(text.get_parse_math() or text.get_usetex() for text in drawn)
    plt.close(figure)
