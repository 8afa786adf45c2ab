"""``benchmarks/zoo.py --smoke``: every method once on tiny models (a hand-written CNN, HF GPT-2 and BERT configs),
every map finite and gradattr agreeing with Captum where both compute the same quantity. No timing."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "benchmarks" / "zoo.py"

for _module in ("captum", "transformers"):
    if importlib.util.find_spec(_module) is None:
        pytest.skip(f"{_module} is not installed (benchmarks/zoo.py --smoke needs it)", allow_module_level=True)


def load_zoo() -> ModuleType:
    """benchmarks/zoo.py as a module (under another name: tests/zoo.py is a different module)."""
    spec = importlib.util.spec_from_file_location("benchmarks_zoo", ZOO)
    assert spec is not None and spec.loader is not None
    if "benchmarks_zoo" in sys.modules:
        return sys.modules["benchmarks_zoo"]
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmarks_zoo"] = module  # dataclasses look their module up there
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # zoo.py puts benchmarks/ first; tests/zoo.py must stay the `zoo` of other tests
    return module


def test_smoke_runs_and_agrees_with_captum() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(ZOO), "--smoke", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert done.returncode == 0, f"zoo.py --smoke failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "every map finite" in done.stdout


def test_comparison_rejects_a_perturbed_map() -> None:
    zoo = load_zoo()
    gen = torch.Generator().manual_seed(0)
    ours = torch.randn(2, 3, 8, 8, generator=gen)
    ok, _ = zoo.agrees(ours, ours.clone())
    assert ok
    ok, message = zoo.agrees(ours, ours + 1e-6 * ours.abs().max())  # within 1e-4 relative
    assert ok, message
    perturbed = ours.clone()
    perturbed[0, 0, 0, 0] += 1e-3 * ours.abs().max()
    ok, message = zoo.agrees(ours, perturbed)
    assert not ok and "1.00e-03" in message
    ok, message = zoo.agrees(ours, ours.flatten())
    assert not ok and "shapes differ" in message
    ok, _ = zoo.agrees(ours, torch.full_like(ours, float("nan")))
    assert not ok


def test_results_section_replaces_only_between_markers(tmp_path: Path) -> None:
    zoo = load_zoo()
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\nkept\n")
    zoo.replace_section(path, f"{zoo.START}\nfirst\n{zoo.END}")
    zoo.replace_section(path, f"{zoo.START}\nsecond\n{zoo.END}")
    text = path.read_text()
    assert text.startswith("# Results\n\nkept\n") and "second" in text and "first" not in text
    assert text.count(zoo.START) == 1 and text.count(zoo.END) == 1


def test_smoke_fails_on_a_disagreeing_peer(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The smoke's exit status is 1 when Captum's saliency map is perturbed (the check can fail)."""
    import argparse

    zoo = load_zoo()
    real = zoo.captum_call

    def perturbed(method: str, s: object, args: argparse.Namespace) -> object:
        call = real(method, s, args)
        if method == "saliency" and call is not None:
            run = call.run
            call.run = lambda: run() * 1.01
        return call

    monkeypatch.setattr(zoo, "SMOKE_MODELS", ("cnn-smoke",))
    monkeypatch.setattr(zoo, "METHODS", ("saliency", "gradient_x_input"))
    monkeypatch.setattr(zoo, "captum_call", perturbed)
    assert zoo.smoke(argparse.Namespace(threads=1, attn="sdpa")) == 1
    err = capsys.readouterr().err
    assert "SMOKE FAILED (1)" in err and "cnn-smoke / saliency: gradattr and Captum disagree" in err
