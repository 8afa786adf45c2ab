"""The study on the paper's protocol (issue 18): patch occlusion on patch features beside per-pixel occlusion
summed per patch, samples drawn at random (seeded), the n grid up to N, the protocol on record."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

import gradattr
from gradattr.data import load_digits
from gradattr.experiments.claims import occlusion_small_vs_large_n
from gradattr.experiments.protocol import Protocol
from gradattr.experiments.recipes import evaluation_set, features_of
from gradattr.experiments.reproduce import FULL_SAMPLES
from gradattr.experiments.study import StudySettings, Subject, study_model


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 14 * 14, 3)
    ).eval()


def test_patch_features_study_patch_occlusion_and_per_pixel_occlusion_as_two_rows() -> None:
    model = small_cnn()
    features = features_of(SimpleNamespace(input_shape=(1, 28, 28)), model)
    assert features.method_options["occlusion"] == {"window": (4, 4), "stride": (4, 4)}
    torch.manual_seed(1)
    inputs = torch.rand(5, 1, 28, 28) * 2 - 1
    subject = Subject("toy", "CNN", model, inputs, torch.zeros(5, dtype=torch.long), ["a", "b", "c"], features,
                      sample_seed=3)  # fmt: skip
    settings = StudySettings(methods=("deeplift", "occlusion"), num_subsets=20, display=1, progress=False)
    study = study_model(subject, settings)
    assert study.methods == ["deeplift", "occlusion", "occlusion_pixels"]
    methods, ns, means = study.sensitivity.pivot("mean")
    assert ns[0] == 1 and ns[-1] == 49  # the grid reaches N = 49 patches
    at_one = dict(zip(methods, means[:, 0], strict=True))
    assert at_one["occlusion"] == pytest.approx(1.0, abs=1e-6)  # a patch's relevance is its own removal's drop
    assert at_one["occlusion_pixels"] < 0.999
    assert all(v != v for v in means[:, -1])  # n = N: every subset is the whole set, no correlation
    claim = occlusion_small_vs_large_n(study)
    assert "n=1: 1.000" in claim.measured and "n=49" not in claim.measured  # read at the last defined n
    protocol = Protocol.of(study).to_dict()
    assert protocol["feature_count"] == 49 and protocol["n_grid"][-1] == 49 and protocol["sample_seed"] == 3
    assert protocol["num_samples"] == 5 and protocol["num_subsets"] == 20


def test_evaluation_samples_are_drawn_at_random_with_a_seed() -> None:
    data = load_digits(seed=0)
    first, _ = evaluation_set(data, 50, seed=None)
    assert torch.equal(first, data.test_x[:50])
    drawn, labels = evaluation_set(data, 50, seed=0)
    again, _ = evaluation_set(data, 50, seed=0)
    other, _ = evaluation_set(data, 50, seed=1)
    assert torch.equal(drawn, again) and not torch.equal(drawn, other) and not torch.equal(drawn, first)
    rows = [int((data.test_x == x).flatten(1).all(1).nonzero()[0]) for x in drawn]
    assert len(set(rows)) == 50 and torch.equal(labels, data.test_y[rows])  # without replacement, with its label
    everything, _ = evaluation_set(data, 10_000, seed=0)
    assert everything.shape[0] == data.test_x.shape[0]  # fewer in the split: all of them


def test_the_full_run_uses_the_papers_1000_samples() -> None:
    assert set(FULL_SAMPLES.values()) == {1000}


def text_model(architecture: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor, int]:
    from gradattr.data import load_drugreview
    from gradattr.models import build_model

    data = load_drugreview()
    torch.manual_seed(0)
    options = {"embedding_dim": 16, "depth": 1, "heads": 2} if architecture == "text_transformer" else {}
    model = build_model(architecture, data, **options).eval()
    ids, labels = evaluation_set(data, 4, seed=0)
    return model, ids, labels, data.vocab.pad_id


@pytest.mark.parametrize("architecture", ["text_cnn", "text_transformer"])
def test_token_removal_by_pad_id_beside_the_zero_embedding(architecture: str) -> None:
    """Removing a token by its pad id equals zeroing its embedding where the pad row is 0 and nothing else
    reads the ids (the text CNN); the transformer also masks pad ids in attention, so there they differ."""
    import gradattr

    model, ids, labels, pad = text_model(architecture)
    common = {"ns": [1, 3, 8], "num_subsets": 12, "progress": False, "layer": "embedding"}
    methods = ["gradient_x_input", "deeplift"]
    zeroed = gradattr.evaluate(model, (ids, labels), methods, feature_groups=torch.arange(64), **common)
    padded = gradattr.evaluate(model, (ids, labels), methods, removal="input", baseline=pad, **common)
    for method in methods:
        same = torch.allclose(zeroed.results[method].per_sample, padded.results[method].per_sample, atol=1e-5)
        assert same == (architecture == "text_cnn"), method


def test_the_study_says_which_token_removal_it_used() -> None:
    from gradattr.data import load_drugreview

    data = load_drugreview()
    model, ids, labels, pad = text_model("text_transformer")
    settings = StudySettings(methods=("gradient_x_input",), num_subsets=8, display=1, progress=False)
    protocols = {}
    for removal in ("embedding", "pad"):
        features = features_of(data, model, removal)
        assert features.input_baseline == (pad if removal == "pad" else None)
        subject = Subject("Drug reviews", "T", model, ids, labels, data.class_names, features, sample_seed=0)
        protocols[removal] = Protocol.of(study_model(subject, settings)).to_dict()
    assert "embedding vector set to 0" in protocols["embedding"]["removal"]
    assert "pad id" in protocols["pad"]["removal"]
    assert protocols["pad"]["feature_count"] == protocols["embedding"]["feature_count"] == 64


def test_the_localisation_data_set_is_studied_against_its_ground_truth() -> None:
    """The masks follow the randomly drawn samples, and a subject with masks gets the localisation metrics."""
    from gradattr.data import load_localisation
    from gradattr.experiments.recipes import evaluation_masks
    from gradattr.models import pooled_cnn

    data = load_localisation(seed=0)
    x, y = evaluation_set(data, 12, seed=5)
    masks = evaluation_masks(data, 12, seed=5)
    rows = [int((data.test_x == sample).flatten(1).all(1).nonzero()[0]) for sample in x]
    assert masks is not None and torch.equal(masks, data.test_masks[rows])
    torch.manual_seed(0)
    model = pooled_cnn(data.input_shape, data.num_classes).eval()
    features = features_of(data, model)
    subject = Subject("Canvases", "Pooled CNN", model, x, y, data.class_names, features, sample_seed=5, masks=masks)
    settings = StudySettings(methods=("saliency", "deeplift"), num_subsets=5, display=1, progress=False)
    study = study_model(subject, settings)
    hits = study.sensitivity.metrics["pointing_game"].per_sample  # type: ignore[union-attr]
    maps = gradattr.attribute(model, x, method="deeplift", target=y)
    from gradattr import metrics

    assert torch.equal(hits["deeplift"], metrics.pointing_game(maps, masks))
