"""The Large Movie Review Dataset (Maas et al., 2011) from its ``aclImdb`` folder layout."""

from __future__ import annotations

from pathlib import Path

from gradattr.data.dataset import TextDataset
from gradattr.data.errors import DataFormatError, decode_utf8
from gradattr.data.text import build_text_dataset

IMDB_CLASSES: tuple[str, ...] = ("negative", "positive")
_LABEL_FOLDERS = ("neg", "pos")  # index = class


def load_imdb(
    directory: str | Path, *, max_len: int = 400, min_freq: int = 2, max_size: int | None = 20_000
) -> TextDataset:
    """IMDB sentiment from ``aclImdb/{train,test}/{neg,pos}/*.txt``; ``neg`` is class 0.

    ``directory`` is ``aclImdb`` itself or its parent. Unlabelled reviews (``train/unsup``) are
    ignored. Files are read in sorted name order so the result is deterministic.

    Returns:
        A :class:`TextDataset` named ``"imdb"`` with int64 ids ``(N, max_len)``
        (25,000 + 25,000 reviews for the real data set).

    Raises:
        DataFormatError: The layout is missing or a label folder holds no ``.txt`` file.
    """
    directory = Path(directory)
    root = directory if (directory / "train").is_dir() else directory / "aclImdb"
    splits: dict[str, tuple[list[str], list[int]]] = {}
    for split in ("train", "test"):
        texts: list[str] = []
        labels: list[int] = []
        for label, folder in enumerate(_LABEL_FOLDERS):
            path = root / split / folder
            if not path.is_dir():
                raise DataFormatError(
                    f"IMDB folder not found: {path} (expected the aclImdb layout "
                    f"{{train,test}}/{{pos,neg}}/*.txt under {directory})"
                )
            files = sorted(path.glob("*.txt"))
            if not files:
                raise DataFormatError(f"{path}: no review .txt files")
            texts.extend(decode_utf8(f.read_bytes(), str(f)) for f in files)
            labels.extend([label] * len(files))
        splits[split] = (texts, labels)
    return build_text_dataset(
        "imdb", *splits["train"], *splits["test"], IMDB_CLASSES, max_len=max_len, min_freq=min_freq, max_size=max_size
    )
