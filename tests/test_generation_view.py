"""What people read of a generation attribution: the HTML view (escaped tokens, the matrix's numbers, a real
browser's clicks), ``GenerationAttribution.to_html``, and ``gradattr explain-text`` on a tiny GPT-2 saved to
disk with a BPE tokenizer trained here (random weights, nothing downloaded)."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import chromium_page
from gradattr.cli import app
from gradattr.generation import GenerationAttribution, attribute_generation
from gradattr.models import text_decoder
from gradattr.report.generation import generation_html, visible
from gradattr.report.tokens import token_colour

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

TOKENS = ["<b>&", " \"q'", "two words", "end\n", "</script><script>alert(1)</script>", "\t", "", "ok"]
"""Token strings that must be escaped and shown: markup, quotes, spaces, a newline, a tab, an empty one."""
PROMPT_LENGTH = 5
SENTENCES = [
    "the cat sat on the mat and the dog sat on the log",
    "a review: the drug worked well, <b>no</b> side effects & fast relief",
    'she said "it helps" and he said it does not',
    "the patient felt better after two weeks\nthe nurse was kind",
]
"""The text the test tokenizer is trained on (byte-level BPE: any prompt encodes)."""
SCREENSHOT = Path("/tmp/generation_view.png")


@pytest.fixture(scope="module")
def result() -> GenerationAttribution:
    """Two samples of a small decoder, 3 generated tokens each, with the token strings of :data:`TOKENS` for
    sample 0; sample 1 is made left-padded by one token (mask 0, matrix 0 there, as attribute_generation
    gives a model that masks padding)."""
    model = text_decoder(50, embedding_dim=16, seed=0).eval()
    prompt = torch.tensor([[3, 7, 9, 11, 4], [0, 8, 2, 30, 5]])
    found = attribute_generation(model, prompt, method="deeplift", generated_ids=torch.tensor([[12, 6, 40]] * 2))
    mask, matrix = found.attention_mask.clone(), found.matrix.clone()
    mask[1, 0], matrix[1, :, 0] = 0, 0.0
    return dataclasses.replace(found, tokens=[TOKENS, found.tokens[1]], attention_mask=mask, matrix=matrix)


def _cell_titles(page: str) -> list[list[str | None]]:
    """The heatmap's cells row by row: the value in the tooltip, None for a blank (NaN) cell."""
    body = page[page.index('<table class="matrix">') :]
    body = body[body.index("<tbody>") : body.index("</tbody>")]
    return [
        [title or None for title in re.findall(r'<td class="[^"]*cell[^"]*"(?: style="[^"]*" title="([^"]*)")?>', row)]
        for row in re.findall(r"<tr data-step=.*?</tr>", body)
    ]


def test_every_token_is_escaped_and_its_whitespace_shown(result: GenerationAttribution) -> None:
    page = generation_html(result)
    assert "<b>&" not in page and "&lt;b&gt;&amp;" in page
    assert "alert(1)</script>" not in page and page.count("<script") == 2
    for token in TOKENS:
        assert visible(token) in page
    assert visible("two words") == 'two<span class="ws">␣</span>words'
    assert visible(" \"q'") == '<span class="ws">␣</span>&quot;q&#x27;'
    assert visible("end\n").endswith("↵</span>") and visible("\t") == '<span class="ws">⇥</span>'
    assert visible("") == '<span class="ws">∅</span>'


def test_the_page_is_self_contained(result: GenerationAttribution) -> None:
    page = generation_html(result, title="A <title>")
    assert not re.search(r"https?://|<link|<img|@import|url\(", page)
    assert not re.search(r'\b(src|href)="', page)
    assert "<title>A &lt;title&gt;</title>" in page


def test_the_heatmap_holds_the_matrix(result: GenerationAttribution) -> None:
    """Every cell's tooltip is the matrix entry (blank exactly where it is NaN), for a full and a padded sample."""
    for sample in (0, 1):
        shown = _cell_titles(generation_html(result, sample=sample))
        real = result.attention_mask[sample].bool()
        expected = [
            [None if math.isnan(v) else f"{v:+.4g}" for v in result.matrix[sample, i][real].double().tolist()]
            for i in range(result.generated_length)
        ]
        assert shown == expected
        assert sum(cell is None for row in shown for cell in row) == 6  # j >= P + i: 3 + 2 + 1 per sample


def test_the_header_names_method_scores_and_gaps(result: GenerationAttribution) -> None:
    page = generation_html(result)
    header = page[page.index("<header>") : page.index("</header>")]
    assert "method deeplift" in header and "target: logit of each generated token" in header
    for i in range(result.generated_length):
        assert f"{float(result.target_logits[0, i]):.4g}" in header
        assert f"gap {float(result.completeness_gap[0, i]):.2g}" in header


def test_a_contrast_names_both_tokens() -> None:
    model = text_decoder(50, embedding_dim=16, seed=0).eval()
    found = attribute_generation(model, torch.tensor([3, 7, 9]), method="gradient_x_input", target="contrast",
                                 generated_ids=torch.tensor([12, 7]), contrast_ids=9)  # fmt: skip
    page = generation_html(found)
    assert "target: logit(token) − logit(&#x27;9&#x27;)" in page and "<b>12</b> vs 9" in page
    assert "completeness gap" not in page


def test_to_html_returns_and_writes_the_page(result: GenerationAttribution, tmp_path: Path) -> None:
    path = tmp_path / "deep" / "view.html"
    page = result.to_html(path, sample=1, title="padded")
    assert path.read_text(encoding="utf-8") == page == generation_html(result, sample=1, title="padded")
    assert result.to_html() == generation_html(result)
    assert [p.name for p in path.parent.iterdir()] == ["view.html"]
    with pytest.raises(ValueError, match=r"sample must be an int in 0\.\.1"):
        result.to_html(sample=2)


CHOICES = """
const spans = Array.from(document.querySelectorAll('.stream .tok'));
return {
  colours: spans.map(s => s.style.backgroundColor),
  text: spans.map(s => s.textContent),
  explained: spans.filter(s => s.classList.contains('explained')).map(s => Number(s.dataset.position)),
  later: spans.filter(s => s.classList.contains('later')).map(s => Number(s.dataset.position)),
  selected: Array.from(document.querySelectorAll('table.matrix tr.selected')).map(r => Number(r.dataset.step)),
  caption: Array.from(document.querySelectorAll('p.chosen')).filter(p => !p.hidden).map(p => p.textContent),
};
"""


def test_clicking_a_generated_token_explains_it_in_chromium(result: GenerationAttribution, tmp_path: Path) -> None:
    """A real browser: at first the last generated token is explained; a click on the first one recolours the
    tokens with its row, outlines it, greys out the later ones and selects its heatmap row."""
    reason = chromium_page.missing_reason()
    if reason:
        pytest.skip(reason)
    from selenium.webdriver.common.by import By

    page = tmp_path / "generation.html"
    result.to_html(page)
    matrix, scales = result.matrix[0].double(), result.matrix[0].double().nan_to_num().abs().amax(1)

    def expected(step: int) -> list[str]:
        return ["" if math.isnan(v) else token_colour(v, float(scales[step])) for v in matrix[step].tolist()]

    with chromium_page.chromium() as driver:
        driver.set_window_size(chromium_page.WIDTH, 1100)
        driver.get(page.resolve().as_uri())
        first = driver.execute_script(CHOICES)
        driver.find_elements(By.CSS_SELECTOR, ".stream .tok.gen")[0].click()
        clicked = driver.execute_script(CHOICES)
        driver.save_screenshot(str(SCREENSHOT))
        overflow = driver.execute_script(chromium_page.OVERFLOW)
        errors = [e["message"] for e in driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]
    assert errors == []
    assert first["text"] == [t.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥") or "∅" for t in TOKENS]
    assert (first["explained"], first["later"], first["selected"]) == ([7], [], [2])
    assert first["colours"] == expected(2)
    assert (clicked["explained"], clicked["later"], clicked["selected"]) == ([5], [6, 7], [0])
    assert clicked["colours"] == expected(0) != first["colours"]
    assert clicked["caption"][0].startswith("Explaining generated token 1 of 3: ⇥")
    assert overflow["scrollWidth"] <= overflow["clientWidth"], overflow


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a 2-layer GPT-2 (n_embd 32, random weights) and its byte-level BPE tokenizer trained on
    :data:`SENTENCES`, as ``save_pretrained`` writes them."""
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    bpe = tokenizers.Tokenizer(tokenizers.models.BPE())
    bpe.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tokenizers.decoders.ByteLevel()
    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=320, special_tokens=["<eos>"], initial_alphabet=alphabet)
    bpe.train_from_iterator(SENTENCES, trainer)
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<eos>")
    eos = tokenizer.convert_tokens_to_ids("<eos>")
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                     eos_token_id=eos, bos_token_id=eos)  # fmt: skip
    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("tiny-gpt2")
    transformers.GPT2LMHeadModel(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


PROMPT = 'the drug <b>worked</b> & "she" said'


def _explain_text(model: Path | str, out: Path, *options: str) -> object:
    return CliRunner().invoke(
        app, ["explain-text", "--model", str(model), "--prompt", PROMPT, "--out", str(out), *options]
    )


def test_explain_text_writes_the_numbers_of_the_api(tiny_gpt2: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = _explain_text(tiny_gpt2, tmp_path, "--method", "deeplift", "--max-new-tokens", "6", "--dtype", "float64")
    assert run.exit_code == 0, run.output
    tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2)
    model = AutoModelForCausalLM.from_pretrained(tiny_gpt2).double().eval()
    expected = attribute_generation(model, tokenizer(PROMPT, return_tensors="pt").input_ids, method="deeplift",
                                    max_new_tokens=6, tokenizer=tokenizer)  # fmt: skip
    with (tmp_path / "generation.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    prompt, steps = expected.prompt_length, expected.generated_length
    assert len(rows) == sum(prompt + i for i in range(steps))
    for row in rows:
        step, source = int(row["step"]), int(row["source_position"])
        assert float(row["attribution"]) == pytest.approx(float(expected.matrix[0, step, source]), rel=1e-9, abs=1e-12)
        assert row["source_token"] == expected.tokens[0][source]
        assert abs(float(row["completeness_gap"])) < 1e-6
    page = (tmp_path / "generation.html").read_text(encoding="utf-8")
    assert "&lt;" in page and "&amp;" in page and "<b>worked" not in page
    assert all(visible(token) in page for token in expected.tokens[0])
    generated = tokenizer.decode(expected.target_ids[0].tolist())
    assert f"generated: {generated!r}" in run.output
    assert run.output.count(" <- ") == steps
    assert f"wrote {tmp_path / 'generation.html'}" in run.output


def test_explain_text_contrast(tiny_gpt2: Path, tmp_path: Path) -> None:
    run = _explain_text(tiny_gpt2, tmp_path, "--contrast", " the", "--max-new-tokens", "3")
    assert run.exit_code == 0, run.output
    page = (tmp_path / "generation.html").read_text(encoding="utf-8")
    assert "logit(token) − logit(&#x27; the&#x27;)" in page and 'vs <span class="ws">␣</span>the' in page


def test_explain_text_errors(tiny_gpt2: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    run = _explain_text(missing, tmp_path / "out")
    assert run.exit_code == 1 and f"--model {missing}: no such directory" in run.output, run.output
    assert not (tmp_path / "out").exists()
    run = _explain_text(tiny_gpt2, tmp_path, "--method", "gradcam")
    assert run.exit_code == 2 and "cannot explain generated text" in run.output, run.output
    run = _explain_text(tiny_gpt2, tmp_path, "--contrast", "unheard-of-words")
    assert run.exit_code == 1 and re.search(r"--contrast 'unheard-of-words' is \d+ tokens", run.output), run.output
    (tmp_path / "empty").mkdir()
    run = _explain_text(tmp_path / "empty", tmp_path)
    assert run.exit_code == 1 and "no HuggingFace causal language model" in run.output, run.output
