"""Matplotlib figures as ``data:`` URIs, so a report embeds its images and needs no other file."""

from __future__ import annotations

import base64
import io
from typing import Literal

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def data_uri(figure: Figure, image_format: Literal["png", "svg"] = "png", dpi: int = 110) -> str:
    """Render ``figure`` as a base64 ``data:`` URI (PNG or SVG, text as paths: no fonts needed) and close it."""
    buffer = io.BytesIO()
    with plt.rc_context({"svg.fonttype": "path"}):
        figure.savefig(buffer, format=image_format, dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    mime = "image/svg+xml" if image_format == "svg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
