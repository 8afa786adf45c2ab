"""DeepLIFT through max pooling: the paper's gradient routing (``max_pooling="route"``) against the exact tree
of ReLUs (``max_pooling="exact"``), measured on trained CNNs with max pooling (digits, and Fashion-MNIST when
Debian's dataset-fashion-mnist is installed): the completeness gap |Σ R − Δ| / |Δ| and Sensitivity-n
(Ancona et al., ICLR 2018, Sec. 4.1) per n, side by side, with Integrated Gradients as the reference.

    python benchmarks/max_pooling.py [--samples 200] [--subsets 100] [--fashion-mnist]

Measured on 2 CPU cores (digits, 200 test samples, 100 subsets per n; 8 training epochs):

| model | DeepLIFT max pooling | median completeness gap | n=1 | n=12 | n=51 |
|---|---|---|---|---|---|
| MnistCNN (94.9 %) | route / exact | 8.6e-08 / 8.4e-08 | 0.978 / 0.978 | 0.972 / 0.972 | 0.929 / 0.929 |
| Cifar10CNN (93.8 %) | route / exact | 3.1e-02 / 9.3e-08 | 0.979 / 0.979 | 0.968 / 0.970 | 0.911 / 0.919 |
| Cifar10CNN | (IG(100)) | 9.3e-04 | 0.980 | 0.971 | 0.920 |
"""

from __future__ import annotations

import argparse
import time

import torch

import gradattr
from gradattr.data import load_digits, load_fashion_mnist
from gradattr.models import cifar10_cnn, mnist_cnn
from gradattr.training import train


def datasets(fashion_mnist: bool) -> list:
    found = [("digits", load_digits())]
    if fashion_mnist:
        try:
            found.append(("fashion-mnist", load_fashion_mnist()))
        except Exception as error:  # the Debian package is optional here
            print(f"fashion-mnist skipped: {error}")
    return found


def measure(name: str, data, factory, samples: int, subsets: int) -> None:
    torch.manual_seed(0)
    model, result = train(factory(data.input_shape, data.num_classes), data, epochs=8, progress=False)
    model.eval()
    x, y = data.test_x[:samples], data.test_y[:samples]
    with torch.no_grad():
        delta = model(x).gather(1, y[:, None])[:, 0] - model(torch.zeros_like(x[:1]))[0, y]
    groups = gradattr.patches(tuple(x.shape[1:]), 4 if x.shape[-1] >= 28 else 1)
    rows = {}
    for label, method, options in (
        ("DeepLIFT (route)", "deeplift", {"max_pooling": "route"}),
        ("DeepLIFT (exact)", "deeplift", {"max_pooling": "exact"}),
        ("Integrated Gradients (100)", "integrated_gradients", {"steps": 100}),
    ):
        start = time.perf_counter()
        r = gradattr.attribute(model, x, method=method, target=y, **options)
        seconds = time.perf_counter() - start
        gap = ((r.flatten(1).sum(1) - delta).abs() / delta.abs().clamp_min(1e-6)).median()
        sens = gradattr.sensitivity_n(model, x, r, target=y, num_subsets=subsets, feature_groups=groups)
        rows[label] = (float(gap), sens, seconds)
    ns = rows["DeepLIFT (route)"][1].ns
    picks = sorted({0, len(ns) // 4, len(ns) // 2, 3 * len(ns) // 4, len(ns) - 1})
    print(f"\n## {name}: {type(model).__name__} (accuracy {result.test_accuracy:.3f}), {len(x)} test samples")
    print("| method | median completeness gap | " + " | ".join(f"n={ns[i]}" for i in picks) + " | seconds |")
    print("|---|---|" + "---|" * len(picks) + "---|")
    for label, (gap, sens, seconds) in rows.items():
        values = " | ".join(f"{float(sens.correlation[i]):.3f}" for i in picks)
        print(f"| {label} | {gap:.2e} | {values} | {seconds:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--subsets", type=int, default=100)
    parser.add_argument("--fashion-mnist", action="store_true", help="also Fashion-MNIST (about 15 minutes more)")
    args = parser.parse_args()
    for name, data in datasets(args.fashion_mnist):
        factories = [mnist_cnn] + ([cifar10_cnn] if data.input_shape[-1] >= 8 else [])
        for factory in factories:
            measure(name, data, factory, args.samples, args.subsets)


if __name__ == "__main__":
    main()
