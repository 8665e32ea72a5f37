"""gpytorch-so3: rotated-anisotropy (Lie-algebraic SO(3)) kernels for GPyTorch and BoTorch.

Importing the package (or :mod:`gpytorch_so3.kernels`, :mod:`~gpytorch_so3.so3`, :mod:`~gpytorch_so3.functional`,
:mod:`~gpytorch_so3.priors`, :mod:`~gpytorch_so3.datasets`) loads only torch, gpytorch, linear_operator, numpy and
scipy, and changes no global setting. ``import botorch`` raises linear_operator's ``max_cholesky_size`` to 4096 and
switches gpytorch's fast computations off for the whole process, so every name that needs BoTorch or Pyro
(:func:`fit_map`, :class:`SO3FullyBayesianGP`, :func:`fit_nuts`, :func:`summarize_posterior`, ...) is loaded
lazily, on first attribute access (PEP 562 module ``__getattr__``), as SciPy and scikit-learn load submodules.

Example:
    >>> import gpytorch_so3
    >>> "fit_map" in dir(gpytorch_so3)  # listed before it is imported
    True
    >>> callable(gpytorch_so3.fit_map)  # the first access imports gpytorch_so3.fit (and BoTorch)
    True
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any


def _is_command_line() -> bool:
    """Whether this process is the package's command line (``gpytorch-so3 ...`` or ``python -m gpytorch_so3 ...``)."""
    argv = getattr(sys, "orig_argv", sys.argv)
    if os.path.basename(sys.argv[0] if sys.argv else "") == "gpytorch-so3":
        return True
    return any(a == "-m" and i + 1 < len(argv) and argv[i + 1].startswith("gpytorch_so3") for i, a in enumerate(argv))


if _is_command_line():
    # gpytorch imports pykeops when it is installed, and pykeops prints "CUDA libraries not found ..." at import on
    # every CPU machine, before any of our code runs (even for --help). Only for the command line, and only unless
    # the user chose otherwise, ask pykeops to stay quiet; the KeOps path still warns once if it falls back.
    for _name in ("PYKEOPS_VERBOSE", "KEOPS_VERBOSE"):  # pykeops reads the first, keopscore the second
        os.environ.setdefault(_name, "0")

# The light core: torch, gpytorch, linear_operator, numpy, scipy only (tests/test_architecture.py checks it).
from gpytorch_so3 import datasets, exceptions, functional, kernels, priors, so3, sod  # noqa: E402
from gpytorch_so3.kernels import FullSPDKernel, RotatedAnisotropicKernel, SO3AnisotropicKernel  # noqa: E402

try:
    __version__ = version("gpytorch-so3")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installation
    __version__ = "0.0.0+unknown"

#: Names loaded on first access: ``name -> (module, attribute)``; ``attribute`` None means the module itself.
#: Everything here needs BoTorch or Pyro (or an optional extra), or lives in a module above the core.
_LAZY: dict[str, tuple[str, str | None]] = {
    # BoTorch layer
    "botorch_utils": ("gpytorch_so3.botorch_utils", None),
    "IsotropicNormalize": ("gpytorch_so3.botorch_utils", "IsotropicNormalize"),
    "check_input_scaling": ("gpytorch_so3.botorch_utils", "check_input_scaling"),
    "to_physical_units": ("gpytorch_so3.botorch_utils", "to_physical_units"),
    # MAP fit
    "fit_map": ("gpytorch_so3.fit", "fit_map"),
    # Bayesian optimisation surrogates: rotated metric only where the evidence pays for it
    "bo": ("gpytorch_so3.bo", None),
    "fit_rotated_or_ard": ("gpytorch_so3.bo", "fit_rotated_or_ard"),
    # pathwise sampling (BoTorch): conditional simulation, Thompson sampling
    "pathwise": ("gpytorch_so3.pathwise", None),
    "simulate": ("gpytorch_so3.pathwise", "simulate"),
    # fully Bayesian (Pyro)
    "SO3FullyBayesianGP": ("gpytorch_so3.fully_bayesian", "SO3FullyBayesianGP"),
    "SO3PyroModel": ("gpytorch_so3.fully_bayesian", "SO3PyroModel"),
    "RotatedFullyBayesianGP": ("gpytorch_so3.fully_bayesian", "RotatedFullyBayesianGP"),
    "RotatedPyroModel": ("gpytorch_so3.fully_bayesian", "RotatedPyroModel"),
    "fit_nuts": ("gpytorch_so3.nuts", "fit_nuts"),
    "PosteriorSummary": ("gpytorch_so3.summary", "PosteriorSummary"),
    "summarize_posterior": ("gpytorch_so3.summary", "summarize_posterior"),
    # reporting (geo and plot are light, but sit above the core in the layer table)
    "geo": ("gpytorch_so3.geo", None),
    "plot": ("gpytorch_so3.plot", None),
    # registered for modules of the second wave (they resolve once those modules exist)
    "scalable": ("gpytorch_so3.scalable", None),
}

#: Names of the second wave, exported once their modules are present.
_FUTURE = ("scalable",)


def _module_exists(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except ModuleNotFoundError:  # pragma: no cover - a parent package is missing
        return False


__all__ = [
    "FullSPDKernel",
    "IsotropicNormalize",
    "PosteriorSummary",
    "RotatedAnisotropicKernel",
    "RotatedFullyBayesianGP",
    "RotatedPyroModel",
    "SO3AnisotropicKernel",
    "SO3FullyBayesianGP",
    "SO3PyroModel",
    "__version__",
    "bo",
    "botorch_utils",
    "check_input_scaling",
    "datasets",
    "exceptions",
    "fit_map",
    "fit_nuts",
    "fit_rotated_or_ard",
    "functional",
    "geo",
    "kernels",
    "pathwise",
    "plot",
    "priors",
    "simulate",
    "so3",
    "sod",
    "summarize_posterior",
    "to_physical_units",
]
__all__ += [name for name in _FUTURE if _module_exists(_LAZY[name][0])]

if TYPE_CHECKING:  # pragma: no cover - static type checkers and IDEs see the lazy names as ordinary imports
    from gpytorch_so3 import bo, botorch_utils, geo, pathwise, plot
    from gpytorch_so3.bo import fit_rotated_or_ard
    from gpytorch_so3.botorch_utils import IsotropicNormalize, check_input_scaling, to_physical_units
    from gpytorch_so3.fit import fit_map
    from gpytorch_so3.fully_bayesian import (
        RotatedFullyBayesianGP,
        RotatedPyroModel,
        SO3FullyBayesianGP,
        SO3PyroModel,
    )
    from gpytorch_so3.nuts import fit_nuts
    from gpytorch_so3.pathwise import simulate
    from gpytorch_so3.summary import PosteriorSummary, summarize_posterior


def __getattr__(name: str) -> Any:
    """Load a lazy name on first access and cache it in the module namespace (PEP 562)."""
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            # the package's own module is missing (a name registered ahead of its module): not a broken install
            raise AttributeError(
                f"gpytorch_so3.{name} is not available in this version (module {module_name} is missing)"
            ) from e
        raise
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """Module attributes including the lazy names (so tab completion and ``dir`` list them)."""
    return sorted(set(globals()) | {n for n in _LAZY if n not in _FUTURE or _module_exists(_LAZY[n][0])})
