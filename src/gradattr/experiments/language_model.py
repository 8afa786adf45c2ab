"""The study's language-model section: what a small decoder trained here continues a drug review with, and which
words drove each generated token, per method.

A BPE tokenizer (:mod:`gradattr.data.bpe`) and a causal decoder (:class:`gradattr.models.TextDecoder`) are
trained on the training reviews (:mod:`gradattr.next_token`: next-token prediction, early stopping on held-out
windows) and cached like the other study models. Held-out test reviews, cut to their first tokens, are the
prompts; the decoder continues them greedily, and :func:`gradattr.generation.attribute_generation` explains
every generated token with each method. Attributions are computed on a float64 copy of the decoder, so that
DeepLIFT's completeness gap Σ_j M[b, i, j] − (S_i(x) − S_i(x̄)) (Shrikumar et al. 2017, "summation-to-delta")
shows the rule's exactness rather than float32 rounding.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer
from torch import Tensor, nn

from gradattr.data.bpe import EOS, review_tokenizer, token_strings
from gradattr.data.dataset import TextDataset
from gradattr.generation import GenerationAttribution, attribute_generation
from gradattr.models import text_decoder
from gradattr.next_token import NextTokenRecord, token_windows, train_or_load_next_token
from gradattr.progress import as_tensor, fingerprint

GAP_METHOD = "deeplift"
"""The method whose completeness gap per generated token the section reports."""


@dataclass(frozen=True)
class LanguageModelSettings:
    """How the language-model section is run.

    Attributes:
        vocab_size: BPE vocabulary (about ``vocab_size`` − 70 merges above the characters).
        window: training window (tokens the decoder reads at once; also its ``max_len``).
        embedding_dim, depth, heads: the decoder's size.
        epochs, batch_size, lr, patience: training (:func:`gradattr.next_token.train_next_token`).
        prompts: held-out reviews continued and explained.
        prompt_tokens: tokens of each prompt (the start of its review).
        new_tokens: tokens generated greedily after each prompt.
        methods: the methods explaining each generated token.
        ig_steps: Integrated Gradients' steps.
        top: prompt tokens listed per generated token (the highest attributions).
        seed: training seed and the draw of the prompts.
    """

    vocab_size: int = 1000
    window: int = 32
    embedding_dim: int = 64
    depth: int = 2
    heads: int = 4
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-2
    patience: int = 1
    prompts: int = 3
    prompt_tokens: int = 12
    new_tokens: int = 8
    methods: tuple[str, ...] = ("saliency", "gradient_x_input", "integrated_gradients", "deeplift", "epsilon_lrp")
    ig_steps: int = 100
    top: int = 3
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def training(self) -> dict[str, Any]:
        """The options of :func:`gradattr.next_token.train_next_token`."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "patience": self.patience}

    def method_options(self, method: str) -> dict[str, Any]:
        """Options of ``method``: Integrated Gradients' steps, its gap reported rather than warned about."""
        return {"steps": self.ig_steps, "gap_tolerance": None} if method == "integrated_gradients" else {}


@dataclass(eq=False)
class LanguageModel:
    """The trained tokenizer and decoder of the section, with their data.

    Attributes:
        tokenizer: the BPE tokenizer.
        model: the decoder (float32, eval mode).
        record: its training record and perplexities.
        test_ids: token ids of every test review (the prompts are drawn from them).
        seconds: wall time of training (or loading) both.
    """

    tokenizer: Tokenizer
    model: nn.Module
    record: NextTokenRecord
    test_ids: list[list[int]]
    seconds: float

    def key(self, settings: LanguageModelSettings) -> str:
        """A fingerprint of everything the section's measurements depend on (settings, weights, prompts)."""
        return fingerprint({"study": "language model", "settings": settings.to_dict(),
                            "weights": self.model.state_dict()}, (prompt_ids(self, settings),))  # fmt: skip


def language_model(
    data: TextDataset,
    settings: LanguageModelSettings = LanguageModelSettings(),
    *,
    cache: str | Path | None = None,
    retrain: bool = False,
    progress: bool = True,
) -> LanguageModel:
    """Train (or load from the cache) the tokenizer on ``data``'s training reviews and the decoder on their
    token stream (windows of ``settings.window`` + 1 tokens; test windows from the test reviews)."""
    start = time.perf_counter()
    tokenizer = review_tokenizer(data.train_texts, vocab_size=settings.vocab_size, cache=cache, retrain=retrain)
    end = tokenizer.token_to_id(EOS)
    train_ids = [encoding.ids for encoding in tokenizer.encode_batch(list(data.train_texts))]
    test_ids = [encoding.ids for encoding in tokenizer.encode_batch(list(data.test_texts))]
    vocab = tokenizer.get_vocab_size()
    model, record = train_or_load_next_token(
        f"{data.name}-text-decoder",
        lambda: text_decoder(vocab, settings.embedding_dim, settings.depth, settings.heads, max_len=settings.window),
        token_windows(train_ids, settings.window, end), token_windows(test_ids, settings.window, end), vocab,
        seed=settings.seed, cache=cache, retrain=retrain, progress=progress, **settings.training(),
    )  # fmt: skip
    return LanguageModel(tokenizer, model, record, test_ids, time.perf_counter() - start)


def prompt_ids(lm: LanguageModel, settings: LanguageModelSettings) -> Tensor:
    """LongTensor(prompts, prompt_tokens): the first tokens of test reviews drawn at random (seeded) among those
    with more than ``prompt_tokens`` tokens."""
    long_enough = [ids for ids in lm.test_ids if len(ids) > settings.prompt_tokens]
    order = torch.randperm(len(long_enough), generator=torch.Generator().manual_seed(settings.seed))
    return torch.tensor([long_enough[int(i)][: settings.prompt_tokens] for i in order[: settings.prompts]])


@dataclass(eq=False)
class LanguageModelStudy:
    """What the section shows.

    Attributes:
        settings: how it was run.
        record: the decoder's training record and perplexities.
        vocab_size: the tokenizer's vocabulary.
        attributions: method -> its :class:`~gradattr.generation.GenerationAttribution` of the prompts and their
            greedy continuations (float64; ``tokens`` are the BPE tokens' text).
        seconds: method -> wall time of its ``attribute_generation`` call.
        notes: what to know when reading it (e.g. a method that failed, with its reason).
    """

    settings: LanguageModelSettings
    record: NextTokenRecord
    vocab_size: int
    attributions: dict[str, GenerationAttribution]
    seconds: dict[str, float]
    notes: list[str] = field(default_factory=list)

    @property
    def first(self) -> GenerationAttribution:
        """Any method's result: they share the prompts and continuations."""
        return next(iter(self.attributions.values()))

    def text(self, sample: int, generated: bool) -> str:
        """The prompt (``generated=False``) or the continuation of ``sample``, as text."""
        first = self.first
        tokens = first.tokens[sample]
        return "".join(tokens[first.prompt_length :] if generated else tokens[: first.prompt_length]).strip()

    def top_tokens(self, method: str, sample: int, step: int) -> list[tuple[int, str, float]]:
        """The ``settings.top`` prompt tokens with the highest attribution for generated token ``step`` of
        ``sample``: (position, token, attribution), highest first (none past an end-of-review token)."""
        result = self.attributions[method]
        row = result.matrix[sample, step, : result.prompt_length].double()
        known = (~row.isnan()).nonzero().flatten()
        order = known[row[known].argsort(descending=True)][: self.settings.top]
        return [(int(j), result.tokens[sample][int(j)], float(row[j])) for j in order]

    def max_gap(self, method: str = GAP_METHOD) -> float:
        """Largest |completeness gap| of ``method`` over every generated token (NaN without gaps)."""
        gap = self.attributions[method].completeness_gap if method in self.attributions else None
        return math.nan if gap is None or bool(gap.isnan().all()) else float(gap.abs().nan_to_num(0.0).max())

    def to_dict(self) -> dict[str, Any]:
        """The section's numbers, JSON-ready (NaN becomes None in results.json)."""
        first = self.first
        prompts = []
        for b in range(first.ids.shape[0]):
            steps = []
            for i, token in enumerate(first.generated_tokens(b)):
                steps.append({
                    "token": token, "position": first.prompt_length + i,
                    "top": {m: [{"position": j, "token": t, "attribution": v} for j, t, v in self.top_tokens(m, b, i)]
                            for m in self.attributions},
                    "target_logit": float(first.target_logits[b, i]),
                    "completeness_gap": {m: float(r.completeness_gap[b, i]) for m, r in self.attributions.items()
                                         if r.completeness_gap is not None},
                })  # fmt: skip
            prompts.append({
                "prompt": self.text(b, False), "continuation": self.text(b, True), "tokens": first.tokens[b],
                "ids": first.ids[b].tolist(), "steps": steps,
                "matrix": {m: r.matrix[b].tolist() for m, r in self.attributions.items()},
            })  # fmt: skip
        return {
            "settings": self.settings.to_dict(), "vocab_size": self.vocab_size, "training": self.record.to_dict(),
            "prompts": prompts, "max_abs_completeness_gap": {m: self.max_gap(m) for m in self.attributions
                                                             if self.attributions[m].completeness_gap is not None},
            "seconds": dict(self.seconds), "notes": list(self.notes),
        }  # fmt: skip

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """CSV ``language_model``: one row per (method, prompt, generated token, earlier token), the records of
        :meth:`GenerationAttribution.to_records` with a ``method`` column."""
        return {"language_model": [{"method": m} | row for m, r in self.attributions.items() for row in r.to_records()]}

    def to_state(self) -> dict[str, Any]:
        """Everything measured, as plain values for a progress entry (see :meth:`from_state`)."""
        first = self.first
        return {
            "ids": first.ids, "attention_mask": first.attention_mask, "prompt_length": first.prompt_length,
            "tokens": first.tokens, "vocab_size": self.vocab_size,
            "methods": {m: {"matrix": r.matrix, "target_logits": r.target_logits, "gap": r.completeness_gap}
                        for m, r in self.attributions.items()},
            "seconds": dict(self.seconds), "notes": list(self.notes),
        }  # fmt: skip

    @classmethod
    def from_state(
        cls, settings: LanguageModelSettings, record: NextTokenRecord, state: Mapping[str, Any]
    ) -> LanguageModelStudy:
        """The section run with ``settings`` on a decoder with ``record``, saved by :meth:`to_state`.

        Raises:
            ValueError: ``state`` is not a saved section of ``settings.methods``.
        """
        if list(state["methods"]) != list(settings.methods):
            raise ValueError(f"a language-model section of {', '.join(settings.methods)}")
        ids = as_tensor(state["ids"], "ids")
        prompt = int(state["prompt_length"])
        attributions = {
            m: GenerationAttribution(
                matrix=as_tensor(v["matrix"], f"matrix of {m}"), ids=ids,
                attention_mask=as_tensor(state["attention_mask"], "attention mask"), prompt_length=prompt,
                tokens=[[str(t) for t in row] for row in state["tokens"]], target_ids=ids[:, prompt:],
                contrast_ids=None, target_logits=as_tensor(v["target_logits"], f"target logits of {m}"),
                completeness_gap=None if v["gap"] is None else as_tensor(v["gap"], f"gap of {m}"), method=m,
            )
            for m, v in state["methods"].items()
        }  # fmt: skip
        seconds = {str(k): float(v) for k, v in state["seconds"].items()}
        return cls(settings, record, int(state["vocab_size"]), attributions, seconds, [str(n) for n in state["notes"]])


def measure_language_model(lm: LanguageModel, settings: LanguageModelSettings) -> LanguageModelStudy:
    """Continue the prompts greedily and explain every generated token with each method (float64 decoder)."""
    model = copy.deepcopy(lm.model).double()
    prompts = prompt_ids(lm, settings)
    end = lm.tokenizer.token_to_id(EOS)
    generated = None
    attributions, seconds, notes = {}, {}, []
    for method in settings.methods:
        start = time.perf_counter()
        try:
            result = attribute_generation(
                model, prompts, method=method, generated_ids=generated, max_new_tokens=settings.new_tokens,
                eos_token_id=end, **settings.method_options(method),
            )  # fmt: skip
        except Exception as error:  # a method the decoder's ops do not support: say so, show the others
            notes.append(f"{method}: not measured ({type(error).__name__}: {error})")
            continue
        seconds[method] = time.perf_counter() - start
        generated = result.target_ids
        tokens = [token_strings(lm.tokenizer, row.tolist()) for row in result.ids]
        attributions[method] = replace(result, tokens=tokens)
    if not attributions:
        raise RuntimeError("no method explained the language model: " + "; ".join(notes))
    return LanguageModelStudy(settings, lm.record, lm.tokenizer.get_vocab_size(), attributions, seconds, notes)
