"""The study grows to transformers (issue 15, item 7): the quick path trains and studies a ViT on digits and a
transformer text classifier on the drug reviews beside the paper's models, every method runs on them, and the
report compares them with the CNN/LSTM from the measured numbers.

Tiny sizes: one training epoch, narrow models, four samples, five subsets per n.
"""

from __future__ import annotations

import importlib
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import chromium_page
import gradattr
from gradattr.experiments import ReproduceOptions, Study, StudySettings, reproduce, select
from gradattr.experiments.architectures import ArchitectureComparison, ModelFacts
from gradattr.experiments.class_activation_maps import CAM_METHODS
from gradattr.experiments.recipes import DATASETS
from gradattr.methods import PAPER_METHODS
from gradattr.report import render_study, write_study
from gradattr.report.architectures_page import TITLE, findings

# four IG steps keep the test fast; the warning that they leave a Riemann gap is expected here
pytestmark = pytest.mark.filterwarnings("ignore::gradattr.methods.integrated_gradients.CompletenessWarning")
reproduce_module = importlib.import_module("gradattr.experiments.reproduce")  # the module, not the function
MODELS = ["cnn", "vit", "lstm", "text-transformer"]
TINY_OPTIONS = {"vit": {"dim": 8, "depth": 2, "heads": 2}, "text-transformer": {"embedding_dim": 8, "heads": 2}}


def tiny_recipes() -> tuple:
    """The study's recipes, its models trained for one epoch and the transformers narrow."""
    recipes = []
    for recipe in DATASETS:
        models = tuple(
            replace(m, training={"epochs": 1}, options={**m.options, **TINY_OPTIONS.get(m.key, {})})
            for m in recipe.models
        )
        recipes.append(replace(recipe, models=models))
    return tuple(recipes)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    cache = tmp_path_factory.mktemp("cache")
    settings = StudySettings(num_subsets=5, ig_steps=4, display=2, batch_size=4, progress=False)
    options = ReproduceOptions(quick=True, models=MODELS, samples=4, cache=cache, settings=settings, robustness=False)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reproduce_module, "DATASETS", tiny_recipes())
        return reproduce(options)


def test_the_quick_run_includes_the_transformers() -> None:
    chosen = {recipe.key: [m.key for m in models] for recipe, models in select(ReproduceOptions(quick=True))}
    assert "vit" in chosen["digits"] and "text-transformer" in chosen["drugreview"]
    full = next(r for r in DATASETS if r.key == "fashion-mnist")
    assert "vit" in [m.key for m in full.models]


def test_every_method_runs_on_the_transformers(study: Study) -> None:
    transformers = [m for m in study.models if m.subject.transformer]
    assert [m.subject.model_name for m in transformers] == ["ViT", "Text transformer"]
    for m in transformers:
        assert m.unavailable == {} and m.methods == list(PAPER_METHODS)
        assert m.sensitivity is not None and m.sensitivity.methods == list(PAPER_METHODS)
        assert all(math.isfinite(v) for row in m.correlation for v in row)
        assert m.completeness["deeplift"] < 1e-4  # exact up to float32 rounding
        claims = {c.claim: c.verdict for c in study.claims(m)}
        assert claims["DeepLIFT is complete: Σ R = S_c(x) − S_c(0)"] == "holds"


def test_the_comparison_is_read_off_the_studies(study: Study) -> None:
    comparisons = study.architectures()
    assert [(c.dataset, [t.model for t in c.transformers], [b.model for b in c.baselines]) for c in comparisons] == [
        ("Digits", ["ViT"], ["CNN (ReLU)"]),
        ("Drug reviews", ["Text transformer"], ["LSTM"]),
    ]
    vit = comparisons[0].transformers[0]
    measured = next(m for m in study.models if m.subject.model_name == "ViT")
    assert vit.completeness["deeplift"] == measured.completeness["deeplift"]
    i, j = measured.methods.index("deeplift"), measured.methods.index("integrated_gradients")
    assert vit.agreement["deeplift vs integrated_gradients"] == measured.correlation[i][j]
    methods, ns, means = measured.sensitivity.pivot("mean")
    assert vit.ns == ns and ns[-1] == measured.sensitivity.results["deeplift"].num_features
    deeplift = means[methods.index("deeplift")]
    assert math.isnan(deeplift[-1])  # n = N: every subset is the whole input, Sensitivity-N is completeness
    assert vit.sensitivity_mean("deeplift") == pytest.approx(float(deeplift[:-1].mean()))


def test_results_and_report_have_the_transformer_rows(study: Study, tmp_path: Path) -> None:
    write_study(study, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))
    assert {m["model"] for m in results["models"]} >= {"ViT", "Text transformer"}
    section = results["transformers_vs_paper_models"]
    assert [c["dataset"] for c in section] == ["Digits", "Drug reviews"]
    assert section[0]["models"][0]["model"] == "ViT" and section[0]["models"][0]["transformer"] is True
    rows = (tmp_path / "transformers.csv").read_text(encoding="utf-8").splitlines()
    assert rows[0] == "dataset,model,transformer,measure,method,value" and len(rows) > 4 * 6 * 3
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert TITLE.replace("'", "&#x27;") in page and "What changes on the ViT" in page
    assert "What changes on the Text transformer" in page
    vit = study.architectures()[0].transformers[0]
    assert f"{vit.completeness['deeplift']:.1e} on the ViT" in page  # the sentence quotes the measured number

    reason = chromium_page.missing_reason()
    if reason:
        pytest.skip(reason)
    with chromium_page.chromium() as driver:
        facts = chromium_page.page_facts(driver, tmp_path / "report.html", tmp_path / "screenshot.png")
        cams = chromium_page.element_screenshots(driver, "figure:has(img[alt^='Class activation maps'])",
                                                 tmp_path / "cams")  # fmt: skip
    assert len(cams) == 1 and cams[0].stat().st_size > 5_000
    for heading in ("Transformers against the paper's models", "ViT", "Text transformer",
                    "Digits: ViT against CNN (ReLU)"):  # fmt: skip
        assert heading in facts["headings"], facts["headings"]
    # heatmaps of the CNN and the ViT, the ViT's class activation maps, four models' Sensitivity-n curves, one
    # comparison figure per data set
    assert len(facts["images"]) == 9
    assert all(complete and width > 100 for complete, width, _, _ in facts["images"])
    assert facts["errors"] == []


def _facts(model: str, transformer: bool, **values: object) -> ModelFacts:
    defaults: dict[str, object] = {
        "accuracy": 0.9, "majority": 0.1, "samples": 4, "unavailable": {}, "ns": [1, 10],
        "sensitivity": {"deeplift": [0.9, 0.5], "saliency": [0.2, 0.1]},
        "completeness": {"deeplift": 1e-8, "gradient_x_input": 0.5},
        "agreement": {"deeplift vs integrated_gradients": 0.95},
    }  # fmt: skip
    return ModelFacts(model=model, transformer=transformer, **(defaults | values))  # type: ignore[arg-type]


def test_findings_state_the_numbers_and_what_did_not_run() -> None:
    vit = _facts(
        "ViT", True, unavailable={"epsilon_lrp": "UnsupportedOperationError: no rule for 'torch.softmax'"},
        sensitivity={"deeplift": [0.8, 0.3], "saliency": [0.1, 0.0]}, completeness={"deeplift": 2e-8},
        agreement={"deeplift vs integrated_gradients": 0.8},
    )  # fmt: skip
    cnn = _facts("CNN", False)
    lines = findings(ArchitectureComparison("Digits", "pixels", ["saliency", "deeplift"], [vit], [cnn]), vit)
    text = " ".join(lines)
    assert "ε-LRP did not run on the ViT" in text and "no rule for &#x27;torch.softmax&#x27;" in text
    assert "the best method on the ViT is DeepLIFT (0.55)" in text and "CNN: DeepLIFT 0.70" in text
    assert "lower on the ViT than on every paper model for 2 of 2 methods" in text
    assert (
        "DeepLIFT's relative completeness gap: 2.0e-08 on the ViT, higher than on every paper model (CNN 1.0e-08)."
        in text
    )
    assert "Exact to float precision" in text
    assert (
        "Integrated Gradients (mean Pearson of the maps): 0.80 on the ViT, lower than on every paper model (CNN 0.95)"
        in text
    )
    assert "Gradient*Input" not in text  # not measured on the ViT: no sentence


def test_render_without_transformers_has_no_section(study: Study) -> None:
    paper_only = replace(study, models=[m for m in study.models if not m.subject.transformer])
    assert paper_only.architectures() == []
    assert TITLE.replace("'", "&#x27;") not in render_study(paper_only)


def test_the_vit_shows_the_cam_family_on_its_token_grid(study: Study, tmp_path: Path) -> None:
    """Grad-CAM and its family on the ViT at the LayerNorm before its last block: 16 patch tokens as a 4x4 grid,
    each value drawn over its 2x2 patch of the 8x8 image; in results.json and the report, not on the CNN."""
    vit = next(m for m in study.models if m.subject.model_name == "ViT")
    cnn = next(m for m in study.models if m.subject.model_name == "CNN (ReLU)")
    assert vit.subject.cam_layer == "blocks.1.norm1" and cnn.cam_maps == {}
    assert list(vit.cam_maps) == list(CAM_METHODS)
    for method, cam in vit.cam_maps.items():
        assert cam.shape == vit.display_inputs.shape == (2, 1, 8, 8), method
        patches = cam[..., ::2, ::2]  # the 4x4 grid, each token's value repeated over its patch
        assert torch.equal(cam, patches.repeat_interleave(2, -2).repeat_interleave(2, -1)), method
        assert torch.isfinite(cam).all() and (cam >= 0).all(), method
    # the reason for the layer: after the last block only the class token reaches the head
    model, x = vit.subject.model, vit.display_inputs
    at_output = gradattr.attribute(model, x, "gradcam", target=vit.display_targets, layer="blocks.1", reshape="auto")
    assert torch.count_nonzero(at_output) == 0 and torch.count_nonzero(vit.cam_maps["gradcam"]) > 0
    write_study(study, tmp_path)
    models = {m["model"]: m for m in json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["models"]}
    assert models["ViT"]["class_activation_maps"] == {"layer": "blocks.1.norm1", "grid": [4, 4],
                                                      "methods": list(CAM_METHODS)}  # fmt: skip
    assert "class_activation_maps" not in models["CNN (ReLU)"]
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'alt="Class activation maps, Digits, ViT"' in page
    assert "computed on blocks.1.norm1" in page and "16 patch tokens" in page and "a 4x4 grid" in page


def test_the_cnn_grid_has_an_lrp_composite_column(study: Study, tmp_path: Path) -> None:
    """The digits CNN's heatmap grid ends with LRP under epsilon_plus_flat: the maps equal gradattr.attribute(...,
    method="lrp", composite="epsilon_plus_flat") on the displayed samples for their targets; stored with the
    model's study entry (a changed key: entries from before are recomputed); the other models have none."""
    from gradattr.experiments.study import ModelStudy, study_key
    from gradattr.report import study_page

    cnn = next(m for m in study.models if m.subject.model_name == "CNN (ReLU)")
    assert cnn.subject.lrp_composite == "epsilon_plus_flat"
    assert list(cnn.lrp_maps) == ["lrp (epsilon_plus_flat)"]
    x, targets = cnn.display_inputs, cnn.display_targets
    expected = gradattr.attribute(cnn.subject.model, x, "lrp", target=targets, composite="epsilon_plus_flat")
    shown = cnn.lrp_maps["lrp (epsilon_plus_flat)"]
    assert shown.shape == x.shape == (2, 1, 8, 8) and torch.count_nonzero(shown) > 0
    torch.testing.assert_close(shown, expected, rtol=1e-6, atol=1e-8)
    assert all(m.lrp_maps == {} for m in study.models if m is not cnn)
    # stored with the study entry, and the entry's key changes with the composite
    again = ModelStudy.from_state(cnn.subject, cnn.to_state())
    assert torch.equal(again.lrp_maps["lrp (epsilon_plus_flat)"], shown)
    settings = StudySettings(num_subsets=5, ig_steps=4, display=2, batch_size=4, progress=False)
    without = replace(cnn.subject, lrp_composite=None)
    assert study_key(cnn.subject, settings) != study_key(without, settings)
    with pytest.raises(ValueError, match="LRP maps"):
        ModelStudy.from_state(without, cnn.to_state())
    state = cnn.to_state()
    del state["lrp_maps"]  # an entry from before the column: valid for a model without a composite only
    with pytest.raises(ValueError, match="LRP maps"):
        ModelStudy.from_state(cnn.subject, state)
    # the report draws it as the grid's last column, these very maps
    drawn: dict[str, dict[str, torch.Tensor]] = {}

    def recording(inputs: torch.Tensor, maps: dict[str, torch.Tensor], **options: object) -> object:
        drawn.setdefault(str(options.get("row_labels")), dict(maps))
        return heatmap_figure(inputs, maps, **options)

    heatmap_figure = study_page.heatmap_figure
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(study_page, "heatmap_figure", recording)
        page = render_study(study)
    grids = [maps for maps in drawn.values() if "lrp (epsilon_plus_flat)" in maps]
    assert len(grids) == 1 and list(grids[0]) == [*cnn.display_maps, "lrp (epsilon_plus_flat)"]
    torch.testing.assert_close(grids[0]["lrp (epsilon_plus_flat)"], expected, rtol=1e-6, atol=1e-8)
    assert "The last column is LRP under the composite epsilon_plus_flat" in page
    write_study(study, tmp_path)
    models = {m["model"]: m for m in json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["models"]}
    assert models["CNN (ReLU)"]["lrp_composite_shown"] == "epsilon_plus_flat"
    assert "lrp_composite_shown" not in models["ViT"]

    reason = chromium_page.missing_reason()
    if reason:
        pytest.skip(reason)
    with chromium_page.chromium() as driver:
        facts = chromium_page.page_facts(driver, tmp_path / "report.html", tmp_path / "screenshot.png")
        grid = chromium_page.element_screenshots(
            driver, "figure:has(img[alt='Attribution heatmaps, Digits, CNN (ReLU)'])", tmp_path / "grid"
        )
    assert len(grid) == 1 and grid[0].stat().st_size > 5_000
    image = next(i for i in facts["images"] if i[3] == "Attribution heatmaps, Digits, CNN (ReLU)")
    vit = next(i for i in facts["images"] if i[3] == "Attribution heatmaps, Digits, ViT")
    assert image[0] and image[1] / image[2] > vit[1] / vit[2]  # loaded; one column more than the ViT's grid
    assert facts["errors"] == []
