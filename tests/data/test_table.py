"""CSV/TSV text tables with named text and label columns."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gradattr.data import DataFormatError, load_text_table


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_separate_test_file(tmp_path: Path) -> None:
    train = write(
        tmp_path / "train.csv",
        'id,review,sentiment\n1,"Great, really great",pos\n2,"Bad ""awful"" stuff",neg\n3,great again,pos\n',
    )
    test = write(tmp_path / "test.csv", 'id,review,sentiment\n9,"multi\nline great",neg\n')
    data = load_text_table(train, "review", "sentiment", test_path=test, min_freq=1, max_len=4)
    assert data.name == "train" and data.class_names == ("neg", "pos")  # sorted distinct labels
    assert data.train_y.tolist() == [1, 0, 1] and data.test_y.tolist() == [0]
    assert data.train_texts[1] == 'Bad "awful" stuff'
    assert data.vocab.decode(data.train_x[0]) == ["great", "really", "great"]
    assert data.vocab.decode(data.test_x[0]) == ["<unk>", "<unk>", "great"]


def test_tsv_delimiter_class_order_and_skipped_labels(tmp_path: Path) -> None:
    rows = "".join(f"text {i} {'good' if i % 2 else 'bad'}\t{'positive' if i % 2 else 'negative'}\n" for i in range(20))
    path = write(tmp_path / "reviews.tsv", "text\tlabel\n" + rows + "meh\tneutral\n")
    data = load_text_table(
        path, class_names=("positive", "negative"), skip_labels={"neutral"}, test_fraction=0.25, seed=1
    )
    assert data.class_names == ("positive", "negative")
    assert len(data.train_y) == 15 and len(data.test_y) == 5
    for texts, labels in ((data.train_texts, data.train_y), (data.test_texts, data.test_y)):
        for text, label in zip(texts, labels.tolist(), strict=True):
            assert text.endswith("good") == (label == 0)
    again = load_text_table(path, class_names=("positive", "negative"), skip_labels={"neutral"}, seed=1)
    assert torch.equal(again.test_x, data.test_x)  # the split is fixed by the seed
    assert "meh" not in data.train_texts + data.test_texts


def test_unknown_label_is_an_error_not_a_silent_drop(tmp_path: Path) -> None:
    path = write(tmp_path / "t.tsv", "text\tlabel\na\tpositive\nb\tneutral\n")
    with pytest.raises(DataFormatError, match=r"t\.tsv: label\(s\) \['neutral'\] are not among the classes"):
        load_text_table(path, class_names=("negative", "positive"), test_path=path)


def test_missing_column_and_missing_file(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "body,label\nx,1\n")
    with pytest.raises(DataFormatError, match=r"t\.csv: missing column\(s\) \['text'\]"):
        load_text_table(path)
    with pytest.raises(DataFormatError, match="text table not found"):
        load_text_table(tmp_path / "none.csv")


def test_short_row(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", "text,label\nfine,1\nbroken\n")
    with pytest.raises(DataFormatError, match=r"t\.csv: line 3 has fewer fields"):
        load_text_table(path, test_path=path)


def test_malformed_quoting(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", 'text,label\n"unterminated,1\n')
    with pytest.raises(DataFormatError, match=r"t\.csv: malformed table near line"):
        load_text_table(path, test_path=path)
