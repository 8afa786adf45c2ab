"""Training, accuracy, checkpoints and the model cache, on the real digits data."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

import gradattr.training as training
from gradattr.cache import (
    CheckpointError,
    CheckpointMismatchError,
    cache_dir,
    load_checkpoint,
    save_checkpoint,
)
from gradattr.data import Dataset, load_digits
from gradattr.models import mnist_cnn, mnist_mlp, small_resnet
from gradattr.training import TrainResult, accuracy, train, train_or_load
from payloads import RunsCode


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def digits_mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return mnist_mlp((1, 8, 8), 10)


def test_digits_mlp_trains_past_90_percent_quickly(digits: Dataset) -> None:
    model, result = train(digits_mlp(), digits, epochs=4, progress=False)
    assert not model.training
    assert result.test_accuracy >= 0.9
    assert result.test_accuracy == accuracy(model, digits.test_x, digits.test_y)
    assert result.majority_rate == pytest.approx(digits.majority_rate())
    assert len(result.history) == 4 and result.history[-1].train_accuracy > result.history[0].train_accuracy


def test_training_is_deterministic(digits: Dataset) -> None:
    first, _ = train(digits_mlp(), digits, epochs=2, progress=False)
    second, _ = train(digits_mlp(), digits, epochs=2, progress=False)
    other_seed, _ = train(digits_mlp(), digits, epochs=2, seed=1, progress=False)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not all(
        torch.equal(a, c) for a, c in zip(first.state_dict().values(), other_seed.state_dict().values(), strict=True)
    )


def test_early_stopping_restores_the_best_epoch(digits: Dataset) -> None:
    model, result = train(digits_mlp(), digits, epochs=40, patience=2, lr=3e-3, progress=False)
    losses = [record.val_loss for record in result.history]
    assert result.stopped_early and len(losses) < 40
    assert result.best_epoch == losses.index(min(losses)) + 1
    assert len(losses) == result.best_epoch + 2
    # The returned weights are the best epoch's, not the last: their validation accuracy is reproduced.
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(digits.train_y), generator=generator)[: round(0.1 * len(digits.train_y))]
    assert accuracy(model, digits.train_x[order], digits.train_y[order]) == result.val_accuracy


def test_monitoring_validation_accuracy(digits: Dataset) -> None:
    _, result = train(digits_mlp(), digits, epochs=6, patience=2, monitor="val_accuracy", progress=False)
    best = max(result.history, key=lambda r: (r.val_accuracy, -r.val_loss))
    assert result.best_epoch == best.epoch and result.val_accuracy == best.val_accuracy
    with pytest.raises(ValueError, match="monitor must be"):
        train(digits_mlp(), digits, monitor="loss", progress=False)  # type: ignore[arg-type]


def test_gradient_clipping_changes_the_updates(digits: Dataset) -> None:
    clipped, _ = train(digits_mlp(), digits, epochs=1, max_grad_norm=1e-3, progress=False)
    free, _ = train(digits_mlp(), digits, epochs=1, progress=False)
    assert not torch.equal(clipped.state_dict()["layers.1.weight"], free.state_dict()["layers.1.weight"])


def test_accuracy_restores_training_mode(digits: Dataset) -> None:
    model = digits_mlp().train()
    value = accuracy(model, digits.test_x, digits.test_y, batch_size=7)
    expected = float((model.eval()(digits.test_x).argmax(1) == digits.test_y).double().mean())
    assert value == pytest.approx(expected)
    model.train()
    accuracy(model, digits.test_x[:3], digits.test_y[:3])
    assert model.training


def test_batchnorm_model_trains(digits: Dataset) -> None:
    torch.manual_seed(0)
    model, result = train(small_resnet((1, 8, 8), 10, width=8), digits, epochs=4, lr=5e-3, progress=False)
    assert result.test_accuracy > 0.5 and not model.training


def test_checkpoint_round_trip_is_bit_exact(tmp_path: Path, digits: Dataset) -> None:
    torch.manual_seed(0)
    model = small_resnet((1, 8, 8), 10, width=4)  # has BatchNorm buffers as well as parameters
    model.train()
    model(digits.train_x[:32])  # move the running statistics away from their initial values
    path = save_checkpoint(model, tmp_path / "sub" / "resnet.pt")
    torch.manual_seed(1)
    restored = load_checkpoint(small_resnet((1, 8, 8), 10, width=4), path)
    for (name, a), b in zip(model.state_dict().items(), restored.state_dict().values(), strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b), name
    assert torch.equal(model.eval()(digits.test_x), restored.eval()(digits.test_x))
    assert not list(tmp_path.glob("sub/*.partial"))


def test_weights_only_loading_refuses_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"layers.1.weight": RunsCode(marker)}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt: not a weights-only state dict"):
        load_checkpoint(mnist_mlp((1, 8, 8), 10), path)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError):  # the guarantee comes from torch.load itself
        torch.load(path, weights_only=True)
    assert not marker.exists()


def test_whole_model_pickles_and_non_dicts_are_refused(tmp_path: Path) -> None:
    whole = tmp_path / "whole.pt"
    torch.save(mnist_mlp((1, 8, 8), 10), whole)
    with pytest.raises(CheckpointError, match="not a weights-only state dict"):
        load_checkpoint(mnist_mlp((1, 8, 8), 10), whole)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], listed)
    with pytest.raises(CheckpointError, match="expected a state dict"):
        load_checkpoint(mnist_mlp((1, 8, 8), 10), listed)
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(mnist_mlp((1, 8, 8), 10), tmp_path / "absent.pt")


def test_architecture_mismatch_names_keys_and_shapes(tmp_path: Path) -> None:
    path = save_checkpoint(mnist_mlp((1, 8, 8), 10), tmp_path / "mlp.pt")
    with pytest.raises(CheckpointMismatchError) as other_architecture:
        load_checkpoint(mnist_cnn((1, 8, 8), 10), path)
    message = str(other_architecture.value)
    assert "mlp.pt does not fit MnistCNN" in message
    assert "missing keys ['conv1.bias', 'conv1.weight'" in message
    assert "unexpected keys ['layers.1.bias', 'layers.1.weight'" in message
    with pytest.raises(
        CheckpointMismatchError,
        match=r"shape mismatches \['layers\.1\.weight: checkpoint \(512, 64\) vs model \(256, 64\)",
    ):
        load_checkpoint(mnist_mlp((1, 8, 8), 10, hidden=(256, 256)), path)


def test_cache_dir_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRADATTR_CACHE", str(tmp_path / "explicit"))
    assert cache_dir() == tmp_path / "explicit"
    monkeypatch.delenv("GRADATTR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "gradattr"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "gradattr"


def test_train_or_load_reuses_the_cached_model(
    tmp_path: Path, digits: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRADATTR_CACHE", str(tmp_path))

    def factory() -> torch.nn.Module:
        return mnist_mlp((1, 8, 8), 10)

    model, result = train_or_load("digits mlp", factory, digits, epochs=2, progress=False)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].startswith("digits-mlp-") and files[0].endswith(".json")

    def must_not_train(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("train() called although the model is cached")

    monkeypatch.setattr(training, "train", must_not_train)
    cached, cached_result = train_or_load("digits mlp", factory, digits, epochs=2, progress=False)
    assert not cached.training and cached_result == result
    for a, b in zip(model.state_dict().values(), cached.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="although the model is cached"):  # other options: a new key
        train_or_load("digits mlp", factory, digits, epochs=3, progress=False)
    with pytest.raises(AssertionError, match="although the model is cached"):  # other architecture
        train_or_load("digits mlp", lambda: mnist_mlp((1, 8, 8), 10, activation="tanh"), digits, epochs=2)


def test_train_result_json_round_trip(digits: Dataset) -> None:
    _, result = train(digits_mlp(), digits, epochs=1, progress=False)
    assert TrainResult.from_json(result.to_json()) == result


def test_bad_arguments(digits: Dataset) -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        train(digits_mlp(), digits, val_fraction=0.0, progress=False)
    with pytest.raises(ValueError, match="no usable characters"):
        train_or_load("///", digits_mlp, digits, cache=Path("unused"), progress=False)
