"""MNIST/Fashion-MNIST loaders: fixture files in the real IDX layout, and the real Debian files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner
from writers import write_idx

from gradattr.cli import app
from gradattr.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, DataFormatError, load_fashion_mnist, load_mnist

TRAIN_PIXELS = np.array([[[0, 255], [51, 204]], [[255, 0], [102, 153]], [[0, 0], [0, 0]]], dtype=np.uint8)
TRAIN_LABELS = np.array([7, 0, 9], dtype=np.uint8)
TEST_PIXELS = np.array([[[255, 255], [0, 51]]], dtype=np.uint8)
TEST_LABELS = np.array([3], dtype=np.uint8)


def write_mnist(directory: Path, suffix: str = ".gz", dotted: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    sep = "." if dotted else "-"
    for prefix, images, labels in (("train", TRAIN_PIXELS, TRAIN_LABELS), ("t10k", TEST_PIXELS, TEST_LABELS)):
        write_idx(directory / f"{prefix}-images{sep}idx3-ubyte{suffix}", images)
        write_idx(directory / f"{prefix}-labels{sep}idx1-ubyte{suffix}", labels)
    return directory


@pytest.mark.parametrize(("suffix", "dotted"), [(".gz", False), ("", False), ("", True)])
def test_mnist_values_and_labels_exact(tmp_path: Path, suffix: str, dotted: bool) -> None:
    data = load_mnist(write_mnist(tmp_path / "mnist", suffix, dotted))
    assert data.name == "mnist"
    assert data.train_x.shape == (3, 1, 2, 2) and data.train_x.dtype == torch.float32
    expected = torch.tensor([[[-1.0, 1.0], [-0.6, 0.6]], [[1.0, -1.0], [-0.2, 0.2]], [[-1.0, -1.0], [-1.0, -1.0]]])
    torch.testing.assert_close(data.train_x[:, 0], expected, rtol=0, atol=1e-6)
    assert data.train_y.tolist() == [7, 0, 9]
    torch.testing.assert_close(data.test_x[0, 0], torch.tensor([[1.0, 1.0], [-1.0, -0.6]]), rtol=0, atol=1e-6)
    assert data.test_y.tolist() == [3]
    assert data.class_names == tuple(str(d) for d in range(10))


def test_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"directory not found: .*nowhere.*train-images-idx3-ubyte\.gz"):
        load_mnist(tmp_path / "nowhere")


def test_missing_label_file_lists_expected_names(tmp_path: Path) -> None:
    directory = write_mnist(tmp_path / "mnist")
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataFormatError, match=r"missing labels file; expected one of t10k-labels-idx1-ubyte\.gz"):
        load_mnist(directory)


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    directory = write_mnist(tmp_path / "mnist")
    write_idx(directory / "train-labels-idx1-ubyte.gz", TRAIN_LABELS[:2])
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte\.gz holds 3 images but .* 2 labels"):
        load_mnist(directory)


def test_label_out_of_range(tmp_path: Path) -> None:
    directory = write_mnist(tmp_path / "mnist")
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", np.array([10], dtype=np.uint8))
    with pytest.raises(DataFormatError, match=r"t10k-labels-idx1-ubyte\.gz: label 10 outside \[0, 10\)"):
        load_mnist(directory)


def test_truncated_real_format_file_names_it(tmp_path: Path) -> None:
    directory = write_mnist(tmp_path / "mnist", suffix="")
    images = directory / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-1])
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte: IDX data truncated"):
        load_mnist(directory)


@pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason=f"{FASHION_MNIST_DIR} absent: apt-get install dataset-fashion-mnist"
)
def test_real_fashion_mnist() -> None:
    data = load_fashion_mnist()
    assert data.train_x.shape == (60_000, 1, 28, 28)
    assert data.test_x.shape == (10_000, 1, 28, 28)
    assert float(data.train_x.min()) == -1.0 and float(data.train_x.max()) == 1.0
    assert float(data.test_x.min()) == -1.0 and float(data.test_x.max()) == 1.0
    assert torch.bincount(data.train_y).tolist() == [6_000] * 10
    assert torch.bincount(data.test_y).tolist() == [1_000] * 10
    assert data.class_names == FASHION_MNIST_CLASSES
    # Every pixel is k/255 mapped to [-1, 1]: the 256 levels, nothing in between.
    levels = torch.unique(data.test_x)
    torch.testing.assert_close(levels, torch.arange(256, dtype=torch.float32) * (2 / 255) - 1, rtol=0, atol=1e-6)


def test_a_truncated_file_fails_reproduce_in_one_line(tmp_path: Path) -> None:
    """The command line reports a damaged IDX file as one line naming it, with exit code 1."""
    directory = write_mnist(tmp_path / "mnist")
    damaged = directory / "t10k-images-idx3-ubyte.gz"
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    result = CliRunner().invoke(
        app, ["reproduce", "--datasets", "mnist", "--mnist", str(directory), "--out", str(tmp_path / "out"),
              "--cache", str(tmp_path / "cache"), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: DataFormatError: ") and f"{damaged}: not a complete gzip file" in line
