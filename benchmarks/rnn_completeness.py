"""How far DeepLIFT's summation-to-delta is off on LSTMs, for gradattr and for Captum.

DeepLIFT (Rescale) conserves S_c(x) - S_c(x̄) exactly on networks of linear ops and elementwise
nonlinearities; the multiplicative gates of an LSTM are outside that guarantee (Ancona et al., ICLR 2018,
Sec. 4.2), so Σ_i R_i ≠ Δ there. This script measures the relative completeness error

    err = |Σ_i R_i - Δ| / |Δ|,    Δ = S_c(x) - S_c(x̄),

per sample, for

* ``gradattr DeepLIFT``: the fused LSTM unrolled, Rescale at every σ and tanh, gate products kept
  (Ancona et al.'s setting);
* ``(x-x̄)·grad``: the plain gradient times (x - x̄), what a DeepLIFT that misses the gates returns;
* ``Captum DeepLift``: ``captum.attr.DeepLift`` on the same model (its hooks never see the fused kernel's
  gates; the column ``|cap-plain|`` shows how close it is to the plain ``(x-x̄)·grad``).

Models: random LSTM classifiers (LSTM -> last hidden state -> linear; several sizes and seeds; inputs
N(0, 1), zero baseline) and the trained drug-review text LSTM (``gradattr.models.text_lstm``, trained with
``gradattr.training.train_or_load``; attributions of the embedding output, zero-embedding baseline, which is
the padding token's; target = predicted class; all test reviews). Everything in float64, so the numbers
are the methods' and not rounding's.

    python benchmarks/rnn_completeness.py [--cache /tmp/gradattr-rnn-cache] [--seeds 3]
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from dataclasses import dataclass

import torch
from captum.attr import DeepLift
from torch import Tensor, nn

import gradattr
from gradattr.data import load_drugreview
from gradattr.models import text_lstm
from gradattr.training import train_or_load

F64 = torch.float64


class LastStep(nn.Module):
    """``rnn -> last layer's final hidden state -> linear``: the classifier shape of the paper's text LSTM."""

    def __init__(self, rnn: nn.LSTM, head: nn.Linear) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = head

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.rnn(x)[1][0][-1])


@dataclass
class Row:
    name: str
    errors: dict[str, Tensor]
    seconds: dict[str, float]
    captum_vs_plain: float


def relative_errors(model: nn.Module, x: Tensor, baseline: Tensor, target: Tensor, attribution: Tensor) -> Tensor:
    """|Σ R - Δ| / |Δ| per sample."""
    with torch.no_grad():
        output, reference = model(x), model(baseline.expand_as(x))
        delta = output.gather(1, target[:, None])[:, 0] - reference.gather(1, target[:, None])[:, 0]
    return (attribution.flatten(1).sum(1) - delta).abs() / delta.abs()


def measure(name: str, model: nn.Module, x: Tensor, baseline: Tensor) -> Row:
    model = model.eval()
    with torch.no_grad():
        target = model(x).argmax(1)
    results: dict[str, Tensor] = {}
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    results["gradattr DeepLIFT"] = gradattr.attribute(model, x, method="deeplift", target=target, baseline=baseline)
    seconds["gradattr DeepLIFT"] = time.perf_counter() - start
    start = time.perf_counter()
    grad = gradattr.attribute(model, x, method="saliency", target=target, abs=False)
    results["(x-x̄)·grad"] = (x - baseline) * grad
    seconds["(x-x̄)·grad"] = time.perf_counter() - start
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Captum's notes on hooks and on setting requires_grad
        captum = DeepLift(copy.deepcopy(model)).attribute(x, baselines=baseline.expand_as(x), target=target).detach()
    seconds["Captum DeepLift"] = time.perf_counter() - start
    results["Captum DeepLift"] = captum
    errors = {method: relative_errors(model, x, baseline, target, r) for method, r in results.items()}
    scale = results["(x-x̄)·grad"].abs().max()
    return Row(name, errors, seconds, float((captum - results["(x-x̄)·grad"]).abs().max() / scale))


def random_lstms(seeds: int) -> list[Row]:
    rows = []
    for features, hidden, steps, layers in ((4, 8, 5, 1), (16, 32, 20, 1), (32, 64, 50, 1), (16, 32, 20, 2)):
        for seed in range(seeds):
            torch.manual_seed(seed)
            model = LastStep(nn.LSTM(features, hidden, num_layers=layers, batch_first=True), nn.Linear(hidden, 3))
            x = torch.randn(64, steps, features, dtype=F64)
            name = f"random LSTM in={features} h={hidden} T={steps} L={layers} seed={seed}"
            rows.append(measure(name, model.to(F64), x, torch.zeros(1, steps, features, dtype=F64)))
    return rows


def drugreview_lstm(cache: str) -> Row:
    data = load_drugreview()
    vocab = len(data.vocab.tokens)
    model, result = train_or_load(
        "drugreview-lstm", lambda: text_lstm(vocab, len(data.class_names)), data, seed=0, cache=cache, progress=False
    )
    model = model.to(F64).eval()
    with torch.no_grad():
        embedded = model.embedding(data.test_x)
    head = LastStep(model.lstm, model.fc)  # the model after its embedding (its dropout is inactive in eval mode)
    row = measure(
        f"drug-review text LSTM (test acc {result.test_accuracy:.3f})", head, embedded, torch.zeros(1, 1, 1, dtype=F64)
    )
    # the same DeepLIFT through the full model with layer="embedding", as a user would call it
    target = head(embedded).argmax(1)
    start = time.perf_counter()
    tokens = gradattr.attribute(model, data.test_x, method="deeplift", target=target, layer="embedding")
    row.seconds["gradattr DeepLIFT (layer='embedding')"] = time.perf_counter() - start
    baseline = torch.zeros(1, *embedded.shape[1:], dtype=F64)
    row.errors["gradattr DeepLIFT (layer='embedding')"] = relative_errors(head, embedded, baseline, target, tokens)
    return row


def summary(errors: Tensor) -> str:
    return f"{errors.mean():8.3f} {errors.median():8.3f} {errors.max():9.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default="/tmp/gradattr-rnn-cache", help="train_or_load cache directory")
    parser.add_argument("--seeds", type=int, default=3, help="random LSTMs per size")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

    rows = random_lstms(args.seeds)
    rows.append(drugreview_lstm(args.cache))
    methods = ["gradattr DeepLIFT", "(x-x̄)·grad", "Captum DeepLift"]
    print("relative completeness error |ΣR - Δ| / |Δ| per sample: mean / median / max (float64)")
    header = f"{'model':<52}" + "".join(f" | {m:^27}" for m in methods) + " | |cap-plain|"
    print(header)
    print("-" * len(header))
    for row in rows:
        cells = "".join(f" | {summary(row.errors[m])}" for m in methods)
        print(f"{row.name:<52}{cells} | {row.captum_vs_plain:10.1e}")
    pooled = {m: torch.cat([r.errors[m] for r in rows[:-1]]) for m in methods}
    print(f"{'all random LSTMs pooled':<52}" + "".join(f" | {summary(pooled[m])}" for m in methods))
    last = rows[-1]
    key = "gradattr DeepLIFT (layer='embedding')"
    print(f"\ndrug-review, gradattr.attribute(model, tokens, layer='embedding'): {summary(last.errors[key])}")
    print("seconds (drug-review, all test reviews): " + ", ".join(f"{k} {v:.2f}" for k, v in last.seconds.items()))
    print("|cap-plain| = max |Captum DeepLift - (x-x̄)·grad| / max |(x-x̄)·grad|")


if __name__ == "__main__":
    main()
