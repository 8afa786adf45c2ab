"""Shared pieces of the peer scripts in benchmarks/peers/ and benchmarks/bench_transformers.py.

Timing (median of repeats after a warm-up call), a header naming the machine, versions and the gradattr checkout,
markdown tables, child processes that hand back one JSON line, probes that record the relevance x ⊙ ∂S/∂x at every
module output of a forward/backward pass, and short error texts for table cells.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn


def cell_error(exc: BaseException, width: int = 110) -> str:
    """``"UnsupportedOperationError: 'torch.softmax' in module ..."``: one line, at most ``width`` characters."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    line = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return line if len(line) <= width else line[: width - 1] + "…"


def timed(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, list[float], Any]:
    """(median seconds, all seconds, the last result) of ``repeats`` calls after ``warmup`` untimed ones."""
    result = None
    for _ in range(warmup):
        result = fn()
    seconds: list[float] = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), seconds, result


def version(package: str) -> str:
    """The installed version of ``package``, or ``"not installed"``."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def gradattr_checkout() -> str:
    """Where gradattr is imported from, its commit and whether its source has uncommitted changes."""
    try:
        import gradattr
    except Exception as exc:
        return f"gradattr does not import ({cell_error(exc)})"
    src = Path(gradattr.__file__).resolve().parent
    if os.environ.get("GRADATTR_SOURCE"):  # e.g. a `git archive` of a commit, which has no .git to ask
        return f"{src}: {os.environ['GRADATTR_SOURCE']}"
    try:
        head = subprocess.run(
            ["git", "-C", str(src), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"{src} (not a git checkout)"
    return f"{src} at {head[:90]}" + (" + uncommitted changes in src" if dirty else "")


def cpu_model() -> str:
    """The CPU's model name (Linux), else ``platform.processor()``."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def header(title: str, packages: Sequence[str]) -> list[str]:
    """Lines naming the date, machine, load, torch threads, package versions and the gradattr checkout."""
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    versions = ", ".join(f"{p} {version(p)}" for p in packages)
    return [
        f"# {title}",
        "",
        f"- date: {datetime.datetime.now().isoformat(timespec='seconds')}; python {platform.python_version()} "
        f"({sys.executable})",
        f"- machine: {cpu_model()}, {os.cpu_count()} cores, load average {load}, torch threads "
        f"{torch.get_num_threads()}",
        f"- versions: {versions}",
        f"- gradattr: {gradattr_checkout()}",
        "",
    ]


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A markdown table (``|`` in cells escaped)."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """The rows as aligned plain text on stdout."""
    text = [[str(c) for c in columns]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in text) for i in range(len(columns))]
    for i, r in enumerate(text):
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def fmt(value: float | None, spec: str = ".3g", missing: str = "-") -> str:
    """``value`` formatted, or ``missing`` for None/NaN."""
    if value is None or (isinstance(value, float) and value != value):
        return missing
    return format(value, spec)


def run_child(command: list[str], timeout: float, cwd: Path | None = None) -> tuple[dict[str, Any] | None, str]:
    """Run ``command``; (the JSON of its last ``RESULT {...}`` line, "") or (None, why it gave none)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        tail = [line for line in done.stderr.strip().splitlines() if line.strip()]
        return None, (tail[-1] if tail else f"exit status {done.returncode}")[:300]
    return json.loads(lines[-1].removeprefix("RESULT ")), ""


def emit(result: dict[str, Any]) -> None:
    """Hand ``result`` back to the parent (see :func:`run_child`)."""
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------------
# Probes: relevance x ⊙ g at every module output
# --------------------------------------------------------------------------------------------------


def _first_tensor(output: Any) -> Tensor | None:
    if isinstance(output, Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    if hasattr(output, "last_hidden_state") and isinstance(output.last_hidden_state, Tensor):
        return output.last_hidden_state
    return None


@dataclass
class _Forward:
    outputs: dict[str, Tensor] = field(default_factory=dict)
    grads: dict[str, Tensor] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)


class Probe:
    """Records, for each call of each named submodule, its (first) output tensor and the gradient that the
    backward pass sends into it — whatever rules that backward pass applies (LXT's patched autograd functions or
    gradattr's engine). ``relevance()`` gives out ⊙ grad per call of the last forward pass that received
    gradients, keyed ``"name"`` (``"name#k"`` for the k-th further call of a reused module), in forward order.

    Hooks are registered with torch functions disabled, so a ``TorchFunctionMode`` around the forward pass does
    not see them; every hook is removed by ``close()``.
    """

    def __init__(self, model: nn.Module, skip: Callable[[str, nn.Module], bool] | None = None) -> None:
        self.forwards: list[_Forward] = []
        self.handles: list[Any] = []
        self.calls: dict[str, int] = {}
        self.handles.append(model.register_forward_pre_hook(self._start))
        for name, module in model.named_modules():
            if name and not (skip and skip(name, module)):
                self.handles.append(module.register_forward_hook(self._hook(name)))

    def _start(self, _module: nn.Module, _args: Any) -> None:
        self.forwards.append(_Forward())
        self.calls = {}

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            if not self.forwards:
                return
            with torch._C.DisableTorchFunction():
                tensor = _first_tensor(output)
                if tensor is None or not tensor.is_floating_point() or not tensor.requires_grad:
                    return
                count = self.calls.get(name, 0)
                self.calls[name] = count + 1
                key = name if count == 0 else f"{name}#{count}"
                record = self.forwards[-1]
                record.outputs[key] = tensor.detach().clone()
                record.order.append(key)

                def keep(grad: Tensor) -> None:
                    with torch._C.DisableTorchFunction():
                        record.grads[key] = grad.detach().clone()

                tensor.register_hook(keep)

        return hook

    def relevance(self) -> dict[str, Tensor]:
        """out ⊙ grad per module call of the last forward pass that received gradients, in forward order."""
        for record in reversed(self.forwards):
            if record.grads:
                return {k: record.outputs[k] * record.grads[k] for k in record.order if k in record.grads}
        return {}

    def close(self) -> None:
        """Remove every hook."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def relative_difference(value: Tensor, reference: Tensor) -> float:
    """max|value − reference| / max|reference| in float64; inf for a shape mismatch or a non-finite map, 0 where
    both are zero."""
    if value.shape != reference.shape:
        return math.inf
    a, b = value.detach().double(), reference.detach().double()
    diff, scale = (a - b).abs().max().item(), b.abs().max().item()
    if not math.isfinite(diff) or not math.isfinite(scale):
        return math.inf
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def compare_probes(ours: dict[str, Tensor], theirs: dict[str, Tensor]) -> list[dict[str, Any]]:
    """Per module call present on both sides with the same shape, in forward order (``theirs``' order):
    max|ours − theirs| / max|theirs| and the two sums."""
    rows = []
    for key, ref in theirs.items():
        mine = ours.get(key)
        if mine is None or mine.shape != ref.shape:
            continue
        rows.append(
            {
                "module": key,
                "rel": relative_difference(mine, ref),
                "sum_theirs": ref.sum().item(),
                "sum_ours": mine.sum().item(),
                "shape": list(ref.shape),
            }
        )
    return rows
