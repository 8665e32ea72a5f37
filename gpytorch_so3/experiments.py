r"""Held-out-by-hole experiments on the oil-sands drill holes (behind ``gpytorch-so3 demo --data oilsands``).

The protocol (also used by ``benchmarks/oilsands_eval.py`` with a larger budget):

1. Whole drill holes are held out: holes are dealt into ``n_folds`` folds (:func:`~gpytorch_so3.datasets.hole_folds`);
   a fold's samples are the test set, the other holes the training pool. Predicting a held-out hole is
   interpolation between neighbouring holes, which is what the horizontal ranges and the thin vertical range
   decide.
2. At most ``max_train`` training samples are drawn at random (rows, from all training holes) so that an exact
   GP fit is affordable on a laptop CPU.
3. Coordinates (metres) are centred and divided by *one* factor, the largest side of the training box
   (:class:`~gpytorch_so3.compare.IsotropicScaling`): per-axis scaling would shear space and change angles.
   Length-scales are reported back in metres.
4. Models are fitted by type-II MAP (:func:`~gpytorch_so3.compare.fit_model`: restarts over rotations for the
   SO(3) and full-SPD kernels) and scored on the held-out holes: R^2, RMSE, NLPD of the noisy observations,
   coverage of the central 90% predictive intervals, fit time.
5. The decisive test: the same folds after rotating all coordinates by a known rotation ``Q`` (40 degrees about
   the vertical, then 30 degrees about the East axis). An axis-aligned (ARD) kernel cannot follow the tilted
   layers; a rotation-learning kernel should keep its skill and its shortest axis should be ``Q e_z``.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import gpytorch
import torch
from torch import Tensor

from gpytorch_so3 import so3
from gpytorch_so3._oilsands import DrillHoleData, hole_folds, load_oilsands

__all__ = [
    "ABOUT_HORIZONTAL_DEG",
    "ABOUT_VERTICAL_DEG",
    "coverage",
    "fit_and_score",
    "known_rotation",
    "markdown_table",
    "oilsands_fold",
    "recovery_report",
    "rotate_about",
    "run_oilsands_demo",
    "split_fold",
    "summarize",
]

#: The known rotation of the decisive test: first this many degrees about the vertical (z) ...
ABOUT_VERTICAL_DEG = 40.0
#: ... then this many degrees about the horizontal East (x) axis; the vertical maps to ``Q e_z``.
ABOUT_HORIZONTAL_DEG = 30.0

#: Standard-normal quantile of a central 90% interval.
_Z90 = 1.6448536269514722

_METRICS = ("r2", "rmse", "nlpd", "coverage90", "fit_seconds")


def known_rotation(
    about_vertical_deg: float = ABOUT_VERTICAL_DEG, about_horizontal_deg: float = ABOUT_HORIZONTAL_DEG
) -> Tensor:
    """The known rotation ``Q = Rx(about_horizontal) Rz(about_vertical)`` (float64, ``3 x 3``).

    Applied to coordinates as ``x -> Q x``: first a rotation about the vertical, then about the East axis,
    both counter-clockwise seen from the positive axis. The vertical maps to
    ``Q e_z = (0, -sin(h), cos(h))``.

    Args:
        about_vertical_deg: first angle (degrees, about z).
        about_horizontal_deg: second angle (degrees, about x).

    Returns:
        ``3 x 3`` rotation matrix.

    Example:
        >>> Q = known_rotation()  # 40 degrees about the vertical, then 30 degrees about East
        >>> (Q @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)).round(decimals=4) + 0.0  # image of the vertical
        tensor([ 0.0000, -0.5000,  0.8660], dtype=torch.float64)
    """
    z = torch.tensor([0.0, 0.0, math.radians(about_vertical_deg)], dtype=torch.float64)
    x = torch.tensor([math.radians(about_horizontal_deg), 0.0, 0.0], dtype=torch.float64)
    return so3.exp_map(x) @ so3.exp_map(z)


def rotate_about(X: Tensor, Q: Tensor, center: Tensor) -> Tensor:
    """Rotate points ``n x 3`` about ``center`` (3,): ``center + Q (x - center)``; distances are unchanged.

    Args:
        X: ``n x 3`` points.
        Q: ``3 x 3`` rotation matrix.
        center: ``(3,)`` fixed point of the rotation.

    Returns:
        ``n x 3`` rotated points (dtype and device of ``X``).

    Example:
        >>> X = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]], dtype=torch.float64)
        >>> Q = known_rotation(90.0, 0.0)  # 90 degrees about the vertical
        >>> rotate_about(X, Q, center=X[0]).round(decimals=4) + 0.0
        tensor([[1., 0., 0.],
                [1., 1., 0.]], dtype=torch.float64)
    """
    Q = Q.to(X)
    center = center.to(X)
    return center + (X - center) @ Q.T


def coverage(mean: Tensor, std: Tensor, y: Tensor, z: float = _Z90) -> float:
    """Fraction of ``y`` inside ``mean +- z std`` (default: central 90% Gaussian intervals).

    Args:
        mean: predictive means (any shape).
        std: predictive standard deviations (same shape).
        y: observations (same shape).
        z: half-width of the interval in standard deviations (default 1.645).

    Returns:
        the fraction, a float in ``[0, 1]``.

    Example:
        >>> coverage(torch.zeros(4), torch.ones(4), torch.tensor([0.5, -1.0, 1.7, 3.0]))
        0.5
    """
    return float(((y - mean).abs() <= z * std).double().mean())


def _build_without_lengthscale_prior(kind: str, X: Tensor, Y: Tensor, nu: float | None):
    """Like :func:`gpytorch_so3.compare.build_model` but with no length-scale prior (an ablation)."""
    from botorch.models import SingleTaskGP
    from botorch.models.transforms import Standardize
    from gpytorch.kernels import MaternKernel, RBFKernel, ScaleKernel

    from gpytorch_so3.kernels import FullSPDKernel, SO3AnisotropicKernel
    from gpytorch_so3.priors import default_rotation_prior

    if kind in ("iso", "ard"):
        ard = 3 if kind == "ard" else None
        base = RBFKernel(ard_num_dims=ard) if nu is None else MaternKernel(nu=nu, ard_num_dims=ard)
    elif kind == "spd":
        base = FullSPDKernel(nu=nu)
    elif kind == "so3":
        base = SO3AnisotropicKernel(nu=nu, rotation_prior=default_rotation_prior())
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    return SingleTaskGP(X, Y, covar_module=ScaleKernel(base.to(X)), outcome_transform=Standardize(m=1))


def fit_and_score(
    kind: str,
    train_X: Tensor,
    train_Y: Tensor,
    test_X: Tensor,
    test_Y: Tensor,
    *,
    nu: float | None = 2.5,
    num_restarts: int = 4,
    seed: int = 0,
    lengthscale_prior: bool = True,
) -> dict[str, Any]:
    """Fit one model kind by MAP and score it on held-out data (inputs already scaled isotropically).

    Args:
        kind: ``"iso"``, ``"ard"``, ``"spd"`` or ``"so3"``.
        train_X: ``n x 3`` scaled training inputs.
        train_Y: ``n x 1`` training targets.
        test_X: ``m x 3`` scaled test inputs.
        test_Y: ``m x 1`` test targets.
        nu: base kernel smoothness (``None``: RBF).
        num_restarts: restarts over rotations (SO(3) and full-SPD kernels).
        seed: restart seed.
        lengthscale_prior: keep the default length-scale prior (``False``: no prior, an ablation).

    Returns:
        dict with ``r2``, ``rmse``, ``nlpd``, ``coverage90``, ``fit_seconds``, canonical (ascending)
        ``lengthscale`` (scaled units, list of 3), ``axes`` (``3 x 3`` nested list, columns) and ``noise``
        (observation-noise variance in target units), plus ``model`` (the fitted model).

    Example:
        >>> from gpytorch_so3.datasets import make_rotated_field
        >>> f = make_rotated_field(n_train=30, n_test=20, seed=0)
        >>> rec = fit_and_score("ard", f.train_X, f.train_Y, f.test_X, f.test_Y)
        >>> sorted(rec)
        ['axes', 'coverage90', 'fit_seconds', 'lengthscale', 'model', 'nlpd', 'noise', 'r2', 'rmse']
    """
    from gpytorch_so3.compare import FittedModel, evaluate, fit_model, principal_axes

    if lengthscale_prior:
        fm = fit_model(kind, train_X, train_Y, nu=nu, num_restarts=num_restarts, seed=seed)
    else:
        from botorch.fit import fit_gpytorch_mll
        from gpytorch.mlls import ExactMarginalLogLikelihood

        from gpytorch_so3.fit import fit_map

        model = _build_without_lengthscale_prior(kind, train_X, train_Y, nu)
        t0 = time.perf_counter()
        if kind in ("spd", "so3"):
            fit_map(model, num_restarts=num_restarts, seed=seed)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
            model.eval()
        ls, axes = principal_axes(model)
        fm = FittedModel(kind=kind, model=model, fit_seconds=time.perf_counter() - t0, lengthscale=ls, axes=axes)
    scores = evaluate(fm.model, test_X, test_Y)
    with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
        post = fm.model.posterior(test_X, observation_noise=True)
        mean, std = post.mean, post.variance.clamp_min(0).sqrt()
    noise = (
        float(fm.model.likelihood.noise.detach().reshape(-1)[0])
        * float(fm.model.outcome_transform.stdvs.detach().reshape(-1)[0]) ** 2
    )
    return {
        **scores,
        "coverage90": coverage(mean, std, test_Y),
        "fit_seconds": fm.fit_seconds,
        "lengthscale": fm.lengthscale.tolist(),
        "axes": fm.axes.tolist(),
        "noise": noise,
        "model": fm.model,
    }


def split_fold(folds: Tensor, fold: int, *, max_train: int | None = None, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Training and test row indices of one held-out fold of drill holes.

    Args:
        folds: ``n`` fold index per sample (:func:`~gpytorch_so3.datasets.hole_folds`).
        fold: the held-out fold.
        max_train: keep at most this many training rows, drawn at random from all other folds (``None``: all).
        seed: the subsample uses ``torch.Generator().manual_seed(seed + fold)``.

    Returns:
        ``(train_idx, test_idx)``, sorted int64 indices; ``test_idx`` are all rows of ``fold``.

    Example:
        >>> folds = torch.tensor([0, 1, 2, 0, 1, 2, 0])
        >>> split_fold(folds, 0)
        (tensor([1, 2, 4, 5]), tensor([0, 3, 6]))
        >>> len(split_fold(folds, 0, max_train=2)[0])
        2
    """
    test_idx = (folds == fold).nonzero().squeeze(-1)
    pool = (folds != fold).nonzero().squeeze(-1)
    if len(test_idx) == 0:
        raise ValueError(f"fold {fold} is empty")
    if max_train is not None and (isinstance(max_train, bool) or not isinstance(max_train, int) or max_train < 1):
        raise ValueError(f"max_train must be a positive int or None, got {max_train!r}")
    if max_train is None or len(pool) <= max_train:
        return pool, test_idx
    g = torch.Generator().manual_seed(int(seed) + int(fold))
    return pool[torch.randperm(len(pool), generator=g)[:max_train]].sort().values, test_idx


def oilsands_fold(
    data: DrillHoleData,
    folds: Tensor,
    fold: int,
    *,
    kinds: Sequence[str] = ("iso", "ard", "spd", "so3"),
    max_train: int | None = 800,
    rotation: Tensor | None = None,
    nu: float | None = 2.5,
    num_restarts: int = 4,
    seed: int = 0,
    lengthscale_prior: bool = True,
    say: Callable[[str], None] = lambda msg: None,
) -> list[dict[str, Any]]:
    """Fit and score several kernels on one held-out fold of drill holes.

    Args:
        data: the drill-hole data (:func:`~gpytorch_so3.datasets.load_oilsands`).
        folds: ``n`` fold index per sample (:func:`~gpytorch_so3.datasets.hole_folds`).
        fold: the held-out fold.
        kinds: model kinds to compare.
        max_train: random subsample of at most this many training rows (``None``: all).
        rotation: ``3 x 3`` rotation applied to all coordinates (about the centre of the data box) first,
            or ``None``.
        nu: base kernel smoothness.
        num_restarts: MAP restarts over rotations.
        seed: seed of the subsample (``seed + fold``) and of the restarts.
        lengthscale_prior: keep the default length-scale prior.
        say: progress callback.

    Returns:
        one record per kind: the :func:`fit_and_score` dict (without the model) plus ``kind``, ``fold``,
        ``target``, ``rotated``, ``n_train``, ``n_test``, ``n_test_holes``, ``scale`` (metres per scaled unit),
        ``lengthscale_m`` and ``minor_axis`` (direction of the shortest length-scale, East/North/Up),
        ``vertical_angle_deg`` (angle between the minor axis and the image of the vertical, ``Q e_z`` or
        ``e_z``).

    Example:
        >>> from gpytorch_so3.datasets import hole_folds, load_oilsands
        >>> data = load_oilsands()
        >>> folds = hole_folds(data.hole_ids, 5, seed=0)
        >>> (rec,) = oilsands_fold(data, folds, 0, kinds=("ard",), max_train=40)  # a tiny fit
        >>> rec["kind"], rec["n_train"], rec["n_test"], rec["n_test_holes"]
        ('ard', 40, 1200, 56)
    """
    from gpytorch_so3.compare import IsotropicScaling

    X_m = data.coordinates.to(torch.float64)
    Y = data.targets.to(torch.float64)
    vertical = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    if rotation is not None:
        center = 0.5 * (X_m.min(0).values + X_m.max(0).values)
        X_m = rotate_about(X_m, rotation.to(torch.float64), center)
        vertical = rotation.to(torch.float64) @ vertical
    train_idx, test_idx = split_fold(folds, fold, max_train=max_train, seed=seed)
    scaling = IsotropicScaling.from_data(X_m[train_idx])
    train_X, test_X = scaling(X_m[train_idx]), scaling(X_m[test_idx])
    out = []
    for kind in kinds:
        say(f"  fold {fold}{' (rotated)' if rotation is not None else ''}: fitting {kind} on {len(train_idx)} points")
        rec = fit_and_score(
            kind,
            train_X,
            Y[train_idx],
            test_X,
            Y[test_idx],
            nu=nu,
            num_restarts=num_restarts,
            seed=seed,
            lengthscale_prior=lengthscale_prior,
        )
        rec.pop("model")
        minor = torch.tensor(rec["axes"], dtype=torch.float64)[:, 0]
        rec.update(
            kind=kind,
            fold=int(fold),
            target=data.target_name,
            rotated=rotation is not None,
            lengthscale_prior=lengthscale_prior,
            n_train=len(train_idx),
            n_test=len(test_idx),
            n_test_holes=int(torch.unique(data.hole_ids[test_idx]).numel()),
            scale=scaling.scale,
            lengthscale_m=[v * scaling.scale for v in rec["lengthscale"]],
            minor_axis=minor.tolist(),
            # An isotropic kernel has no principal directions: its "minor axis" is an arbitrary coordinate axis.
            vertical_angle_deg=None if kind == "iso" else float(so3.angle_between_axes(minor, vertical)),
        )
        say(
            f"    R^2 {rec['r2']:.3f}  RMSE {rec['rmse']:.3f}  NLPD {rec['nlpd']:.3f}  cov90 {rec['coverage90']:.2f}  "
            f"minor axis vs vertical {_deg(rec['vertical_angle_deg'])}  ({rec['fit_seconds']:.0f} s)"
        )
        out.append(rec)
    return out


def summarize(records: Iterable[dict[str, Any]], keys: Sequence[str] = ("target", "rotated", "kind")) -> list[dict]:
    """Mean and standard deviation over folds of each metric, grouped by ``keys``.

    Args:
        records: per-fold records from :func:`oilsands_fold`.
        keys: grouping fields.

    Returns:
        one dict per group with the ``keys``, ``n_folds`` and ``<metric>_mean`` / ``<metric>_sd`` for R^2, RMSE,
        NLPD, 90% coverage, fit time and ``vertical_angle_deg``.

    Example:
        >>> recs = [{"target": "Bitumen", "rotated": False, "kind": "so3", "r2": r2, "rmse": 0.5, "nlpd": 1.0,
        ...          "coverage90": 0.9, "fit_seconds": 2.0, "vertical_angle_deg": 1.0,
        ...          "lengthscale_m": [10.0, 300.0, 900.0]} for r2 in (0.6, 0.8)]
        >>> (row,) = summarize(recs)
        >>> row["kind"], row["n_folds"], round(row["r2_mean"], 3), round(row["r2_sd"], 4)
        ('so3', 2, 0.7, 0.1414)
    """
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, recs in groups.items():
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row["n_folds"] = len(recs)
        for m in (*_METRICS, "vertical_angle_deg"):
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


def _deg(v: float | None) -> str:
    return "–" if v is None else f"{v:.2f} deg"


def markdown_table(summary: Sequence[dict[str, Any]]) -> str:
    """A markdown table of :func:`summarize` output (mean +- sd over folds).

    Args:
        summary: rows from :func:`summarize`.

    Returns:
        the table (header, separator and one line per row).

    Example:
        >>> recs = [{"target": "Bitumen", "rotated": False, "kind": "so3", "r2": r2, "rmse": 0.5, "nlpd": 1.0,
        ...          "coverage90": 0.9, "fit_seconds": 2.0, "vertical_angle_deg": 1.0,
        ...          "lengthscale_m": [10.0, 300.0, 900.0]} for r2 in (0.6, 0.8)]
        >>> table = markdown_table(summarize(recs))
        >>> print(table.splitlines()[0][:57])
        | target | setting | kernel | folds | R^2 | RMSE | NLPD |
        >>> table.splitlines()[-1].split(" | ")[1:5]  # one row per group
        ['original', 'SO(3)', '2', '0.700 ± 0.141']
    """
    from gpytorch_so3.compare import MODEL_KINDS

    head = (
        "| target | setting | kernel | folds | R^2 | RMSE | NLPD | 90% coverage | fit time (s) | "
        "minor axis vs vertical (deg) | length-scales (m, median) |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in summary:
        ls = ", ".join(f"{v:.3g}" for v in r["lengthscale_m_median"])
        lines.append(
            f"| {r.get('target', '')} | {r.get('experiment') or ('rotated' if r.get('rotated') else 'original')} | "
            f"{MODEL_KINDS.get(r.get('kind'), r.get('kind'))} | {r['n_folds']} | {_pm(r, 'r2', '.3f')} | "
            f"{_pm(r, 'rmse', '.3f')} | {_pm(r, 'nlpd', '.3f')} | {_pm(r, 'coverage90', '.2f')} | "
            f"{_pm(r, 'fit_seconds', '.0f')} | "
            f"{_pm(r, 'vertical_angle_deg', '.2f')} | {ls} |"
        )
    return "\n".join(lines)


def run_oilsands_demo(
    seed: int = 0,
    max_train: int = 500,
    quiet: bool = False,
    *,
    num_restarts: int = 3,
    kinds: Sequence[str] = ("iso", "ard", "so3"),
    nu: float | None = 2.5,
    target: str = "Bitumen",
    n_folds: int = 5,
    fold: int = 0,
) -> str:
    """Held-out-by-hole comparison on the oil-sands drill holes, then the rotated-coordinates test.

    One fold of whole drill holes (``1 / n_folds`` of the holes) is held out; ``max_train`` random samples
    of the other holes train each model. The kernels are compared on the original coordinates and again after
    rotating all coordinates by :func:`known_rotation` (40 degrees about the vertical, then 30 degrees about the
    East axis), where the SO(3) kernel's shortest axis should follow the rotated vertical. About two minutes
    on 2 CPU cores with the defaults.

    Args:
        seed: seed of the folds, the subsample and the restarts.
        max_train: training samples per fit.
        quiet: no progress messages on stderr.
        num_restarts: MAP restarts over rotations for the SO(3) (and full-SPD) kernel.
        kinds: kernels to compare (``"iso"``, ``"ard"``, ``"spd"``, ``"so3"``); the rotated test uses the
            anisotropic ones among them.
        nu: base kernel smoothness.
        target: ``"Bitumen"`` or ``"Fines"`` (or another column, see :func:`~gpytorch_so3.datasets.load_oilsands`).
        n_folds: number of hole folds.
        fold: which fold is held out.

    Returns:
        the report text.

    Example:
        >>> report = run_oilsands_demo(max_train=60, quiet=True, num_restarts=1)  # doctest: +SKIP
    """
    from gpytorch_so3.geo import principal_directions

    if isinstance(max_train, bool) or not isinstance(max_train, int) or max_train < 10:
        raise ValueError(f"max_train must be an int >= 10, got {max_train!r}")
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    data = load_oilsands(target=target)
    folds = hole_folds(data.hole_ids, n_folds, seed=seed)
    Q = known_rotation()
    common = dict(max_train=max_train, nu=nu, num_restarts=num_restarts, seed=seed, say=say)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="botorch")
        warnings.filterwarnings("ignore", module="linear_operator")
        say(f"oil-sands demo: {target}, original coordinates")
        orig = oilsands_fold(data, folds, fold, kinds=kinds, **common)
        rot_kinds = [k for k in kinds if k != "iso"] or list(kinds)
        say("oil-sands demo: rotated coordinates")
        rot = oilsands_fold(data, folds, fold, kinds=rot_kinds, rotation=Q, **common)
    elapsed = time.perf_counter() - t0

    r0 = orig[0]
    kernel_name = "RBF" if nu is None else f"Matern-{nu}"
    lines = [
        f"gpytorch-so3 demo --data oilsands: pygeostat's oil-sands drill holes ({len(data)} samples, {data.n_holes} "
        f"vertical holes, ~3.3 x 6.0 km x 129 m), target {data.target_name}",
        f"held out: fold {fold + 1} of {n_folds} = {r0['n_test_holes']} whole drill holes ({r0['n_test']} samples); "
        f"training: {r0['n_train']} random samples of the other holes; {kernel_name} kernels",
        "coordinates centred and divided by one factor (largest side of the training box), MAP fits "
        f"({num_restarts} restart(s) over rotations for SO(3)/full SPD), seed {seed}",
        "",
        "Held-out skill on the original coordinates (R^2 and RMSE of the observations; NLPD and 90% coverage of the",
        "predictive distribution with noise)",
        _table(orig),
    ]
    so3_orig = next((r for r in orig if r["kind"] == "so3"), None)
    if so3_orig is not None:
        ls = torch.tensor(so3_orig["lengthscale_m"], dtype=torch.float64)
        axes = torch.tensor(so3_orig["axes"], dtype=torch.float64)
        pd = principal_directions(ls, axes, nu=nu, units="m")
        lines += [
            "",
            "SO(3) principal directions (azimuth clockwise from North, dip below horizontal)",
            str(pd),
            f"minor axis {so3_orig['vertical_angle_deg']:.2f} deg from vertical",
        ]
    qz = (Q @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)).tolist()
    lines += [
        "",
        f"Rotated coordinates: x -> Q x, Q = {ABOUT_VERTICAL_DEG:g} deg about the vertical, then "
        f"{ABOUT_HORIZONTAL_DEG:g} deg about East; the vertical becomes ({qz[0]:+.3f}, {qz[1]:+.3f}, {qz[2]:+.3f})",
        _table(rot),
    ]
    by = {r["kind"]: r for r in rot}
    if "so3" in by:
        lines.append(f"SO(3) recovers the rotated vertical within {by['so3']['vertical_angle_deg']:.2f} deg")
    if "so3" in by and "ard" in by:
        by0 = {r["kind"]: r for r in orig}
        lines.append(
            f"R^2 original -> rotated: ARD {by0['ard']['r2']:.3f} -> {by['ard']['r2']:.3f}, "
            f"SO(3) {by0['so3']['r2']:.3f} -> {by['so3']['r2']:.3f}"
            if "ard" in by0 and "so3" in by0
            else f"R^2 rotated: ARD {by['ard']['r2']:.3f}, SO(3) {by['so3']['r2']:.3f}"
        )
    lines.append(f"(total {elapsed:.0f} s; the full 5-fold evaluation is benchmarks/oilsands_eval.py)")
    return "\n".join(lines)


def _table(records: Sequence[dict[str, Any]]) -> str:
    from gpytorch_so3.compare import MODEL_KINDS

    header = ["kernel", "R^2", "RMSE", "NLPD", "90% cov.", "fit (s)", "minor-axis length (m)", "minor vs vertical"]
    rows = [
        [
            MODEL_KINDS[r["kind"]],
            f"{r['r2']:.3f}",
            f"{r['rmse']:.3f}",
            f"{r['nlpd']:.3f}",
            f"{r['coverage90']:.2f}",
            f"{r['fit_seconds']:.0f}",
            f"{r['lengthscale_m'][0]:.3g}",
            _deg(r["vertical_angle_deg"]),
        ]
        for r in records
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    fmt = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)])


def recovery_report(field: Any, *, num_restarts: int = 8, seed: int = 0) -> dict[str, Any]:
    """Fit SO(3) (``fit_map``) and ARD to a synthetic field and compare with its truth (the paper's experiment).

    Args:
        field: a :class:`~gpytorch_so3.datasets.SyntheticField` (``make_rotated_field`` / ``make_axis_aligned_field``).
        num_restarts: Haar restarts of the SO(3) fit.
        seed: restart seed.

    Returns:
        dict with ``angle_error_deg`` (``(3,)`` angle between fitted and true canonical axes, shortest first),
        ``lengthscale_rel_error`` (``(3,)``), ``rmse_so3``, ``rmse_ard`` (held-out, noisy targets),
        ``fit_seconds_so3``, ``fit_seconds_ard`` and ``best_start`` (index in ``fit_map_info_``).

    Example:
        >>> from gpytorch_so3.datasets import make_rotated_field
        >>> f = make_rotated_field(n_train=60, n_test=60, lengthscale=(0.15, 0.4, 1.0), seed=0)
        >>> r = recovery_report(f, num_restarts=1)
        >>> tuple(r["angle_error_deg"].shape), r["rmse_so3"] > 0
        ((3,), True)
    """
    from gpytorch_so3.compare import evaluate, fit_model

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
