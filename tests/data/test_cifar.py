"""CIFAR-10 loader on fixture files in the real binary format; the pickle version only on opt-in."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from writers import write_cifar_binary

from gradattr.data import CIFAR10_CLASSES, DataFormatError, load_cifar10
from payloads import RunsCode

BATCHES = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]


def make_batches(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        name: (rng.integers(0, 256, size=(2, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, size=2, dtype=np.uint8))
        for name in BATCHES
    }


def expected_scaled(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32) / 255 * 2 - 1)


def test_binary_values_channels_and_labels_exact(tmp_path: Path) -> None:
    batches = make_batches()
    # A recognisable image: red plane all 255, green 0, blue a ramp along the rows.
    marker = np.zeros((3, 32, 32), dtype=np.uint8)
    marker[0] = 255
    marker[2] = np.arange(32, dtype=np.uint8)[:, None] * 8
    batches["test_batch"][0][1] = marker
    write_cifar_binary(tmp_path, batches, list(CIFAR10_CLASSES))

    data = load_cifar10(tmp_path)  # the parent of cifar-10-batches-bin
    assert data.train_x.shape == (10, 3, 32, 32) and data.test_x.shape == (2, 3, 32, 32)
    train_images = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    torch.testing.assert_close(data.train_x, expected_scaled(train_images), rtol=0, atol=1e-6)
    assert data.train_y.tolist() == train_labels.tolist()
    assert data.test_y.tolist() == batches["test_batch"][1].tolist()
    assert torch.all(data.test_x[1, 0] == 1.0) and torch.all(data.test_x[1, 1] == -1.0)
    torch.testing.assert_close(data.test_x[1, 2, :, 5], torch.arange(32) * 8 / 255 * 2 - 1, rtol=0, atol=1e-6)
    assert data.class_names == CIFAR10_CLASSES


def test_batches_folder_itself_is_accepted(tmp_path: Path) -> None:
    folder = write_cifar_binary(tmp_path, make_batches(), list(CIFAR10_CLASSES))
    assert load_cifar10(folder).train_x.shape == (10, 3, 32, 32)


def test_truncated_batch_names_file_and_record_size(tmp_path: Path) -> None:
    folder = write_cifar_binary(tmp_path, make_batches(), list(CIFAR10_CLASSES))
    batch = folder / "data_batch_3.bin"
    batch.write_bytes(batch.read_bytes()[:-100])
    with pytest.raises(DataFormatError, match=r"data_batch_3\.bin: size 6046 bytes .* 3073-byte"):
        load_cifar10(tmp_path)


def test_missing_batch_and_directory(tmp_path: Path) -> None:
    folder = write_cifar_binary(tmp_path, make_batches(), list(CIFAR10_CLASSES))
    (folder / "data_batch_5.bin").unlink()
    with pytest.raises(DataFormatError, match=r"batch not found: .*data_batch_5\.bin"):
        load_cifar10(tmp_path)
    with pytest.raises(DataFormatError, match="CIFAR-10 directory not found"):
        load_cifar10(tmp_path / "absent")


def test_label_out_of_range(tmp_path: Path) -> None:
    batches = make_batches()
    batches["data_batch_2"][1][0] = 10
    write_cifar_binary(tmp_path, batches, list(CIFAR10_CLASSES))
    with pytest.raises(DataFormatError, match=r"data_batch_2\.bin: label 10 outside"):
        load_cifar10(tmp_path)


def test_wrong_number_of_class_names(tmp_path: Path) -> None:
    write_cifar_binary(tmp_path, make_batches(), list(CIFAR10_CLASSES[:9]))
    with pytest.raises(DataFormatError, match=r"batches\.meta\.txt: expected 10 class names"):
        load_cifar10(tmp_path)


def write_cifar_pickles(directory: Path, batches: dict[str, tuple[np.ndarray, np.ndarray]], meta: object) -> Path:
    folder = directory / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, (images, labels) in batches.items():
        content = {b"data": images.reshape(len(images), -1), b"labels": labels.tolist()}
        (folder / name).write_bytes(pickle.dumps(content))
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return folder


def test_pickle_version_requires_opt_in_and_is_not_opened_without_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    write_cifar_pickles(tmp_path, make_batches(), {b"label_names": [RunsCode(marker)]})
    with pytest.raises(DataFormatError, match="allow_pickle=True"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_pickle_version_with_opt_in_matches_binary(tmp_path: Path) -> None:
    batches = make_batches(seed=3)
    names = [n.encode() for n in CIFAR10_CLASSES]
    write_cifar_pickles(tmp_path / "py", batches, {b"label_names": names})
    write_cifar_binary(tmp_path / "bin", batches, list(CIFAR10_CLASSES))
    from_pickle = load_cifar10(tmp_path / "py", allow_pickle=True)
    from_binary = load_cifar10(tmp_path / "bin")
    assert torch.equal(from_pickle.train_x, from_binary.train_x)
    assert torch.equal(from_pickle.test_y, from_binary.test_y)
    assert from_pickle.class_names == CIFAR10_CLASSES
