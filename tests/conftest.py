"""Fixtures shared by every test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Run each test module on one CPU thread (restored afterwards).

    The tests run thousands of small forward passes; on a machine shared with other jobs, several OpenMP
    threads spin against each other and the same work takes several times longer (measured 47 s vs 6 s).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
