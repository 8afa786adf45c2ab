"""``gradattr.distributed.evaluate`` on a local Ray with two workers gives the single-process table: the same
per-sample Sensitivity-n values for every method (SmoothGrad's position-dependent noise included), the same
rows, the same batches handed to ``on_batch``, and a checkpoint that resumes with other shard boundaries."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

import gradattr
from gradattr import distributed
from gradattr.cli import app
from gradattr.data import load_digits
from gradattr.evaluation import EvaluatedBatch, SensitivityTable
from gradattr.models import mnist_mlp

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="ray is not installed (pip install 'gradattr[ray]')"
)
SAMPLES, BATCH = 60, 8  # 8 batches, the last one of 4 samples
METHODS = ["saliency", "gradient_x_input", "integrated_gradients", "deeplift", "smoothgrad", "occlusion"]
OPTIONS = {"integrated_gradients": {"steps": 8}, "smoothgrad": {"samples": 4}}
SETTINGS: dict[str, Any] = {"num_subsets": 12, "batch_size": BATCH, "progress": False}
MODEL_SOURCE = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
"""
EVALUATE = ["--methods", "saliency,deeplift", "--samples", "24", "--batch-size", "8", "--num-subsets", "10",
            "--no-progress"]  # fmt: skip
TIMING = {"seconds", "started", "command", "environment", "seconds_per_sample"}


class Stop(Exception):
    """Raised by :class:`Recorder` to interrupt an evaluation."""


class Recorder:
    """A resumable ``on_batch`` observer keeping every batch's inputs, targets and maps; raises :class:`Stop`
    when it is handed batch number ``stop_at`` (0-based)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.batches: list[dict[str, Any]] = []

    def __call__(self, batch: EvaluatedBatch) -> None:
        if len(self.batches) == self.stop_at:
            raise Stop
        self.batches.append({"inputs": batch.inputs, "targets": batch.targets, "maps": dict(batch.maps)})

    def state_dict(self) -> dict[str, Any]:
        return {"batches": [dict(b) for b in self.batches]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches = [dict(b) for b in state["batches"]]


def model_and_data() -> tuple[nn.Module, Tensor, Tensor]:
    torch.manual_seed(0)
    model = mnist_mlp((1, 8, 8), hidden=(32, 16)).eval()
    data = load_digits()
    return model, data.test_x[:SAMPLES], data.test_y[:SAMPLES]


def user_files(folder: Path) -> tuple[Path, Path]:
    """A model file for ``--model FILE:build`` and digits as ``--data`` (.npz with x and y)."""
    model_file, data = folder / "net.py", folder / "digits.npz"
    model_file.write_text(MODEL_SOURCE, encoding="utf-8")
    digits = load_digits()
    np.savez(data, x=digits.test_x[:SAMPLES].numpy(), y=digits.test_y[:SAMPLES].numpy())
    return model_file, data


def invoke(*args: str | Path) -> Any:
    return CliRunner().invoke(app, [str(a) for a in args])


def numbers(results: Any) -> Any:
    """results.json without the timings, dates and command lines that differ between runs."""
    if isinstance(results, dict):
        return {k: numbers(v) for k, v in results.items() if k not in TIMING}
    if isinstance(results, list):
        return [numbers(v) for v in results]
    return results


RAY_START_ATTEMPTS: tuple[dict[str, str], ...] = (
    {},
    {  # the second try: Ray's start-up timeouts that can be lengthened, x4
        "RAY_gcs_server_port_wait_time_s": "120",
        "RAY_gcs_server_request_timeout_seconds": "240",
        "RAY_worker_register_timeout_seconds": "240",
    },
)
"""Environment of each attempt to start the local Ray. Ray 2.x's own 30 s wait for the raylet to register is
fixed; the second attempt gives it that window again, with every other start-up timeout lengthened."""


def start_ray(ray: Any, attempts: tuple[dict[str, str], ...] = RAY_START_ATTEMPTS) -> None:
    """``ray.init`` with 2 CPUs; a failed start (a timed-out node on a loaded machine) is shut down and retried
    with longer timeouts, and after the last attempt the test is skipped with the reason: a machine where Ray
    cannot start says nothing about gradattr's results, which are checked wherever Ray starts."""
    reasons = []
    for environment in attempts:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            try:
                ray.init(num_cpus=2, include_dashboard=False)
                return
            except Exception as error:  # Ray raises a bare Exception for a node that timed out during start-up
                reasons.append(f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error) else ''}")
                ray.shutdown()
    pytest.skip(f"Ray did not start on this machine ({len(attempts)} attempts, the last with longer timeouts): "
                f"{reasons[-1]}")  # fmt: skip


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """One local Ray with 2 CPUs for the module (start-up takes 10-30 s on 2 cores; see :func:`start_ray`)."""
    ray = pytest.importorskip("ray")
    start_ray(ray)
    yield ray
    distributed.release_workers()
    ray.shutdown()


class FlakyRay:
    """A stand-in for the ``ray`` module whose ``init`` fails the first ``failures`` times, recording the
    environment each call saw."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[dict[str, str | None]] = []
        self.shutdowns = 0

    def init(self, **_: Any) -> None:
        self.calls.append({name: os.environ.get(name) for name in RAY_START_ATTEMPTS[1]})
        if len(self.calls) <= self.failures:
            raise Exception("The current node timed out during startup. This could happen because ...")

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_a_ray_start_up_failure_is_retried_with_longer_timeouts_then_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in RAY_START_ATTEMPTS[1]:
        monkeypatch.delenv(name, raising=False)
    once = FlakyRay(failures=1)
    start_ray(once)  # the second attempt starts: no skip, the tests run
    assert once.calls == [dict.fromkeys(RAY_START_ATTEMPTS[1]), RAY_START_ATTEMPTS[1]] and once.shutdowns == 1
    always = FlakyRay(failures=2)
    with pytest.raises(pytest.skip.Exception) as skipped:
        start_ray(always)
    assert str(skipped.value) == (
        "Ray did not start on this machine (2 attempts, the last with longer timeouts): Exception: The current node "
        "timed out during startup. This could happen because ..."
    )
    assert always.shutdowns == 2
    assert all(os.environ.get(name) is None for name in RAY_START_ATTEMPTS[1])  # the longer timeouts are undone


def assert_same_table(table: SensitivityTable, reference: SensitivityTable) -> None:
    assert table.methods == reference.methods and table.ns == reference.ns
    for name in reference.methods:
        ours, theirs = table.results[name].per_sample, reference.results[name].per_sample
        assert ours.shape == theirs.shape == (SAMPLES, len(reference.ns))
        assert torch.allclose(ours, theirs, rtol=0, atol=1e-12, equal_nan=True), name
    for ours, theirs in zip(table.rows(), reference.rows(), strict=True):
        assert ours.keys() == theirs.keys()
        for key, value in theirs.items():
            if isinstance(value, float):  # mean and std: equal to 1e-12, or NaN on both sides
                assert math.isnan(value) == math.isnan(ours[key]), (ours, theirs)
                assert math.isnan(value) or abs(ours[key] - value) <= 1e-12, (ours, theirs)
            else:  # method, n, count
                assert ours[key] == value, (ours, theirs)
    assert set(table.seconds) == set(reference.seconds)


def test_bad_arguments_fail_before_ray_starts() -> None:
    model, x, y = model_and_data()
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"workers": 0}, ValueError, "workers must be a positive int"),
        ({"workers": 1.5}, ValueError, "workers must be a positive int"),
        ({"threads_per_worker": -1}, ValueError, "threads_per_worker"),
        ({"shards": 0}, ValueError, "shards"),
        ({"address": ""}, ValueError, "Ray address"),
        ({"max_memory": "lots"}, ValueError, "max_memory"),
        ({"methods": ["saliency", "gradient_magic"]}, ValueError, "unknown or no methods \\['gradient_magic'\\]"),
        ({"method_options": {"deeplift": {}}}, ValueError, "not among the methods"),
        ({"batch_size": 0}, ValueError, "batch_size"),
        ({"target": "best"}, ValueError, "target must be"),
        ({"data": x}, ValueError, "needs labels"),
        ({"data": (x, y[:5])}, ValueError, "60 inputs but 5 labels"),
        ({"data": [(x, y)]}, TypeError, "takes tensors"),
        ({"on_batch": print, "checkpoint": "cp.pt"}, TypeError, "ResumableObserver"),
        ({"num_subset": 10}, TypeError, "unknown evaluation argument\\(s\\) num_subset; known: target"),
        ({"max_samples": 0}, ValueError, "max_samples must be a positive int"),
        ({"data": (x[:0], y[:0])}, ValueError, "data yielded no samples"),
        ({"data": x[0, 0, 0, 0], "target": "predicted"}, ValueError, "0-d tensor, not a batch"),
    ]
    for overrides, error, message in cases:
        arguments = {"data": (x, y), "methods": ["saliency"]} | overrides
        with pytest.raises(error, match=message):
            distributed.evaluate(model, **arguments)
    if importlib.util.find_spec("ray") is not None:
        import ray

        assert not ray.is_initialized()


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    model, x, y = model_and_data()
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(ImportError, match=r'pip install "gradattr\[ray\]"'):
        distributed.evaluate(model, (x, y), ["saliency"], workers=1, progress=False)
    model_file, data = user_files(tmp_path)
    result = invoke("evaluate", "--model", f"{model_file}:build", "--data", data, "--workers", "2", "--out", tmp_path)
    assert result.exit_code == 1 and 'pip install "gradattr[ray]"' in result.output, result.output


def test_smoothgrad_depends_on_the_position_in_the_batch() -> None:
    """Why shards are whole batches: the same samples at other positions get other noise, other values."""
    model, x, y = model_and_data()
    options = {"method_options": {"smoothgrad": OPTIONS["smoothgrad"]}} | SETTINGS
    aligned = gradattr.evaluate(model, (x, y), ["smoothgrad"], **options)
    shifted = gradattr.evaluate(model, (x[4:], y[4:]), ["smoothgrad"], **options)
    assert not torch.allclose(shifted.results["smoothgrad"].per_sample, aligned.results["smoothgrad"].per_sample[4:])


@needs_ray
def test_two_workers_give_the_single_process_table_and_resume(local_ray: Any, tmp_path: Path) -> None:
    model, x, y = model_and_data()
    settings = {"method_options": OPTIONS} | SETTINGS
    before = copy.deepcopy(model.state_dict())
    expected_batches = Recorder()
    reference = gradattr.evaluate(model, (x, y), METHODS, on_batch=expected_batches, **settings)

    checkpoint = tmp_path / "distributed.pt"
    interrupted = Recorder(stop_at=5)  # shards of 2 batches: shards 0 and 1 are finished and checkpointed
    with pytest.raises(Stop):
        distributed.evaluate(
            model, (x, y), METHODS, workers=2, shards=4, on_batch=interrupted, checkpoint=checkpoint, **settings
        )
    resumed = Recorder()
    table = distributed.evaluate(model, (x, y), METHODS, workers=2, on_batch=resumed, checkpoint=checkpoint, **settings)

    assert table.resumed == 4  # batches 0-3 from the checkpoint, 4-7 on new shard boundaries
    assert_same_table(table, reference)
    assert len(resumed.batches) == len(expected_batches.batches) == 8
    for ours, theirs in zip(resumed.batches, expected_batches.batches, strict=True):
        assert torch.equal(ours["inputs"], theirs["inputs"]) and torch.equal(ours["targets"], theirs["targets"])
        for name in METHODS:
            assert torch.allclose(ours["maps"][name], theirs["maps"][name], rtol=0, atol=1e-12), name
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
    assert not model.training and all(p.grad is None and p.requires_grad for p in model.parameters())

    kept = distributed._Pool.current
    plain = distributed.evaluate(model, (x, y), METHODS, workers=2, **settings)  # no maps travel back
    assert distributed._Pool.current is kept is not None  # the workers of the last call were used again
    assert_same_table(plain, reference)


@needs_ray
def test_cli_workers_write_the_single_process_report(local_ray: Any, tmp_path: Path) -> None:
    model_file, data = user_files(tmp_path)
    outputs = {}
    for name, extra in (("single", []), ("ray", ["--workers", "2"])):
        out = tmp_path / name
        result = invoke("evaluate", "--model", f"{model_file}:build", "--data", data, *EVALUATE, *extra, "--out", out)
        assert result.exit_code == 0, result.output
        outputs[name] = numbers(json.loads((out / "results.json").read_text(encoding="utf-8")))
    assert outputs["ray"] == outputs["single"]  # Sensitivity-n, agreement, completeness, claims


@needs_ray
def test_workers_are_kept_use_their_threads_and_worker_errors_keep_their_type(local_ray: Any) -> None:
    model, x, y = model_and_data()
    pool = distributed._Pool.acquire(local_ray, distributed.WorkerSettings(workers=2))
    assert pool is distributed._Pool.acquire(local_ray, distributed.WorkerSettings(workers=2, threads_per_worker=1))
    assert local_ray.get([actor.threads.remote() for actor in pool.actors]) == [1, 1]  # 2 CPUs / 2 workers
    with pytest.raises(TypeError, match="samples"):  # raised in a worker by gradattr.attribute's option check
        distributed.evaluate(
            model, (x, y), ["smoothgrad"], workers=2, method_options={"smoothgrad": {"samples": "many"}}, **SETTINGS
        )
    assert distributed._Pool.current is None  # the failed call ended its workers
    with pytest.raises(ValueError, match="need 6 CPUs, but Ray has 2"):
        distributed.evaluate(model, (x, y), ["saliency"], workers=3, threads_per_worker=2, progress=False)


@needs_ray
def test_workers_measure_the_quality_metrics_of_the_single_process_run(local_ray: Any, tmp_path: Path) -> None:
    """Metrics beside Sensitivity-n run on the workers, masks cut to each shard, merged in data order; a
    checkpointed run resumes with the same values on another number of workers."""
    from gradattr.evaluation import named_metrics

    model, x, y = model_and_data()
    masks = x > 0
    chosen = named_metrics(["sparseness", "pointing_game", "deletion_auc"], masks=masks)
    settings = SETTINGS
    reference = gradattr.evaluate(model, (x, y), ["saliency", "deeplift"], metrics=chosen, **settings)
    checkpoint = tmp_path / "quality.pt"
    table = distributed.evaluate(model, (x, y), ["saliency", "deeplift"], workers=2, shards=4, metrics=chosen,
                                 checkpoint=checkpoint, **settings)  # fmt: skip
    again = distributed.evaluate(model, (x, y), ["saliency", "deeplift"], workers=1, metrics=chosen,
                                 checkpoint=checkpoint, **settings)  # fmt: skip
    for result in (table, again):
        assert_same_table(result, reference)
        for name, metric in reference.metrics.items():
            for label, values in metric.per_sample.items():
                assert torch.allclose(result.metrics[name].per_sample[label], values, atol=1e-9), (name, label)


class Scaled(nn.Module):
    """A model with a per-sample keyword argument: logits times ``scale`` (B, 1)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = mnist_mlp((1, 8, 8), hidden=(32, 16))

    def forward(self, x: Tensor, scale: Tensor) -> Tensor:
        return self.net(x) * scale


@needs_ray
def test_one_checkpoint_for_both_runners_and_per_sample_kwargs_cut_per_shard(local_ray: Any, tmp_path: Path) -> None:
    """The single-process run and the Ray executor keep one checkpoint format under one key: an interrupted
    ``gradattr.evaluate`` resumes on two workers and the reverse, with the uninterrupted table; per-sample
    ``forward_kwargs`` and ``max_samples`` reach each shard cut to its samples."""
    local_ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Scaled, defined in this test module
    _, x, y = model_and_data()
    model = Scaled().eval()
    scale = torch.linspace(0.5, 2.0, SAMPLES).unsqueeze(1)
    settings = {"forward_kwargs": {"scale": scale}, "max_samples": 52, "method_options": OPTIONS} | SETTINGS
    methods = ["saliency", "integrated_gradients", "smoothgrad"]
    reference = gradattr.evaluate(model, (x, y), methods, **settings)
    assert reference.samples == 52

    checkpoint = tmp_path / "shared.pt"
    with pytest.raises(Stop):  # batches 0-2 finished locally
        gradattr.evaluate(model, (x, y), methods, on_batch=Recorder(stop_at=3), checkpoint=checkpoint, **settings)
    observed = Recorder()  # an observer's initial state is part of the key: the same kind of observer each time
    on_ray = distributed.evaluate(model, (x, y), methods, workers=2, on_batch=observed, checkpoint=checkpoint,
                                  **settings)  # fmt: skip
    assert len(observed.batches) == 7  # 3 restored from the checkpoint, 4 computed by the workers
    assert on_ray.resumed == 3
    back_home = gradattr.evaluate(model, (x, y), methods, on_batch=Recorder(), checkpoint=checkpoint, **settings)
    assert back_home.resumed == 7  # every batch, written by the workers
    for table in (on_ray, back_home):
        for name in methods:
            assert torch.allclose(table.results[name].per_sample, reference.results[name].per_sample, rtol=0,
                                  atol=1e-12, equal_nan=True), name  # fmt: skip

    checkpoint.unlink()
    observed = Recorder()
    with pytest.raises(Stop):  # shards of batches 0-1, 2-3, 4, 5-6: the first three finished on the workers
        distributed.evaluate(model, (x, y), methods, workers=2, shards=4, on_batch=Recorder(stop_at=5),
                             checkpoint=checkpoint, **settings)  # fmt: skip
    resumed = gradattr.evaluate(model, (x, y), methods, on_batch=observed, checkpoint=checkpoint, **settings)
    assert resumed.resumed == 5 and len(observed.batches) == 7
    for name in methods:
        assert torch.allclose(resumed.results[name].per_sample, reference.results[name].per_sample, rtol=0,
                              atol=1e-12, equal_nan=True), name  # fmt: skip
