"""What :func:`gradattr.generation.attribute_generation` returns: the token-by-token attribution matrix."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from gradattr.files import write_csv, write_text


@dataclass(frozen=True)
class GenerationAttribution:
    """Attributions of each generated token to every token before it.

    With P prompt positions and G generated ones (B samples):

    Attributes:
        matrix: (B, G, P + G). ``matrix[b, i, j]`` is the relevance of token j (prompt or earlier generated)
            for the score of generated token i, at sequence position P + i: its logit (or, with
            ``target="contrast"``, logit(token) − logit(contrast token)) given positions 0..P + i − 1, summed
            over the embedding. Entries with j >= P + i (the token itself and later ones, not inputs of that
            step) are NaN; padding positions (``attention_mask == 0``) are 0; a row i past a sample's
            end-of-sequence token is NaN throughout.
        ids: LongTensor(B, P + G), prompt and continuation.
        attention_mask: LongTensor(B, P + G), 0 at padding (left padding of the prompt, after EOS).
        prompt_length: P.
        tokens: per sample, the P + G token strings (the tokenizer's, else the ids as strings).
        target_ids: LongTensor(B, G), the explained tokens (``ids[:, P:]``).
        contrast_ids: LongTensor(B, G), the alternatives of ``target="contrast"``, else ``None``.
        target_logits: (B, G), the explained score of each generated token (NaN past EOS).
        completeness_gap: (B, G), Σ_j matrix[b, i, j] − (S(x) − S(x̄)) for the methods with a baseline
            (DeepLIFT, Integrated Gradients, Shapley sampling), Σ_j matrix[b, i, j] − S(x) for ``lrp``; else
            ``None``.
        method: the method's name.
        contrast_tokens: per sample, the G contrast tokens as strings (the tokenizer's), where known; the HTML
            view names each step's alternative with them (else with its id).
    """

    matrix: Tensor
    ids: Tensor
    attention_mask: Tensor
    prompt_length: int
    tokens: list[list[str]]
    target_ids: Tensor
    contrast_ids: Tensor | None
    target_logits: Tensor
    completeness_gap: Tensor | None
    method: str
    contrast_tokens: list[list[str]] | None = None

    @property
    def generated_length(self) -> int:
        """G, the number of generated positions."""
        return self.target_ids.shape[1]

    def generated_tokens(self, sample: int = 0) -> list[str]:
        """The G generated token strings of ``sample``."""
        return self.tokens[sample][self.prompt_length :]

    def to_records(self) -> list[dict[str, Any]]:
        """One record per (sample, generated token, earlier real token): ``sample``, ``step`` (i),
        ``generated_position`` (P + i), ``generated_token``, ``source_position`` (j), ``source_token``,
        ``source_is_prompt``, ``attribution``, ``target_logit`` (and ``completeness_gap`` where defined).
        NaN entries (not inputs of the step) and padding are left out."""
        matrix = self.matrix.detach().double().cpu()
        logits = self.target_logits.detach().double().cpu()
        gaps = None if self.completeness_gap is None else self.completeness_gap.detach().double().cpu()
        mask = self.attention_mask.cpu()
        records: list[dict[str, Any]] = []
        for b, tokens in enumerate(self.tokens):
            for i in range(self.generated_length):
                for j in range(self.prompt_length + i):
                    value = float(matrix[b, i, j])
                    if math.isnan(value) or not int(mask[b, j]):
                        continue
                    record = {
                        "sample": b, "step": i, "generated_position": self.prompt_length + i,
                        "generated_token": tokens[self.prompt_length + i], "source_position": j,
                        "source_token": tokens[j], "source_is_prompt": j < self.prompt_length,
                        "attribution": value, "target_logit": float(logits[b, i]),
                    }  # fmt: skip
                    if gaps is not None:
                        record["completeness_gap"] = float(gaps[b, i])
                    records.append(record)
        return records

    def to_dataframe(self) -> Any:
        """:meth:`to_records` as a ``pandas.DataFrame`` (pandas must be installed; gradattr does not need it)."""
        try:
            import pandas
        except ImportError:
            raise ImportError("to_dataframe needs pandas (pip install pandas); to_records()/to_csv() do not") from None
        return pandas.DataFrame.from_records(self.to_records())

    def to_csv(self, path: str | Path) -> Path:
        """Write :meth:`to_records` to ``path`` as CSV (one row per attribution, atomically); returns the path."""
        return write_csv(path, self.to_records())

    def to_html(self, path: str | Path | None = None, *, sample: int = 0, title: str | None = None) -> str:
        """A self-contained HTML page of ``sample``: its tokens coloured by attribution for the generated token
        the reader clicks, the whole matrix as a heatmap, and each step's score and gap
        (:func:`gradattr.report.generation.generation_html`). Written to ``path`` (atomically) when given;
        returns the page."""
        from gradattr.report.generation import generation_html

        page = generation_html(self, sample=sample, title=title)
        if path is not None:
            write_text(path, page)
        return page
