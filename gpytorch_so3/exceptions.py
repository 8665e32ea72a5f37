"""Warnings and errors of gpytorch-so3 (filter them with ``warnings.filterwarnings`` by class)."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

__all__ = [
    "DegenerateInputsWarning",
    "GPyTorchSO3Warning",
    "KeOpsFallbackWarning",
    "NonIsotropicInputScalingWarning",
    "NotFittedError",
    "RestartFailedWarning",
    "deprecated_alias",
]


class GPyTorchSO3Warning(UserWarning):
    """Base class of every warning this package emits.

    Example:
        >>> import warnings
        >>> issubclass(RestartFailedWarning, GPyTorchSO3Warning)
        True
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", GPyTorchSO3Warning)  # silence all of this package's warnings
        ...     warnings.warn("fit_map restart 3 failed and was skipped", RestartFailedWarning)
    """


class RestartFailedWarning(GPyTorchSO3Warning):
    """A MAP restart failed (non-PSD matrix, NaN) and was skipped.

    Emitted by :func:`gpytorch_so3.fit_map`; the other restarts still run, and the failure is recorded in
    ``model.fit_map_info_.failures``.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warnings.warn("fit_map restart 3 failed and was skipped", RestartFailedWarning)
        >>> [w.category.__name__ for w in caught]
        ['RestartFailedWarning']
    """


class KeOpsFallbackWarning(GPyTorchSO3Warning, RuntimeWarning):
    """KeOps was requested or would be used but pykeops is unavailable: the dense path is used instead.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.filterwarnings("ignore", category=KeOpsFallbackWarning)  # accept the dense fallback
        ...     warnings.warn("pykeops is unavailable; using the dense path", KeOpsFallbackWarning)
        >>> issubclass(KeOpsFallbackWarning, RuntimeWarning)
        True
    """


class NonIsotropicInputScalingWarning(GPyTorchSO3Warning):
    """Inputs of an SO(3) kernel are scaled per axis, which shears space and distorts fitted rotations.

    Example:
        BoTorch's ``Normalize`` scales each column by its own range (here a thin slab, 10x thinner in z):

        >>> import warnings, torch
        >>> from botorch.models import SingleTaskGP
        >>> from botorch.models.transforms import Normalize
        >>> from gpytorch_so3.botorch_utils import check_input_scaling
        >>> from gpytorch_so3.priors import so3_covar_module
        >>> X = torch.rand(10, 3, dtype=torch.float64) * torch.tensor([1.0, 1.0, 0.1], dtype=torch.float64)
        >>> model = SingleTaskGP(X, torch.randn(10, 1, dtype=torch.float64), covar_module=so3_covar_module(),
        ...                      input_transform=Normalize(3))
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _ = check_input_scaling(model)
        >>> [w.category.__name__ for w in caught]
        ['NonIsotropicInputScalingWarning']
    """


class DegenerateInputsWarning(GPyTorchSO3Warning):
    """The training inputs of a rotated kernel do not span all its dimensions (a constant column, points on a plane).

    Along a direction the inputs never vary the data say nothing: the fitted length-scale there is set by its prior
    (often shorter than the real fast direction's), so read the principal axes only within the span of the inputs.
    Emitted by :func:`gpytorch_so3.fit_map`.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore", DegenerateInputsWarning)  # a planar design, on purpose
        ...     warnings.warn("inputs span 2 of 3 dimensions", DegenerateInputsWarning)
    """


class NotFittedError(RuntimeError):
    """A model was used before it was fitted (e.g. an ``SO3FullyBayesianGP`` before ``fit_nuts``).

    A ``RuntimeError``, as BoTorch's own "Model has not been fitted" error, so existing ``except RuntimeError``
    handlers keep working.

    Example:
        >>> try:
        ...     raise NotFittedError("SO3FullyBayesianGP is not fitted: call fit_nuts(model) first")
        ... except RuntimeError as e:
        ...     print(type(e).__name__)
        NotFittedError
    """


def deprecated_alias(new: Callable[..., Any], old_name: str, new_name: str) -> Callable[..., Any]:
    """A deprecated alias of a renamed function or method: warns (``DeprecationWarning``), then calls ``new``.

    Args:
        new: the function under its new name (a plain function; as a class attribute it works as a method).
        old_name: the old dotted name, for the message (e.g. ``"functional.metric_to_principal"``).
        new_name: the new dotted name, for the message.

    Returns:
        the alias (its docstring names the replacement).

    Example:
        >>> import warnings
        >>> def double(x):
        ...     return 2 * x
        >>> twice = deprecated_alias(double, "twice", "double")
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     twice(2)
        4
        >>> str(caught[0].message)
        'twice is deprecated and will be removed in a future release; use double instead'
    """
    message = f"{old_name} is deprecated and will be removed in a future release; use {new_name} instead"

    @functools.wraps(new)
    def alias(*args: Any, **kwargs: Any) -> Any:
        warnings.warn(message, DeprecationWarning, stacklevel=2)
        return new(*args, **kwargs)

    short = old_name.rsplit(".", 1)[-1]
    alias.__name__ = short
    alias.__qualname__ = new.__qualname__.rsplit(".", 1)[0] + "." + short if "." in new.__qualname__ else short
    alias.__doc__ = f"Deprecated alias of :func:`{new_name}` (same arguments and result)."
    del alias.__wrapped__  # so that doctest and inspect do not unwrap it to the new function's examples
    return alias
