"""CIFAR-10 from its binary distribution (``cifar-10-batches-bin``).

Each ``.bin`` file is a sequence of 3,073-byte records: one label byte, then 1,024 red, 1,024
green and 1,024 blue pixel bytes, each plane a 32x32 image in row-major order. The Python
distribution (``cifar-10-batches-py``) stores pickles, and unpickling can run arbitrary code, so
it is read only when the caller passes ``allow_pickle=True``.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from gradattr.data.dataset import Dataset, labels_tensor, scale_to_symmetric
from gradattr.data.errors import DataFormatError, decode_utf8

IMAGE_SHAPE = (3, 32, 32)
RECORD_BYTES = 1 + 3 * 32 * 32
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def load_cifar10(directory: str | Path, allow_pickle: bool = False) -> Dataset:
    """CIFAR-10 (Krizhevsky, 2009): 50,000 training and 10,000 test colour images, 32x32.

    Args:
        directory: ``cifar-10-batches-bin`` itself or a directory containing it. With
            ``allow_pickle=True``, ``cifar-10-batches-py`` (or its parent) is accepted as well.
        allow_pickle: Permit reading the pickled Python distribution. Only do this for files
            from a source you trust: loading a pickle can execute code.

    Returns:
        A :class:`Dataset` named ``"cifar10"`` with float32 images ``(N, 3, 32, 32)`` in
        ``[-1, 1]``. Class names come from ``batches.meta.txt`` (binary) or ``batches.meta``
        (pickle).

    Raises:
        DataFormatError: Files are missing, a file's size is not a whole number of records, a
            label is out of range, or only the pickled version is present without opt-in.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DataFormatError(
            f"CIFAR-10 directory not found: {directory} (expected cifar-10-batches-bin "
            f"with data_batch_1.bin .. data_batch_5.bin and test_batch.bin)"
        )
    binary = _locate(directory, "cifar-10-batches-bin", "test_batch.bin")
    if binary is not None:
        class_names = _read_meta_txt(binary / "batches.meta.txt")
        train = [_read_binary_batch(binary / f"{b}.bin", len(class_names)) for b in TRAIN_BATCHES]
        test = _read_binary_batch(binary / f"{TEST_BATCH}.bin", len(class_names))
    else:
        pickled = _locate(directory, "cifar-10-batches-py", TEST_BATCH)
        if pickled is None:
            raise DataFormatError(
                f"{directory}: no CIFAR-10 found; expected "
                f"cifar-10-batches-bin/test_batch.bin (binary version) in or below it"
            )
        if not allow_pickle:
            raise DataFormatError(
                f"{pickled}: only the pickled Python version of CIFAR-10 is here; "
                "unpickling can run code, so pass allow_pickle=True if you trust them, "
                "or use the binary version (cifar-10-batches-bin)"
            )
        class_names = _read_meta_pickle(pickled / "batches.meta")
        train = [_read_pickle_batch(pickled / b, len(class_names)) for b in TRAIN_BATCHES]
        test = _read_pickle_batch(pickled / TEST_BATCH, len(class_names))
    train_x = np.concatenate([x for x, _ in train])
    train_y = np.concatenate([y for _, y in train])
    return Dataset(
        name="cifar10",
        train_x=scale_to_symmetric(train_x, 255.0),
        train_y=labels_tensor(train_y),
        test_x=scale_to_symmetric(test[0], 255.0),
        test_y=labels_tensor(test[1]),
        class_names=class_names,
    )


def _locate(directory: Path, folder: str, marker: str) -> Path | None:
    for candidate in (directory, directory / folder):
        if (candidate / marker).is_file():
            return candidate
    return None


def _read_meta_txt(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        raise DataFormatError(f"CIFAR-10 class-name file not found: {path}")
    text = decode_utf8(path.read_bytes(), str(path))
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != len(CIFAR10_CLASSES):
        raise DataFormatError(f"{path}: expected {len(CIFAR10_CLASSES)} class names, one per line, found {len(names)}")
    return names


def _read_binary_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataFormatError(f"CIFAR-10 batch not found: {path}")
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % RECORD_BYTES:
        raise DataFormatError(
            f"{path}: size {raw.size} bytes is not a positive multiple of the "
            f"{RECORD_BYTES}-byte CIFAR-10 record (1 label byte + 3x32x32 pixels)"
        )
    records = raw.reshape(-1, RECORD_BYTES)
    return _checked(path, records[:, 1:].reshape(-1, *IMAGE_SHAPE), records[:, 0], num_classes)


def _read_meta_pickle(path: Path) -> tuple[str, ...]:
    meta = _unpickle(path)
    names = meta.get(b"label_names")
    if not isinstance(names, list) or len(names) != len(CIFAR10_CLASSES):
        raise DataFormatError(f"{path}: expected a dict with {len(CIFAR10_CLASSES)} b'label_names'")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _read_pickle_batch(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataFormatError(f"{path}: expected b'data' to be a uint8 array of shape (N, 3072)")
    if labels is None or len(labels) != len(data):
        raise DataFormatError(f"{path}: expected b'labels' with one label per row of b'data'")
    return _checked(path, data.reshape(-1, *IMAGE_SHAPE), np.asarray(labels, dtype=np.int64), num_classes)


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataFormatError(f"CIFAR-10 file not found: {path}")
    try:
        with path.open("rb") as stream:
            content = pickle.load(stream, encoding="bytes")  # the caller opted in with allow_pickle
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
        raise DataFormatError(f"{path}: not a readable CIFAR-10 pickle ({error})") from error
    if not isinstance(content, dict):
        raise DataFormatError(f"{path}: expected a pickled dict, got {type(content).__name__}")
    return content


def _checked(path: Path, images: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if labels.size and int(labels.max()) >= num_classes:
        raise DataFormatError(f"{path}: label {int(labels.max())} outside [0, {num_classes})")
    return images, labels
