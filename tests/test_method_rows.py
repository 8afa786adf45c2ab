"""Labelled method rows in :func:`gradattr.evaluate` (issue 18, item 2): one method under several labels with
their own options; the table, the checkpoint and the maps use the labels; a list of names works as before.

Occlusion of 4x4 patches (window = stride = the patch) at n = 1 patch is Sensitivity-1 by construction: the
patch's summed attribution is the output drop Δ_W spread over its 16 pixels and summed back, and the drop of
removing that patch alone is Δ_W, so the correlation over subsets is 1 (Ancona et al., ICLR 2018, Sec. 4.1).
Per-pixel occlusion summed per patch adds 16 one-pixel drops instead, which differ from Δ_W on a nonlinear model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import gradattr
from gradattr import distributed
from gradattr.evaluation import EvaluatedBatch, SensitivityTable
from gradattr.report.labels import METHOD_COLOURS, method_label, short_label

PATCH = {"window": (4, 4), "stride": (4, 4)}
ROWS = {"occlusion": "occlusion", "occlusion_pixels": "occlusion"}


def cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 14 * 14, 10),
    ).eval()  # fmt: skip


def data(samples: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return torch.rand(samples, 1, 28, 28, generator=generator) * 2 - 1, torch.arange(samples) % 10


def run(methods: Any, **kwargs: Any) -> SensitivityTable:
    settings = {"feature_groups": gradattr.patches((1, 28, 28), 4), "ns": [1, 5], "num_subsets": 40,
                "progress": False, "batch_size": 4} | kwargs  # fmt: skip
    return gradattr.evaluate(cnn(), data(), methods, **settings)


def test_patch_occlusion_is_exact_at_one_patch_and_pixel_occlusion_is_not() -> None:
    table = run(ROWS, method_options={"occlusion": PATCH})
    assert table.methods == ["occlusion", "occlusion_pixels"]
    assert set(table.seconds) == {"attribute occlusion", "attribute occlusion_pixels", "sensitivity-n"}
    patches, pixels = table.results["occlusion"], table.results["occlusion_pixels"]
    assert (patches.valid == 6).all() and (pixels.valid == 6).all()
    assert (patches.per_sample[:, 0] - 1).abs().max() < 1e-6, patches.per_sample
    assert pixels.correlation[0] < 0.99, pixels.correlation
    assert {row["method"] for row in table.rows()} == set(ROWS)


def test_a_list_of_names_works_as_before() -> None:
    listed = run(["occlusion", "saliency"], method_options={"occlusion": PATCH})
    mapped = run({"occlusion": "occlusion", "saliency": "saliency"}, method_options={"occlusion": PATCH})
    assert listed.methods == mapped.methods == ["occlusion", "saliency"]
    for name in listed.methods:
        assert torch.equal(listed.results[name].per_sample, mapped.results[name].per_sample)


def test_observers_and_the_checkpoint_use_the_labels(tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def observe(batch: EvaluatedBatch) -> None:
        seen.append(list(batch.maps))

    first = run(ROWS, method_options={"occlusion": PATCH}, on_batch=observe)
    assert seen == [list(ROWS), list(ROWS)]
    checkpoint = tmp_path / "rows.pt"
    saved = run(ROWS, method_options={"occlusion": PATCH}, checkpoint=checkpoint)
    again = run(ROWS, method_options={"occlusion": PATCH}, checkpoint=checkpoint)
    assert saved.resumed == 0 and again.resumed == 2 and again.methods == list(ROWS)
    for label in ROWS:
        assert torch.equal(again.results[label].per_sample, first.results[label].per_sample)
    other_labels = run({"occ": "occlusion", "occlusion_pixels": "occlusion"}, method_options={"occ": PATCH},
                       checkpoint=checkpoint)  # fmt: skip
    assert other_labels.resumed == 0 and other_labels.methods == ["occ", "occlusion_pixels"]


@pytest.mark.parametrize(
    ("methods", "options", "error", "match"),
    [
        ({"patchy": "occlusion_patch"}, None, ValueError, r"\['occlusion_patch'\] \(under the labels \['patchy'\]\)"),
        (["saliency", "gradient_magic"], None, ValueError, r"unknown or no methods \['gradient_magic'\];"),
        ({}, None, ValueError, "unknown or no methods"),
        ({"occlusion": "occlusion"}, {"occlusion_pixels": PATCH}, ValueError, "method_options for occlusion_pixels"),
        ({"occlusion": len}, None, TypeError, "must map labels to method names"),
        ({"": "saliency"}, None, ValueError, "an empty label"),
        (["saliency", "saliency"], None, ValueError, "listed twice"),
    ],
)
def test_bad_rows_are_refused_naming_the_label(methods: Any, options: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        run(methods, method_options=options)
    with pytest.raises(error, match=match):  # distributed checks the same before Ray is needed
        distributed.evaluate(cnn(), data(), methods, method_options=options, progress=False)


def test_labels_and_colours_of_the_rows() -> None:
    assert method_label("occlusion") == "Occlusion-1" and short_label("occlusion") == "Occ-1"
    assert method_label("occlusion_pixels") == "Occlusion-1 (pixels, summed per patch)"
    assert short_label("occlusion_pixels") == "Occ-1 px"
    assert method_label("occlusion", PATCH) == "Occlusion (4x4 patch)" and short_label("occlusion", PATCH) == "Occ 4x4"
    assert method_label("occlusion", {"window": 1}) == "Occlusion-1"
    assert method_label("saliency", PATCH) == "Saliency"
    assert len(set(METHOD_COLOURS.values())) == len(METHOD_COLOURS) and "occlusion_pixels" in METHOD_COLOURS
