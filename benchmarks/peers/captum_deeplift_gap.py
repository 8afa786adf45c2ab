"""Completeness of DeepLIFT on the zoo's models: gradattr's against Captum 0.9's ``DeepLift``.

DeepLIFT satisfies summation-to-delta: Σ_i R_i = S_c(x) − S_c(x̄) (Shrikumar et al. 2017; Ancona et al., ICLR 2018,
Sec. 3). The script prints the relative gap |Σ R − (S_c(x) − S_c(x̄))| / |S_c(x) − S_c(x̄)| (largest over the batch,
zero baseline) of both libraries on the subjects of ``benchmarks/zoo.py`` (same seeds, batch 2). A large gap means
the map is not DeepLIFT: Captum rescales only the nonlinearity modules it lists and takes the plain gradient
through the rest (Hardswish, ReLU6, SiLU, GELU, LayerNorm, attention, functional activations).

Usage (peer set-up): PYTHONPATH=src python benchmarks/peers/captum_deeplift_gap.py mobilenet_v2 hf-bert-tiny ...
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import Tensor

sys.path[:0] = [str(Path(__file__).resolve().parents[1])]
import gradattr  # noqa: E402

import zoo  # noqa: E402


def relative_gap(attributions: Tensor, delta: Tensor) -> float:
    """max over the batch of |Σ R − Δ| / |Δ|."""
    totals = attributions.reshape(attributions.shape[0], -1).sum(1)
    return float(((totals - delta).abs() / delta.abs()).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="zoo model names (torchvision names and hf-* configs)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=128)
    cli = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    args = argparse.Namespace(
        seq=cli.seq, batch=cli.batch, attn="sdpa", patch=56, ig_steps=16, samples=8, captum_ig_batch=None, captum_ppe=16
    )
    for name in cli.models:
        s = zoo.build_subject(name, args)
        rows = s.target[:, None]
        with torch.no_grad():
            delta = s.model(s.x).gather(1, rows)[:, 0] - s.model(torch.zeros_like(s.x)).gather(1, rows)[:, 0]
        ours = relative_gap(gradattr.attribute(s.model, s.x, method="deeplift", target=s.target), delta)
        captum = zoo.captum_call("deeplift", s, args)
        try:
            theirs = f"{relative_gap(captum.run(), delta):.1e}" if captum is not None else "no DeepLift"
        except Exception as error:  # Captum refuses reused modules (ResNets)
            theirs = f"error: {type(error).__name__}"
        print(f"{name}: relative completeness gap gradattr {ours:.1e}, Captum {theirs}", flush=True)


if __name__ == "__main__":
    main()
