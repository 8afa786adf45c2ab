"""Long runs resume: ``reproduce`` and ``evaluate`` killed midway (SIGKILL, Ctrl-C, an exception) leave no
damaged file, and a second run reuses the finished work and gives the results of an uninterrupted run."""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import gradattr
from gradattr.cli import app
from gradattr.data import load_digits
from gradattr.evaluation import EvaluatedBatch
from gradattr.experiments.robustness_study import (
    RobustnessModels,
    RobustnessSettings,
    RobustnessStudy,
    measure_robustness,
)
from gradattr.files import read_torch
from gradattr.models import mnist_cnn
from gradattr.progress import FORMAT, ProgressStore, ProgressWarning, fingerprint, load_entry, save_entry
from gradattr.training import TrainResult

TINY = ["--datasets", "digits", "--models", "mlp-relu,cnn", "--samples", "16", "--num-subsets", "10", "--display", "2",
        "--no-robustness", "--no-progress"]  # fmt: skip
EVALUATE_SAMPLES = 144
EVALUATE = ["--batch-size", "4", "--samples", str(EVALUATE_SAMPLES), "--no-progress"]
EVALUATE_BATCHES = EVALUATE_SAMPLES // 4  # 40 ms each: a window of over a second to kill the run between two
MODEL_SOURCE = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
"""
SINGLE_THREAD = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # as the tests' own runs
TIMING = {"seconds", "started", "command", "environment", "seconds_per_sample"}


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def start(*args: str | Path) -> subprocess.Popen[str]:
    """``gradattr ARGS`` in a new process (one thread, as the tests in this process)."""
    command = [sys.executable, "-m", "gradattr.cli", *(str(a) for a in args)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=SINGLE_THREAD)


SIGNAL_AT_SECOND_MODEL = """
import importlib, os, signal, sys
from gradattr.cli import app

reproduce = importlib.import_module("gradattr.experiments.reproduce")  # the module, not the function

studied = reproduce.study_model


def study_model(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:  # the first model's entry is saved: signal as the second one starts
        os.kill(os.getpid(), getattr(signal, os.environ["TEST_SIGNAL"]))
    return studied(*args, **kwargs)


calls = []
reproduce.study_model = study_model
# a terminal's Ctrl-C: background jobs (CI runners, nohup) start with SIGINT ignored, so Python installs no
# KeyboardInterrupt handler; restore it as an interactive shell would
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.argv = ["gradattr", *sys.argv[1:]]
app()
"""
"""``gradattr ARGS`` that receives a real signal (SIGINT: Ctrl-C, SIGKILL: killed) at a known point, as the
second model's study starts: a signal sent from the test process could arrive after a fast run has finished."""


def start_interrupted(signal_name: str, *args: str | Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", SIGNAL_AT_SECOND_MODEL, *(str(a) for a in args)]
    env = SINGLE_THREAD | {"TEST_SIGNAL": signal_name}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(path: Path, process: subprocess.Popen[str], timeout: float = 120.0) -> None:
    """Return as soon as ``path`` exists; fail if the process ends first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            stdout, stderr = process.communicate()
            pytest.fail(f"the run ended (exit {process.returncode}) before {path.name} appeared:\n{stdout}\n{stderr}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear within {timeout} s")
        time.sleep(0.002)


def assert_nothing_damaged(out: Path, before: dict[str, bytes] | None = None) -> None:
    """After a kill: complete progress entries, hidden temporary files, and the files of a previous run
    (``before``: name -> content) unchanged; nothing else."""
    before = before or {}
    for path in out.rglob("*"):
        if path.is_dir() or (path.name.startswith(".") and path.name.endswith(".partial")):
            continue
        if path.name in before:
            assert path.read_bytes() == before[path.name], f"{path} changed before the run finished"
        else:
            assert path.suffix == ".pt", f"{path} written before the run finished"
            assert read_torch(path)["format"] == FORMAT, path


def numbers(results: Any) -> Any:
    """results.json without the timings, dates and command lines that differ between runs."""
    if isinstance(results, dict):
        return {k: numbers(v) for k, v in results.items() if k not in TIMING}
    if isinstance(results, list):
        return [numbers(v) for v in results]
    return results


def results_of(out: Path) -> Any:
    return numbers(json.loads((out / "results.json").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, cache: Path) -> Path:
    """An uninterrupted tiny reproduce run (it also trains the two cached models)."""
    out = tmp_path_factory.mktemp("reference")
    result = invoke("reproduce", *TINY, "--out", out, "--cache", cache)
    assert result.exit_code == 0, result.output
    assert "reused" not in result.output
    return out


def test_reproduce_killed_midway_resumes_without_recomputing(tmp_path: Path, cache: Path, reference: Path) -> None:
    out = tmp_path / "out"
    process = start_interrupted("SIGKILL", "reproduce", *TINY, "--out", out, "--cache", cache)
    process.communicate(timeout=120)
    assert process.returncode == -signal.SIGKILL
    finished = out / ".progress" / "digits-mlp-relu.pt"
    assert finished.exists() and not (out / "report.html").exists()
    assert_nothing_damaged(out)
    stamp = finished.stat().st_mtime_ns
    result = invoke("reproduce", *TINY, "--out", out, "--cache", cache)
    assert result.exit_code == 0, result.output
    assert f"reused 1 finished model study from {out / '.progress'}" in result.output
    assert finished.stat().st_mtime_ns == stamp  # loaded, not measured and saved again
    assert results_of(out) == results_of(reference)
    assert sorted(p.name for p in (out / ".progress").glob("*.pt")) == ["digits-cnn.pt", "digits-mlp-relu.pt"]


def test_ctrl_c_exits_130_saying_how_to_resume(tmp_path: Path, cache: Path, reference: Path) -> None:
    """Interrupted while a previous run's report is in the folder: that report stays as it was."""
    out = tmp_path / "out"
    shutil.copytree(reference, out, ignore=shutil.ignore_patterns(".progress"))
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    process = start_interrupted("SIGINT", "reproduce", *TINY, "--out", out, "--cache", cache)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    (line,) = stderr.strip().splitlines()
    assert line.startswith("interrupted: ") and str(out / ".progress") in line and "run the same command" in line
    assert_nothing_damaged(out, before)
    result = invoke("reproduce", *TINY, "--out", out, "--cache", cache)
    assert result.exit_code == 0 and "reused 1 finished model study" in result.output, result.output
    assert results_of(out) == results_of(reference)


def test_a_damaged_entry_is_measured_again_and_fresh_starts_over(tmp_path: Path, cache: Path, reference: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(reference / ".progress", out / ".progress")
    damaged = out / ".progress" / "digits-cnn.pt"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    result = invoke("reproduce", *TINY, "--out", out, "--cache", cache)
    assert result.exit_code == 0, result.output
    assert "warning: ignoring progress entry" in result.output and "digits-cnn.pt" in result.output
    assert "reused 1 finished model study" in result.output
    assert results_of(out) == results_of(reference)
    assert read_torch(damaged)["format"] == FORMAT  # measured and saved again
    fresh = invoke("reproduce", *TINY[:2], "--models", "mlp-relu", *TINY[4:], "--out", out, "--cache", cache, "--fresh")
    assert fresh.exit_code == 0 and "reused" not in fresh.output, fresh.output
    assert [p.name for p in (out / ".progress").iterdir()] == ["digits-mlp-relu.pt"]  # the others were cleared


@pytest.fixture
def user_files(tmp_path: Path) -> tuple[Path, Path]:
    """A model file and labelled digits."""
    source = tmp_path / "usermodel.py"
    source.write_text(MODEL_SOURCE, encoding="utf-8")
    digits = load_digits(seed=0)
    data = tmp_path / "test.npz"
    np.savez(data, x=digits.test_x[:EVALUATE_SAMPLES].numpy(), y=digits.test_y[:EVALUATE_SAMPLES].numpy())
    return source, data


def test_evaluate_killed_between_batches_resumes_at_the_next_one(tmp_path: Path, user_files: tuple[Path, Path]) -> None:
    source, data = user_files
    model = f"{source}:build"
    reference = tmp_path / "reference"
    assert invoke("evaluate", "--model", model, "--data", data, *EVALUATE, "--out", reference).exit_code == 0
    out = tmp_path / "out"
    process = start("evaluate", "--model", model, "--data", data, *EVALUATE, "--out", out)
    checkpoint = out / ".progress" / "evaluate.pt"
    wait_for(checkpoint, process)
    process.kill()
    process.wait()
    assert_nothing_damaged(out)
    finished = len(read_torch(checkpoint)["payload"]["digests"])
    assert 1 <= finished < EVALUATE_BATCHES, f"killed after {finished} of {EVALUATE_BATCHES} batches"
    result = invoke("evaluate", "--model", model, "--data", data, *EVALUATE, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"resumed: {finished} finished batch{'es' if finished > 1 else ''} reused from" in result.output
    assert results_of(out) == results_of(reference)


class Recorder:
    """A resumable ``on_batch`` observer: sums every map it is shown; can be told to fail at a batch."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at = fail_at
        self.batches = 0
        self.total = torch.zeros((), dtype=torch.float64)
        self.seen = 0  # calls in this run (not part of the state)

    def __call__(self, batch: EvaluatedBatch) -> None:
        if self.batches == self.fail_at:
            raise KeyboardInterrupt
        self.batches += 1
        self.seen += 1
        self.total += sum(m.double().sum() for m in batch.maps.values())

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "total": self.total.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches, self.total = int(state["batches"]), state["total"].clone()


@pytest.fixture(scope="module")
def problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    digits = load_digits(seed=0)
    return model, digits.test_x[:30], digits.test_y[:30]


SETTINGS: dict[str, Any] = {"methods": ["saliency", "deeplift", "occlusion"], "num_subsets": 10, "batch_size": 5,
                            "progress": False}  # fmt: skip


def assert_same_table(a: gradattr.evaluation.SensitivityTable, b: gradattr.evaluation.SensitivityTable) -> None:
    assert a.methods == b.methods and a.ns == b.ns
    for name in a.methods:
        assert torch.equal(a.results[name].per_sample.nan_to_num(-9), b.results[name].per_sample.nan_to_num(-9))


@pytest.mark.filterwarnings("error::gradattr.progress.ProgressWarning")
def test_evaluate_resumes_after_an_interruption_with_the_same_table(problem, tmp_path: Path) -> None:
    model, x, y = problem
    whole, whole_observer = gradattr.evaluate(model, (x, y), on_batch=(observer := Recorder()), **SETTINGS), observer
    assert whole.resumed == 0 and whole_observer.seen == 6
    checkpoint = tmp_path / "evaluate.pt"
    with pytest.raises(KeyboardInterrupt):
        gradattr.evaluate(model, (x, y), on_batch=Recorder(fail_at=3), checkpoint=checkpoint, **SETTINGS)
    resumed_observer = Recorder()
    resumed = gradattr.evaluate(model, (x, y), on_batch=resumed_observer, checkpoint=checkpoint, **SETTINGS)
    assert resumed.resumed == 3 and resumed_observer.seen == 3  # batches 4 to 6 only
    assert_same_table(resumed, whole)
    assert str(resumed) == str(whole)
    assert resumed_observer.batches == 6 and torch.equal(resumed_observer.total, whole_observer.total)
    again = gradattr.evaluate(model, (x, y), on_batch=(observer := Recorder()), checkpoint=checkpoint, **SETTINGS)
    assert again.resumed == 6 and observer.seen == 0 and torch.equal(observer.total, whole_observer.total)
    assert_same_table(again, whole)


def test_evaluate_checkpoint_of_other_settings_or_damaged_is_not_used(problem, tmp_path: Path) -> None:
    model, x, y = problem
    checkpoint = tmp_path / "evaluate.pt"
    whole = gradattr.evaluate(model, (x, y), checkpoint=checkpoint, **SETTINGS)
    other = gradattr.evaluate(model, (x, y), checkpoint=checkpoint, **(SETTINGS | {"num_subsets": 12}))
    assert other.resumed == 0 and other.results["saliency"].num_subsets == 12
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed[3].bias.add_(1.0)
    assert gradattr.evaluate(changed, (x, y), checkpoint=checkpoint, **SETTINGS).resumed == 0  # other weights
    checkpoint.write_bytes(b"PK\x03\x04 not a checkpoint")
    with pytest.warns(ProgressWarning, match=r"evaluate\.pt"):
        damaged = gradattr.evaluate(model, (x, y), checkpoint=checkpoint, **SETTINGS)
    assert damaged.resumed == 0
    assert_same_table(damaged, whole)
    with pytest.raises(TypeError, match="ResumableObserver"):
        gradattr.evaluate(model, (x, y), checkpoint=checkpoint, on_batch=lambda batch: None, **SETTINGS)


@pytest.mark.filterwarnings("error::gradattr.progress.ProgressWarning")
def test_evaluate_checks_streamed_batches_against_the_checkpoint(problem, tmp_path: Path) -> None:
    model, x, y = problem
    batches = [(x[i : i + 5], y[i : i + 5]) for i in range(0, 30, 5)]
    checkpoint = tmp_path / "evaluate.pt"
    whole = gradattr.evaluate(model, batches, checkpoint=checkpoint, **SETTINGS)
    assert gradattr.evaluate(model, iter(batches), checkpoint=checkpoint, **SETTINGS).resumed == 6
    shuffled = batches[1:] + batches[:1]
    assert gradattr.evaluate(model, shuffled, checkpoint=checkpoint, **SETTINGS).resumed == 0  # first differs: anew
    assert gradattr.evaluate(model, shuffled, checkpoint=checkpoint, **SETTINGS).resumed == 6
    again = gradattr.evaluate(model, batches, checkpoint=checkpoint, **SETTINGS)
    assert again.resumed == 0
    assert_same_table(again, whole)
    swapped = [*batches[:2], batches[3], batches[2], *batches[4:]]
    with pytest.raises(ValueError, match="batch 2 differs"):
        gradattr.evaluate(model, swapped, checkpoint=checkpoint, **SETTINGS)


def decode_numbers(payload: Any) -> list[float]:
    if not isinstance(payload, list):
        raise TypeError("not a list")
    return [float(v) for v in payload]


def test_progress_store_reuses_only_matching_readable_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ProgressStore(tmp_path / ".progress")
    store.save("a", "key1", [1.0, 2.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing or stale entry is silent
        assert store.load("a", "key1", decode_numbers) == [1.0, 2.0]
        assert store.load("a", "key2", decode_numbers) is None
        assert store.load("absent", "key1", decode_numbers) is None
        monkeypatch.setattr("gradattr.progress.versions", lambda: {"gradattr": "0.0", "torch": "0.0"})
        assert store.load("a", "key1", decode_numbers) is None  # computed by another version
    monkeypatch.undo()
    store.save("b", "key1", "not numbers")
    torch.save(torch.zeros(3), store.path("c"))
    store.path("d").write_bytes(store.path("a").read_bytes()[:100])
    for name, reason in (
        ("b", "content does not fit"),
        ("c", "not a gradattr progress entry"),
        ("d", "not a complete torch file"),
    ):
        with pytest.warns(ProgressWarning, match=rf"{name}\.pt: .*{reason}"):
            assert store.load(name, "key1", decode_numbers) is None
    assert store.load_or_run("e", "k", lambda: [3.0], list, decode_numbers) == ([3.0], False)
    assert store.load_or_run("e", "k", lambda: [4.0], list, decode_numbers) == ([3.0], True)
    (store.directory / ".e.pt.123.partial").write_bytes(b"half")
    store.clear()
    assert not store.directory.exists()
    with pytest.raises(ValueError, match="entry name"):
        store.path("../outside")


def test_entries_hold_plain_compact_values(tmp_path: Path) -> None:
    big = torch.arange(100_000.0)
    path = save_entry(tmp_path / "view.pt", "k", {"first": big[:4], "n": 1, "names": ("a", "b")})
    assert path.stat().st_size < 10_000  # the slice, not the 400 kB it views
    assert load_entry(path, "k", lambda p: p["first"].tolist()) == [0.0, 1.0, 2.0, 3.0]
    with pytest.raises(TypeError, match=r"payload\['x'\] is a float64"):
        save_entry(tmp_path / "numpy.pt", "k", {"x": np.float64(1.0)})
    assert fingerprint({"a": 1, "b": torch.zeros(2)}) == fingerprint({"b": torch.zeros(2), "a": 1})
    assert fingerprint({"w": torch.zeros(2)}) != fingerprint({"w": torch.tensor([0.0, 1.0])})


def test_robustness_study_round_trips_through_an_entry(tmp_path: Path) -> None:
    """The robustness section is rebuilt from its entry exactly (untrained CNNs: the numbers do not matter)."""
    digits = load_digits(seed=0)
    torch.manual_seed(0)
    record = TrainResult((), 1, 0.5, 0.5, 0.1, False, 0.0)
    cnns = {name: (mnist_cnn(digits.input_shape, digits.num_classes).eval(), record) for name in ("standard", "robust")}
    models = RobustnessModels("Digits", digits, cnns, 0.0)
    settings = RobustnessSettings(samples=8, sanity_samples=4, display=2, eval_steps=2, methods=("saliency", "gradcam"))
    study = measure_robustness(settings, models)
    path = save_entry(tmp_path / "robustness.pt", models.key(settings), study.to_state())
    loaded = load_entry(path, models.key(settings), lambda state: RobustnessStudy.from_state(settings, state))
    assert loaded is not None
    assert json.dumps(loaded.to_dict()) == json.dumps(study.to_dict())
    assert json.dumps(loaded.tables()) == json.dumps(study.tables())
    assert all(torch.equal(loaded.maps[m][k], study.maps[m][k]) for m in study.maps for k in study.maps[m])
    assert models.key(replace(settings, epsilon=0.2)) != models.key(settings)
