"""Fixtures shared by every test module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch
from hypothesis import HealthCheck, settings

# A deeper local run: HYPOTHESIS_PROFILE=thorough pytest tests/test_fuzz.py (test_fuzz.py scales each property's
# example count by 20 under it; tests with a fixed max_examples keep theirs).
# The default run draws the same examples every time (derandomize), so a red CI names a change, not a draw;
# "thorough" explores new ones.
settings.register_profile("thorough", max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
settings.register_profile("repeatable", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


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
