"""Deprecated: the command line's model zoo, kept importable for one release.

.. deprecated:: 0.2
    ``gpytorch_so3.compare`` was application code of the command line (a string-keyed model zoo). It now lives
    in the command line's private support module and will be removed from here in the next release. Build the
    models from the public kernels, priors and :func:`gpytorch_so3.fit_map` (see the quickstart notebook);
    ``azimuth_dip`` is :func:`gpytorch_so3.geo.azimuth_dip`; large-data prediction is
    :func:`gpytorch_so3.large.predict_in_chunks`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from torch import Tensor

from gpytorch_so3.cli._models import (
    MODEL_KINDS,
    FittedModel,
    IsotropicScaling,
    build_model,
    condition_on,
    evaluate,
    fit_model,
    principal_axes,
)
from gpytorch_so3.geo import azimuth_dip

__all__ = [
    "MODEL_KINDS",
    "FittedModel",
    "IsotropicScaling",
    "azimuth_dip",
    "build_model",
    "compare_models",
    "condition_on",
    "evaluate",
    "fit_model",
    "principal_axes",
]

warnings.warn(
    "gpytorch_so3.compare is deprecated and will be removed in the next release: it was the command line's "
    "model zoo (now private to gpytorch_so3.cli); build models from the public kernels and fit_map, and use "
    "gpytorch_so3.geo.azimuth_dip and gpytorch_so3.large.predict_in_chunks",
    DeprecationWarning,
    stacklevel=2,
)


def compare_models(
    train_X: Tensor,
    train_Y: Tensor,
    *,
    kinds: Sequence[str] = ("ard", "spd", "so3"),
    nu: float | None = 2.5,
    num_restarts: int = 8,
    seed: int | None = 0,
) -> list[FittedModel]:
    """Deprecated: fit several model kinds on the same (scaled) data; see ``fit_model``."""
    return [fit_model(k, train_X, train_Y, nu=nu, num_restarts=num_restarts, seed=seed) for k in kinds]
