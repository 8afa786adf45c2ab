"""CPU seconds of each stage of ``gradattr reproduce`` on a cold model cache: training and studying each model,
and the robustness study. Its output is the table :data:`gradattr.experiments.schedule.EXPECTED` (the ETA of
the progress line).

    python benchmarks/reproduce_stages.py [--full] [--datasets digits,drugreview] [--threads 1] [--samples N]

Measures ``user + sys`` of this process (every thread), on a fresh cache in a temporary folder, one intra-op
thread by default as ``reproduce`` runs; per-sample study costs are at the run's samples and 100 subsets per n.
"""

from __future__ import annotations

import argparse
import importlib
import resource
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import torch

from gradattr.experiments.study import study_model

reproduce = importlib.import_module("gradattr.experiments.reproduce")  # the module, not the function


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="the full run's data sets and samples")
    parser.add_argument("--datasets", help="comma-separated data set keys (default: those of the run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samples", type=int, help="evaluation samples per model (default: the run's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as cache:
        options = reproduce.ReproduceOptions(
            quick=not args.full, datasets=args.datasets.split(",") if args.datasets else None, cache=Path(cache),
            samples=args.samples,
        )
        options = replace(options, settings=replace(options.settings, progress=False))
        rows = []
        for recipe, models in reproduce.select(options):
            data = recipe.load(options.directories.get(recipe.key))
            for model_recipe in models:
                start = cpu_seconds()
                subject = reproduce._subject(recipe, model_recipe, data, options)
                trained = cpu_seconds()
                study_model(subject, options.settings)
                samples = int(subject.inputs.shape[0])
                rows.append((f"{recipe.key}-{model_recipe.key}", trained - start, (cpu_seconds() - trained) / samples))
                print(f"{rows[-1][0]:32s} train {rows[-1][1]:7.1f} s  study {rows[-1][2]:.4f} s/sample x {samples}")
        if any(recipe.key == reproduce.ROBUSTNESS_DATASET for recipe, _ in reproduce.select(options)):
            start = cpu_seconds()
            reproduce._robustness_study(options, None)
            print(f"robustness study: {cpu_seconds() - start:.1f} s")
    print("\nEXPECTED = {")
    for name, train, per_sample in rows:
        print(f'    "{name}": Cost({train:.2g}, {per_sample:.2g}),')
    print("}")


if __name__ == "__main__":
    main()
