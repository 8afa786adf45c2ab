"""``reproduce`` says what it does and how long it will take: the stages with their expected cost, and a
progress line with the stage, the model and the time left (issue "A newcomer's first hour", item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from gradattr.cli import app
from gradattr.experiments.recipes import DATASETS
from gradattr.experiments.schedule import EXPECTED, Schedule, Stage, model_stages


def test_a_cached_model_costs_nothing_to_train_and_the_study_scales_with_samples_and_subsets() -> None:
    load, study = model_stages("digits", "cnn", 450, cached=True)
    assert load == Stage("load digits cnn", 0.0)
    assert study.seconds == pytest.approx(EXPECTED["digits-cnn"].per_sample * 450)
    train, half = model_stages("digits", "cnn", 100, cached=False, subsets=50)
    assert train == Stage("train digits cnn", EXPECTED["digits-cnn"].train)
    assert half.seconds == pytest.approx(EXPECTED["digits-cnn"].per_sample * 50)
    assert model_stages("cifar10", "cnn", 10, cached=False)[1].seconds is None  # not measured: said so


def test_every_model_of_the_quick_run_has_a_measured_cost() -> None:
    quick = [f"{recipe.key}-{model.key}" for recipe in DATASETS if recipe.quick for model in recipe.models]
    assert quick and [name for name in quick if name not in EXPECTED] == []


def test_the_progress_line_names_the_stage_and_the_time_left(capsys: pytest.CaptureFixture[str]) -> None:
    schedule = Schedule([Stage("train digits cnn", 2.0), Stage("study digits cnn", 6.0), Stage("x", None)])
    with schedule.stage("train digits cnn"):
        pass
    with schedule.stage("study digits cnn"):
        pass
    schedule.close()
    err = capsys.readouterr().err
    assert "reproduce: 3 stages, expected about 8 s of CPU" in err and "plus x (not measured)" in err
    assert "reproduce: study digits cnn" in err and "elapsed, about" in err and " left" in err
    assert "100%" in err and "-00:00" not in err


def test_reproduce_shows_its_plan_and_restores_the_thread_count(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    result = CliRunner().invoke(app, [
        "reproduce", "--datasets", "digits", "--models", "mlp-relu", "--samples", "8", "--num-subsets", "10",
        "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache"), "--no-robustness", "--threads", "1",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "reproduce: 2 stages, expected about" in result.output
    assert "train digits mlp-relu" in result.output and "study digits mlp-relu" in result.output
    assert torch.get_num_threads() == threads


def test_the_lstm_is_studied_with_gate_constant_lrp_and_its_token_occlusion_window() -> None:
    """eps-LRP through the LSTM's sigmoid gates overflowed on the trained drug-review LSTM (a method "failed"
    in the newcomer's first run); the study uses the LRP-for-LSTM rule of Arras et al. and says so."""
    from gradattr.data import load_drugreview
    from gradattr.experiments.recipes import dataset_recipe
    from gradattr.experiments.reproduce import model_features

    data = load_drugreview()
    lstm = next(m for m in dataset_recipe("drugreview").models if m.key == "lstm")
    features = model_features(data, lstm.build(data), lstm)
    assert features.method_options["epsilon_lrp"] == {"gates": "signal"}
    assert features.method_options["occlusion"] == {"window": (1, 64)}
