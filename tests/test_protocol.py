"""What each model's Sensitivity-n study used (issue 18, item 4): results.json's protocol block holds the settings
the run was given, and the differences from the paper's study are read off the run, not written by hand.

Tiny sizes: the models of test_transformer_study's recipes (one epoch, narrow), six samples, seven subsets per n.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest

from gradattr.experiments import ReproduceOptions, Study, StudySettings, reproduce
from gradattr.experiments.protocol import TOKEN_REMOVAL, ZERO_REMOVAL, Protocol, paper_differences
from gradattr.experiments.recipes import TEXT_WINDOW
from gradattr.report import write_study
from test_transformer_study import reproduce_module, tiny_recipes

pytestmark = pytest.mark.filterwarnings("ignore::gradattr.methods.integrated_gradients.CompletenessWarning")
SAMPLES, SUBSETS = 6, 7
KEYS = ["features", "feature_count", "n_grid", "num_subsets", "num_samples", "sample_seed", "removal", "baseline"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    """Digits MLP, drug-review text CNN and LSTM, trained for one epoch."""
    cache = tmp_path_factory.mktemp("cache")
    settings = StudySettings(num_subsets=SUBSETS, ig_steps=4, display=2, batch_size=6, progress=False)
    options = ReproduceOptions(quick=True, models=["mlp-relu", "text-cnn", "lstm"], samples=SAMPLES, cache=cache,
                               settings=settings, robustness=False)  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(reproduce_module, "DATASETS", tiny_recipes())
        return reproduce(options)


@pytest.fixture(scope="module")
def results(study: Study, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("report")
    write_study(study, out)
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_results_hold_the_protocol_that_was_passed(study: Study, results: dict) -> None:
    entries = {m["model"]: m for m in results["models"]}
    assert set(entries) == {"MLP (ReLU)", "Text CNN", "LSTM"}
    for m in study.models:
        block = entries[m.subject.model_name]["protocol"]
        assert list(block) == KEYS
        assert block["num_subsets"] == SUBSETS and block["num_samples"] == SAMPLES
        assert block["n_grid"] == sorted({row["n"] for row in entries[m.subject.model_name]["sensitivity_n"]["rows"]})
        assert block["baseline"] == "zero"
        assert block["sample_seed"] == getattr(m.subject, "sample_seed", None)
        assert Protocol.from_dict(block) == study.protocol(m)
    digits, text = entries["MLP (ReLU)"]["protocol"], entries["Text CNN"]["protocol"]
    assert (digits["features"], digits["feature_count"]) == ("pixels", 64)
    assert (text["features"], text["feature_count"]) == ("tokens", TEXT_WINDOW)
    assert digits["n_grid"][0] == 1 and max(digits["n_grid"]) <= 64
    recorded = {m.subject.model_name: getattr(m.subject.features, "removal", None) for m in study.models}
    assert digits["removal"] == (recorded["MLP (ReLU)"] or ZERO_REMOVAL)  # the default where none is recorded
    assert text["removal"] == (recorded["Text CNN"] or TOKEN_REMOVAL)


def test_protocol_takes_the_seed_and_removal_the_subject_records(study: Study) -> None:
    model = study.models[0]
    features = copy.copy(model.subject.features)
    object.__setattr__(features, "removal", "set to the mean pixel")
    subject = copy.copy(model.subject)
    object.__setattr__(subject, "features", features)
    object.__setattr__(subject, "sample_seed", 3)
    protocol = Protocol.of(replace(model, subject=subject))
    assert (protocol.sample_seed, protocol.removal) == (3, "set to the mean pixel")
    line = protocol.summary()
    assert "drawn at random (seed 3)" in line and "removed pixels: set to the mean pixel" in line
    assert f"{SUBSETS} subsets per n" in line and "N = 64 pixels; n = 1, " in line


def test_differences_name_the_substituted_data_sets(study: Study, results: dict) -> None:
    lines = study.differences()
    assert results["differences_from_paper"] == lines
    text = " ".join(lines)
    assert "MNIST is replaced by scikit-learn's 8x8 digits, with single pixels as features" in text
    assert "IMDB is replaced by drug reviews" in text
    assert "Not studied in this run: CIFAR-10." in text and "ImageNet" in text
    models = "Digits · MLP (ReLU), Drug reviews · Text CNN, Drug reviews · LSTM"
    counts = f"Test samples per model: {SAMPLES} ({models}), against the paper's 1000"
    assert counts in text
    short = [m for m in study.models if max(m.sensitivity.ns) < study.protocol(m).feature_count]
    assert ("The n grid stops below N" in text) == bool(short)
    assert "Occlusion occludes one token at a time (a window of (1, " in text and "Drug reviews · Text CNN" in text
    assert "Drug reviews · LSTM: ε-LRP holds the LSTM's gates constant (gates='signal'" in text
    assert "transformers" not in text  # none in this run
    with_mnist = [replace(m, subject=copy.copy(m.subject)) for m in study.models]
    object.__setattr__(with_mnist[0].subject, "dataset", "MNIST")
    assert not any("MNIST is replaced" in line for line in paper_differences(with_mnist, SUBSETS))


def test_a_patch_feature_is_named_in_the_singular() -> None:
    from types import SimpleNamespace

    from gradattr.experiments.protocol import _feature

    for description, one in (("4x4 patches", "4x4 patch"), ("tokens", "token"), ("pixels", "pixel")):
        study = SimpleNamespace(subject=SimpleNamespace(features=SimpleNamespace(description=description)))
        assert _feature(study) == one  # type: ignore[arg-type]
