"""The study's offline language-model demo on the real drug reviews: the BPE tokenizer, the decoder trained on
the reviews, and the report section explaining its continuations (gradattr.experiments.language_model)."""

from __future__ import annotations

import copy
import json
import math
import unicodedata
import warnings
from pathlib import Path

import pytest
import torch

from gradattr.cache import CacheWarning
from gradattr.data.bpe import EOS, UNKNOWN, review_tokenizer
from gradattr.data.drugreview import load_drugreview
from gradattr.experiments import Study, StudySettings
from gradattr.experiments.language_model import (
    LanguageModel,
    LanguageModelSettings,
    LanguageModelStudy,
    language_model,
    measure_language_model,
    prompt_ids,
)
from gradattr.generation import attribute_generation
from gradattr.next_token import cross_entropy, token_windows
from gradattr.report import write_study

SETTINGS = LanguageModelSettings(epochs=2)
"""The section's settings with a tiny training budget (two epochs, about 6 s on one thread)."""
DEEPLIFT_GAP = 1e-10
"""Largest |Σ_j R_j − (S(x) − S(x̄))| of DeepLIFT over the generated tokens, float64 (measured: 1.4e-14 with the
reproduce settings, logits up to 12)."""


@pytest.fixture(scope="module")
def data():
    return load_drugreview()


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def lm(data, cache: Path) -> LanguageModel:
    return language_model(data, SETTINGS, cache=cache, progress=False)


@pytest.fixture(scope="module")
def study(lm: LanguageModel) -> LanguageModelStudy:
    return measure_language_model(lm, SETTINGS)


def test_tokenizer_round_trip_on_real_reviews(data, lm: LanguageModel) -> None:
    """Every held-out review whose characters were seen in training decodes to its normalised text (NFKC,
    lower case); the tokens are sub-words, not characters."""
    tokenizer = lm.tokenizer
    unknown = tokenizer.token_to_id(UNKNOWN)
    known = [text for text, ids in zip(data.test_texts, lm.test_ids, strict=True) if unknown not in ids]
    assert len(known) >= 0.95 * len(data.test_texts)
    wrong = [t for t in known if tokenizer.decode(tokenizer.encode(t).ids) != unicodedata.normalize("NFKC", t).lower()]
    assert not wrong, wrong[:2]
    words = sum(len(text.split()) for text in data.test_texts)
    assert sum(map(len, lm.test_ids)) < 1.8 * words  # merges at work (punctuation is a token of its own)
    assert tokenizer.token_to_id(EOS) == 0 and tokenizer.get_vocab_size() == SETTINGS.vocab_size


def test_tokenizer_is_cached_as_json_and_retrained_when_damaged(data, cache: Path) -> None:
    (path,) = cache.glob("drugreview-bpe-*.json")
    json.loads(path.read_text(encoding="utf-8"))  # the library's own JSON, no pickle
    again = review_tokenizer(data.train_texts, vocab_size=SETTINGS.vocab_size, cache=cache)
    assert again.get_vocab() == review_tokenizer(data.train_texts, vocab_size=SETTINGS.vocab_size,
                                                 cache=cache, retrain=True).get_vocab()  # fmt: skip
    path.write_text("{not json", encoding="utf-8")
    with pytest.warns(CacheWarning, match="training it again"):
        repaired = review_tokenizer(data.train_texts, vocab_size=SETTINGS.vocab_size, cache=cache)
    assert repaired.get_vocab() == again.get_vocab()


def test_decoder_beats_unigram_perplexity_on_held_out_reviews(lm: LanguageModel) -> None:
    record = lm.record
    message = (
        f"held-out perplexity {record.test_perplexity:.1f} vs unigram {record.unigram_perplexity:.1f} "
        f"({record.best_epoch} of {len(record.history)} epochs, {record.seconds:.1f} s)"
    )
    print(message)
    assert record.test_perplexity < 0.5 * record.unigram_perplexity, message
    windows = token_windows(lm.test_ids, SETTINGS.window, lm.tokenizer.token_to_id(EOS))
    assert math.exp(cross_entropy(lm.model, windows)) == pytest.approx(record.test_perplexity, rel=1e-6)


def test_cached_decoder_is_reloaded(data, cache: Path, lm: LanguageModel) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        again = language_model(data, SETTINGS, cache=cache, progress=False)
    assert again.record == lm.record
    for name, tensor in lm.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], tensor), name


def test_section_numbers_equal_a_direct_attribute_generation_call(lm: LanguageModel, study: LanguageModelStudy) -> None:
    """Greedy continuation, every method's matrix, logits and gaps, and the JSON numbers, as a direct call on the
    float64 decoder gives them; and the progress entry round trip."""
    model = copy.deepcopy(lm.model).double()
    prompts = prompt_ids(lm, SETTINGS)
    assert prompts.shape == (SETTINGS.prompts, SETTINGS.prompt_tokens)
    greedy = attribute_generation(model, prompts, method="saliency", max_new_tokens=SETTINGS.new_tokens,
                                  eos_token_id=0)  # fmt: skip
    assert torch.equal(greedy.ids, study.first.ids)
    numbers = study.to_dict()
    restored = LanguageModelStudy.from_state(SETTINGS, lm.record, study.to_state())
    for method in SETTINGS.methods:
        direct = attribute_generation(model, prompts, method=method, generated_ids=greedy.target_ids, eos_token_id=0,
                                      **SETTINGS.method_options(method))  # fmt: skip
        ours = study.attributions[method]
        torch.testing.assert_close(ours.matrix, direct.matrix, equal_nan=True, rtol=0, atol=0)
        torch.testing.assert_close(ours.target_logits, direct.target_logits, equal_nan=True, rtol=0, atol=0)
        if direct.completeness_gap is not None:
            torch.testing.assert_close(ours.completeness_gap, direct.completeness_gap, equal_nan=True, rtol=0, atol=0)
        for b, prompt in enumerate(numbers["prompts"]):
            json_matrix = torch.tensor(prompt["matrix"][method], dtype=torch.float64)
            torch.testing.assert_close(json_matrix, direct.matrix[b], equal_nan=True, rtol=0, atol=0)
        torch.testing.assert_close(restored.attributions[method].matrix, ours.matrix, equal_nan=True, rtol=0, atol=0)
    assert numbers["prompts"][0]["continuation"] == lm.tokenizer.decode(greedy.target_ids[0].tolist()).strip()


def test_deeplift_completeness_per_generated_token(study: LanguageModelStudy) -> None:
    result = study.attributions["deeplift"]
    explained = ~result.target_logits.isnan()  # NaN after a sample's end-of-review token: not generated
    assert result.completeness_gap is not None and not bool(result.completeness_gap[explained].isnan().any())
    assert study.max_gap() < DEEPLIFT_GAP, f"DeepLIFT's largest gap {study.max_gap():.2g}"


def test_report_section_results_json_and_csv(study: LanguageModelStudy, tmp_path: Path) -> None:
    run = Study("language model only", "test", StudySettings(), [], {}, {}, "now", language_model=study)
    write_study(run, tmp_path)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<h2 id="language-model">Language model</h2>' in page and 'href="#language-model"' in page
    assert f"{study.record.test_perplexity:.1f}" in page and page.count('class="tok"') >= 5 * SETTINGS.prompt_tokens
    saved = json.loads((tmp_path / "results.json").read_text(encoding="utf-8"))["language_model"]
    assert saved["max_abs_completeness_gap"]["deeplift"] == study.max_gap()
    assert [p["continuation"] for p in saved["prompts"]] == [study.text(b, True) for b in range(SETTINGS.prompts)]
    rows = (tmp_path / "language_model.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) - 1 == sum(len(r.to_records()) for r in study.attributions.values())
