#!/usr/bin/env bash
# Separate environment for benchmarks/bench_sensitivity.py's Quantus comparison (not part of the test suite).
#
# Quantus imports torchvision, and no torchvision wheel imports beside the CPU torch 2.13.0 that the main
# environment pins, so the peer lives in its own venv: torch 2.14.1 + torchvision 0.29.1 (the releases on
# this machine's disk; a CUDA build, which runs on CPU), Quantus, and gradattr itself, editable.
#
# Usage:  benchmarks/quantus_setup.sh [VENV]        (default VENV: /work/venv-peers)
#         VENV/bin/python benchmarks/bench_sensitivity.py
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-/work/venv-peers}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
"$venv/bin/python" -m pip install -q quantus
# gradattr's own dependencies must resolve against the torch just installed, never pull another one.
"$venv/bin/python" -m pip install -q -e "$repo" "torch==2.14.1"
"$venv/bin/python" - <<'PY'
import quantus, torch, torchvision, gradattr
print(f"ok: torch {torch.__version__}, torchvision {torchvision.__version__}, quantus {quantus.__version__}, "
      f"gradattr {gradattr.__version__}")
PY
echo "run: $venv/bin/python $repo/benchmarks/bench_sensitivity.py"
