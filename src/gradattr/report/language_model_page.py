"""The study report's language-model section (:class:`~gradattr.experiments.language_model.LanguageModelStudy`):
the decoder's held-out perplexity against a unigram model, then for each prompt its greedy continuation, the
prompt words that drove each generated token per method, DeepLIFT's completeness gap per token, and the tokens
coloured by their attribution for the last generated token."""

from __future__ import annotations

import math

import numpy as np

from gradattr.experiments.language_model import GAP_METHOD, LanguageModelStudy
from gradattr.report.heatmaps import row_scale
from gradattr.report.html import esc, table
from gradattr.report.labels import method_label, short_label
from gradattr.report.tokens import token_spans

TITLE = "Language model"


def language_model_section(study: LanguageModelStudy, anchor: str) -> str:
    """The section as HTML, its heading's id ``anchor``."""
    settings, record = study.settings, study.record
    gap = study.max_gap()
    intro = (
        f"A BPE tokenizer ({study.vocab_size} tokens, trained here on the training reviews with the tokenizers "
        f"library) and a causal decoder ({settings.depth} blocks, width {settings.embedding_dim}, "
        f"{settings.heads} heads) trained for next-token prediction on the training reviews' token stream "
        f"({record.train_tokens} tokens, windows of {settings.window}; epoch {record.best_epoch} of "
        f"{len(record.history)} kept by early stopping on held-out windows; {record.seconds:.1f} s). Held-out "
        f"perplexity on the test reviews: {record.test_perplexity:.1f}, against {record.unigram_perplexity:.1f} "
        "for a unigram model of the training tokens (add-one smoothing), which ignores the context."
    )
    parts = [f'<section><h2 id="{anchor}">{TITLE}</h2><p>{esc(intro)}</p>']
    first = study.first
    for b in range(first.ids.shape[0]):
        parts.append(
            f"<h3>Prompt {b + 1}</h3><p><span class='muted'>{esc(study.text(b, False))}</span> → "
            f"<b>{esc(study.text(b, True))}</b></p>" + _steps_table(study, b) + _last_token(study, b)
        )
    parts.append(
        f'<p class="note">Each generated token i is explained as its logit at position P + i − 1 given the '
        f"tokens before it (gradattr.generation.attribute_generation, at the token embedding, summed over it; "
        f"zero-embedding baseline; float64). Top: the {settings.top} prompt tokens with the highest attribution. "
        f"{method_label(GAP_METHOD)}'s completeness gap Σ_j R_j − (S(x) − S(x̄)) is at most "
        f"{_value(gap)} over all generated tokens; Integrated Gradients' ({settings.ig_steps} steps) is at most "
        f"{_value(study.max_gap('integrated_gradients'))}.</p>"
    )
    if study.notes:
        parts.append('<div class="unavailable"><ul>' + "".join(f"<li>{esc(n)}</li>" for n in study.notes)
                     + "</ul></div>")  # fmt: skip
    parts.append("</section>")
    return "".join(parts)


def _value(value: float) -> str:
    return "–" if not math.isfinite(value) else f"{value:.2g}"


def _steps_table(study: LanguageModelStudy, sample: int) -> str:
    """One row per generated token: the token, each method's top tokens, DeepLIFT's gap."""
    first = study.first
    gaps = study.attributions[GAP_METHOD].completeness_gap if GAP_METHOD in study.attributions else None
    rows = []
    for i, token in enumerate(first.generated_tokens(sample)):
        cells = [esc(repr(token.strip() or token))]
        for method in study.attributions:
            top = study.top_tokens(method, sample, i)
            cells.append(", ".join(f"{esc(t.strip() or t)} <span class='muted'>{v:+.2g}</span>" for _, t, v in top))
        cells.append(_value(abs(float(gaps[sample, i]))) if gaps is not None else "–")
        rows.append(cells)
    headers = ["generated", *(short_label(m) for m in study.attributions), f"{short_label(GAP_METHOD)} |gap|"]
    return table(headers, rows, numeric=[False] * (len(headers) - 1) + [True])


def _last_token(study: LanguageModelStudy, sample: int) -> str:
    """The tokens before the last explained generated token, coloured by each method's attribution for it."""
    first = study.first
    explained = (~first.target_logits[sample].isnan()).nonzero().flatten()
    if explained.numel() == 0:
        return ""
    step = int(explained[-1])
    position = first.prompt_length + step
    tokens = first.tokens[sample][:position]
    rows = {m: r.matrix[sample, step, :position].double().numpy() for m, r in study.attributions.items()}
    scale = row_scale([np.nan_to_num(r) for r in rows.values()])
    body = [[esc(short_label(m)), token_spans(tokens, list(r), scale)] for m, r in rows.items()]
    token = first.tokens[sample][position]
    return (
        f"<p class='muted'>Tokens coloured by their attribution for the last generated token "
        f"{esc(repr(token.strip() or token))} (red for, blue against; one scale for all methods):</p>"
        + table(["method", "tokens"], body, css="tokens")
    )
