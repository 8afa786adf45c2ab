"""An offline HTML page of a :class:`~gradattr.generation.GenerationAttribution`: :func:`generation_html`.

The page has three parts, all for one sample:

* a table of the generated tokens with their explained score (the token's logit, or logit(token) −
  logit(contrast token)) and, where the method has one, the completeness gap;
* the prompt and the continuation as one line of tokens coloured by their attribution for the generated
  token the reader picks (a click on it; at first the last one): red positive, blue negative, white 0 on the
  diverging scale of the study report (:func:`gradattr.report.tokens.token_colour`), each row on its own
  scale ±max |row|. The explained token is outlined and the tokens after it are greyed out;
* the whole matrix (generated tokens × all tokens) as a heatmap table on the same per-row scales, blank where
  a token is not an input of the step (NaN); a click on a row picks that token too.

Every token is HTML-escaped and its whitespace is drawn (``␣`` space, ``↵`` newline, ``⇥`` tab), so a token
is never markup and never invisible. The page has no external resources: the styles of
:mod:`gradattr.report.html` plus a few rules, and a short script that swaps precomputed colours.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from gradattr.report.html import CSS, document, esc, table
from gradattr.report.tokens import token_colour

if TYPE_CHECKING:
    from gradattr.generation.result import GenerationAttribution

WHITESPACE = {" ": "␣", "\n": "↵", "\t": "⇥", "\r": "␍"}
"""How a whitespace character of a token is drawn (in a muted colour)."""
EMPTY_TOKEN = "∅"
"""What an empty token string (a special token that decodes to nothing) is drawn as."""

GENERATION_CSS = """
.stream { font: 15px/2.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; overflow-wrap: anywhere; }
.stream .tok { margin: 0 1px; padding: 2px 3px; border: 1px solid transparent; }
.stream .prompt-end { display: inline-block; width: 0; height: 1.4em; border-left: 2px dashed #8a94a6;
  margin: 0 5px; vertical-align: middle; }
.tok.gen { cursor: pointer; border-bottom: 2px solid #8a94a6; }
.tok.gen:hover { border-color: #1d2430; }
.tok.explained { border: 2px solid #1d2430; background: #fff; font-weight: 700; }
.tok.later { background: #eceff3 !important; color: #a3abb8; }
.ws { opacity: .5; }
.legend { display: flex; align-items: center; gap: 8px; font-size: 13px; color: var(--muted); margin: 4px 0 10px; }
.legend .bar { width: 160px; height: 12px; border: 1px solid var(--line); border-radius: 3px; }
p.chosen { font-size: 14.5px; margin: 10px 0 4px; }
table.matrix { border-collapse: separate; border-spacing: 1px; font-size: 12px; }
table.matrix th, table.matrix td { padding: 0; border: 0; background: none; }
table.matrix td.cell { width: 22px; min-width: 22px; height: 22px; border-radius: 2px; }
table.matrix td.nan { background: none; }
table.matrix thead th { vertical-align: bottom; font-weight: 500; font-family: ui-monospace, Menlo, monospace; }
table.matrix thead th span { writing-mode: vertical-rl; transform: rotate(180deg); white-space: pre;
  display: inline-block; max-height: 120px; overflow: hidden; text-overflow: ellipsis; padding: 2px 0; }
table.matrix th.row { text-align: right; padding: 0 8px 0 0; white-space: pre; font-weight: 500; cursor: pointer;
  font-family: ui-monospace, Menlo, monospace; }
table.matrix th.generated span { color: var(--accent); }
table.matrix tbody tr { cursor: pointer; }
table.matrix tbody tr.selected th.row { background: #1d2430; color: #fff; border-radius: 3px; }
table.matrix tbody tr.selected td.cell:not(.nan) { outline: 1px solid rgba(29, 36, 48, .35); }
table.matrix .boundary { border-left: 2px dashed #8a94a6; }
"""

SCRIPT = r"""
(function () {
  const data = JSON.parse(document.getElementById('generation-data').textContent);
  const spans = Array.from(document.querySelectorAll('.stream .tok'));
  const rows = Array.from(document.querySelectorAll('table.matrix tbody tr'));
  const captions = Array.from(document.querySelectorAll('p.chosen'));
  function ink(colour) {  // white text on a dark background
    if (!colour) return '';
    const [r, g, b] = colour.match(/\d+/g).map(Number);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 140 ? '#fff' : '';
  }
  function choose(step) {
    const colours = data.colours[step], titles = data.titles[step], position = data.positions[step];
    for (const span of spans) {
      const j = Number(span.dataset.position);
      span.style.background = colours[j] || '';
      span.style.color = ink(colours[j]);
      span.title = titles[j];
      span.classList.toggle('explained', j === position);
      span.classList.toggle('later', j > position);
    }
    for (const row of rows) row.classList.toggle('selected', Number(row.dataset.step) === step);
    for (const caption of captions) caption.hidden = Number(caption.dataset.step) !== step;
    for (const scale of document.querySelectorAll('.legend .scale')) scale.textContent = data.scales[step];
  }
  for (const span of spans) {
    if (span.dataset.step !== undefined) span.addEventListener('click', () => choose(Number(span.dataset.step)));
  }
  for (const row of rows) row.addEventListener('click', () => choose(Number(row.dataset.step)));
  choose(data.initial);
})();
"""


def visible(token: str) -> str:
    """HTML of ``token``: escaped, each whitespace character drawn as a muted mark (:data:`WHITESPACE`)."""
    if not token:
        return f'<span class="ws">{EMPTY_TOKEN}</span>'
    return "".join(f'<span class="ws">{WHITESPACE[c]}</span>' if c in WHITESPACE else esc(c) for c in token)


def generation_html(result: GenerationAttribution, *, sample: int = 0, title: str | None = None) -> str:
    """One self-contained HTML page explaining the generated tokens of ``sample``.

    Args:
        result: what :func:`gradattr.generation.attribute_generation` returned.
        sample: which sample of the batch (0 <= sample < B).
        title: the page's title (default: names the method).

    Returns:
        The page as a string (no external resources; opens offline).

    Example:
        >>> import torch, gradattr.generation as gen
        >>> from gradattr.models import text_decoder
        >>> result = gen.attribute_generation(text_decoder(50), torch.tensor([3, 7, 9]), max_new_tokens=3)
        >>> generation_html(result).startswith("<!DOCTYPE html>")
        True
    """
    samples = len(result.tokens)
    if type(sample) is not int or not 0 <= sample < samples:
        raise ValueError(f"sample must be an int in 0..{samples - 1}, got {sample!r}")
    view = _SampleView(result, sample)
    title = title or f"Generated text explained with {result.method}"
    header = f"<h1>{esc(title)}</h1><p>{esc(view.summary())}</p>"
    body = (
        "<section><h2>Which tokens made the model say it</h2>"
        '<p class="note">Click a generated token (underlined) to explain it; the explained token is outlined, '
        "the tokens after it are greyed out (they are not its inputs). Red: the token raised the score, blue: it "
        "lowered it; each generated token on its own scale.</p>"
        f"{''.join(view.caption(i) for i in view.steps)}{view.legend()}"
        f'<div class="stream">{view.stream()}</div></section>'
        "<section><h2>The whole matrix</h2>"
        '<p class="note">Rows: generated tokens; columns: every token before them (prompt, then the continuation '
        "after the dashed line). Each row on its own scale; blank: not an input of that step. Hover a cell for "
        "its value; click a row to explain that token above.</p>"
        f'<div class="table-wrap">{view.matrix_table()}</div></section>'
        f"<section><h2>Generated tokens</h2>{view.step_table()}</section>"
        f'<script type="application/json" id="generation-data">{view.data()}</script><script>{SCRIPT}</script>'
    )
    footer = "gradattr: token-by-token attribution of generated text (gradattr.generation)."
    page = document(title, header, body, footer)
    return page.replace(f"<style>{CSS}</style>", f"<style>{CSS}{GENERATION_CSS}</style>", 1)


class _SampleView:
    """The numbers and markup of one sample: its real (unpadded) positions, explained steps and colours."""

    def __init__(self, result: GenerationAttribution, sample: int) -> None:
        self.result = result
        self.prompt_length = result.prompt_length
        self.tokens = result.tokens[sample]
        mask = result.attention_mask[sample].tolist()
        self.positions = [j for j, kept in enumerate(mask) if kept]
        self.matrix = result.matrix[sample].detach().double().cpu().tolist()
        self.steps = [i for i in range(result.generated_length) if mask[self.prompt_length + i]]
        self.logits = result.target_logits[sample].detach().double().cpu().tolist()
        gap = result.completeness_gap
        self.gaps = None if gap is None else gap[sample].detach().double().cpu().tolist()
        self.alternatives = _contrast_strings(result, sample)
        self.scales = [max((abs(v) for v in self.matrix[i] if not math.isnan(v)), default=0.0) for i in self.steps]
        self.colours = {
            i: [None if math.isnan(v) else token_colour(v, scale) for v in self.matrix[i]]
            for i, scale in zip(self.steps, self.scales, strict=True)
        }

    def summary(self) -> str:
        """The header line: method, target (the alternative named once when every step has the same one), and
        every step's token ('tok' vs 'alt' otherwise), score and gap."""
        alternatives = set(self.alternatives or [])
        if not alternatives:
            target = "logit of each generated token"
        elif len(alternatives) == 1:
            target = f"logit(token) − logit({next(iter(alternatives))!r})"
        else:
            target = "logit(token) − logit(alternative)"
        scores = []
        for i in self.steps:
            label = repr(self.tokens[self.prompt_length + i])
            label += f" vs {self.alternatives[i]!r}" if len(alternatives) > 1 else ""  # type: ignore[index]
            score = f"{label} {self.logits[i]:.4g}"
            scores.append(score if self.gaps is None else f"{score} (gap {self.gaps[i]:.2g})")
        return f"method {self.result.method} · target: {target} · scores: " + ", ".join(scores)

    def caption(self, step: int) -> str:
        """The line above the tokens naming the explained step (hidden unless it is the chosen one)."""
        versus = "" if self.alternatives is None else f" vs {visible(self.alternatives[step])}"
        gap = "" if self.gaps is None else f" · completeness gap {self.gaps[step]:.3g}"
        hidden = "" if step == self.steps[-1] else " hidden"
        return (
            f'<p class="chosen" data-step="{step}"{hidden}>Explaining generated token {step + 1} of '
            f"{len(self.steps)}: <b>{visible(self.tokens[self.prompt_length + step])}</b>{versus} · score "
            f"{self.logits[step]:.4g}{esc(gap)}</p>"
        )

    def legend(self) -> str:
        """The colour bar with the chosen step's scale."""
        stops = ", ".join(token_colour(v, 1.0) for v in (-1.0, 0.0, 1.0))
        return (
            '<div class="legend"><span>−<span class="scale"></span></span>'
            f'<span class="bar" style="background: linear-gradient(90deg, {stops})"></span>'
            '<span>+<span class="scale"></span></span></div>'
        )

    def stream(self) -> str:
        """Every real token as a span; generated ones carry their step (clickable)."""
        parts = []
        for j in self.positions:
            step = j - self.prompt_length
            clickable = f' data-step="{step}"' if step in self.steps else ""
            css = "tok gen" if step >= 0 else "tok"
            boundary = '<span class="prompt-end" title="end of the prompt"></span>' if j == self.prompt_length else ""
            newline = "<br>" if self.tokens[j].endswith("\n") else ""
            parts.append(f'{boundary}<span class="{css}" data-position="{j}"{clickable}>{visible(self.tokens[j])}'
                         f"</span>{newline}")  # fmt: skip
        return "".join(parts)

    def matrix_table(self) -> str:
        """The heatmap: one row per explained step, one column per real token, coloured on the row's scale."""
        head = "".join(
            f'<th class="{"generated" if j >= self.prompt_length else "prompt"}{self._boundary(j)}">'
            f"<span>{visible(self.tokens[j])}</span></th>"
            for j in self.positions
        )
        rows = []
        for i in self.steps:
            cells = "".join(
                self._cell(self.matrix[i][j], self.colours[i][j], self._boundary(j)) for j in self.positions
            )
            label = f"{i + 1} {visible(self.tokens[self.prompt_length + i])}"
            rows.append(f'<tr data-step="{i}"><th class="row">{label}</th>{cells}</tr>')
        return f'<table class="matrix"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'

    def _boundary(self, position: int) -> str:
        """The class that draws the dashed line before the first generated column."""
        return " boundary" if position == self.prompt_length else ""

    @staticmethod
    def _cell(value: float, colour: str | None, boundary: str) -> str:
        if colour is None:
            return f'<td class="cell nan{boundary}"></td>'
        return f'<td class="cell{boundary}" style="background:{colour}" title="{value:+.4g}"></td>'

    def step_table(self) -> str:
        """The generated tokens with position, score and gap."""
        headers = ["step", "position", "token"] + ["alternative"] * (self.alternatives is not None) + ["score"]
        headers += ["completeness gap"] * (self.gaps is not None)
        rows = []
        for i in self.steps:
            row = [str(i + 1), str(self.prompt_length + i), visible(self.tokens[self.prompt_length + i])]
            row += [] if self.alternatives is None else [visible(self.alternatives[i])]
            row.append(f"{self.logits[i]:.6g}")
            row += [f"{self.gaps[i]:.3g}"] if self.gaps is not None else []
            rows.append(row)
        numeric = (
            [True, True, False] + [False] * (self.alternatives is not None) + [True] * (1 + (self.gaps is not None))
        )
        return table(headers, rows, numeric=numeric)

    def data(self) -> str:
        """The JSON the script reads, per step: every position's colour (null where NaN) and tooltip, the
        explained position and the scale; and the step shown first (the last one). ``<`` is escaped so that the
        JSON cannot end the script."""
        payload = {
            "colours": self.colours,
            "titles": {
                i: ["not an input" if math.isnan(v) else f"{v:+.4g}" for v in self.matrix[i]] for i in self.steps
            },
            "positions": {i: self.prompt_length + i for i in self.steps},
            "scales": {i: f"{s:.3g}" for i, s in zip(self.steps, self.scales, strict=True)},
            "initial": self.steps[-1],
        }
        return json.dumps(payload).replace("<", "\\u003c")


def _contrast_strings(result: GenerationAttribution, sample: int) -> list[str] | None:
    """The contrast token of each step as a string (``contrast_tokens``, else the id as a string, as ``tokens``
    are without a tokenizer); ``None`` without a contrast."""
    if result.contrast_ids is None:
        return None
    if result.contrast_tokens is not None:
        return result.contrast_tokens[sample]
    return [str(int(i)) for i in result.contrast_ids[sample]]
