"""Deprecated: the command line's model zoo, kept importable for one release.

.. deprecated:: 0.2
    ``gpytorch_so3.compare`` was application code of the command line (a string-keyed model zoo). It now lives
    in the command line's private support module and will be removed from here in the next release. Build the
    models from the public kernels, priors and :func:`gpytorch_so3.fit_map` (see the quickstart notebook);
    ``azimuth_dip`` is :func:`gpytorch_so3.geo.azimuth_dip`; large-data prediction is
    :func:`gpytorch_so3.large.predict_in_chunks`. Each name still works and warns (``DeprecationWarning``, pointing
    at the line that uses it).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from torch import Tensor

from gpytorch_so3.cli import _models
from gpytorch_so3.geo import azimuth_dip


def _compare_models(
    train_X: Tensor,
    train_Y: Tensor,
    *,
    kinds: Sequence[str] = ("ard", "spd", "so3"),
    nu: float | None = 2.5,
    num_restarts: int = 8,
    seed: int | None = 0,
) -> list[_models.FittedModel]:
    """Fit several model kinds on the same (scaled) data."""
    return [_models.fit_model(k, train_X, train_Y, nu=nu, num_restarts=num_restarts, seed=seed) for k in kinds]


_MOVED = {
    **{name: getattr(_models, name) for name in _models.__all__ if name != "log_evidence"},
    "azimuth_dip": azimuth_dip,
    "compare_models": _compare_models,
}

__all__ = sorted(_MOVED)


def __getattr__(name: str):
    if name in _MOVED:
        warnings.warn(
            f"gpytorch_so3.compare.{name} is deprecated and will be removed in the next release: gpytorch_so3.compare "
            "was the command line's model zoo (now private to gpytorch_so3.cli); build models from the public "
            "kernels and fit_map, and use gpytorch_so3.geo.azimuth_dip and gpytorch_so3.large.predict_in_chunks",
            DeprecationWarning,
            stacklevel=2,
        )
        return _MOVED[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
