"""IMDB loader on a fixture in the real ``aclImdb`` layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from writers import write_acl_imdb

from gradattr.data import DataFormatError, load_imdb

REVIEWS = {
    "train": {
        "pos": ["A wonderful film.<br /><br />Loved it", "wonderful acting"],
        "neg": ["Dull film, dull plot", "not wonderful"],
    },
    "test": {"pos": ["wonderful"], "neg": ["dull and boring"]},
}


@pytest.mark.parametrize("use_parent", [True, False])
def test_imdb_texts_labels_and_ids(tmp_path: Path, use_parent: bool) -> None:
    root = write_acl_imdb(tmp_path, REVIEWS)
    (root / "train" / "unsup").mkdir()
    (root / "train" / "unsup" / "0_0.txt").write_text("unlabelled", encoding="utf-8")
    data = load_imdb(tmp_path if use_parent else root, max_len=6, min_freq=2)
    # neg files first (class 0), each folder in sorted name order
    assert data.train_y.tolist() == [0, 0, 1, 1]
    assert data.train_texts == (
        "Dull film, dull plot",
        "not wonderful",
        "A wonderful film. Loved it",
        "wonderful acting",
    )
    assert data.vocab.tokens == ("<pad>", "<unk>", "wonderful", "dull", "film")
    assert data.vocab.decode(data.train_x[0]) == ["dull", "film", "dull", "<unk>"]
    assert data.test_y.tolist() == [0, 1]
    assert data.test_x.tolist() == [[0, 0, 0, 3, 1, 1], [0, 0, 0, 0, 0, 2]]
    assert data.class_names == ("negative", "positive")
    assert "unlabelled" not in data.train_texts


def test_imdb_missing_folder(tmp_path: Path) -> None:
    root = write_acl_imdb(tmp_path, {"train": REVIEWS["train"], "test": {"pos": ["x"]}})
    with pytest.raises(DataFormatError, match=r"IMDB folder not found: .*test.neg"):
        load_imdb(root)


def test_imdb_empty_label_folder(tmp_path: Path) -> None:
    write_acl_imdb(tmp_path, {"train": {"pos": [], "neg": ["x"]}, "test": REVIEWS["test"]})
    with pytest.raises(DataFormatError, match=r"train.pos: no review \.txt files"):
        load_imdb(tmp_path)
