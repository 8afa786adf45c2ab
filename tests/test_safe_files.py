"""Every file gradattr reads is read without running code in it, and a truncated or damaged file gives a clean
error naming it: exit code 1 and one line on the command line, a specific exception in Python.

The CIFAR-10 pickles (opt-in only) are tested in ``tests/data/test_cifar.py``, IDX files in
``tests/data/test_idx.py`` and ``tests/data/test_mnist.py``, checkpoints in ``tests/test_training.py``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gradattr.cache import CacheWarning, save_checkpoint
from gradattr.cli import app
from gradattr.data import DataFormatError, load_digits, load_imdb, load_text_table
from gradattr.experiments.user_data import UserInputError, load_array, load_image, load_labelled
from gradattr.files import FileContentError, read_npy, read_npz, read_torch
from gradattr.models import mnist_mlp
from gradattr.progress import FORMAT, ProgressWarning, load_entry, versions
from gradattr.training import train_or_load
from payloads import RunsCode

MODEL_SOURCE = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
"""


def invoke(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_clean_failure(result, path: Path) -> None:
    """Exit code 1 and one line ``error: ...`` that names ``path``."""
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and path.name in lines[0], result.output


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """A model file, its weights, a valid input and valid labelled data; and the marker a payload would create."""
    source = tmp_path / "usermodel.py"
    source.write_text(MODEL_SOURCE, encoding="utf-8")
    digits = load_digits(seed=0)
    np.save(tmp_path / "x.npy", digits.test_x[:2].numpy())
    np.savez(tmp_path / "data.npz", x=digits.test_x[:4].numpy(), y=digits.test_y[:4].numpy())
    torch.manual_seed(0)
    weights = save_checkpoint(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), tmp_path / "w.pt")
    return {"model": source, "weights": weights, "input": tmp_path / "x.npy", "data": tmp_path / "data.npz",
            "marker": tmp_path / "MARKER"}  # fmt: skip


def evil_pt(path: Path, marker: Path) -> Path:
    torch.save({"x": RunsCode(marker)}, path)
    return path


def evil_npy(path: Path, marker: Path) -> Path:
    np.save(path, np.array([RunsCode(marker), 1.0], dtype=object), allow_pickle=True)
    return path


def evil_npz(path: Path, marker: Path) -> Path:
    np.savez(path, x=np.array([RunsCode(marker)], dtype=object), y=np.array([0]))
    return path


def explain(files: dict[str, Path], *extra: str | Path):
    return invoke("explain", "--model", f"{files['model']}:build", "--out", files["model"].parent / "maps", *extra)


def evaluate(files: dict[str, Path], data: Path, *extra: str | Path):
    out = files["model"].parent / "eval"
    return invoke("evaluate", "--model", f"{files['model']}:build", "--data", data, "--num-subsets", "5",
                  "--no-progress", "--out", out, *extra)  # fmt: skip


@pytest.mark.parametrize(
    "case", ["explain --input .pt", "explain --input .npy", "explain --weights", "evaluate --data .npz",
             "evaluate --data dir/x.npy"],
)  # fmt: skip
def test_pickled_code_in_a_command_input_is_never_run(files: dict[str, Path], case: str) -> None:
    marker, folder = files["marker"], files["model"].parent
    if case == "explain --input .pt":
        evil = evil_pt(folder / "evil.pt", marker)
        result = explain(files, "--input", evil)
    elif case == "explain --input .npy":
        evil = evil_npy(folder / "evil.npy", marker)
        result = explain(files, "--input", evil)
    elif case == "explain --weights":
        evil = evil_pt(folder / "evil.pt", marker)
        result = explain(files, "--input", files["input"], "--weights", evil)
    elif case == "evaluate --data .npz":
        evil = evil_npz(folder / "evil.npz", marker)
        result = evaluate(files, evil)
    else:
        (folder / "d").mkdir()
        np.save(folder / "d" / "y.npy", np.zeros(2, dtype=np.int64))
        evil = evil_npy(folder / "d" / "x.npy", marker)
        result = evaluate(files, folder / "d")
    assert_clean_failure(result, evil)
    assert not marker.exists()


def test_pickled_code_raises_a_specific_error_in_python(files: dict[str, Path]) -> None:
    marker, folder = files["marker"], files["model"].parent
    readers: list[tuple[Callable[[Path], object], Path]] = [
        (load_array, evil_pt(folder / "evil.pt", marker)),
        (read_torch, folder / "evil.pt"),
        (load_array, evil_npy(folder / "evil.npy", marker)),
        (read_npy, folder / "evil.npy"),
        (load_labelled, evil_npz(folder / "evil.npz", marker)),
        (read_npz, folder / "evil.npz"),
    ]
    for reader, path in readers:
        with pytest.raises(FileContentError, match=rf"{path.name}: .*(pickled objects|allow_pickle=False)") as error:
            reader(path)
        assert error.value.path == path
    assert not marker.exists()


def test_pickled_code_in_a_progress_entry_is_ignored_with_a_warning(files: dict[str, Path]) -> None:
    marker = files["marker"]
    entry = files["model"].parent / "eval" / ".progress" / "evaluate.pt"
    entry.parent.mkdir(parents=True)
    torch.save({"format": FORMAT, "versions": versions(), "key": "0" * 16, "payload": RunsCode(marker)}, entry)
    with pytest.warns(ProgressWarning, match=r"evaluate\.pt: holds pickled objects, which could run code"):
        assert load_entry(entry, "0" * 16, lambda payload: payload) is None
    result = evaluate(files, files["data"])
    assert result.exit_code == 0, result.output
    assert f"warning: ignoring progress entry {entry}" in result.output
    assert not marker.exists()
    assert read_torch(entry)["format"] == FORMAT  # replaced by the real one


def halved(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize("kind", [".pt", ".npy", ".png", ".jpg", "weights", ".npz"])
def test_a_truncated_file_is_a_clean_error_naming_it(files: dict[str, Path], kind: str) -> None:
    folder = files["model"].parent
    digits = load_digits(seed=0).test_x[:2]
    if kind == ".pt":
        torch.save(digits, folder / "cut.pt")
    elif kind == ".npy":
        np.save(folder / "cut.npy", digits.numpy())
    elif kind in (".png", ".jpg"):
        pixels = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"cut{kind}")
    path = halved(files["weights"] if kind == "weights" else files["data"] if kind == ".npz" else folder / f"cut{kind}")
    if kind == "weights":
        result = explain(files, "--input", files["input"], "--weights", path)
    elif kind == ".npz":
        result = evaluate(files, path)
    else:
        result = explain(files, "--input", path)
    assert_clean_failure(result, path)
    expected = UserInputError if kind in (".png", ".jpg") else FileContentError
    python_reader = {".png": load_image, ".jpg": load_image, ".npz": load_labelled}.get(kind, load_array)
    if kind != "weights":
        with pytest.raises(expected, match=path.name):
            python_reader(path)


def test_a_damaged_cached_model_is_trained_again_without_running_its_code(tmp_path: Path) -> None:
    digits = load_digits(seed=0)
    build = lambda: mnist_mlp(digits.input_shape, digits.num_classes, hidden=(16,))  # noqa: E731
    first, _ = train_or_load("tiny", build, digits, cache=tmp_path, progress=False, epochs=1)
    (weights,) = tmp_path.glob("tiny-*.pt")
    marker = tmp_path / "MARKER"
    evil_pt(weights, marker)
    with pytest.warns(CacheWarning, match=r"ignoring cached model tiny-.*\.pt: CheckpointError"):
        again, _ = train_or_load("tiny", build, digits, cache=tmp_path, progress=False, epochs=1)
    assert not marker.exists()
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True))
    (record,) = tmp_path.glob("tiny-*.json")
    record.write_text("{truncated", encoding="utf-8")
    with pytest.warns(CacheWarning, match="JSONDecodeError"):
        train_or_load("tiny", build, digits, cache=tmp_path, progress=False, epochs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_or_load("tiny", build, digits, cache=tmp_path, progress=False, epochs=1)  # repaired: loaded


def test_text_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            (tmp_path / "aclImdb" / split / label).mkdir(parents=True)
            (tmp_path / "aclImdb" / split / label / "0_7.txt").write_text("a fine film", encoding="utf-8")
    (tmp_path / "aclImdb" / "test" / "neg" / "1_2.txt").write_bytes(b"caf\xe9 au lait")  # Latin-1
    with pytest.raises(DataFormatError, match=r"1_2\.txt: not UTF-8 text \(byte 3"):
        load_imdb(tmp_path)
    table = tmp_path / "reviews.csv"
    table.write_bytes(b"text,label\nfine,pos\ncaf\xe9,neg\n")
    with pytest.raises(DataFormatError, match=r"reviews\.csv: not UTF-8 text"):
        load_text_table(table, "text", "label")


def test_weights_messages_say_what_the_file_is(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Random bytes are not a torch file (not "pickled objects ... ()"); a complete pickle refused for a global
    names that global, in torch's zip format, its legacy format and as a plain pickle (not "not a complete
    torch file"); torch's protocol warning is not passed on."""
    import os
    import pickle

    folder = Path()  # relative names: the one-line error stays under its 200 characters
    monkeypatch.chdir(files["model"].parent)
    noise = folder / "noise.pt"
    noise.write_bytes(np.random.default_rng(0).bytes(2000))
    zipped, legacy, plain = folder / "getcwd.pt", folder / "legacy.pt", folder / "plain.pt"
    torch.save({"w": torch.zeros(2), "f": os.getcwd}, zipped)
    torch.save({"w": torch.zeros(2), "f": os.getcwd}, legacy, _use_new_zipfile_serialization=False)
    plain.write_bytes(pickle.dumps({"x": os.system}, protocol=4))
    expected = {
        noise: "not a zip/torch file: it starts with 5f 82 c2 d9",
        zipped: f"holds pickled objects, which could run code: refused without running them (global {os.name}.getcwd)",
        legacy: f"holds pickled objects, which could run code: refused without running them (global {os.name}.getcwd)",
        plain: f"holds pickled objects, which could run code: refused without running them (global {os.name}.system)",
    }
    for path, reason in expected.items():
        with pytest.raises(FileContentError) as error:
            read_torch(path)
        assert error.value.reason == reason
        result = explain(files, "--input", files["input"], "--weights", path)
        assert result.exit_code == 1 and result.stdout == ""
        assert result.stderr == f"error: CheckpointError: {path}: not a weights-only state dict: {reason}\n"
    (folder / "empty.pt").write_bytes(b"")
    with pytest.raises(FileContentError, match=r"empty\.pt: empty$"):
        read_torch(folder / "empty.pt")
