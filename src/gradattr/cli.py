"""The ``gradattr`` command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Gradient-based attribution for PyTorch models (Ancona et al., ICLR 2018).", no_args_is_help=True
)
console = Console()
SHORT_NAMES = {
    "saliency": "Sal",
    "gradient_x_input": "G*I",
    "integrated_gradients": "IG",
    "epsilon_lrp": "eps-LRP",
    "deeplift": "DeepLIFT",
    "occlusion": "Occ",
}


@app.callback()
def main() -> None:
    """gradattr: explain PyTorch models with gradient-based attribution, and measure the explanations."""


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Directory for heatmaps.png, attributions.npz, summary.json.")] = Path(
        "gradattr-demo"
    ),
    samples: Annotated[int, typer.Option(min=1, max=64, help="Test digits to attribute.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed for the data split, the weights and training.")] = 0,
    cache: Annotated[Path | None, typer.Option(help="Model cache directory (default: $GRADATTR_CACHE).")] = None,
) -> None:
    """Train an MLP on scikit-learn's digits, attribute test digits with every method, check the theory."""
    from gradattr.experiments import run_demo

    result = run_demo(out, samples=samples, seed=seed, cache=cache)
    console.print(
        f"digits MLP: test accuracy [bold]{result.test_accuracy:.1%}[/] (majority class {result.majority_rate:.1%})"
    )
    table = Table(title=f"Methods on {result.samples} test digits")
    table.add_column("method")
    table.add_column("time (ms)", justify="right")
    table.add_column("completeness error", justify="right")
    for method in result.methods:
        table.add_row(method, f"{result.seconds[method] * 1e3:.1f}", f"{result.completeness[method]:.2e}")
    console.print(table)
    agreement = Table(title="Agreement: mean Pearson correlation of the maps over samples")
    agreement.add_column("")
    for method in result.methods:
        agreement.add_column(SHORT_NAMES.get(method, method), justify="right")
    for method, row in zip(result.methods, result.correlation, strict=True):
        agreement.add_row(SHORT_NAMES.get(method, method), *(f"{value:.2f}" for value in row))
    console.print(agreement)
    console.print("completeness error = mean |Σ R - (S_c(x) - S_c(0))| / mean |S_c(x) - S_c(0)|")
    for path in result.files:
        console.print(f"wrote {path}")


if __name__ == "__main__":
    app()
