"""Methods given under labels: one convention for every runner that takes several methods.

A runner (:func:`gradattr.evaluate`, the robustness checks) takes its methods as a name, a sequence of names,
or a mapping label -> entry. The label names the row of a table, the key of ``method_options`` and of the
maps handed to observers; the entry says what runs (a method name, or for the robustness checks also a
callable). Labels let one method appear twice with different options, e.g. ``{"occlusion": "occlusion",
"occlusion_pixels": "occlusion"}``: occlusion of 4x4 patches beside occlusion of single pixels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

Entry = TypeVar("Entry")


def labelled_entries(methods: str | Sequence[str] | Mapping[str, Entry]) -> dict[str, str | Entry]:
    """``methods`` as label -> entry: a name or each name of a sequence labels itself, a mapping is kept.

    Raises:
        ValueError: a name listed twice in a sequence.
        TypeError: ``methods`` is neither a name, a sequence nor a mapping.
    """
    if isinstance(methods, str):
        return {methods: methods}
    if isinstance(methods, Mapping):
        return dict(methods)
    if not isinstance(methods, Sequence):
        raise TypeError(f"methods must be a name, a sequence of names or a mapping, got {type(methods).__name__}")
    names = list(methods)
    if len(set(names)) != len(names):
        raise ValueError(f"methods are listed twice: {names}")
    return {name: name for name in names}


__all__ = ["labelled_entries"]
