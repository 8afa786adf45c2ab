#!/usr/bin/env bash
# Separate environment for the benchmarks that compare with Quantus and Zennit (not part of the test suite):
# bench_sensitivity.py, bench_robustness_metrics.py and run.py (which also needs Captum and Zennit).
#
# Quantus and Zennit import torchvision, and no torchvision wheel imports beside the CPU torch 2.13.0 that the
# main environment pins, so the peers live in their own venv: torch 2.14.1 + torchvision 0.29.1 (the releases
# on this machine's disk; a CUDA build, which runs on CPU), Quantus, Zennit, Captum, and gradattr itself, editable.
#
# Usage:  benchmarks/quantus_setup.sh [VENV]        (default VENV: /work/venv-peers)
#         VENV/bin/python benchmarks/run.py [--quick]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-/work/venv-peers}"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
"$venv/bin/python" -m pip install -q quantus
# Captum and Zennit for run.py; torch pinned so that neither replaces it.
"$venv/bin/python" -m pip install -q "captum==0.9.0" "zennit==0.5.1" "torch==2.14.1" "torchvision==0.29.1"
# gradattr's own dependencies must resolve against the torch just installed, never pull another one.
"$venv/bin/python" -m pip install -q -e "$repo" "torch==2.14.1"
"$venv/bin/python" - <<'PY'
import importlib.metadata, captum, quantus, torch, torchvision, zennit, gradattr
print(f"ok: torch {torch.__version__}, torchvision {torchvision.__version__}, quantus {quantus.__version__}, "
      f"captum {captum.__version__}, zennit {importlib.metadata.version('zennit')}, gradattr {gradattr.__version__}")
PY
echo "run: $venv/bin/python $repo/benchmarks/run.py [--quick]"
