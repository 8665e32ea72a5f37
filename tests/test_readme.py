"""The README's Python examples run as written (the Quickstart, the SO(d) fit and the BO snippet).

The other blocks need data or hardware a test run does not have (files named by the user, CUDA, ``torchrun``) or
minutes of NUTS (the fully Bayesian snippet: ``tests/test_fully_bayesian.py`` covers that path on smaller budgets).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch

README = Path(__file__).resolve().parents[1] / "README.md"
#: The later sections build on the Quickstart's imports.
QUICKSTART_IMPORTS = "import torch\nfrom botorch.models import SingleTaskGP\nfrom gpytorch_so3 import fit_map\n"


def _python_blocks() -> dict[str, str]:
    """The README's ```python blocks, keyed by the heading of the section they are in."""
    text = README.read_text(encoding="utf-8")
    blocks: dict[str, str] = {}
    heading = ""
    for m in re.finditer(r"^## ([^\n]+)$|^```python\n(.*?)^```", text, re.M | re.S):
        if m.group(1) is not None:
            heading = m.group(1).strip()
        else:
            blocks.setdefault(heading, "")
            blocks[heading] += m.group(2) + "\n"
    return blocks


@pytest.fixture(scope="module")
def blocks() -> dict[str, str]:
    return _python_blocks()


def _run(code: str, name: str, namespace: dict) -> dict:
    torch.manual_seed(0)  # the snippets draw data with the global generator
    exec(compile(code, f"README.md ({name})", "exec"), namespace)
    return namespace


def test_quickstart_recovers_the_fast_direction(blocks, capsys):
    code = blocks["Quickstart (GPyTorch / BoTorch)"]
    code = code[: code.index("from botorch.models.transforms import Standardize")]  # the MAP part; NUTS is minutes
    ns = _run(code, "Quickstart", {})
    ls = ns["lengthscale"]
    assert ls.shape == (3,) and bool((ls[1:] >= ls[:-1]).all())  # ascending
    # the README says: the fast direction is close to +-u
    assert abs(float(ns["axes"][:, 0] @ ns["u"])) > math.cos(math.radians(10))
    assert "[" in capsys.readouterr().out


def test_any_dimension_snippets(blocks, capsys):
    code = blocks["Any dimension: SO(2) maps, SO(d) Bayesian optimisation"]
    ns = _run(QUICKSTART_IMPORTS + code, "SO(d)", {})
    fast = ns["axes"][:, 0]
    target = torch.tensor([1.0, 1.0, 0, 0, 0, 0], dtype=fast.dtype) / math.sqrt(2)
    assert abs(float(fast @ target)) > math.cos(math.radians(10))  # "close to +-(1, 1, 0, 0, 0, 0) / sqrt(2)"
    assert ns["model"].surrogate_choice_.chosen == "rotated"  # an oblique ridge: the rotation pays for itself
    out = capsys.readouterr().out
    assert "rotated" in out
