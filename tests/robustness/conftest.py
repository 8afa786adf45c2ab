"""Shared fixtures of the metric tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """Run these tests on one CPU thread (restored afterwards).

    The tests run thousands of small forward passes; on a machine shared with other jobs, several OpenMP
    threads spin against each other and the same work takes ten times longer.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
