"""Warnings and errors of gpytorch-so3 (filter them with ``warnings.filterwarnings`` by class)."""

from __future__ import annotations

__all__ = [
    "GPyTorchSO3Warning",
    "KeOpsFallbackWarning",
    "NonIsotropicInputScalingWarning",
    "RestartFailedWarning",
]


class GPyTorchSO3Warning(UserWarning):
    """Base class of every warning this package emits."""


class RestartFailedWarning(GPyTorchSO3Warning):
    """A MAP restart failed (non-PSD matrix, NaN) and was skipped."""


class KeOpsFallbackWarning(GPyTorchSO3Warning, RuntimeWarning):
    """KeOps was requested or would be used but pykeops is unavailable: the dense path is used instead."""


class NonIsotropicInputScalingWarning(GPyTorchSO3Warning):
    """Inputs of an SO(3) kernel are scaled per axis, which shears space and distorts fitted rotations."""
