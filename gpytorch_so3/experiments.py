"""Deprecated: demo and benchmark drivers, kept importable for one release.

.. deprecated:: 0.2
    The oil-sands demo drivers moved into the command line's private support module
    (``gpytorch-so3 demo --data oilsands``); the benchmark-only helpers (``summarize``, ``markdown_table``,
    ``coverage``, ``recovery_report``) moved out of the package to ``benchmarks/_experiments.py`` in the source
    repository. This module will be removed in the next release; each name that is still here warns
    (``DeprecationWarning``, pointing at the line that uses it).
"""

from __future__ import annotations

import warnings

from gpytorch_so3.cli import _demo

_MOVED = {
    name: getattr(_demo, name)
    for name in (
        "ABOUT_HORIZONTAL_DEG",
        "ABOUT_VERTICAL_DEG",
        "fit_and_score",
        "known_rotation",
        "oilsands_fold",
        "rotate_about",
        "run_oilsands_demo",
        "split_fold",
    )
}
_MOVED_OUT = ("summarize", "markdown_table", "coverage", "recovery_report")

__all__ = sorted(_MOVED)


def __getattr__(name: str):
    if name in _MOVED:
        warnings.warn(
            f"gpytorch_so3.experiments.{name} is deprecated and will be removed in the next release: the demo "
            "drivers are part of the command line (gpytorch-so3 demo --data oilsands)",
            DeprecationWarning,
            stacklevel=2,
        )
        return _MOVED[name]
    if name in _MOVED_OUT:
        raise AttributeError(
            f"gpytorch_so3.experiments.{name} moved out of the package to benchmarks/_experiments.py in the source "
            "repository (benchmark and test code)"
        )
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
