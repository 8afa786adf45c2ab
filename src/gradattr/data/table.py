"""Labelled texts from a CSV or TSV file with named text and label columns."""

from __future__ import annotations

import csv
import sys
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path

from sklearn.model_selection import train_test_split

from gradattr.data.dataset import TextDataset
from gradattr.data.errors import DataFormatError
from gradattr.data.text import build_text_dataset

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long reviews exceed csv's 128 KiB default


def read_labelled_rows(
    lines: Iterable[str], source: str, text_column: str, label_column: str, delimiter: str
) -> list[tuple[str, str]]:
    """``(text, raw_label)`` of every row of a delimited table with a header line.

    Args:
        lines: The table's lines, e.g. an open text file (quoted fields may span lines).
        source: Name of the table used in error messages, usually its path.
        text_column, label_column: Header names of the two columns to read.
        delimiter: Field separator, ``","`` or ``"\\t"``.

    Raises:
        DataFormatError: A column is missing, a row is too short, or quoting is malformed.
    """
    reader = csv.DictReader(lines, delimiter=delimiter, strict=True)
    rows = []
    try:
        header = reader.fieldnames or []
        missing = [c for c in (text_column, label_column) if c not in header]
        if missing:
            raise DataFormatError(f"{source}: missing column(s) {missing}; the header has {header}")
        for row in reader:
            text, label = row[text_column], row[label_column]
            if text is None or label is None:
                raise DataFormatError(f"{source}: line {reader.line_num} has fewer fields than the header")
            rows.append((text, label.strip()))
    except UnicodeDecodeError as error:
        raise DataFormatError(f"{source}: not UTF-8 text near line {reader.line_num} ({error.reason})") from None
    except csv.Error as error:
        raise DataFormatError(f"{source}: malformed table near line {reader.line_num} ({error})") from error
    return rows


def load_text_table(
    train_path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    *,
    test_path: str | Path | None = None,
    test_fraction: float = 0.25,
    seed: int = 0,
    delimiter: str | None = None,
    class_names: Sequence[str] | None = None,
    skip_labels: Collection[str] = (),
    name: str | None = None,
    max_len: int = 200,
    min_freq: int = 2,
    max_size: int | None = 20_000,
) -> TextDataset:
    """A text classification data set from one table (split here) or a train and a test table.

    Args:
        train_path: CSV/TSV file with a header line.
        text_column, label_column: Header names of the text and the label columns.
        test_path: Optional separate test table with the same columns. Without it, a stratified
            ``test_fraction`` of ``train_path`` is held out, fixed by ``seed``.
        delimiter: Field separator; by default ``"\\t"`` for ``.tsv``/``.tab`` files, else ``","``.
        class_names: The label values in class-index order. By default the sorted distinct
            labels of the training rows.
        skip_labels: Label values whose rows are dropped (e.g. ``{"neutral"}``). Any other label
            not in ``class_names`` is an error rather than silently dropped.
        name: Data set name; defaults to the training file's stem.
        max_len, min_freq, max_size: See :func:`build_text_dataset`.

    Returns:
        A :class:`TextDataset` with int64 token ids ``(N, max_len)``.
    """
    train_path = Path(train_path)
    train_rows = _read(train_path, text_column, label_column, delimiter, skip_labels)
    if class_names is None:
        class_names = sorted({label for _, label in train_rows})
    train_labels = _indices(train_rows, class_names, train_path)
    if test_path is None:
        texts = [text for text, _ in train_rows]
        train_texts, test_texts, train_y, test_y = train_test_split(
            texts, train_labels, test_size=test_fraction, random_state=seed, stratify=train_labels
        )
    else:
        test_path = Path(test_path)
        test_rows = _read(test_path, text_column, label_column, delimiter, skip_labels)
        train_texts, train_y = [text for text, _ in train_rows], train_labels
        test_texts, test_y = [text for text, _ in test_rows], _indices(test_rows, class_names, test_path)
    return build_text_dataset(
        name or train_path.stem,
        train_texts,
        train_y,
        test_texts,
        test_y,
        class_names,
        max_len=max_len,
        min_freq=min_freq,
        max_size=max_size,
    )


def _read(
    path: Path, text_column: str, label_column: str, delimiter: str | None, skip_labels: Collection[str]
) -> list[tuple[str, str]]:
    if not path.is_file():
        raise DataFormatError(f"text table not found: {path}")
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() in {".tsv", ".tab"} else ","
    with path.open(newline="", encoding="utf-8") as stream:
        rows = read_labelled_rows(stream, str(path), text_column, label_column, delimiter)
    return [(text, label) for text, label in rows if label not in skip_labels]


def _indices(rows: list[tuple[str, str]], class_names: Sequence[str], path: Path) -> list[int]:
    index = {label: i for i, label in enumerate(class_names)}
    unknown = sorted({label for _, label in rows if label not in index})
    if unknown:
        raise DataFormatError(
            f"{path}: label(s) {unknown[:10]} are not among the classes "
            f"{list(class_names)}; "
            f"list them in class_names or skip_labels"
        )
    return [index[label] for _, label in rows]
