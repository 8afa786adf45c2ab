"""The command line: each command's happy path, a usage error (exit 2) and a failure (exit 1, one line)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gradattr.cache import save_checkpoint
from gradattr.cli import app
from gradattr.data import load_digits
from gradattr.experiments.user_data import load_model
from gradattr.metrics.perturbation import chunk_bounds

MODEL_SOURCE = """
import torch
from torch import nn


def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


class Words(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(50, 8)
        self.fc = nn.Linear(8, 2)

    def forward(self, ids):
        return self.fc(torch.relu(self.embedding(ids)).mean(1))


def words():
    torch.manual_seed(0)
    return Words()


def cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10))
"""


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def assert_one_line_failure(result) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output


@pytest.fixture
def user_model(tmp_path: Path) -> tuple[Path, Path]:
    """A model file with factories ``build`` (digits MLP) and ``words`` (a tiny text model), and weights."""
    source = tmp_path / "usermodel.py"
    source.write_text(MODEL_SOURCE, encoding="utf-8")
    torch.manual_seed(1)
    weights = save_checkpoint(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)),
        tmp_path / "weights.pt",
    )
    return source, weights


def test_help_has_examples() -> None:
    for command in ("reproduce", "explain", "evaluate"):
        result = invoke(command, "--help")
        assert result.exit_code == 0 and "Examples" in result.output, result.output


def test_reproduce_writes_report_json_and_csvs(tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = invoke(
        "reproduce", "--datasets", "digits", "--models", "mlp-relu", "--samples", "8", "--num-subsets", "10",
        "--display", "2", "--out", str(out), "--cache", str(tmp_path / "cache"), "--no-progress", "--no-robustness",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "MLP (ReLU)" in result.output
    assert f"wrote {out / 'report.html'} " in result.output  # the path unbroken, however long (copy-paste)
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert [m["model"] for m in results["models"]] == ["MLP (ReLU)"] and results["robustness"] is None
    assert results["settings"]["num_subsets"] == 10 and results["models"][0]["evaluation_samples"] == 8
    assert "--num-subsets 10" in results["command"]
    assert {p.name for p in out.iterdir()} >= {"report.html", "results.json", "sensitivity_n.csv", "claims.csv"}
    quality = results["models"][0]["quality"]  # the default quality metrics beside Sensitivity-n
    assert set(quality) == {"deletion_auc", "insertion_auc", "sparseness", "complexity", "deletion_curve",
                            "insertion_curve"}  # fmt: skip
    assert all(0 <= v <= 1 for v in quality["deletion_auc"].values())
    features = 64  # digits: 8 x 8 pixels, the features Sensitivity-n and deletion remove
    for method, auc in quality["deletion_auc"].items():  # the mean curve's area is the mean AUC
        curve = np.asarray(quality["deletion_curve"][method])
        fractions = chunk_bounds(features, len(curve) - 1).numpy() / features
        assert np.trapezoid(curve, fractions) == pytest.approx(auc, abs=1e-9)
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "Which method is most faithful?" in report and "Deletion and insertion curves" in report
    assert "deletion curve" not in report  # curves are drawn, not ranked in the table


@pytest.mark.parametrize(
    "args, message",
    [
        (["--datasets", "nope"], "unknown data set"),
        (["--datasets", "digits", "--models", "lstm"], "not among"),
        (["--datasets", "mnist"], "--mnist DIR"),
        (["--samples", "1"], "--samples"),
        (["--methods", "magic"], "unknown method"),
    ],
)
def test_reproduce_usage_errors_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    result = invoke("reproduce", *args, "--out", str(tmp_path / "out"))
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_reproduce_failure_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "mnist"
    empty.mkdir()
    result = invoke(
        "reproduce", "--datasets", "mnist", "--mnist", str(empty), "--out", str(tmp_path / "o"), "--no-progress"
    )
    assert_one_line_failure(result)


def test_explain_images_and_arrays(user_model: tuple[Path, Path], tmp_path: Path) -> None:
    source, weights = user_model
    digits = load_digits(seed=0).test_x[:2]
    image = tmp_path / "digit.png"
    Image.fromarray(((digits[0, 0].numpy() + 1) * 127.5).round().astype(np.uint8), mode="L").save(image)
    array = tmp_path / "digit.npy"
    np.save(array, digits[1].numpy())
    out = tmp_path / "maps"
    result = invoke(
        "explain", "--model", f"{source}:build", "--weights", str(weights), "--input", str(image),
        "--input", str(array), "--method", "deeplift,saliency", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.load(out / "deeplift.npy").shape == (2, 1, 8, 8)
    assert np.load(out / "saliency.npy").min() >= 0
    assert Image.open(out / "heatmaps.png").size[0] > 200


def test_explain_token_ids_at_the_embedding(user_model: tuple[Path, Path], tmp_path: Path) -> None:
    source, _ = user_model
    ids = tmp_path / "ids.npy"
    np.save(ids, np.array([[3, 4, 5, 6], [7, 8, 9, 1]], dtype=np.int64))
    out = tmp_path / "maps"
    result = invoke(
        "explain", "--model", f"{source}:words", "--input", str(ids), "--batched", "--layer", "embedding",
        "--method", "integrated_gradients", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.load(out / "integrated_gradients.npy").shape == (2, 4, 8)


def test_explain_gradcam_reads_the_layer(user_model: tuple[Path, Path], tmp_path: Path) -> None:
    """--layer is Grad-CAM's convolution; the maps have the input's shape. Mixed with a layer attribution
    method it is ambiguous, a usage error."""
    source, _ = user_model
    array = tmp_path / "digits.npy"
    np.save(array, load_digits(seed=0).test_x[:3].numpy())
    out = tmp_path / "cam"
    result = invoke(
        "explain", "--model", f"{source}:cnn", "--input", str(array), "--batched", "--layer", "1",
        "--method", "gradcam,guided_gradcam", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.load(out / "gradcam.npy").shape == (3, 1, 8, 8) and np.load(out / "gradcam.npy").min() >= 0
    mixed = invoke("explain", "--model", f"{source}:cnn", "--input", str(array), "--batched", "--layer", "1",
                   "--method", "gradcam,saliency", "--out", str(out))  # fmt: skip
    assert mixed.exit_code == 2 and "run them separately" in mixed.output


def test_explain_lrp_composite(user_model: tuple[Path, Path], tmp_path: Path) -> None:
    """--composite reaches the lrp method only: lrp.npy is gradattr.attribute(..., method="lrp", composite=...) on
    the same inputs, the other methods' maps do not change with it."""
    import gradattr

    source, _ = user_model
    x = load_digits(seed=0).test_x[:3]
    array = tmp_path / "digits.npy"
    np.save(array, x.numpy())
    out = tmp_path / "lrp"
    result = invoke(
        "explain", "--model", f"{source}:cnn", "--input", str(array), "--batched",
        "--method", "lrp,gradient_x_input", "--composite", "epsilon_gamma_box", "--out", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    network = load_model(f"{source}:cnn", None)
    classes = network(x).argmax(1)
    expected = gradattr.attribute(network, x, method="lrp", target=classes, composite="epsilon_gamma_box")
    np.testing.assert_allclose(np.load(out / "lrp.npy"), expected.numpy(), rtol=1e-6, atol=1e-7)
    flat = gradattr.attribute(network, x, method="lrp", target=classes)  # the default, epsilon_plus_flat
    assert not np.allclose(np.load(out / "lrp.npy"), flat.numpy(), atol=1e-4)
    gxi = gradattr.attribute(network, x, method="gradient_x_input", target=classes)
    np.testing.assert_allclose(np.load(out / "gradient_x_input.npy"), gxi.numpy(), rtol=1e-6, atol=1e-7)
    assert sorted(p.name for p in out.iterdir()) == ["gradient_x_input.npy", "heatmaps.png", "lrp.npy"]


def test_explain_several_lrp_composites_side_by_side(user_model: tuple[Path, Path], tmp_path: Path) -> None:
    """Several composites (comma-separated and repeated): one column and one lrp-NAME.npy each."""
    import gradattr

    source, _ = user_model
    x = load_digits(seed=0).test_x[:2]
    array = tmp_path / "digits.npy"
    np.save(array, x.numpy())
    out = tmp_path / "lrp"
    result = invoke("explain", "--model", f"{source}:cnn", "--input", str(array), "--batched", "--method", "lrp",
                    "--composite", "epsilon_plus,epsilon_alpha2_beta1_flat", "--composite", "epsilon_plus_flat",
                    "--target", "3", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    network = load_model(f"{source}:cnn", None)
    for name in ("epsilon_plus", "epsilon_alpha2_beta1_flat", "epsilon_plus_flat"):
        expected = gradattr.attribute(network, x, method="lrp", target=3, composite=name)
        np.testing.assert_allclose(np.load(out / f"lrp-{name}.npy"), expected.numpy(), rtol=1e-6, atol=1e-7)
    assert not (out / "lrp.npy").exists()
    assert Image.open(out / "heatmaps.png").size[0] > 400  # input + three columns


def test_explain_bad_composite_is_a_usage_error(user_model: tuple[Path, Path], tmp_path: Path) -> None:
    source, _ = user_model
    array = tmp_path / "digits.npy"
    np.save(array, load_digits(seed=0).test_x[:1].numpy())
    args = ["explain", "--model", f"{source}:cnn", "--input", str(array), "--batched", "--out", str(tmp_path / "o")]
    result = invoke(*args, "--method", "lrp", "--composite", "epsilon_plus,zplus")
    assert result.exit_code == 2 and "unknown composite(s) zplus" in result.output
    for name in ("epsilon_plus", "epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon_alpha2_beta1_flat",
                 "epsilon_gamma_box"):  # fmt: skip
        assert name in result.output
    without = invoke(*args, "--method", "saliency", "--composite", "epsilon_plus")
    assert without.exit_code == 2 and "add lrp to --method" in without.output
    assert not (tmp_path / "o").exists()


def test_explain_usage_errors_exit_2(user_model: tuple[Path, Path]) -> None:
    source, _ = user_model
    assert invoke("explain", "--model", f"{source}:build").exit_code == 2  # no --input
    result = invoke("explain", "--model", f"{source}:build", "--input", "x.npy", "--method", "magic")
    assert result.exit_code == 2 and "unknown method" in result.output


def test_explain_failures_are_one_line(user_model: tuple[Path, Path], tmp_path: Path) -> None:
    source, _ = user_model
    wrong = save_checkpoint(torch.nn.Linear(3, 2), tmp_path / "wrong.pt")
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8), dtype=np.float32))
    assert_one_line_failure(
        invoke("explain", "--model", f"{source}:build", "--weights", str(wrong), "--input", str(tmp_path / "x.npy"))
    )
    assert_one_line_failure(invoke("explain", "--model", "no_such_module:build", "--input", str(tmp_path / "x.npy")))
    text = tmp_path / "review.txt"
    text.write_text("great drug", encoding="utf-8")
    assert_one_line_failure(invoke("explain", "--model", f"{source}:build", "--input", str(text)))


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 8, 8), dtype=np.float32))
    result = invoke("explain", "--model", "no_such_module:build", "--input", str(tmp_path / "x.npy"), "--debug")
    assert result.exit_code == 1 and result.exception is not None
    assert "no_such_module" in str(result.exception)


def test_evaluate_writes_the_same_report(user_model: tuple[Path, Path], tmp_path: Path) -> None:
    source, weights = user_model
    digits = load_digits(seed=0)
    data = tmp_path / "test.npz"
    np.savez(data, x=digits.test_x[:6].numpy(), y=digits.test_y[:6].numpy())
    out = tmp_path / "eval"
    result = invoke(
        "evaluate", "--model", f"{source}:build", "--weights", str(weights), "--data", str(data), "--methods",
        "gradient_x_input,deeplift,occlusion", "--num-subsets", "10", "--out", str(out),
        "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    (entry,) = results["models"]
    assert entry["methods"] == ["gradient_x_input", "deeplift", "occlusion"]
    assert entry["evaluation_samples"] == 6 and entry["sensitivity_n"]["settings"]["num_features"] == 64
    assert entry["completeness_relative_gap"]["deeplift"] < 1e-5
    assert "Summary" in (out / "report.html").read_text(encoding="utf-8")


def test_evaluate_measures_quality_metrics_with_masks(user_model: tuple[Path, Path], tmp_path: Path) -> None:
    """``evaluate --metrics``: the quality metrics beside Sensitivity-n, the localisation ones against the masks of
    --data, in results.json (equal to the metric functions on the methods' maps) and in the report's ranking."""
    from gradattr import attribute, metrics
    from gradattr.cache import load_checkpoint
    from gradattr.experiments.user_data import load_model

    source, weights = user_model
    digits = load_digits(seed=0)
    x, y = digits.test_x[:6], digits.test_y[:6]
    masks = (x > 0).numpy()
    data = tmp_path / "test.npz"
    np.savez(data, x=x.numpy(), y=y.numpy(), masks=masks)
    out = tmp_path / "eval"
    args = ["evaluate", "--model", f"{source}:build", "--weights", str(weights), "--data", str(data), "--methods",
            "saliency,deeplift", "--num-subsets", "10", "--out", str(out), "--no-progress"]  # fmt: skip
    result = invoke(*args, "--metrics", "sparseness,pointing_game,deletion_auc")
    assert result.exit_code == 0, result.output
    quality = json.loads((out / "results.json").read_text(encoding="utf-8"))["models"][0]["quality"]
    network = load_checkpoint(load_model(f"{source}:build"), weights)
    for method in ("saliency", "deeplift"):
        maps = attribute(network, x, method=method, target=y)
        assert quality["sparseness"][method] == pytest.approx(float(metrics.sparseness(maps).mean()), abs=1e-6)
        hits = float(metrics.pointing_game(maps, torch.from_numpy(masks)).mean())
        assert quality["pointing_game"][method] == pytest.approx(hits)
        assert 0 <= quality["deletion_auc"][method] <= 1
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "Which method is most faithful?" in report and "deletion auc ↓" in report and "mean rank" in report
    unknown = invoke(*args, "--metrics", "sparsity")
    assert unknown.exit_code == 2 and "unknown metric(s) sparsity" in unknown.output
    shifted = invoke(*args, "--metrics", "input_invariance")
    assert shifted.exit_code == 2 and "needs the option(s) shift" in shifted.output
    np.savez(data, x=x.numpy(), y=y.numpy())
    no_masks = invoke(*args, "--metrics", "pointing_game", "--fresh")
    assert no_masks.exit_code == 1 and "need ground-truth masks" in no_masks.output


def test_evaluate_text_model_at_the_embedding(user_model: tuple[Path, Path], tmp_path: Path) -> None:
    source, _ = user_model
    data = tmp_path / "ids"
    data.mkdir()
    np.save(data / "x.npy", np.random.default_rng(0).integers(1, 50, size=(5, 12)))
    np.save(data / "y.npy", np.array([0, 1, 0, 1, 1]))
    out = tmp_path / "eval"
    result = invoke(
        "evaluate", "--model", f"{source}:words", "--data", str(data), "--layer", "embedding", "--num-subsets",
        "10", "--out", str(out), "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (entry,) = json.loads((out / "results.json").read_text(encoding="utf-8"))["models"]
    assert entry["sensitivity_n"]["settings"]["num_features"] == 12  # tokens, not embedding entries
    rows = {(r["method"], r["n"]): r["mean"] for r in entry["sensitivity_n"]["rows"]}
    assert rows[("occlusion", 1)] == pytest.approx(1.0)  # Occlusion-1 of a token is exact at n = 1


def test_evaluate_usage_error_and_failure(user_model: tuple[Path, Path], tmp_path: Path) -> None:
    source, _ = user_model
    assert invoke("evaluate", "--model", f"{source}:build").exit_code == 2  # no --data
    bad = tmp_path / "bad.npz"
    np.savez(bad, inputs=np.zeros((2, 64)))
    assert_one_line_failure(invoke("evaluate", "--model", f"{source}:build", "--data", str(bad)))


CHECKED_SOURCE = """
import torch
from torch import nn


def colour():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 10))


class Spectral(nn.Module):  # DeepLIFT and eps-LRP refuse torch.fft.fft (not known to be linear); saliency runs
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        z = self.fc(x.flatten(1))
        return z + torch.fft.fft(z).real


def spectral():
    torch.manual_seed(0)
    return Spectral()


class Extra(nn.Module):  # output (B, 1, C)
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        return self.fc(x.flatten(1)).unsqueeze(1)


def extra():
    torch.manual_seed(0)
    return Extra()
"""
FFT_REFUSED = (
    "UnsupportedOperationError: gradattr cannot apply the attribution rule through 'torch.fft.fft' in module "
    "'<root Spectral>': it is not known to be linear in its input."
)


@pytest.fixture
def checked(user_model: tuple[Path, Path], tmp_path: Path) -> dict[str, Path]:
    """The digits MLP of ``user_model``, the models of CHECKED_SOURCE, and inputs: a 16x16 grey PNG, an 8x8
    grey PNG, a batch of 4 digits (.npy) and 8 labelled digits (.npz)."""
    (tmp_path / "checked.py").write_text(CHECKED_SOURCE, encoding="utf-8")
    digits = load_digits(seed=0)
    grey = ((digits.test_x[0, 0].numpy() + 1) * 127.5).round().astype(np.uint8)
    Image.fromarray(grey, mode="L").save(tmp_path / "digit.png")
    Image.fromarray(np.kron(grey, np.ones((2, 2), dtype=np.uint8)), mode="L").save(tmp_path / "big.png")
    np.save(tmp_path / "four.npy", digits.test_x[:4].numpy())
    np.savez(tmp_path / "eight.npz", x=digits.test_x[:8].numpy(), y=digits.test_y[:8].numpy())
    return {"mlp": user_model[0], "models": tmp_path / "checked.py", "out": tmp_path / "out"} | {
        name: tmp_path / name for name in ("digit.png", "big.png", "four.npy", "eight.npz")
    }


def test_explain_a_wrong_input_size_names_the_file_and_the_shape_the_model_expects(checked: dict[str, Path]) -> None:
    """Not "mat1 and mat2 shapes cannot be multiplied (1x256 and 64x32)" or "expected input[1, 1, 8, 8] to have 3
    channels": the user's file, its shape, the shape the model runs on."""
    result = invoke("explain", "--model", f"{checked['mlp']}:build", "--input", str(checked["big.png"]),
                    "--out", str(checked["out"]))  # fmt: skip
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (
        "error: InputShapeError: input big.png has shape (1, 16, 16) but the model expects (1, 8, 8) (layer '1' "
        "(Linear with 64 input features))\n"
    )
    result = invoke("explain", "--model", f"{checked['models']}:colour", "--input", str(checked["digit.png"]),
                    "--out", str(checked["out"]))  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == (
        "error: InputShapeError: input digit.png has shape (1, 8, 8) but the model expects (3, 8, 8) (layer '0' "
        "(Conv2d with 3 input channels))\n"
    )
    result = invoke("explain", "--model", f"{checked['models']}:colour", "--input", str(checked["four.npy"]),
                    "--batched", "--out", str(checked["out"]))  # fmt: skip
    assert result.stderr.startswith("error: InputShapeError: input four.npy has shape (4, 1, 8, 8) but the model "
                                    "expects (4, 3, 8, 8)")  # fmt: skip


def test_explain_exit_codes_when_methods_fail(checked: dict[str, Path]) -> None:
    """Some methods failing: exit 0, the others written, the failures named on stderr. Every method failing:
    exit 1 with the first reason."""
    args = ["explain", "--model", f"{checked['models']}:spectral", "--input", str(checked["four.npy"]), "--batched",
            "--out", str(checked["out"])]  # fmt: skip
    partial = invoke(*args, "--method", "saliency,deeplift")
    assert partial.exit_code == 0, partial.output
    assert partial.stderr.startswith(f"warning: 1 of 2 methods failed and are left out:\n  deeplift: {FFT_REFUSED}")
    assert (checked["out"] / "saliency.npy").exists() and not (checked["out"] / "deeplift.npy").exists()
    assert (checked["out"] / "heatmaps.png").exists()
    total = subprocess.run(
        [sys.executable, "-m", "gradattr.cli", *args, "--method", "deeplift,epsilon_lrp"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert total.returncode == 1, total.stderr
    assert total.stderr.startswith(f"error: all 2 methods failed; deeplift: {FFT_REFUSED}"), total.stderr
    assert len(total.stderr.strip().splitlines()) == 1


def test_explain_reads_a_b_1_c_output_and_evaluate_names_the_users_batch(checked: dict[str, Path]) -> None:
    result = invoke("explain", "--model", f"{checked['models']}:extra", "--input", str(checked["four.npy"]),
                    "--batched", "--method", "saliency", "--out", str(checked["out"]))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.load(checked["out"] / "saliency.npy").shape == (4, 1, 8, 8)
    result = invoke("evaluate", "--model", f"{checked['models']}:extra", "--data", str(checked["eight.npz"]),
                    "--out", str(checked["out"]), "--no-progress")  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == (
        "error: ValueError: the model's output has shape (8, 1, 10) for 8 samples of eight.npz; evaluate needs one "
        "score per class, (8, C)\n"
    )


def test_evaluate_a_label_out_of_range_fails_at_once(checked: dict[str, Path], tmp_path: Path) -> None:
    digits = load_digits(seed=0)
    labels = digits.test_y[:8].numpy().copy()
    labels[5] = 12
    np.savez(tmp_path / "bad.npz", x=digits.test_x[:8].numpy(), y=labels)
    result = invoke("evaluate", "--model", f"{checked['mlp']}:build", "--data", str(tmp_path / "bad.npz"),
                    "--out", str(checked["out"]), "--no-progress")  # fmt: skip
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (
        "error: ValueError: bad.npz: label 12 (sample 5) is not a class of the model, which has 10 outputs (labels "
        "0..9)\n"
    )
    assert not (checked["out"] / "report.html").exists()


def test_evaluate_exit_codes_counts_and_accuracy(checked: dict[str, Path]) -> None:
    """Some methods failing: exit 0 and the failures on stderr; every method failing: exit 1. The report's card
    counts the claims its table counts, and shows the accuracy on the labelled samples."""
    args = ["evaluate", "--model", f"{checked['models']}:spectral", "--data", str(checked["eight.npz"]),
            "--num-subsets", "5", "--no-progress", "--out", str(checked["out"])]  # fmt: skip
    partial = invoke(*args, "--methods", "saliency,gradient_x_input,deeplift")
    assert partial.exit_code == 0, partial.output
    assert partial.stderr.startswith(f"warning: 1 of 3 methods failed and are left out:\n  deeplift: {FFT_REFUSED}")
    total = invoke(*args, "--methods", "deeplift,epsilon_lrp")
    assert total.exit_code == 1 and total.stderr.startswith(f"error: all 2 methods failed; deeplift: {FFT_REFUSED}")

    out = checked["out"] / "mlp"
    result = invoke("evaluate", "--model", f"{checked['mlp']}:build", "--data", str(checked["eight.npz"]),
                    "--num-subsets", "5", "--no-progress", "--out", str(out), "--methods",
                    "gradient_x_input,integrated_gradients,occlusion")  # fmt: skip
    assert result.exit_code == 0 and result.stderr == "", result.output
    page = (out / "report.html").read_text(encoding="utf-8")
    (card,) = re.findall(r'<div class="big">([^<]*)</div><div class="label">paper claims hold', page)
    (entry,) = json.loads((out / "results.json").read_text(encoding="utf-8"))["models"]
    verdicts = [c["verdict"] for c in entry["claims"]]
    held, checked_claims = verdicts.count("holds"), verdicts.count("holds") + verdicts.count("does not hold")
    assert card == f"{held} / {checked_claims}" and checked_claims < len(verdicts)  # some claims do not apply
    summary = re.sub(r"<[^>]+>", " ", page[page.index('id="summary"') : page.index('id="paper-claims"')])
    assert f"{held} / {checked_claims}" in summary
    digits, network = load_digits(seed=0), load_model(f"{checked['mlp']}:build")
    accuracy = float((network(digits.test_x[:8]).argmax(1) == digits.test_y[:8]).double().mean())
    assert entry["training"]["test_accuracy"] == pytest.approx(accuracy)
    assert f"{100 * accuracy:.1f} %" in summary  # was "–" although labels were given


def test_reproduce_exit_codes_when_methods_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """reproduce: a method failing on a model is named on stderr with exit 0; every method failing on every
    model exits 1 with the first reason."""
    import gradattr.experiments.study as study

    refused = set()
    original = study._attribute

    def failing(subject, x, y, label, options, method=None):  # type: ignore[no-untyped-def]
        if label in refused:
            raise RuntimeError(f"{label} refused by the test")
        return original(subject, x, y, label, options, method)

    monkeypatch.setattr(study, "_attribute", failing)
    args = ["reproduce", "--datasets", "digits", "--models", "mlp-relu", "--samples", "4", "--num-subsets", "5",
            "--display", "2", "--cache", str(tmp_path / "cache"), "--no-progress", "--no-robustness", "--methods",
            "saliency,gradient_x_input"]  # fmt: skip
    refused.add("saliency")
    partial = invoke(*args, "--out", str(tmp_path / "partial"))
    assert partial.exit_code == 0, partial.output
    assert partial.stderr == (
        "warning: 1 of 2 methods failed and are left out:\n"
        "  MLP (ReLU) (Digits): saliency: RuntimeError: saliency refused by the test\n"
    )
    refused.add("gradient_x_input")
    total = invoke(*args, "--out", str(tmp_path / "total"))
    assert total.exit_code == 1
    assert total.stderr == (
        "error: all 2 methods failed; MLP (ReLU) (Digits): saliency: RuntimeError: saliency refused by the test\n"
    )
