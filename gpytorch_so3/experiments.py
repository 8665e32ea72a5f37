"""Deprecated: demo and benchmark drivers, kept importable for one release.

.. deprecated:: 0.2
    The oil-sands demo drivers moved into the command line's private support module
    (``gpytorch-so3 demo --data oilsands``); the benchmark-only helpers (``summarize``, ``markdown_table``,
    ``coverage``, ``recovery_report``) moved out of the package to ``benchmarks/_experiments.py`` in the source
    repository. This module will be removed in the next release.
"""

from __future__ import annotations

import warnings

from gpytorch_so3.cli._demo import (
    ABOUT_HORIZONTAL_DEG,
    ABOUT_VERTICAL_DEG,
    fit_and_score,
    known_rotation,
    oilsands_fold,
    rotate_about,
    run_oilsands_demo,
    split_fold,
)

__all__ = [
    "ABOUT_HORIZONTAL_DEG",
    "ABOUT_VERTICAL_DEG",
    "fit_and_score",
    "known_rotation",
    "oilsands_fold",
    "rotate_about",
    "run_oilsands_demo",
    "split_fold",
]

_MOVED_OUT = ("summarize", "markdown_table", "coverage", "recovery_report")

warnings.warn(
    "gpytorch_so3.experiments is deprecated and will be removed in the next release: its demo drivers are part "
    "of the command line (gpytorch-so3 demo --data oilsands), its benchmark helpers moved to "
    "benchmarks/_experiments.py in the source repository",
    DeprecationWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    if name in _MOVED_OUT:
        raise AttributeError(
            f"gpytorch_so3.experiments.{name} moved out of the package to benchmarks/_experiments.py in the source "
            "repository (benchmark and test code)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
