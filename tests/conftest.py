"""Shared test fixtures: dtypes, seeding that restores the global RNG, hypothesis profile.

Markers (``slow``, ``gpu``, ``keops``) and the warning policy are declared in ``pyproject.toml``; the thread count of
the run (pinned to 1 by default) and the skipping of docstring examples whose optional extra is missing are set up in
the repository's root ``conftest.py`` (so they also apply when only the examples in ``gpytorch_so3/`` run).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

# The repository root, so that tests can import the benchmark drivers shared with benchmarks/ scripts
# (`from benchmarks._experiments import ...`); they are not part of the installed package.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

#: Both floating dtypes every public function must support.
DTYPES = (torch.float32, torch.float64)

# Modest budget: property tests run in the default suite (~60-90 s for all of a helper's tests on 2 cores).
# deadline=None: the first call of a torch op can take far longer than later ones (lazy init), which is not a bug.
settings.register_profile(
    "gpytorch_so3",
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("gpytorch_so3")


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request) -> torch.dtype:
    """Each floating dtype in turn."""
    return request.param


@pytest.fixture
def seed():
    """Seed torch and ``random`` with 0 and restore their states afterwards (use ``np_rng`` for numpy).

    Yields the seed so that a test can derive further generators from it.
    """
    torch_state = torch.get_rng_state()
    py_state = random.getstate()
    torch.manual_seed(0)
    random.seed(0)
    try:
        yield 0
    finally:
        torch.set_rng_state(torch_state)
        random.setstate(py_state)


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with 0 (leaves the global RNG alone)."""
    return torch.Generator().manual_seed(0)


@pytest.fixture
def np_rng() -> np.random.Generator:
    """A numpy ``Generator`` seeded with 0."""
    return np.random.default_rng(0)
