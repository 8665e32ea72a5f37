"""Drivers shared by the benchmark scripts and the tests (not part of the installed package).

Benchmark scripts import this module as a sibling (``from _experiments import ...``, their folder is on
``sys.path`` when run as ``python benchmarks/x.py``); the tests import it as ``benchmarks._experiments`` (the
repository root is put on ``sys.path`` by ``tests/conftest.py``). It lives here, not in ``tests/``, because the
benchmark scripts are its main users and scripts should not import from a test folder; it lives outside
``gpytorch_so3/`` because none of it is API a GPyTorch/BoTorch user imports (issue 14, item 5).

The held-out-by-hole protocol itself (folds, the known rotation, fitting and scoring one fold) is the demo's, in
``gpytorch_so3.cli._demo``, and is re-exported here so that there is one copy.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any

from torch import Tensor

from gpytorch_so3 import so3
from gpytorch_so3.cli._demo import (  # noqa: F401  (re-exported for the benchmark scripts and tests)
    ABOUT_HORIZONTAL_DEG,
    ABOUT_VERTICAL_DEG,
    fit_and_score,
    known_rotation,
    oilsands_fold,
    rotate_about,
    split_fold,
)
from gpytorch_so3.cli._models import MODEL_KINDS, Z90, evaluate, fit_model

METRICS = ("r2", "rmse", "nlpd", "coverage90", "fit_seconds")
#: Display names of the kinds, including the kriging baseline.
KIND_NAMES = {**MODEL_KINDS, "okrige": "Ordinary kriging (GSTools)"}


def coverage(mean: Tensor, std: Tensor, y: Tensor, z: float = Z90) -> float:
    """Fraction of ``y`` inside ``mean +- z std`` (default: central 90% Gaussian intervals).

    Example:
        >>> import torch
        >>> coverage(torch.zeros(4), torch.ones(4), torch.tensor([0.5, -1.0, 1.7, 3.0]))
        0.5
    """
    return float(((y - mean).abs() <= z * std).double().mean())


def summarize(records: Iterable[dict[str, Any]], keys: Sequence[str] = ("target", "rotated", "kind")) -> list[dict]:
    """Mean and standard deviation over folds of each metric, grouped by ``keys``.

    Args:
        records: per-fold records (``oilsands_fold`` output).
        keys: grouping fields.

    Returns:
        one dict per group with the ``keys``, ``n_folds`` and ``<metric>_mean`` / ``<metric>_sd`` for R^2, RMSE,
        NLPD, 90% coverage, fit time and ``vertical_angle_deg``.
    """
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, recs in groups.items():
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["n_folds"] = len(recs)
        for m in (*METRICS, "vertical_angle_deg"):
            vals = [float(r[m]) for r in recs if r.get(m) is not None]
            row[f"{m}_mean"] = statistics.fmean(vals) if vals else None
            row[f"{m}_sd"] = (statistics.stdev(vals) if len(vals) > 1 else 0.0) if vals else None
        row["lengthscale_m_median"] = [statistics.median(r["lengthscale_m"][i] for r in recs) for i in range(3)]
        out.append(row)
    return out


def _pm(row: dict[str, Any], metric: str, fmt: str) -> str:
    if row[metric + "_mean"] is None:
        return "–"
    return f"{row[metric + '_mean']:{fmt}} ± {row[metric + '_sd']:{fmt}}"


def markdown_table(summary: Sequence[dict[str, Any]]) -> str:
    """A markdown table of :func:`summarize` output (mean +- sd over folds)."""
    head = (
        "| target | setting | kernel | folds | R^2 | RMSE | NLPD | 90% coverage | fit time (s) | "
        "minor axis vs vertical (deg) | length-scales (m, median) |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in summary:
        ls = ", ".join(f"{v:.3g}" for v in r["lengthscale_m_median"])
        setting = r.get("experiment") or ("rotated" if r.get("rotated") else "original")
        lines.append(
            f"| {r.get('target', '')} | {setting} | {KIND_NAMES.get(r.get('kind'), r.get('kind'))} | {r['n_folds']} | "
            f"{_pm(r, 'r2', '.3f')} | {_pm(r, 'rmse', '.3f')} | {_pm(r, 'nlpd', '.3f')} | "
            f"{_pm(r, 'coverage90', '.2f')} | {_pm(r, 'fit_seconds', '.0f')} | "
            f"{_pm(r, 'vertical_angle_deg', '.2f')} | {ls} |"
        )
    return "\n".join(lines)


def recovery_report(field: Any, *, num_restarts: int = 8, seed: int = 0) -> dict[str, Any]:
    """Fit SO(3) (``fit_map``) and ARD to a synthetic field and compare with its truth (the paper's experiment).

    Args:
        field: a :class:`~gpytorch_so3.datasets.SyntheticField`.
        num_restarts: Haar restarts of the SO(3) fit.
        seed: restart seed.

    Returns:
        dict with ``angle_error_deg`` (``(3,)``, fitted vs true canonical axes, shortest first),
        ``lengthscale_rel_error`` (``(3,)``), ``rmse_so3``, ``rmse_ard`` (held-out, noisy targets),
        ``fit_seconds_so3``, ``fit_seconds_ard`` and ``best_start`` (index in ``fit_map_info_``).
    """
    so3_fit = fit_model("so3", field.train_X, field.train_Y, num_restarts=num_restarts, seed=seed)
    ard_fit = fit_model("ard", field.train_X, field.train_Y)
    t_ls, t_ax = field.true_canonical()
    return {
        "angle_error_deg": so3.angle_between_axes(so3_fit.axes.T, t_ax.T),
        "lengthscale_rel_error": (so3_fit.lengthscale / t_ls - 1).abs(),
        "rmse_so3": evaluate(so3_fit.model, field.test_X, field.test_Y)["rmse"],
        "rmse_ard": evaluate(ard_fit.model, field.test_X, field.test_Y)["rmse"],
        "fit_seconds_so3": so3_fit.fit_seconds,
        "fit_seconds_ard": ard_fit.fit_seconds,
        "best_start": so3_fit.model.fit_map_info_.best_restart,
    }


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), wall seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


__all__ = [
    "ABOUT_HORIZONTAL_DEG",
    "ABOUT_VERTICAL_DEG",
    "KIND_NAMES",
    "METRICS",
    "coverage",
    "fit_and_score",
    "known_rotation",
    "markdown_table",
    "oilsands_fold",
    "recovery_report",
    "rotate_about",
    "split_fold",
    "summarize",
    "timed",
]
