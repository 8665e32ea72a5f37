"""Scalable GPs with the SO(3) kernel: SVGP (minibatch, streaming, torchrun data-parallel) and whitened-Vecchia NNGP.

Public entry points: :func:`fit_svgp` -> :class:`SVGPResult` and :func:`fit_nngp` -> :class:`NearestNeighbourGP`.
This subpackage sits above :mod:`gpytorch_so3.fit` in the import stack (it imports BoTorch through ``fit_map``);
the core modules never import it.
"""

from gpytorch_so3.scalable._data import read_csv
from gpytorch_so3.scalable.nngp import NearestNeighbourGP, fit_nngp, ordered_neighbours
from gpytorch_so3.scalable.svgp import SO3SVGPModel, SVGPResult, fit_svgp, optimal_variational_update

__all__ = [
    "NearestNeighbourGP",
    "SO3SVGPModel",
    "SVGPResult",
    "fit_nngp",
    "fit_svgp",
    "optimal_variational_update",
    "ordered_neighbours",
    "read_csv",
]
