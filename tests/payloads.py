"""A pickle payload that runs code when unpickled: what a tampered checkpoint, array or progress file can carry."""

from __future__ import annotations

from pathlib import Path


class RunsCode:
    """Unpickling this creates the file ``marker`` (by calling ``open``): if the file exists after a load, the
    load executed code from the file it read."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))
