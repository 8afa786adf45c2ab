"""MNIST and Fashion-MNIST from the four standard IDX files in a directory."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gradattr.data.dataset import Dataset, labels_tensor, scale_to_symmetric
from gradattr.data.errors import DataFormatError
from gradattr.data.idx import read_idx

#: Where Debian's ``dataset-fashion-mnist`` package installs the files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

MNIST_CLASSES: tuple[str, ...] = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_SPLIT_PREFIX = {"train": "train", "test": "t10k"}


def load_mnist(directory: str | Path) -> Dataset:
    """MNIST handwritten digits from ``directory`` (see :func:`load_idx_dataset`)."""
    return load_idx_dataset(directory, name="mnist", class_names=MNIST_CLASSES)


def load_fashion_mnist(directory: str | Path = FASHION_MNIST_DIR) -> Dataset:
    """Fashion-MNIST (Xiao et al., 2017) from ``directory``, by default where Debian's
    ``dataset-fashion-mnist`` package puts it (see :func:`load_idx_dataset`)."""
    return load_idx_dataset(directory, name="fashion-mnist", class_names=FASHION_MNIST_CLASSES)


def load_idx_dataset(directory: str | Path, name: str, class_names: tuple[str, ...]) -> Dataset:
    """Read the MNIST-layout files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``.

    The older dotted names (``train-images.idx3-ubyte``) are accepted too. Pixels ``0..255``
    are scaled to ``[-1, 1]``.

    Returns:
        A :class:`Dataset` with float32 images ``(N, 1, H, W)`` (60,000 + 10,000 of 28x28 for
        the real data sets) and int64 labels.

    Raises:
        DataFormatError: The directory or a file is missing, a file is corrupt, or images and
            labels disagree in count, shape or range.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataFormatError(
            f"{name}: directory not found: {directory} (expected the four IDX files "
            f"train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)"
        )
    splits = {split: _read_split(directory, prefix, len(class_names)) for split, prefix in _SPLIT_PREFIX.items()}
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["test"]
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DataFormatError(f"{directory}: train images are {train_x.shape[1:]} but test images {test_x.shape[1:]}")
    return Dataset(
        name=name,
        train_x=scale_to_symmetric(train_x[:, None], 255.0),
        train_y=labels_tensor(train_y),
        test_x=scale_to_symmetric(test_x[:, None], 255.0),
        test_y=labels_tensor(test_y),
        class_names=class_names,
    )


def _read_split(directory: Path, prefix: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    images_path = _find(directory, prefix, "images", 3)
    labels_path = _find(directory, prefix, "labels", 1)
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataFormatError(
            f"{images_path}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataFormatError(f"{labels_path}: expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DataFormatError(f"{images_path} holds {len(images)} images but {labels_path} {len(labels)} labels")
    if labels.size and int(labels.max()) >= num_classes:
        raise DataFormatError(f"{labels_path}: label {int(labels.max())} outside [0, {num_classes})")
    return images, labels


def _find(directory: Path, prefix: str, kind: str, ndim: int) -> Path:
    stems = (f"{prefix}-{kind}-idx{ndim}-ubyte", f"{prefix}-{kind}.idx{ndim}-ubyte")
    candidates = [directory / f"{stem}{suffix}" for stem in stems for suffix in (".gz", "")]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise DataFormatError(f"{directory}: missing {kind} file; expected one of {', '.join(c.name for c in candidates)}")
