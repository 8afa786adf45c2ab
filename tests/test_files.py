"""Result files are written atomically: an error midway leaves the old file and no temporary behind."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from gradattr.files import atomic_path, write_csv, write_text


def test_a_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = write_text(tmp_path / "results.json", "old")
    with pytest.raises(RuntimeError, match="killed"), atomic_path(target) as partial:
        partial.write_text("half a fi", encoding="utf-8")
        raise RuntimeError("killed midway")
    assert target.read_text(encoding="utf-8") == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_success_replaces_and_creates_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "report.html"
    write_text(target, "new ✓")
    assert target.read_text(encoding="utf-8") == "new ✓"
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]


def test_csv_header_and_nan(tmp_path: Path) -> None:
    rows = [{"method": "saliency", "mean": 0.5}, {"method": "deeplift", "mean": math.nan, "count": 3}]
    path = write_csv(tmp_path / "t.csv", rows)
    assert path.read_text(encoding="utf-8").splitlines() == ["method,mean,count", "saliency,0.5,", "deeplift,nan,3"]
    assert (
        write_csv(tmp_path / "e.csv", [], ["dataset", "model"]).read_text(encoding="utf-8").strip() == "dataset,model"
    )
