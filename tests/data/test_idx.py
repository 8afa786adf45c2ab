"""IDX reader on files written here in the real format."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from writers import write_idx

from gradattr.data import DataFormatError, read_idx


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_reads_uint8_images_exactly(tmp_path: Path, suffix: str) -> None:
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    path = write_idx(tmp_path / f"images-idx3-ubyte{suffix}", images)
    result = read_idx(path)
    assert result.dtype == np.uint8
    assert result.shape == (2, 3, 4)
    np.testing.assert_array_equal(result, images)


@pytest.mark.parametrize(
    ("dtype", "code"), [(np.int16, 0x0B), (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E), (np.int8, 0x09)]
)
def test_reads_every_idx_type_big_endian(tmp_path: Path, dtype: type, code: int) -> None:
    values = np.array([[-3, 0, 7], [100, -100, 1]], dtype=dtype)
    result = read_idx(write_idx(tmp_path / "values.idx", values, code))
    assert result.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(result, values)


def test_truncated_data_names_file_and_expected_size(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataFormatError, match=r"train-images-idx3-ubyte.*truncated.*48 bytes, found 43"):
        read_idx(path)


def test_trailing_bytes_are_rejected(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels-idx1-ubyte", np.zeros(4, dtype=np.uint8))
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DataFormatError, match="trailing bytes"):
        read_idx(path)


def test_bad_magic_number(tmp_path: Path) -> None:
    path = tmp_path / "not-idx"
    path.write_bytes(b"PK\x03\x04" + bytes(20))
    with pytest.raises(DataFormatError, match=r"not-idx: bad IDX magic number 0x504b0304"):
        read_idx(path)


def test_truncated_header(tmp_path: Path) -> None:
    path = tmp_path / "short-header"
    path.write_bytes(struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">I", 5))
    with pytest.raises(DataFormatError, match=r"short-header: truncated IDX header; expected 3 dimension"):
        read_idx(path)


def test_corrupted_gzip_names_file(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.ones((10, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataFormatError, match=r"t10k-images-idx3-ubyte\.gz: not a complete gzip file"):
        read_idx(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="IDX file not found"):
        read_idx(tmp_path / "absent.gz")
