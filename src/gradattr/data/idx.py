"""Reader for the IDX format of MNIST and Fashion-MNIST, gzip-compressed or not.

An IDX file is a big-endian header -- two zero bytes, a type code, the number of dimensions
``d`` and then ``d`` unsigned 32-bit sizes -- followed by the array in C order.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from gradattr.data.errors import DataFormatError

#: IDX type code -> big-endian numpy dtype.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` is decompressed) into an array of its stored shape and type.

    Raises:
        DataFormatError: The file is missing, not gzip when named ``.gz``, has a bad magic
            number or type code, or holds fewer or more bytes than its header announces.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"IDX file not found: {path}")
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataFormatError(f"{path}: {len(raw)} bytes is too short for an IDX header (4-byte magic number)")
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in IDX_DTYPES or ndim == 0:
        raise DataFormatError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()}; expected 0x0000, a type "
            f"code in {sorted(hex(c) for c in IDX_DTYPES)} and at least one dimension"
        )
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise DataFormatError(
            f"{path}: truncated IDX header; expected {ndim} dimension sizes "
            f"({header_len} header bytes), found {len(raw)} bytes"
        )
    dims = struct.unpack(f">{ndim}I", raw[4:header_len])
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header_len
    if found != expected:
        problem = "truncated" if found < expected else "has trailing bytes"
        raise DataFormatError(
            f"{path}: IDX data {problem}; header announces shape {dims} of {dtype.name} "
            f"= {expected} bytes, found {found}"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(dims)
    return array.astype(dtype.newbyteorder("="))


def _read_bytes(path: Path) -> bytes:
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataFormatError(f"{path}: not a complete gzip file ({error})") from error
