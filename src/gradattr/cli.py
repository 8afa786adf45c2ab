"""The ``gradattr`` command line: ``reproduce`` the paper's study, ``explain`` your model's inputs,
``evaluate`` your model's attributions.

Exit codes: 0 success, 2 usage error (bad option or argument), 1 failure (a one-line reason on stderr; the
traceback only with ``--debug``), 130 interrupted (Ctrl-C; ``reproduce`` and ``evaluate`` say how to resume).
Every method failing is a failure (the first reason); some failing is a success that names them on stderr.
"""

from __future__ import annotations

import shlex
import time
import warnings
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    help="Gradient-based attribution for PyTorch models (Ancona et al., ICLR 2018).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console()
T = TypeVar("T")

Debug = Annotated[bool, typer.Option("--debug", help="Show the full traceback when the command fails.")]
Seed = Annotated[int, typer.Option(help="Seed for data split, weights, training and Sensitivity-n subsets.")]
NumSubsets = Annotated[int, typer.Option(min=2, help="Random subsets per n for Sensitivity-n (paper: 100).")]
Fresh = Annotated[
    bool, typer.Option("--fresh", help="Discard the finished work kept in OUT/.progress and compute everything.")
]
PROGRESS_FOLDER = ".progress"


class TokenRemovalChoice(str, Enum):
    """``reproduce --token-removal``: :data:`gradattr.experiments.recipes.TOKEN_REMOVALS`."""

    embedding = "embedding"
    pad = "pad"


"""The folder inside ``--out`` where ``reproduce`` and ``evaluate`` keep finished work for resuming."""
INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT, as shells report it)."""


@app.callback()
def main() -> None:
    """gradattr: explain PyTorch models with gradient-based attribution, and measure the explanations."""


def _guarded(debug: bool, action: Callable[[], T], interrupted: str = "interrupted") -> T:
    """Run ``action``; a failure exits with code 1 and a one-line reason (the traceback with ``--debug``),
    Ctrl-C with code 130 and the one line ``interrupted``. Warnings are shown as ``warning: ...`` lines."""
    from gradattr.files import one_line

    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return action()
    except (typer.Exit, typer.Abort, SystemExit):
        raise
    except KeyboardInterrupt:
        typer.echo(interrupted, err=True)
        raise typer.Exit(INTERRUPTED) from None
    except Exception as error:
        if debug:
            raise
        typer.echo(f"error: {one_line(error)}", err=True)
        raise typer.Exit(1) from None


def _show_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    """``warnings.showwarning`` for the command line: one ``warning: ...`` line on stderr, no source line."""
    typer.echo(f"warning: {message}", err=True)


def _resume_hint(progress: Path, kept: str) -> str:
    """The line printed after Ctrl-C: what is kept where, and how to resume."""
    return f"interrupted: {kept} are kept in {progress}; run the same command again to resume (--fresh: start over)"


def _count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


def _split(values: list[str] | None) -> list[str] | None:
    """Options given repeatedly and/or comma-separated, as one list (None when not given)."""
    if not values:
        return None
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


METHODS_HELP = "Comma-separated methods (default: the paper's six)."


def _methods(values: list[str] | None) -> tuple[str, ...]:
    from gradattr import METHODS, PAPER_METHODS

    names = _split(values) or list(PAPER_METHODS)
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise typer.BadParameter(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(METHODS)}")
    return tuple(dict.fromkeys(names))


COMPOSITE_HELP = (
    "LRP composite(s) of --method lrp, comma-separated or repeated: epsilon_plus, epsilon_plus_flat (default), "
    "epsilon_alpha2_beta1, epsilon_alpha2_beta1_flat, epsilon_gamma_box (its box: the inputs' min and max); "
    "several are columns 'lrp (NAME)' side by side, saved as lrp-NAME.npy."
)


def _composites(values: list[str] | None, methods: tuple[str, ...]) -> tuple[str, ...]:
    """``--composite``: names of :data:`gradattr.composites.COMPOSITES` for the lrp method (a usage error for an
    unknown name, or without ``lrp`` among the methods); empty when not given."""
    from gradattr.composites import COMPOSITES

    names = _split(values) or []
    unknown = [name for name in names if name not in COMPOSITES]
    if unknown:
        raise typer.BadParameter(f"unknown composite(s) {', '.join(unknown)}; choose from {', '.join(COMPOSITES)}")
    if names and "lrp" not in methods:
        raise typer.BadParameter("--composite is the LRP composite of --method lrp; add lrp to --method")
    return tuple(dict.fromkeys(names))


def _explain_rows(methods: tuple[str, ...], composites: tuple[str, ...]) -> list[tuple[str, str, dict[str, Any]]]:
    """``explain``'s columns as (label, method, options): every method once, lrp once per composite ("lrp" with
    one composite or none, "lrp (NAME)" with several). Only lrp gets ``composite=``."""
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for name in methods:
        if name != "lrp" or not composites:
            rows.append((name, name, {}))
        elif len(composites) == 1:
            rows.append((name, name, {"composite": composites[0]}))
        else:
            rows += [(f"lrp ({c})", name, {"composite": c}) for c in composites]
    return rows


def _file_stem(label: str) -> str:
    """The .npy name of an ``explain`` column: the method, or ``lrp-NAME`` for the column "lrp (NAME)"."""
    return label.replace(" (", "-").rstrip(")")


def _metrics(values: list[str] | None) -> tuple[str, ...]:
    """``--metrics``: names of :data:`gradattr.evaluation.NAMED` (a usage error otherwise)."""
    from gradattr.evaluation import NAMED, required_options

    names = _split(values) or []
    unknown = [name for name in names if name not in NAMED]
    if unknown:
        raise typer.BadParameter(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(NAMED)}")
    for name in names:
        needed = required_options(name)
        if needed:
            raise typer.BadParameter(
                f"metric {name} needs the option(s) {', '.join(needed)}, which the command line "
                f"does not take: in Python, gradattr.evaluation.named_metric({name!r}, ...)"
            )
    return tuple(dict.fromkeys(names))


def _study_metrics(values: list[str] | None) -> tuple[str, ...]:
    """``reproduce --metrics``: the default quality metrics, ``none``, or names without ground truth (the study's
    data sets have no masks)."""
    from gradattr.evaluation import NAMED
    from gradattr.experiments.reproduce import QUALITY_METRICS

    if values is None:
        return QUALITY_METRICS
    if _split(values) == ["none"]:
        return ()
    names = _metrics(values)
    localising = [name for name in names if NAMED[name][1] == "mask"]
    if localising:
        raise typer.BadParameter(f"{', '.join(localising)} need ground-truth masks, which the study's data sets lack")
    return names


def _command_line(context: typer.Context) -> str:
    """The running command with the options given explicitly (not their defaults), ready to paste."""
    words = ["gradattr", context.info_name or ""]
    for parameter in context.command.params:
        name = parameter.name or ""
        value = context.params.get(name)
        source = context.get_parameter_source(name)
        if name == "debug" or source is None or source.name == "DEFAULT":
            continue
        if getattr(parameter, "is_flag", False):
            flags = parameter.opts if value else getattr(parameter, "secondary_opts", [])
            words += flags[:1]
        elif isinstance(value, (list, tuple)):
            words += [item for v in value for item in (parameter.opts[0], str(v))]
        else:
            words += [parameter.opts[0], str(value)]
    return shlex.join(words)


@app.command(
    epilog=(
        "Examples:\n\n"
        "  gradattr reproduce --quick --out report      # digits + drug reviews, 1-2 minutes on 2 cores\n\n"
        "  gradattr reproduce --out full-report         # adds Fashion-MNIST when its files are installed\n\n"
        "  gradattr reproduce --datasets digits --models mlp-relu,cnn --samples 50\n\n"
        "  gradattr reproduce --mnist ~/data/mnist --cifar10 ~/data/cifar-10-batches-bin --imdb ~/data/aclImdb"
    )
)
def reproduce(
    context: typer.Context,
    quick: Annotated[bool, typer.Option("--quick", help="Digits and drug reviews only, fewer samples.")] = False,
    datasets: Annotated[
        list[str] | None, typer.Option(help="Data sets, comma-separated: digits, drugreview, fashion-mnist, ...")
    ] = None,
    models: Annotated[
        list[str] | None, typer.Option(help="Models, comma-separated: mlp-relu, mlp-tanh, cnn, text-cnn, lstm.")
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for report.html, results.json and CSVs.")] = Path(
        "gradattr-report"
    ),
    samples: Annotated[int | None, typer.Option(min=2, help="Evaluation samples per model (default by data).")] = None,
    num_subsets: NumSubsets = 100,
    display: Annotated[int, typer.Option(min=1, max=16, help="Samples shown per model in the report.")] = 4,
    methods: Annotated[list[str] | None, typer.Option(help=METHODS_HELP)] = None,
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            help="Quality metrics beside Sensitivity-n, comma-separated; 'none' for none (default: "
            "deletion_auc, insertion_auc, sparseness, complexity, deletion_curve, insertion_curve)."
        ),
    ] = None,
    seed: Seed = 0,
    cache: Annotated[Path | None, typer.Option(help="Model cache directory (default: $GRADATTR_CACHE).")] = None,
    retrain: Annotated[bool, typer.Option("--retrain", help="Train even when a cached model exists.")] = False,
    mnist: Annotated[Path | None, typer.Option(help="Directory of the MNIST IDX files.")] = None,
    cifar10: Annotated[Path | None, typer.Option(help="Directory of CIFAR-10's binary batches.")] = None,
    imdb: Annotated[Path | None, typer.Option(help="The aclImdb directory.")] = None,
    robustness: Annotated[
        bool, typer.Option(help="Also compare a standard and an adversarially trained CNN (digits).")
    ] = True,
    language_model: Annotated[
        bool, typer.Option(help="Also train a small language model on the drug reviews and explain its words.")
    ] = True,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    threads: Annotated[
        int,
        typer.Option(
            min=1,
            help="PyTorch threads. The study's models are small: one thread does the most work per CPU-second "
            "(two threads cut the wall time by a quarter for 40 % more CPU); more only on an idle machine.",
        ),
    ] = 1,
    token_removal: Annotated[
        TokenRemovalChoice,
        typer.Option(
            help="How Sensitivity-n removes a token: 'embedding' (its embedding vector set to 0) or 'pad' (its "
            "id replaced by the pad id, so the model sees padding, attention masks included).",
        ),
    ] = TokenRemovalChoice.embedding,
    fresh: Fresh = False,
    debug: Debug = False,
) -> None:
    """Reproduce Ancona et al. (ICLR 2018): train the paper's models, compute every method, measure
    Sensitivity-n, method agreement and the paper's claims; compare a standard and an adversarially trained
    CNN (Nielsen et al. 2022); write a self-contained HTML report. Each finished model study is kept in
    OUT/.progress: an interrupted run, started again with the same options, resumes where it stopped."""
    from gradattr.experiments import ReproduceOptions, StudyConfigError, StudySettings, select
    from gradattr.experiments import reproduce as run_study
    from gradattr.report import write_study

    directories = {key: path for key, path in (("mnist", mnist), ("cifar10", cifar10), ("imdb", imdb)) if path}
    for key, path in directories.items():
        if not path.is_dir():
            raise typer.BadParameter(f"--{key} {path}: not a directory")
    options = ReproduceOptions(
        quick=quick,
        datasets=_split(datasets),
        models=_split(models),
        samples=samples,
        directories=directories,
        cache=cache,
        retrain=retrain,
        settings=StudySettings(
            methods=_methods(methods),
            num_subsets=num_subsets,
            display=display,
            seed=seed,
            progress=progress,
            metrics=_study_metrics(metrics),
        ),
        command=_command_line(context),
        robustness=robustness,
        language_model=language_model,
        progress_dir=out / PROGRESS_FOLDER,
        fresh=fresh,
        token_removal=token_removal.value,
    )
    try:
        select(options)
    except StudyConfigError as error:
        raise typer.BadParameter(str(error)) from None
    import torch

    start = time.perf_counter()
    hint = _resume_hint(out / PROGRESS_FOLDER, "the finished model studies")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        study = _guarded(debug, lambda: run_study(options), hint)
    finally:
        torch.set_num_threads(before)
    files = _guarded(debug, lambda: write_study(study, out), hint)
    table = Table(title="Models")
    for column in ("data set", "model", "test acc.", "majority", "claims hold"):
        table.add_column(column, justify="right" if column != "model" and column != "data set" else "left")
    for m in study.models:
        claims = study.claims(m)
        held = sum(c.verdict == "holds" for c in claims)
        applicable = sum(c.verdict in ("holds", "does not hold") for c in claims)
        training = m.subject.training
        table.add_row(
            m.subject.dataset, m.subject.model_name,
            f"{training.test_accuracy:.1%}" if training else "-", f"{training.majority_rate:.1%}" if training else "-",
            f"{held}/{applicable}",
        )  # fmt: skip
    console.print(table)
    if study.reused:
        sections = {"robustness": "the robustness study", "language-model": "the language-model section"}
        models = sum(name not in sections for name in study.reused)
        parts = [_count(models, "finished model study", "finished model studies")] if models else []
        parts += [text for name, text in sections.items() if name in study.reused]
        console.print(f"reused {' and '.join(parts)} from {out / PROGRESS_FOLDER}", soft_wrap=True)
    console.print(f"wrote {files[0]} (and results.json, CSVs) in {time.perf_counter() - start:.0f} s", soft_wrap=True)
    failed = {f"{m.subject.model_name} ({m.subject.dataset}): {name}": reason
              for m in study.models for name, reason in m.unavailable.items()}  # fmt: skip
    _check_failures(failed, sum(len(m.methods) + len(m.unavailable) for m in study.models))


@app.command(
    epilog=(
        "Examples:\n\n"
        "  gradattr explain --model mymodels:build --weights net.pt --input cat.png --input dog.png --out maps\n\n"
        "  gradattr explain --model ./net.py:make --input batch.npy --batched --method deeplift,occlusion\n\n"
        "  gradattr explain --model ./net.py:make --input batch.npy --batched --method lrp --composite "
        "epsilon_plus_flat,epsilon_gamma_box\n\n"
        "  gradattr explain --model mytext:model --input ids.npy --layer embedding --out maps"
    )
)
def explain(
    model: Annotated[str, typer.Option(help="Your model: MODULE:FACTORY (or path/to/file.py:FACTORY).")],
    inputs: Annotated[
        list[Path], typer.Option("--input", help="Input file(s): .npy/.pt arrays or PNG/JPEG images (repeatable).")
    ],
    weights: Annotated[Path | None, typer.Option(help="State dict to load (torch.load weights_only).")] = None,
    method: Annotated[list[str] | None, typer.Option(help=METHODS_HELP)] = None,
    composite: Annotated[list[str] | None, typer.Option(help=COMPOSITE_HELP)] = None,
    target: Annotated[int | None, typer.Option(help="Class to explain (default: the predicted class).")] = None,
    layer: Annotated[str | None, typer.Option(help="Attribute this submodule's output (e.g. embedding).")] = None,
    batched: Annotated[bool, typer.Option("--batched", help="Each array file holds a batch (first dim).")] = False,
    out: Annotated[Path, typer.Option(help="Directory for heatmaps.png and <method>.npy.")] = Path("gradattr-explain"),
    debug: Debug = False,
) -> None:
    """Attribute your model's predictions on your inputs with each method: writes heatmaps.png (rows = inputs,
    columns = methods) and one <method>.npy of attributions per method (the inputs' shape; with --layer, the
    layer output's). Images are scaled to [-1, 1]; arrays are used as they are. Text: save token ids as .npy
    and pass --layer embedding. Grad-CAM methods read --layer as their convolutional layer. --method lrp takes
    --composite, the LRP composite (its layer rules); several composites are compared side by side."""
    from gradattr import LAYER_METHODS

    names = _methods(method)
    rows = _explain_rows(names, _composites(composite, names))
    reads_layer = [name in LAYER_METHODS for name in names]
    if layer is not None and any(reads_layer) and not all(reads_layer):
        raise typer.BadParameter(
            f"--layer is the class-activation layer of {', '.join(LAYER_METHODS)} but the layer to attribute for "
            "the other methods; run them separately"
        )

    def run() -> list[Path]:
        import numpy as np
        import torch

        import gradattr
        from gradattr.evaluation import LayerFunction
        from gradattr.experiments.user_data import load_inputs, load_model
        from gradattr.files import atomic_path, one_line
        from gradattr.report import heatmap_grid

        network = load_model(model, weights)
        x = load_inputs(inputs, batched)
        scores = _scores(network, x, _input_name(inputs), per_sample=not batched)
        predicted = scores.argmax(1) if scores.dim() == 2 else torch.zeros(len(x), dtype=torch.long)
        classes = predicted if target is None else torch.full_like(predicted, target)
        out.mkdir(parents=True, exist_ok=True)
        maps, files, failed = {}, [], {}
        for label, name, options in rows:
            try:
                maps[label] = gradattr.attribute(network, x, method=name, target=classes, layer=layer, **options)
            except Exception as error:  # the other methods still run; every method failing is an error
                failed[label] = error
                continue
            path = out / f"{_file_stem(label)}.npy"
            with atomic_path(path) as partial, partial.open("wb") as handle:
                np.save(handle, maps[label].numpy())
            files.append(path)
        if debug and failed and len(failed) == len(rows):
            raise next(iter(failed.values()))
        _check_failures({label: one_line(error) for label, error in failed.items()}, len(rows))
        shown = x if layer is None or all(reads_layer) else LayerFunction.of(network, x, layer).layer_output
        labels = [f"{p.name}: class {int(c)}" for p, c in zip(_sample_names(inputs, len(x)), classes, strict=True)]
        files.insert(0, heatmap_grid(shown, maps, out / "heatmaps.png", row_labels=labels))
        return files

    files = _guarded(debug, run)
    for path in files:
        console.print(f"wrote {path}", soft_wrap=True)


def _sample_names(paths: list[Path], count: int) -> list[Path]:
    """One name per sample: the file's, with the index when a file holds several samples."""
    if len(paths) == count:
        return paths
    return [Path(f"sample {i}") for i in range(count)]


class DtypeChoice(str, Enum):
    """``explain-text --dtype``: the floating-point type the model runs in."""

    float32 = "float32"
    float64 = "float64"


TOP_SOURCES = 3
"""How many prompt tokens ``explain-text`` prints per generated token."""


def _text_methods(method: str) -> str:
    """``explain-text --method``: one of :data:`gradattr.METHODS` that attributes inputs (a usage error
    otherwise)."""
    from gradattr import LAYER_METHODS, METHODS

    usable = [name for name in METHODS if name not in LAYER_METHODS]
    if method not in usable:
        raise typer.BadParameter(f"method {method!r} cannot explain generated text; choose from {', '.join(usable)}")
    return method


@app.command(
    "explain-text",
    epilog=(
        "Examples:\n\n"
        '  gradattr explain-text --model ./my-gpt2 --prompt "The capital of France is" --out explained\n\n'
        '  gradattr explain-text --model gpt2 --prompt "The nurse said that" --contrast " he" --method deeplift\n\n'
        "  gradattr explain-text --model Qwen/Qwen2.5-0.5B --prompt 'def add(a, b):' --dtype float64"
    ),
)
def explain_text(
    model: Annotated[
        str, typer.Option(help="A HuggingFace causal LM: its directory, or its name in the local HuggingFace cache.")
    ],
    prompt: Annotated[str, typer.Option(help="The text the model continues.")],
    method: Annotated[str, typer.Option(help="Attribution method (any of gradattr.METHODS but the CAMs).")] = (
        "epsilon_lrp"
    ),
    max_new_tokens: Annotated[int, typer.Option(min=1, help="Most tokens generated (greedy).")] = 20,
    contrast: Annotated[
        str | None,
        typer.Option(help="Explain logit(token) - logit(CONTRAST) for each generated token: one token, e.g. ' she'."),
    ] = None,
    out: Annotated[Path, typer.Option(help="Directory for generation.html and generation.csv.")] = Path(
        "gradattr-explain-text"
    ),
    dtype: Annotated[DtypeChoice, typer.Option(help="Run the model in this floating-point type.")] = (
        DtypeChoice.float32
    ),
    debug: Debug = False,
) -> None:
    """Explain a HuggingFace causal language model's continuation of a prompt: which tokens (prompt and
    earlier generated ones) made it say each token (gradattr.generation.attribute_generation). Prints the
    generated text and the prompt tokens that drove each generated token most; writes generation.html (tokens
    coloured by attribution for the generated token you click, the whole matrix as a heatmap) and
    generation.csv (one row per attribution). The model is loaded from disk only, never downloaded."""
    name = _text_methods(method)
    if not prompt:
        raise typer.BadParameter("--prompt is empty; give the text the model continues")

    def run() -> tuple[Any, Any, list[Path]]:
        import torch

        from gradattr.generation import attribute_generation

        network, tokenizer = _causal_lm(model, getattr(torch, dtype.value))
        encoded = tokenizer(prompt, return_tensors="pt")
        contrast_id = None if contrast is None else _token_id(tokenizer, contrast)
        result = attribute_generation(
            network, encoded["input_ids"], method=name, max_new_tokens=max_new_tokens,
            target="token" if contrast is None else "contrast", contrast_ids=contrast_id,
            attention_mask=encoded.get("attention_mask"), tokenizer=tokenizer,
        )  # fmt: skip
        page, table = out / "generation.html", out / "generation.csv"
        result.to_html(page)
        return result, tokenizer, [page, result.to_csv(table)]

    result, tokenizer, files = _guarded(debug, run)
    explained = result.attention_mask[0, result.prompt_length :].bool()
    typer.echo(f"generated: {tokenizer.decode(result.target_ids[0][explained].tolist())!r}")
    typer.echo(f"prompt tokens that drove each generated token most ({result.method}):")
    for step, token, sources in _top_prompt_tokens(result, TOP_SOURCES):
        typer.echo(
            f"  {step:>3} {token!r:<14} <- " + ", ".join(f"{source!r} {value:+.3g}" for source, value in sources)
        )
    for path in files:
        console.print(f"wrote {path}", soft_wrap=True)


def _causal_lm(name: str, dtype: Any) -> tuple[Any, Any]:
    """The HuggingFace causal LM (in eval mode, in ``dtype``) and tokenizer at the directory ``name``, or of
    that name in the local HuggingFace cache (``local_files_only``: nothing is downloaded)."""
    from gradattr.files import one_line

    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ImportError(
            f"explain-text loads the HuggingFace model {name} with transformers, which is not installed "
            "(pip install 'gradattr[hf]')"
        ) from None
    directory = Path(name).expanduser()
    source = str(directory) if directory.exists() else name
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
        network = AutoModelForCausalLM.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as error:
        if directory.exists():
            raise ValueError(
                f"--model {name}: no HuggingFace causal language model and tokenizer in that directory "
                f"({one_line(error)})"
            ) from error
        raise FileNotFoundError(
            f"--model {name}: no such directory, and no model of that name in the local HuggingFace cache; "
            f"explain-text never downloads (fetch it first, e.g. huggingface-cli download {name})"
        ) from error
    return network.to(dtype).eval(), tokenizer


def _token_id(tokenizer: Any, token: str) -> int:
    """``--contrast``: the id of ``token``, text that encodes to one token (or a vocabulary entry as it is)."""
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) == 1:
        return int(ids[0])
    vocabulary = tokenizer.get_vocab()
    if token in vocabulary:
        return int(vocabulary[token])
    pieces = ", ".join(repr(piece) for piece in tokenizer.convert_ids_to_tokens(ids))
    raise ValueError(
        f"--contrast {token!r} is {len(ids)} tokens ({pieces}), not one; give a single token of the vocabulary "
        "(mind the leading space, e.g. ' she')"
    )


def _top_prompt_tokens(result: Any, count: int) -> list[tuple[int, str, list[tuple[str, float]]]]:
    """Per explained generated token of sample 0: its step (from 1), its string, and the ``count`` prompt tokens
    with the largest attribution, as (token, attribution)."""
    prompt = result.prompt_length
    mask = result.attention_mask[0].bool()
    real = mask[:prompt].nonzero().flatten().tolist()
    rows = []
    for step in mask[prompt:].nonzero().flatten().tolist():
        values = result.matrix[0, step]
        ranked = sorted(real, key=lambda j: float(values[j]), reverse=True)[:count]
        rows.append(
            (step + 1, result.tokens[0][prompt + step], [(result.tokens[0][j], float(values[j])) for j in ranked])
        )
    return rows


RELU_ONLY_RETIRED = (
    "--relu-only is deprecated and ignored (it goes in the next release): the nonlinearities the model calls "
    "decide where Prop. 1 and 2 apply"
)
"""``gradattr evaluate --relu-only``: accepted for one release, hidden from the help, and ignored."""


@app.command(
    epilog=(
        "Examples:\n\n"
        "  gradattr evaluate --model mymodels:build --weights net.pt --data test.npz --out eval\n\n"
        "  gradattr evaluate --model ./net.py:make --data testdir/ --methods deeplift,occlusion --patch 4\n\n"
        "  gradattr evaluate --model mytext:model --data ids.npz --layer embedding\n\n"
        "  gradattr evaluate --model ./net.py:make --data test.npz --workers 2\n\n"
        "  gradattr evaluate --model ./net.py:make --data test.npz --ray-address auto --workers 32"
    )
)
def evaluate(
    context: typer.Context,
    model: Annotated[str, typer.Option(help="Your model: MODULE:FACTORY (or path/to/file.py:FACTORY).")],
    data: Annotated[Path, typer.Option(help=".npz with arrays x and y, or a directory with x.npy and y.npy.")],
    weights: Annotated[Path | None, typer.Option(help="State dict to load (torch.load weights_only).")] = None,
    methods: Annotated[list[str] | None, typer.Option(help=METHODS_HELP)] = None,
    metrics: Annotated[
        list[str] | None,
        typer.Option(
            help="Quality metrics beside Sensitivity-n, comma-separated (sparseness, deletion_auc, pointing_game, "
            "...; the localisation ones read the array 'masks' of --data)."
        ),
    ] = None,
    samples: Annotated[int, typer.Option(min=2, help="Evaluate the first N samples.")] = 100,
    num_subsets: NumSubsets = 100,
    patch: Annotated[int, typer.Option(min=0, help="Square patches as features (0: every feature alone).")] = 0,
    layer: Annotated[str | None, typer.Option(help="Attribute this submodule's output; features: positions.")] = None,
    relu_only: Annotated[bool, typer.Option("--relu-only", hidden=True, help=RELU_ONLY_RETIRED)] = False,
    display: Annotated[int, typer.Option(min=1, max=16, help="Samples shown in the report.")] = 4,
    seed: Seed = 0,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Samples per batch: bounds memory; progress is saved after each batch.")
    ] = 50,
    out: Annotated[Path, typer.Option(help="Directory for report.html, results.json and CSVs.")] = Path(
        "gradattr-evaluate"
    ),
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
    fresh: Fresh = False,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Evaluate on N Ray workers (a local Ray unless --ray-address); needs gradattr[ray]."),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Run the workers on this Ray cluster (ray://HOST:10001, auto).")
    ] = None,
    debug: Debug = False,
) -> None:
    """Sensitivity-n, method agreement, completeness and the paper's checks for your model on your labelled
    data, written as the same report as `gradattr reproduce` (report.html, results.json, CSVs). The finished
    batches are kept in OUT/.progress: an interrupted run, started again with the same options, resumes at
    the first unfinished batch. With --workers or --ray-address the batches are evaluated by Ray workers
    (gradattr.distributed), with the same results. Which of the paper's claims apply (Prop. 1 and 2 on ReLU
    networks) is read off the nonlinearities the model calls."""
    if relu_only:
        typer.echo(f"warning: {RELU_ONLY_RETIRED}", err=True)
    names = _methods(methods)
    quality = _metrics(metrics)
    progress_dir = out / PROGRESS_FOLDER
    evaluator: Callable[..., Any] | None = None
    if workers is not None or ray_address is not None:
        from functools import partial

        from gradattr import distributed

        _guarded(debug, distributed.import_ray)
        evaluator = partial(distributed.evaluate, workers=workers, address=ray_address)

    def run() -> tuple[int, list[Path]]:
        from gradattr.evaluation import NAMED
        from gradattr.evaluation import evaluate as in_process
        from gradattr.experiments.user_data import UserInputError, load_labelled, load_masks, load_model
        from gradattr.experiments.user_study import user_study
        from gradattr.progress import ProgressStore
        from gradattr.report import write_study

        store = ProgressStore(progress_dir)
        if fresh:
            store.clear()
        network = load_model(model, weights)
        x, y = load_labelled(data)
        masks = load_masks(data, x.shape[0])
        localising = [name for name in quality if NAMED[name][1] == "mask"]
        if localising and masks is None:
            raise UserInputError(f"{', '.join(localising)} need ground-truth masks: add an array 'masks' to {data}")
        _check_scores(_scores(network, x[: min(samples, batch_size)], f"input {data.name}", raw=True), data.name,
                      y[:samples])  # fmt: skip
        study = user_study(
            network, x[:samples], y[:samples], model_name=model, data_name=data.name, methods=names, patch=patch,
            layer=layer, num_subsets=num_subsets, display=display, seed=seed,
            batch_size=batch_size, progress=progress, command=_command_line(context),
            checkpoint=store.path("evaluate"), evaluator=evaluator or in_process, metrics=quality,
            masks=masks[:samples] if masks is not None else None,
        )  # fmt: skip
        table = study.models[0].sensitivity
        return (table.resumed if table is not None else 0), write_study(study, out), study.models[0].unavailable

    resumed, files, unavailable = _guarded(debug, run, _resume_hint(progress_dir, "the finished batches"))
    if resumed:
        finished = _count(resumed, "finished batch", "finished batches")
        console.print(f"resumed: {finished} reused from {progress_dir}", soft_wrap=True)
    console.print(f"wrote {files[0]} (and results.json, CSVs)", soft_wrap=True)
    _check_failures(unavailable, len(names))


def _check_failures(failed: dict[str, str], total: int) -> None:
    """After a command's methods ran: when every one of the ``total`` failed, exit 1 with the first reason;
    when some failed, say which and why on stderr (the exit code stays 0: the others' results were written)."""
    if not failed:
        return
    if len(failed) == total:
        what, reason = next(iter(failed.items()))
        every = "the method" if total == 1 else f"all {total} methods"
        typer.echo(f"error: {every} failed; {what}: {reason}", err=True)
        raise typer.Exit(1)
    typer.echo(f"warning: {len(failed)} of {total} methods failed and are left out:", err=True)
    for what, reason in failed.items():
        typer.echo(f"  {what}: {reason}", err=True)


def _input_name(paths: list[Path]) -> str:
    """How a message names the inputs: ``input cat.png``, ``inputs cat.png, dog.png``."""
    names = [p.name for p in paths]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"input{'s' * (len(names) > 1)} {shown}"


def _scores(network: Any, x: Any, name: str, per_sample: bool = False, raw: bool = False) -> Any:
    """The model's output on the user's own batch ``x``, read as gradattr reads it ((B, C) or (B,); a
    (B, 1, C) output at its one position), or as it is with ``raw``. A model that refuses ``x`` is an error
    naming the input, its shape and the shape the model expects (not torch's words from inside the model)."""
    import torch

    from gradattr.methods._mismatch import input_mismatch
    from gradattr.methods._model_call import ModelCall

    try:
        with torch.no_grad():
            out = network(x)
    except Exception as error:
        mismatch = input_mismatch(network, x, network, name=name, per_sample=per_sample)
        if mismatch is None:
            raise
        raise mismatch from error
    if raw:
        return out
    rows = torch.arange(len(x))
    try:
        return ModelCall.build(None, None, None, len(x)).read(network, out, rows)
    except (ValueError, TypeError, IndexError) as error:
        raise ValueError(f"{name}: {error}") from error


def _check_scores(scores: Any, data: str, labels: Any) -> None:
    import torch

    """``evaluate``'s model must give one score per class, (B, C), and the labels must be among its classes."""
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"the model returns a {type(scores).__name__}; evaluate needs a tensor (B, C)")
    if scores.dim() != 2:
        raise ValueError(f"the model's output has shape {tuple(scores.shape)} for {len(scores)} samples of {data}; "
                         f"evaluate needs one score per class, ({len(scores)}, C)")  # fmt: skip
    classes = scores.shape[1]
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= classes:
        bad = low if low < 0 else high
        where = int((labels == bad).nonzero()[0])
        raise ValueError(f"{data}: label {bad} (sample {where}) is not a class of the model, which has {classes} "
                         f"outputs (labels 0..{classes - 1})")  # fmt: skip


if __name__ == "__main__":
    app()
