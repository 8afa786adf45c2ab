"""GradientSHAP and DeepLiftSHAP on torchvision CNNs: gradattr vs Captum 0.9 vs the fwd+bwd floor, with memory.

Peer set-up (torchvision is needed): ``PYTHONPATH=src /work/peers-venv/bin/python benchmarks/bench_shap.py``
(``../shared/peers/make-venv.sh DIR`` builds that venv). Random weights, randomised BatchNorm statistics,
224x224 inputs, batch ``--batch`` (default 4), K = 8 references drawn from N(0, 1).

* GradientSHAP with ``--samples`` (default 50) draws per input: Captum's ``GradientShap`` pushes all
  samples x batch rows through one forward/backward pass (it has no internal batch size, Captum issue #1350);
  gradattr splits them into passes within its memory budget. Captum's random draws are replayed from
  gradattr's (``np.random.choice``/``np.random.uniform`` patched for Captum's call only), so max|Δ| compares
  the same estimator. Target: time ≤ 1.1 x samples x floor.
* DeepLiftSHAP over the K references: Captum's ``DeepLiftShap`` (module hooks; torchvision's ResNet reuses
  one ``nn.ReLU`` module per block, which Captum's DeepLift mishandles — its completeness gap is printed)
  vs gradattr's (op-level rules, chunked).

floor = one forward + backward of the target logits over the batch. Peak memory = the largest resident set
size above the one before the call, polled every 2 ms (gradattr runs first, so memory its allocator freed
is reused by Captum's call and not counted again: read Captum's column as a lower bound). gap: median over
the samples of |Σ R − (S_c(x) − mean_k S_c(b_k))| / (|S_c(x)| + |mean_k S_c(b_k)|) (GradientSHAP: Monte-Carlo
error, not a defect). Times are the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torchvision
from captum.attr import DeepLiftShap, GradientShap
from torch import Tensor, nn

import gradattr
from gradattr.methods.gradient_shap import draws

PAGE = os.sysconf("SC_PAGE_SIZE")


def resident() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def measured(call: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """Median seconds, peak extra resident memory (GiB) over the runs, and the last result."""
    times, peak, result = [], 0, None
    for _ in range(repeats):
        start_memory, top, done = resident(), [0], threading.Event()

        def poll(start_memory: int = start_memory, top: list[int] = top, done: threading.Event = done) -> None:
            while not done.is_set():
                top[0] = max(top[0], resident() - start_memory)
                time.sleep(0.002)

        watcher = threading.Thread(target=poll)
        watcher.start()
        start = time.perf_counter()
        result = call()
        times.append(time.perf_counter() - start)
        done.set()
        watcher.join()
        peak = max(peak, top[0])
    return statistics.median(times), peak / 2**30, result


def model_named(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def floor(model: nn.Module, x: Tensor, target: Tensor) -> float:
    def once() -> None:
        leaf = x.detach().requires_grad_()
        model(leaf).gather(1, target[:, None]).sum().backward()

    once()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def captum_gradient_shap(model: nn.Module, x: Tensor, refs: Tensor, target: Tensor, samples: int) -> Tensor:
    """Captum's GradientShap with gradattr's draws replayed (draw s of every sample -> Captum row i·n + s)."""
    picks, alphas, _ = draws(refs.shape[0], samples, 0)
    batch = x.shape[0]
    choice, uniform = np.random.choice, np.random.uniform
    np.random.choice = lambda k, n: picks.repeat(batch).numpy()[:n]  # type: ignore[assignment]
    np.random.uniform = lambda low, high, n: alphas.repeat(batch).numpy()[:n]  # type: ignore[assignment]
    try:
        return GradientShap(model).attribute(x, refs, n_samples=samples, target=target).detach()
    finally:
        np.random.choice, np.random.uniform = choice, uniform


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2,vgg11_bn")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--references", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {args.threads}, load {os.getloadavg()[0]:.2f}, batch {args.batch}, "
          f"samples {args.samples}, K = {args.references} references")  # fmt: skip
    header = (f"{'model':<14} {'method':<14} {'floor s':>8} {'gradattr s':>10} {'÷ n·floor':>9} {'Captum s':>9} "
              f"{'Captum ÷ ours':>13} {'mem ours GiB':>12} {'mem Captum':>10} {'max|Δ|/max|R|':>14} {'gap ours':>9} "
              f"{'gap Captum':>10}")  # fmt: skip
    print(header)
    for name in args.models.split(","):
        for line in bench_model(name, args):
            print(line)


def bench_model(name: str, args: argparse.Namespace) -> list[str]:
    """The GradientSHAP and DeepLiftSHAP rows of one torchvision model."""
    model = model_named(name)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(args.batch, 3, 224, 224, generator=generator)
    refs = torch.randn(args.references, 3, 224, 224, generator=generator)
    with torch.no_grad():
        target = model(x).argmax(1)
        at_x, at_refs = model(x).gather(1, target[:, None]).squeeze(1), model(refs)[:, target].mean(0)
        expected, scale = at_x - at_refs, at_x.abs() + at_refs.abs()
    base = floor(model, x, target)
    runs = {
        "GradientSHAP": (
            lambda: gradattr.attribute(model, x, method="gradient_shap", baseline=refs, target=target,
                                       samples=args.samples),
            lambda: captum_gradient_shap(model, x, refs, target, args.samples),
            args.samples,
        ),
        "DeepLiftSHAP": (
            lambda: gradattr.attribute(model, x, method="deeplift_shap", baseline=refs, target=target),
            lambda: DeepLiftShap(model).attribute(x, refs, target=target).detach(),
            args.references,
        ),
    }  # fmt: skip
    lines = []
    for method, (ours, theirs, passes) in runs.items():
        t_ours, m_ours, r_ours = measured(ours, args.repeats)
        try:
            t_cap, m_cap, r_cap = measured(theirs, args.repeats)
        except RuntimeError as error:  # Captum's DeepLift refuses a reused nn.ReLU (torchvision's ResNet blocks)
            lines.append(f"{name:<14} {method:<14} {base:8.3f} {t_ours:10.2f} {t_ours / (passes * base):9.2f} "
                         f"{'error':>9}  Captum: {str(error).split('.')[0][:90]}")  # fmt: skip
            continue
        delta = float((r_ours - r_cap).abs().max() / r_ours.abs().max())
        gap_ours = float(((r_ours.sum((1, 2, 3)) - expected).abs() / scale).median())
        gap_cap = float(((r_cap.sum((1, 2, 3)) - expected).abs() / scale).median())
        lines.append(f"{name:<14} {method:<14} {base:8.3f} {t_ours:10.2f} {t_ours / (passes * base):9.2f} "
                     f"{t_cap:9.2f} {t_cap / t_ours:13.2f} {m_ours:12.2f} {m_cap:10.2f} {delta:14.1e} "
                     f"{gap_ours:9.1e} {gap_cap:10.1e}")  # fmt: skip
    return lines

if __name__ == "__main__":
    main()
