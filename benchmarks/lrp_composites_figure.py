"""The README's LRP-composites figure (docs/lrp_composites.png): the study's digits CNN (trained, or read from the
model cache as ``gradattr reproduce`` leaves it) on four real test digits, one per row, and four columns:
Gradient*Input, ε-LRP (the paper's), LRP under epsilon_plus_flat and under epsilon_gamma_box (box [-1, 1], the
range the digits are scaled to).

    python benchmarks/lrp_composites_figure.py [--out docs/lrp_composites.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import gradattr
from gradattr.experiments.recipes import DATASETS, evaluation_set
from gradattr.report import heatmap_grid
from gradattr.training import train_or_load

CLASSES = (0, 3, 7, 9)
"""The displayed digits: one test sample of each."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/lrp_composites.png"))
    out = parser.parse_args().out
    recipe = next(r for r in DATASETS if r.key == "digits")
    cnn = next(m for m in recipe.models if m.key == "cnn")
    data = recipe.load(None)
    model, _ = train_or_load(f"{recipe.key}-{cnn.key}", lambda: cnn.build(data), data, seed=0, progress=False,
                             **cnn.training)  # fmt: skip
    model.eval()
    x, y = evaluation_set(data, 200, seed=0)
    rows = torch.tensor([int((y == c).nonzero()[0]) for c in CLASSES])
    x, y = x[rows], y[rows]
    with torch.no_grad():
        predicted = model(x).argmax(1)
    maps = {
        "gradient_x_input": gradattr.attribute(model, x, "gradient_x_input", target=y),
        "epsilon_lrp": gradattr.attribute(model, x, "epsilon_lrp", target=y),
        "lrp (epsilon_plus_flat)": gradattr.attribute(model, x, "lrp", target=y, composite="epsilon_plus_flat"),
        "lrp (epsilon_gamma_box)": gradattr.attribute(
            model, x, "lrp", target=y, composite="epsilon_gamma_box", low=-1.0, high=1.0
        ),
    }
    labels = [f"true {int(t)}, predicted {int(p)}" for t, p in zip(y, predicted, strict=True)]
    out.parent.mkdir(parents=True, exist_ok=True)
    print(heatmap_grid(x, maps, out, row_labels=labels))
    for name, r in maps.items():
        print(f"{name}: Σ R per sample {[round(float(v), 3) for v in r.flatten(1).sum(1)]}")
    with torch.no_grad():
        print(f"S_c(x): {[round(float(v), 3) for v in model(x)[torch.arange(len(y)), y]]}")


if __name__ == "__main__":
    main()
