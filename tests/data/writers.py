"""Writers for the real on-disk formats, to make small fixture files the loaders must read."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, type_code: int = 0x08) -> Path:
    """Write ``array`` as IDX (big-endian header + data), gzip-compressed when ``path`` ends in .gz."""
    big_endian = array.astype(array.dtype.newbyteorder(">"))
    payload = struct.pack(">HBB", 0, type_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += big_endian.tobytes()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def write_cifar_binary(
    directory: Path, batches: dict[str, tuple[np.ndarray, np.ndarray]], class_names: list[str]
) -> Path:
    """Write ``cifar-10-batches-bin`` under ``directory``: per batch, 3,073-byte records of one
    label byte then the R, G and B 32x32 planes; plus ``batches.meta.txt``."""
    folder = directory / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    for name, (images, labels) in batches.items():
        records = np.concatenate([labels.astype(np.uint8)[:, None], images.reshape(len(images), -1)], axis=1)
        (folder / f"{name}.bin").write_bytes(records.astype(np.uint8).tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(class_names) + "\n\n", encoding="utf-8")
    return folder


def write_acl_imdb(directory: Path, reviews: dict[str, dict[str, list[str]]]) -> Path:
    """Write ``aclImdb/{split}/{pos,neg}/{i}_{rating}.txt`` under ``directory``."""
    root = directory / "aclImdb"
    for split, by_label in reviews.items():
        for label, texts in by_label.items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for i, text in enumerate(texts):
                rating = 9 if label == "pos" else 2
                (folder / f"{i}_{rating}.txt").write_text(text, encoding="utf-8")
    return root
