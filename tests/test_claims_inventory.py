"""The paper's claims read off the ops a model calls (issue 16, item 7): Prop. 1 and 2 apply where the engine
met only ReLUs (and max pooling), whatever the user passes; a claim that fails for a known reason (max pooling
routed to the arg-max, gates of a recurrent cell, the Riemann sum of Integrated Gradients) says it."""

from __future__ import annotations

import html
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gradattr.experiments.claims import APPROXIMATE, FAILS, HOLDS, deeplift_completeness, ig_completeness
from gradattr.experiments.recipes import DATASETS, evaluation_set, features_of
from gradattr.experiments.study import Features, OpsMet, StudySettings, Subject, study_model
from gradattr.methods.integrated_gradients import CompletenessWarning

PAPER = {  # model -> (Prop. 1/2 apply, recurrent gates, max pooling): Ancona et al., ICLR 2018, Sec. 3 and 4.2
    ("digits", "mlp-relu"): (True, False, False),
    ("digits", "mlp-tanh"): (False, False, False),
    ("digits", "cnn"): (True, False, True),
    ("digits", "vit"): (False, False, False),
    ("drugreview", "text-cnn"): (True, False, True),
    ("drugreview", "lstm"): (False, True, False),
    ("drugreview", "text-transformer"): (False, False, False),
}

MODELS = """
import torch
from torch import nn


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 5))


def pooled():  # padded convolutions: at the zero baseline the pooled activations differ at the borders
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 4, 5))
"""


def test_the_ops_met_decide_as_the_paper_for_every_recipe_model() -> None:
    found = {}
    for recipe in DATASETS:
        if recipe.key not in ("digits", "drugreview"):
            continue
        data = recipe.load(None)
        for model_recipe in recipe.models:
            torch.manual_seed(0)
            model = model_recipe.build(data).eval()
            inputs, _ = evaluation_set(data, 2)
            ops = OpsMet.of(model, inputs, features_of(data, model).layer)
            found[recipe.key, model_recipe.key] = (ops.rectifiers_only, ops.gated, bool(ops.max_pooling))
    assert found == PAPER


@pytest.fixture
def user_files(tmp_path: Path) -> tuple[Path, Path]:
    """A module with the factories ``cnn`` (ReLU CNN) and ``pooled`` (ReLU CNN with max pooling), and 8 labelled
    8x8 images."""
    source = tmp_path / "usermodels.py"
    source.write_text(MODELS, encoding="utf-8")
    rng = np.random.default_rng(0)
    data = tmp_path / "images.npz"
    np.savez(data, x=rng.normal(size=(8, 1, 8, 8)).astype(np.float32), y=rng.integers(0, 5, size=8))
    return source, data


def evaluate(source: Path, factory: str, data: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    methods = "gradient_x_input,epsilon_lrp,deeplift"
    args = ["evaluate", "--model", f"{source}:{factory}", "--data", str(data), "--methods", methods,
            "--num-subsets", "4", "--out", str(out), "--no-progress"]  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "gradattr.cli", *args, *extra], capture_output=True, text=True, timeout=300, check=False
    )  # fmt: skip


def model_entry(out: Path) -> tuple[dict[str, dict], dict]:
    """The claims of results.json by their short name ("Prop. 1"), and the whole entry of the model."""
    (entry,) = json.loads((out / "results.json").read_text(encoding="utf-8"))["models"]
    return {row["claim"].split(":")[0]: row for row in entry["claims"]}, entry


def test_evaluate_applies_the_propositions_to_a_relu_cnn_without_a_flag(
    user_files: tuple[Path, Path], tmp_path: Path
) -> None:
    source, data = user_files
    result = evaluate(source, "cnn", data, tmp_path / "eval")
    assert result.returncode == 0, result.stderr
    assert "deprecated" not in result.stderr
    claims, entry = model_entry(tmp_path / "eval")
    assert claims["Prop. 1"]["verdict"] == HOLDS and claims["Prop. 2"]["verdict"] == HOLDS
    ops = entry["ops_met"]
    assert ops["summary"] == "relu x2" and ops["rectifiers_only"] and not ops["gated"]
    assert "nonlinearities met: relu x2" in (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")


def test_deeplift_completeness_on_max_pooling_says_why(user_files: tuple[Path, Path], tmp_path: Path) -> None:
    source, data = user_files
    result = evaluate(source, "pooled", data, tmp_path / "eval")
    assert result.returncode == 0, result.stderr
    claims, entry = model_entry(tmp_path / "eval")
    assert claims["Prop. 1"]["verdict"] == HOLDS  # max pooling routes ε-LRP and the gradient alike
    assert entry["ops_met"]["max_pooling"] == {"torch.nn.functional.max_pool2d": 1}
    complete = claims["DeepLIFT is complete"]
    assert complete["verdict"] == FAILS, complete
    assert complete["reason"] == (
        "max pooling (max_pool2d x1) routes the difference through the arg-max (gradient rule), which is not "
        "complete; max_pooling='exact' is"
    )
    assert html.escape(complete["reason"]) in (tmp_path / "eval" / "report.html").read_text(encoding="utf-8")


def test_relu_only_is_accepted_with_a_deprecation_warning_and_ignored(
    user_files: tuple[Path, Path], tmp_path: Path
) -> None:
    source, data = user_files
    result = evaluate(source, "cnn", data, tmp_path / "eval", "--relu-only")
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("warning: --relu-only is deprecated and ignored"), result.stderr
    help_text = subprocess.run(
        [sys.executable, "-m", "gradattr.cli", "evaluate", "--help"], capture_output=True, text=True, check=False
    ).stdout
    assert "--relu-only" not in help_text


class Recurrent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.lstm(x)[0][:, -1])


def subject(model: nn.Module, inputs: torch.Tensor) -> Subject:
    labels = torch.zeros(inputs.shape[0], dtype=torch.long)
    return Subject("toy", "toy", model.eval(), inputs, labels, ["a", "b"], Features("features"))


def test_deeplift_on_an_lstm_is_approximate_because_of_its_gates() -> None:
    torch.manual_seed(0)
    settings = StudySettings(methods=("deeplift",), num_subsets=2, display=1, progress=False)
    study = study_model(subject(Recurrent(), torch.randn(4, 5, 3)), settings)
    claim = deeplift_completeness(study)
    assert claim.verdict == APPROXIMATE
    assert claim.reason.startswith("multiplicative gates in lstm x1") and "Sec. 4.2" in claim.reason


def test_integrated_gradients_failing_completeness_names_its_riemann_error() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4.0)  # steep tanh: two steps miss most of the path
    settings = StudySettings(methods=("integrated_gradients",), num_subsets=2, display=1, ig_steps=2, progress=False)
    with warnings.catch_warnings():  # the study measures the gap and reports it in the claim: no warning
        warnings.simplefilter("error", CompletenessWarning)
        study = study_model(subject(model, torch.randn(4, 6)), settings)
    claim = ig_completeness(study)
    gap = study.completeness["integrated_gradients"]
    assert claim.verdict == FAILS, claim
    needed = int(np.ceil(2 * gap / 0.05))
    assert claim.reason == f"Riemann error of 2 steps; about {needed} steps needed (the error falls like 1/m)"
