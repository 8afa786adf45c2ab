"""A memory budget for every forward/backward pass gradattr runs, and one retry on out-of-memory.

Methods evaluate many rows at once: IG's interpolation steps, SmoothGrad's noisy copies, occlusion windows,
Shapley orderings, Sensitivity-n subsets — all as rows of large batches. Two limits decide how many rows go
through the model together:

* speed: the methods batch copies up to a few hundred thousand input elements (cache-friendly);
* memory: at most ``budget // bytes_per_row`` rows, where ``bytes_per_row`` is measured once per model and
  input shape (tensors autograd saves for one extra row, plus the row itself, doubled for the backward
  pass), and the budget is :func:`set_max_memory`'s, :func:`memory_budget`'s, or by default a quarter of the
  available RAM (CPU) or half the free memory of the inputs' GPU.

Rows are only split, never changed, so chunked results equal unchunked ones up to float summation order.
If a pass still runs out of memory, its rows are split in half and retried (with a warning), down to one row.
"""

from __future__ import annotations

import math
import os
import re
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor, nn

MemoryLimit = int | str | None
"""Bytes as an int, a string such as ``"512MB"`` or ``"2 GiB"``, or ``None`` (the default budget)."""

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip
_default_limit: int | None = None
_limit: ContextVar[int | None] = ContextVar("gradattr_memory_limit", default=None)
_row_bytes: weakref.WeakKeyDictionary[nn.Module, dict[tuple, int]] = weakref.WeakKeyDictionary()
_warned_oom = False


def parse_memory(limit: MemoryLimit) -> int | None:
    """Bytes from an int or a string like ``"1.5GB"``/``"512 MiB"``; ``None`` stays ``None``."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, (int, str)):
        raise TypeError(f"max_memory must be bytes (int), a string like '2GB', or None; got {limit!r}")
    if isinstance(limit, int):
        value = limit
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", limit)
        if match is None or match.group(2).lower() not in _UNITS:
            raise ValueError(f"max_memory {limit!r} is not a size like '512MB' or '2GiB'")
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value < 1:
        raise ValueError(f"max_memory must be positive, got {limit!r}")
    return value


def set_max_memory(limit: MemoryLimit) -> None:
    """Set the process-wide memory budget of every later call (``None``: back to the default); a
    :func:`memory_budget` block or ``max_memory=`` overrides it for one thread's calls."""
    global _default_limit
    _default_limit = parse_memory(limit)


@contextmanager
def memory_budget(limit: MemoryLimit) -> Iterator[None]:
    """Use ``limit`` as the budget inside the ``with`` block (``None``: keep the current one). The setting is a
    context variable: it holds for this thread (or asyncio task) only, so concurrent calls keep their own."""
    token = _limit.set(parse_memory(limit)) if limit is not None else None
    try:
        yield
    finally:
        if token is not None:
            _limit.reset(token)


def budget(device: torch.device) -> int:
    """The budget in bytes for passes on ``device``: the configured one, or the default."""
    limit = _limit.get()
    if limit is None:
        limit = _default_limit
    if limit is not None:
        return limit
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    return _available_ram() // 4


_RAM_CACHE: list[float] = [-1.0, 0.0]
"""[time of the last reading, bytes]: available RAM is read at most once a second (every call asks)."""


def _available_ram() -> int:
    """MemAvailable of /proc/meminfo (at most one reading a second), or the free physical pages where that
    file does not exist."""
    now = time.monotonic()
    if now - _RAM_CACHE[0] > 1.0:
        _RAM_CACHE[:] = [now, float(_read_available_ram())]
    return int(_RAM_CACHE[1])


def _read_available_ram() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def bytes_per_row(model: nn.Module, run: Callable[[int], Tensor], key: tuple, probe: tuple[int, int] = (2, 4)) -> int:
    """Estimated memory of one more row through ``model``: ``run(rows)`` performs a forward pass of that many
    rows with gradients; the growth of the tensors autograd saves (plus the output) from ``probe[0]`` to
    ``probe[1]`` rows, per row, doubled for the backward pass. Cached per model and ``key`` (input shapes,
    dtype, device)."""
    cached = _row_bytes.setdefault(model, {})
    if key not in cached:
        low, high = probe
        growth = _saved_bytes(run, high) - _saved_bytes(run, low)
        cached[key] = max(1, 2 * growth // (high - low))
    return cached[key]


def _saved_bytes(run: Callable[[int], Tensor], rows: int) -> int:
    total = 0

    def pack(tensor: Tensor) -> Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        output = run(rows)
    return total + output.numel() * output.element_size()


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (CUDA OOM, CPU allocator, ``MemoryError``)."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    message = str(error)
    return isinstance(error, RuntimeError) and ("out of memory" in message or "can't allocate memory" in message)


def in_row_chunks(rows: int, limit: int, work: Callable[[slice], Tensor | tuple[Tensor, ...]]) -> list:
    """``work(slice)`` over consecutive row ranges of at most ``limit`` rows; a range that runs out of memory
    is halved and retried (one warning per process), down to single rows. Returns the results in order."""
    global _warned_oom
    results, start, size = [], 0, max(1, min(limit, rows))
    while start < rows:
        stop = min(start + size, rows)
        try:
            results.append(work(slice(start, stop)))
        except Exception as error:
            if not is_out_of_memory(error) or stop - start == 1:
                raise
            size = max(1, (stop - start) // 2)
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if not _warned_oom:
                _warned_oom = True
                warnings.warn(
                    f"out of memory on {stop - start} rows; retrying with {size} rows per pass (set a smaller "
                    "budget with gradattr.set_max_memory or max_memory= to avoid the retry)",
                    ResourceWarning,
                    stacklevel=2,
                )
            continue
        start = stop
    return results


ACTIVATION_FACTOR = 1000
"""Bound on a row's activation memory as a multiple of its input size, below which a pass is assumed to fit
(deep CNNs on images store a few hundred times their input): passes under ``budget / ACTIVATION_FACTOR`` of
input skip the measuring pass."""


def might_exceed_budget(points: tuple[Tensor, ...]) -> bool:
    """Whether a pass over ``points`` could come near the budget, judged by the size of its inputs."""
    size = sum(p.numel() * p.element_size() for p in points)
    return size * ACTIVATION_FACTOR > budget(points[0].device)


def row_limit(model: nn.Module, points: tuple[Tensor, ...], run: Callable[[int], Tensor]) -> int:
    """Rows per pass allowed by the budget for ``points`` (K rows each) through ``model``."""
    key = tuple((tuple(p.shape[1:]), p.dtype, str(p.device)) for p in points)
    per_row = bytes_per_row(model, run, key)
    return max(1, math.floor(budget(points[0].device) / per_row))
