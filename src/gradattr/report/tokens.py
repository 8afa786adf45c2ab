"""Text samples with each token's background coloured by its attribution (HTML spans).

The same diverging scale as the heatmaps: red positive, blue negative, white 0, one scale per sample
shared by all methods.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
from matplotlib import colormaps

_DIVERGING = colormaps["bwr"]


def token_colour(score: float, scale: float) -> str:
    """CSS ``rgb(...)`` of ``score`` on the diverging map, with ±``scale`` at the ends."""
    position = 0.5 + 0.5 * max(-1.0, min(1.0, score / scale)) if scale > 0 else 0.5
    red, green, blue, _ = _DIVERGING(position)
    return f"rgb({round(red * 255)}, {round(green * 255)}, {round(blue * 255)})"


def token_spans(tokens: Sequence[str], scores: Sequence[float], scale: float) -> str:
    """HTML: one ``<span class="tok">`` per token, background by score, the score in its tooltip."""
    if len(tokens) != len(scores):
        raise ValueError(f"{len(tokens)} tokens but {len(scores)} scores")
    return " ".join(
        f'<span class="tok" style="background:{token_colour(float(s), scale)}" title="{float(s):+.3g}">'
        f"{html.escape(token)}</span>"
        for token, s in zip(tokens, scores, strict=True)
    )
