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

import math
import statistics
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gpytorch_so3 import so3
from gpytorch_so3.cli._demo import (  # re-exported for the benchmark scripts and tests
    ABOUT_HORIZONTAL_DEG,
    ABOUT_VERTICAL_DEG,
    fit_and_score,
    known_rotation,
    oilsands_fold,
    rotate_about,
    split_fold,
)
from gpytorch_so3.cli._models import MODEL_KINDS, Z90, evaluate, fit_model
from gpytorch_so3.datasets import DrillHoleData

METRICS = ("r2", "rmse", "nlpd", "coverage90", "fit_seconds", "predict_seconds")
#: Display names of the kinds, including the kriging baseline.
KIND_NAMES = {**MODEL_KINDS, "okrige": "Ordinary kriging (GSTools)"}


def coverage(mean: Tensor, std: Tensor, y: Tensor, z: float = Z90) -> float:
    """Fraction of ``y`` inside ``mean +- z std`` (default: central 90% Gaussian intervals).

    Example:
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
        "| target | setting | kernel | folds | R^2 | RMSE | NLPD | 90% coverage | fit time (s) | predict time (s) | "
        "minor axis vs vertical (deg) | length-scales (m, median) |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in summary:
        ls = ", ".join(f"{v:.3g}" for v in r["lengthscale_m_median"])
        setting = r.get("experiment") or ("rotated" if r.get("rotated") else "original")
        lines.append(
            f"| {r.get('target', '')} | {setting} | {KIND_NAMES.get(r.get('kind'), r.get('kind'))} | {r['n_folds']} | "
            f"{_pm(r, 'r2', '.3f')} | {_pm(r, 'rmse', '.3f')} | {_pm(r, 'nlpd', '.3f')} | "
            f"{_pm(r, 'coverage90', '.2f')} | {_pm(r, 'fit_seconds', '.0f')} | {_pm(r, 'predict_seconds', '.0f')} | "
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
    t_ls, t_ax = field.canonical()
    return {
        "angle_error_deg": so3.angle_between_axes(so3_fit.axes.T, t_ax.T),
        "lengthscale_rel_error": (so3_fit.lengthscale / t_ls - 1).abs(),
        "rmse_so3": evaluate(so3_fit.model, field.test_X, field.test_Y)["rmse"],
        "rmse_ard": evaluate(ard_fit.model, field.test_X, field.test_Y)["rmse"],
        "fit_seconds_so3": so3_fit.fit_seconds,
        "fit_seconds_ard": ard_fit.fit_seconds,
        "best_start": so3_fit.model.fit_map_info_.best_restart,
    }


def environment(started: float, note: str) -> dict[str, Any]:
    """The ``environment`` entry of a benchmark's JSON: versions, threads, load, time stamp and wall seconds since
    ``started`` (a ``time.perf_counter()`` value)."""
    import os
    import platform

    import botorch
    import gpytorch

    return {
        "torch": torch.__version__,
        "gpytorch": gpytorch.__version__,
        "botorch": botorch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "loadavg_1min_at_end": os.getloadavg()[0],
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "wall_seconds": time.perf_counter() - started,
        "note": note,
    }


def run_cases(doc: str, cases: Sequence[str], default_out: str, measure, argv: Sequence[str] | None = None) -> None:
    """A benchmark script's ``main``: ``--cases`` (default all) and ``--out``, one thread, each case's record
    ``measure(name)`` printed as it comes, then ``{"environment": ..., "records": [...]}`` written to ``--out``."""
    import argparse
    import json
    import warnings
    from pathlib import Path

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="*", default=list(cases), choices=list(cases))
    p.add_argument("--out", default=default_out)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")
    t0 = time.perf_counter()
    records = []
    for name in args.cases:
        rec = measure(name)
        records.append(rec)
        print(json.dumps(rec), flush=True)
    note = "2-core machine, possibly shared: absolute times are noisy, compare same-run ratios"
    Path(args.out).write_text(json.dumps({"environment": environment(t0, note), "records": records}, indent=1) + "\n")
    print(f"wrote {args.out}")


def fit_botorch(model) -> float:
    """Seconds of BoTorch's ``fit_gpytorch_mll`` on ``model`` (fitted in place)."""
    from botorch.fit import fit_gpytorch_mll
    from gpytorch.mlls import ExactMarginalLogLikelihood

    return timed(fit_gpytorch_mll, ExactMarginalLogLikelihood(model.likelihood, model))[1]


def ard_seconds(X: Tensor, Y: Tensor) -> float:
    """Seconds of the ARD baseline: BoTorch's fit of ``SingleTaskGP(X, Y)`` with ``bo.ard_covar_module(d)`` (the same
    length-scale and output-scale priors as the rotated factories) and a ``Standardize`` outcome."""
    from botorch.models import SingleTaskGP
    from botorch.models.transforms.outcome import Standardize

    from gpytorch_so3.bo import ard_covar_module

    return fit_botorch(SingleTaskGP(X, Y, covar_module=ard_covar_module(X.shape[-1]), outcome_transform=Standardize(1)))


def timed(fn, *args, **kwargs) -> tuple[Any, float]:
    """``(fn(*args, **kwargs), wall seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


# ----------------------------------------------------------------------------------------------- kriging baseline
#: Variogram families tried by :func:`fit_layered_variogram` (the best least-squares fit is kept).
KRIGING_MODELS = ("Exponential", "Spherical", "Gaussian")


def _pooled_horizontal_variogram(xyz: np.ndarray, y: np.ndarray, edges: np.ndarray, axis: int, slice_m: float):
    """Directional variogram along horizontal ``axis`` (0: East, 1: North) from pairs at nearly the same elevation.

    GSTools has one bandwidth for all directions; a horizontal variogram needs a tight *vertical* tolerance only
    (GSLIB's separate vertical bandwidth), so samples are cut into elevation slices of ``slice_m`` metres, a 2-D
    directional variogram (22.5 degrees angular tolerance) is estimated in each slice, and the slices are pooled
    weighted by their pair counts.
    """
    import gstools as gs

    direction = [[1.0, 0.0]] if axis == 0 else [[0.0, 1.0]]
    z = xyz[:, 2]
    gamma = np.zeros(len(edges) - 1)
    counts = np.zeros(len(edges) - 1)
    for lo in np.arange(z.min(), z.max() + slice_m, slice_m):
        sel = (z >= lo) & (z < lo + slice_m)
        if sel.sum() < 3:
            continue
        centers, g, c = gs.vario_estimate(
            xyz[sel, :2].T, y[sel], edges, direction=direction, angles_tol=math.pi / 8, return_counts=True
        )
        g, c = np.nan_to_num(np.atleast_2d(g)[0]), np.atleast_2d(c)[0]  # one direction: GSTools squeezes
        gamma += g * c
        counts += c
    ok = counts > 0
    return centers[ok], gamma[ok] / counts[ok], counts[ok]


def fit_layered_variogram(
    xyz_m: np.ndarray,
    y: np.ndarray,
    *,
    vertical_edges: np.ndarray | None = None,
    horizontal_edges: np.ndarray | None = None,
    slice_m: float = 2.0,
    families: Sequence[str] = KRIGING_MODELS,
):
    """A practitioner's 3-D variogram in the layering's frame (here the coordinate frame: flat layers).

    Directional experimental variograms: vertical (pairs within 11.25 degrees of the vertical, i.e. along the
    holes; 3 m lags to 45 m, short of the hole effect beyond ~36 m) and horizontal East and North (pairs in 2 m
    elevation slices, 100 m lags to 2 km).
    For each of ``families`` (default :data:`KRIGING_MODELS`): the vertical variogram fixes sill, nugget and the
    vertical length, the horizontal ones then fit their lengths with sill and nugget held; the family with the
    smallest weighted squared misfit over all three is kept. Returns a GSTools ``CovModel(dim=3)`` with
    ``len_scale`` along East and
    ``anis = [len_North, len_vertical] / len_East`` (angles 0) and a dict of the fitted values.
    """
    import gstools as gs

    v_edges = np.arange(0.0, 48.0, 3.0) if vertical_edges is None else vertical_edges
    h_edges = np.arange(0.0, 2100.0, 100.0) if horizontal_edges is None else horizontal_edges
    vc, vg, vn = gs.vario_estimate(
        xyz_m.T, y, v_edges, direction=[[0.0, 0.0, 1.0]], angles_tol=math.pi / 16, return_counts=True
    )
    vg, vn = np.atleast_2d(vg)[0], np.atleast_2d(vn)[0]
    ok = vn > 0
    vc, vg, vn = vc[ok], vg[ok], vn[ok]
    horizontal = [_pooled_horizontal_variogram(xyz_m, y, h_edges, axis, slice_m) for axis in (0, 1)]
    best = None
    for name in families:
        family = getattr(gs, name)
        try:
            mv = family(dim=1)
            mv.fit_variogram(vc, vg, nugget=True, weights=vn, max_eval=20000)
            lens, misfit = [], float(np.sum(vn * (mv.variogram(vc) - vg) ** 2) / vn.sum())
            for hc, hg, hn in horizontal:
                mh = family(dim=1, var=mv.var, nugget=mv.nugget, len_scale=10 * mv.len_scale)
                mh.fit_variogram(hc, hg, var=False, nugget=False, weights=hn, max_eval=20000)
                lens.append(mh.len_scale)
                misfit += float(np.sum(hn * (mh.variogram(hc) - hg) ** 2) / hn.sum())
        except RuntimeError:  # scipy's curve_fit did not converge for this family: a practitioner tries the next
            continue
        if best is None or misfit < best[0]:
            best = (misfit, name, mv.var, mv.nugget, lens[0], lens[1], mv.len_scale)
    if best is None:
        raise RuntimeError("no variogram family could be fitted")
    misfit, name, var, nugget, len_e, len_n, len_v = best
    model = getattr(gs, name)(dim=3, var=var, len_scale=len_e, anis=[len_n / len_e, len_v / len_e], nugget=nugget)
    info = {
        "family": name,
        "var": var,
        "nugget": nugget,
        "len_east": len_e,
        "len_north": len_n,
        "len_vertical": len_v,
        "misfit": misfit,
    }
    return model, info


def kriging_fold(
    data: DrillHoleData,
    folds: Tensor,
    fold: int,
    *,
    max_train: int | None = None,
    seed: int = 0,
    families: Sequence[str] = KRIGING_MODELS,
    say=lambda msg: None,
) -> dict[str, Any]:
    """Ordinary kriging (GSTools) of one held-out fold of drill holes, scored like :func:`oilsands_fold`.

    The variogram is fitted by :func:`fit_layered_variogram` on the training samples, then
    ``gstools.krige.Ordinary(model, ..., exact=False, cond_err="nugget")`` predicts the held-out holes from all
    training samples (or ``max_train`` random ones). Its kriging variance already includes the nugget (the
    observation noise), so NLPD and coverage compare with the GPs' predictive distribution with noise.

    Returns:
        a record with the keys of :func:`oilsands_fold`'s records (``kind = "okrige"``; ``lengthscale_m`` are the
        fitted GSTools length-scales, ascending; ``vertical_angle_deg`` is ``None``: the frame is given, not fitted)
        plus ``variogram`` (family, sill, nugget, lengths).
    """
    import gstools as gs

    train_idx, test_idx = split_fold(folds, fold, max_train=max_train, seed=seed)
    X = data.coordinates.to(torch.float64).numpy()
    Y = data.targets.to(torch.float64).reshape(-1).numpy()
    xtr, ytr, xte, yte = X[train_idx.numpy()], Y[train_idx.numpy()], X[test_idx.numpy()], Y[test_idx.numpy()]
    say(f"  fold {fold}: ordinary kriging on {len(ytr)} samples")
    t0 = time.perf_counter()
    model, info = fit_layered_variogram(xtr, ytr, families=families)
    fit_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    krig = gs.krige.Ordinary(model, xtr.T, ytr, exact=False, cond_err="nugget", pseudo_inv=False)
    mean, var = krig(xte.T, return_var=True, mesh_type="unstructured")
    predict_seconds = time.perf_counter() - t0
    mean_t, yt = torch.as_tensor(mean), torch.as_tensor(yte)
    var_t = torch.as_tensor(var).clamp_min(1e-12)
    err = yt - mean_t
    rec = {
        "r2": float(1 - err.pow(2).sum() / (yt - yt.mean()).pow(2).sum()),
        "rmse": float(err.pow(2).mean().sqrt()),
        "nlpd": float((0.5 * (err.pow(2) / var_t + var_t.log() + math.log(2 * math.pi))).mean()),
        "coverage90": coverage(mean_t, var_t.sqrt(), yt),
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "kind": "okrige",
        "fold": int(fold),
        "target": data.target_name,
        "rotated": False,
        "n_fit": len(ytr),
        "n_train": len(ytr),
        "n_test": len(yte),
        "n_test_holes": int(torch.unique(data.hole_ids[test_idx]).numel()),
        "lengthscale_m": sorted([info["len_vertical"], info["len_north"], info["len_east"]]),
        "vertical_angle_deg": None,
        "variogram": info,
    }
    say(
        f"    R^2 {rec['r2']:.3f}  RMSE {rec['rmse']:.3f}  NLPD {rec['nlpd']:.3f}  cov90 {rec['coverage90']:.2f}  "
        f"({info['family']}, lengths E/N/V {info['len_east']:.0f}/{info['len_north']:.0f}/{info['len_vertical']:.1f} m,"
        f" {fit_seconds + predict_seconds:.0f} s)"
    )
    return rec


def dense_condition(
    kernel, noise: float, X: Tensor, y: Tensor, Xt: Tensor, *, variance: bool = False, block: int = 2048
) -> tuple[Tensor, Tensor | None]:
    """Exact GP prediction conditioned on all of ``X`` (``n`` up to a few times 10^4) with fixed hyper-parameters.

    The ``n x n`` kernel matrix is filled in row blocks and factorised in place by LAPACK (``scipy.linalg.cholesky``
    with ``overwrite_a`` on a Fortran-ordered view), so the peak memory is one ``n x n`` float64 matrix (3.2 GB at
    2x10^4). Returns the latent mean ``k(Xt, X) (K + noise I)^-1 y`` (``y`` already centred) and, with
    ``variance=True``, the latent variance ``k(x, x) - ||L^-1 k(X, x)||^2`` at ``Xt``.
    """
    import scipy.linalg

    with torch.no_grad():
        n = X.shape[0]
        K = torch.empty(n, n, dtype=torch.float64)
        for i in range(0, n, block):
            K[i : i + block] = kernel(X[i : i + block], X).to_dense()
        K.diagonal().add_(float(noise))
        L = scipy.linalg.cholesky(K.numpy().T, lower=True, overwrite_a=True, check_finite=False)
        alpha = torch.from_numpy(scipy.linalg.cho_solve((L, True), y.double().numpy(), check_finite=False))
        Ks = kernel(X, Xt).to_dense().double()  # n x m
        mean = Ks.mT @ alpha
        var = None
        if variance:
            V = scipy.linalg.solve_triangular(L, Ks.numpy(), lower=True, check_finite=False)
            prior = kernel(Xt, diag=True).double()
            var = (prior - torch.from_numpy((V * V).sum(0))).clamp_min(0.0)
        del K, L
    return mean, var


__all__ = [
    "ABOUT_HORIZONTAL_DEG",
    "ABOUT_VERTICAL_DEG",
    "KIND_NAMES",
    "KRIGING_MODELS",
    "METRICS",
    "coverage",
    "dense_condition",
    "fit_and_score",
    "fit_layered_variogram",
    "known_rotation",
    "kriging_fold",
    "markdown_table",
    "oilsands_fold",
    "recovery_report",
    "rotate_about",
    "split_fold",
    "summarize",
    "timed",
]
