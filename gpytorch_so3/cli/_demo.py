r"""``gpytorch-so3 demo``: the synthetic rotated field and the oil-sands drill holes (application code).

The oil-sands protocol (also driven at full scale by ``benchmarks/oilsands_eval.py``):

1. Whole drill holes are held out: holes are dealt into ``n_folds`` folds (:func:`~gpytorch_so3.datasets.hole_folds`);
   a fold's samples are the test set, the other holes' samples the training set. Predicting a held-out hole is
   interpolation between neighbouring holes, which the horizontal ranges and the thin vertical range decide.
2. Hyper-parameters are fitted by type-II MAP on all training samples, or on a random subset of ``max_fit`` of
   them; the fitted covariance is then conditioned on *all* training samples (:func:`~._models.condition_on`),
   so every prediction uses all the data.
3. Coordinates (metres) are centred and divided by *one* factor, the largest side of the training box
   (:class:`~._models.IsotropicScaling`): per-axis scaling would shear space and change angles.
4. Scores on the held-out holes: R^2, RMSE, NLPD of the noisy observations, coverage of the central 90%
   predictive intervals, fit time.
5. The decisive test: the same fold after rotating all coordinates by a known rotation ``Q`` (40 degrees about
   the vertical, then 30 degrees about the East axis). An axis-aligned (ARD) kernel cannot follow the tilted
   layers; a rotation-learning kernel keeps its skill and its shortest axis follows ``Q e_z``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from gpytorch_so3 import so3
from gpytorch_so3._validation import check_int
from gpytorch_so3.cli._models import MODEL_KINDS, IsotropicScaling, condition_on, evaluate, fit_model
from gpytorch_so3.cli._report import table
from gpytorch_so3.datasets import DrillHoleData, hole_folds, load_oilsands
from gpytorch_so3.geo import principal_directions

__all__ = [
    "ABOUT_HORIZONTAL_DEG",
    "ABOUT_VERTICAL_DEG",
    "EXACT_MAX_ROWS",
    "fit_and_score",
    "known_rotation",
    "oilsands_fold",
    "rotate_about",
    "run_oilsands_demo",
    "split_fold",
]

#: The known rotation of the decisive test: first this many degrees about the vertical (z) ...
ABOUT_VERTICAL_DEG = 40.0
#: ... then this many degrees about the horizontal East (x) axis; the vertical maps to ``Q e_z``.
ABOUT_HORIZONTAL_DEG = 30.0
#: Up to this many training rows, conditioning and prediction use dense Cholesky; above, CG (and KeOps).
EXACT_MAX_ROWS = 5000


def known_rotation(
    about_vertical_deg: float = ABOUT_VERTICAL_DEG, about_horizontal_deg: float = ABOUT_HORIZONTAL_DEG
) -> Tensor:
    """The known rotation ``Q = Rx(about_horizontal) Rz(about_vertical)`` (float64, ``3 x 3``).

    Applied to coordinates as ``x -> Q x``: first a rotation about the vertical, then about the East axis,
    both counter-clockwise seen from the positive axis. The vertical maps to ``Q e_z = (0, -sin(h), cos(h))``.

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

    Example:
        >>> X = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0]], dtype=torch.float64)
        >>> rotate_about(X, known_rotation(90.0, 0.0), center=X[0]).round(decimals=4) + 0.0  # 90 deg about z
        tensor([[1., 0., 0.],
                [1., 1., 0.]], dtype=torch.float64)
    """
    Q = Q.to(X)
    center = center.to(X)
    return center + (X - center) @ Q.T


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
    fold = check_int("fold", fold, 0)
    max_train = check_int("max_train", max_train, 1, allow_none=True)
    test_idx = (folds == fold).nonzero().squeeze(-1)
    pool = (folds != fold).nonzero().squeeze(-1)
    if len(test_idx) == 0:
        raise ValueError(f"fold {fold} is empty")
    if max_train is None or len(pool) <= max_train:
        return pool, test_idx
    g = torch.Generator().manual_seed(int(seed) + int(fold))
    return pool[torch.randperm(len(pool), generator=g)[:max_train]].sort().values, test_idx


def _subset(n: int, size: int | None, seed: int) -> Tensor:
    """Sorted random subset of ``range(n)`` of at most ``size`` (all if ``None``)."""
    if size is None or n <= size:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[:size].sort().values


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
    max_iter: int | None = None,
    fit_idx: Tensor | None = None,
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
        max_iter: L-BFGS iteration cap per start.
        fit_idx: fit the hyper-parameters on these training rows only, then condition on all ``n``
            (:func:`~._models.condition_on`; dense up to :data:`EXACT_MAX_ROWS` rows, CG above); ``None``: all.

    Returns:
        dict with ``r2``, ``rmse``, ``nlpd``, ``coverage90``, ``fit_seconds``, ``predict_seconds``, ``n_fit``,
        canonical (ascending) ``lengthscale`` (scaled units, list of 3), ``axes`` (``3 x 3`` nested list,
        columns), ``noise`` (observation-noise variance in target units) and ``model`` (the fitted model).

    Example:
        >>> from gpytorch_so3.datasets import make_rotated_field
        >>> f = make_rotated_field(n_train=30, n_test=20, seed=0)
        >>> rec = fit_and_score("ard", f.train_X, f.train_Y, f.test_X, f.test_Y)
        >>> sorted(rec)  # doctest: +NORMALIZE_WHITESPACE
        ['axes', 'coverage90', 'fit_seconds', 'lengthscale', 'model', 'n_fit', 'nlpd', 'noise', 'predict_seconds',
         'r2', 'rmse']
    """
    n = len(train_X)
    fit_X, fit_Y = (train_X, train_Y) if fit_idx is None else (train_X[fit_idx], train_Y[fit_idx])
    fm = fit_model(
        kind,
        fit_X,
        fit_Y,
        nu=nu,
        num_restarts=num_restarts,
        seed=seed,
        max_iter=max_iter,
        lengthscale_prior=lengthscale_prior,
    )
    t0 = time.perf_counter()
    large = n > EXACT_MAX_ROWS
    predictor = fm.model
    if len(fit_X) < n:
        predictor = condition_on(fm, train_X, train_Y, nu=nu, use_keops=None if large else False)
    scores = evaluate(predictor, test_X, test_Y, iterative=large)
    model = fm.model
    noise = (
        float(model.likelihood.noise.detach().reshape(-1)[0])
        * float(model.outcome_transform.stdvs.detach().reshape(-1)[0]) ** 2
    )
    return {
        **scores,
        "fit_seconds": fm.fit_seconds,
        "predict_seconds": time.perf_counter() - t0,
        "n_fit": len(fit_X),
        "lengthscale": fm.lengthscale.tolist(),
        "axes": fm.axes.tolist(),
        "noise": noise,
        "model": model,
    }


def oilsands_fold(
    data: DrillHoleData,
    folds: Tensor,
    fold: int,
    *,
    kinds: Sequence[str] = ("iso", "ard", "spd", "so3"),
    max_fit: int | None = None,
    max_train: int | None = None,
    rotation: Tensor | None = None,
    nu: float | None = 2.5,
    num_restarts: int = 4,
    seed: int = 0,
    lengthscale_prior: bool = True,
    max_iter: int | None = None,
    say: Callable[[str], None] = lambda msg: None,
) -> list[dict[str, Any]]:
    """Fit and score several kernels on one held-out fold of drill holes.

    Args:
        data: the drill-hole data (:func:`~gpytorch_so3.datasets.load_oilsands`).
        folds: ``n`` fold index per sample (:func:`~gpytorch_so3.datasets.hole_folds`).
        fold: the held-out fold.
        kinds: model kinds to compare.
        max_fit: fit hyper-parameters on a random subset of at most this many training samples, then condition
            on all of them (``None``: fit on all).
        max_train: use at most this many random training samples at all (``None``: all; the older protocol).
        rotation: ``3 x 3`` rotation applied to all coordinates (about the centre of the data box) first, or
            ``None``.
        nu: base kernel smoothness.
        num_restarts: MAP restarts over rotations.
        seed: seed of the subsamples (``seed + fold``) and of the restarts.
        lengthscale_prior: keep the default length-scale prior (``False``: an ablation).
        max_iter: L-BFGS iteration cap per start (``None``: default).
        say: progress callback.

    Returns:
        one record per kind: ``r2``, ``rmse``, ``nlpd``, ``coverage90``, ``fit_seconds``, ``predict_seconds``,
        canonical ``lengthscale`` (scaled units, ascending), ``axes`` (``3 x 3`` nested list, columns), ``noise``
        (target units^2), ``kind``, ``fold``, ``target``, ``rotated``, ``n_fit``, ``n_train``, ``n_test``,
        ``n_test_holes``, ``scale`` (metres per scaled unit), ``lengthscale_m``, ``minor_axis`` and
        ``vertical_angle_deg`` (minor axis vs the image of the vertical; ``None`` for the isotropic kernel).

    Example:
        >>> from gpytorch_so3.datasets import hole_folds, load_oilsands
        >>> data = load_oilsands()
        >>> folds = hole_folds(data.hole_ids, 5, seed=0)
        >>> (rec,) = oilsands_fold(data, folds, 0, kinds=("ard",), max_fit=40, max_train=200)  # a tiny fit
        >>> rec["kind"], rec["n_fit"], rec["n_train"], rec["n_test"], rec["n_test_holes"]
        ('ard', 40, 200, 1200, 56)
    """
    max_fit = check_int("max_fit", max_fit, 1, allow_none=True)
    X_m = data.coordinates.to(torch.float64)
    Y = data.targets.to(torch.float64)
    vertical = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    if rotation is not None:
        center = 0.5 * (X_m.min(0).values + X_m.max(0).values)
        X_m = rotate_about(X_m, rotation.to(torch.float64), center)
        vertical = rotation.to(torch.float64) @ vertical
    train_idx, test_idx = split_fold(folds, fold, max_train=max_train, seed=seed)
    fit_sel = _subset(len(train_idx), max_fit, seed + fold)
    scaling = IsotropicScaling.from_data(X_m[train_idx])
    train_X, test_X = scaling(X_m[train_idx]), scaling(X_m[test_idx])
    train_Y, test_Y = Y[train_idx], Y[test_idx]
    n_train, n_fit = len(train_idx), len(fit_sel)
    out = []
    for kind in kinds:
        say(f"  fold {fold}{' (rotated)' if rotation is not None else ''}: fitting {kind} on {n_fit} points")
        if max_fit is not None and n_fit < n_train:
            say(f"    then conditioning on all {n_train} training samples")
        rec = fit_and_score(
            kind,
            train_X,
            train_Y,
            test_X,
            test_Y,
            nu=nu,
            num_restarts=num_restarts,
            seed=seed,
            lengthscale_prior=lengthscale_prior,
            max_iter=max_iter,
            fit_idx=None if n_fit == n_train else fit_sel,
        )
        rec.pop("model")
        minor = torch.tensor(rec["axes"], dtype=torch.float64)[:, 0]
        rec.update(
            {
                "kind": kind,
                "fold": int(fold),
                "target": data.target_name,
                "rotated": rotation is not None,
                "lengthscale_prior": lengthscale_prior,
                "n_train": n_train,
                "n_test": len(test_idx),
                "n_test_holes": int(torch.unique(data.hole_ids[test_idx]).numel()),
                "scale": scaling.scale,
                "lengthscale_m": [v * scaling.scale for v in rec["lengthscale"]],
                "minor_axis": minor.tolist(),
                # An isotropic kernel has no principal directions: its "minor axis" is an arbitrary coordinate axis.
                "vertical_angle_deg": None if kind == "iso" else float(so3.angle_between_axes(minor, vertical)),
            }
        )
        say(
            f"    R^2 {rec['r2']:.3f}  RMSE {rec['rmse']:.3f}  NLPD {rec['nlpd']:.3f}  cov90 {rec['coverage90']:.2f}  "
            f"minor axis vs vertical {_deg(rec['vertical_angle_deg'])}  ({rec['fit_seconds']:.0f} s)"
        )
        out.append(rec)
    return out


def _deg(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} deg"


def _fold_table(records: Sequence[dict[str, Any]]) -> str:
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
    best = min(records, key=lambda r: r["nlpd"])
    return (
        table(header, rows) + f"\nBest: {MODEL_KINDS[best['kind']]} (lowest NLPD, {best['nlpd']:.3f}; "
        "lower NLPD is better)"
    )


def run_oilsands_demo(
    seed: int = 0,
    max_fit: int | None = 500,
    quiet: bool = False,
    *,
    num_restarts: int = 3,
    kinds: Sequence[str] = ("iso", "ard", "so3"),
    nu: float | None = 2.5,
    target: str = "Bitumen",
    n_folds: int = 5,
    fold: int = 0,
    max_iter: int | None = None,
    max_train: int | None = None,
    say: Callable[[str], None] | None = None,
) -> str:
    """Held-out-by-hole comparison on the oil-sands drill holes, then the rotated-coordinates test.

    One fold of whole drill holes (``1 / n_folds`` of the holes) is held out; the hyper-parameters are fitted on
    ``max_fit`` random samples of the other holes (``None``: all of them) and each model is then conditioned on
    all training samples (about 4,600) to predict the held-out holes. The kernels are compared on the original
    coordinates and again after rotating all coordinates by :func:`known_rotation`, where the SO(3) kernel's
    shortest axis should follow the rotated vertical.

    Args:
        seed: seed of the folds, the subsample and the restarts.
        max_fit: training samples for the hyper-parameter fit (``None``: all).
        quiet: no progress messages.
        num_restarts: MAP restarts over rotations for the SO(3) (and full-SPD) kernel.
        kinds: kernels to compare; the rotated test uses the anisotropic ones among them.
        nu: base kernel smoothness.
        target: ``"Bitumen"`` or ``"Fines"`` (see :func:`~gpytorch_so3.datasets.load_oilsands`).
        n_folds: number of hole folds.
        fold: which fold is held out.
        max_iter: L-BFGS iteration cap per start.
        max_train: use at most this many random training samples at all (``None``: all; for quick checks).
        say: progress callback (default: stdout unless ``quiet``).

    Returns:
        the report text.
    """
    max_fit = check_int("max_fit", max_fit, 10, allow_none=True)
    if say is None or quiet:
        say = (lambda msg: None) if quiet else print
    data = load_oilsands(target=target)
    folds = hole_folds(data.hole_ids, n_folds, seed=seed)
    Q = known_rotation()
    common = dict(
        max_fit=max_fit, max_train=max_train, nu=nu, num_restarts=num_restarts, seed=seed, max_iter=max_iter, say=say
    )
    t0 = time.perf_counter()
    say(f"oil-sands demo: {target}, original coordinates")
    orig = oilsands_fold(data, folds, fold, kinds=kinds, **common)
    rot_kinds = [k for k in kinds if k != "iso"] or list(kinds)
    say("oil-sands demo: rotated coordinates")
    rot = oilsands_fold(data, folds, fold, kinds=rot_kinds, rotation=Q, **common)
    elapsed = time.perf_counter() - t0

    r0 = orig[0]
    kernel_name = "RBF" if nu is None else f"Matern-{nu}"
    fit_text = (
        f"hyper-parameters fitted on {r0['n_fit']} random training samples, predictions conditioned on all "
        f"{r0['n_train']}"
        if r0["n_fit"] < r0["n_train"]
        else f"fitted on all {r0['n_train']} training samples"
    )
    lines = [
        f"gpytorch-so3 demo --data oilsands: pygeostat's oil-sands drill holes ({len(data)} samples, {data.n_holes} "
        f"vertical holes, ~3.3 x 6.0 km x 129 m), target {data.target_name}",
        f"held out: fold {fold + 1} of {n_folds} = {r0['n_test_holes']} whole drill holes ({r0['n_test']} samples); "
        f"{fit_text}; {kernel_name} kernels",
        "coordinates centred and divided by one factor (largest side of the training box), MAP fits "
        f"({num_restarts} restart(s) over rotations for SO(3)/full SPD), seed {seed}",
        "",
        "Held-out skill on the original coordinates (R^2 and RMSE of the observations; NLPD and 90% coverage of the",
        "predictive distribution with noise)",
        _fold_table(orig),
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
        _fold_table(rot),
    ]
    by = {r["kind"]: r for r in rot}
    by0 = {r["kind"]: r for r in orig}
    if "so3" in by:
        lines.append(f"SO(3) recovers the rotated vertical within {by['so3']['vertical_angle_deg']:.2f} deg")
    if "so3" in by and "ard" in by and "so3" in by0 and "ard" in by0:
        lines.append(
            f"R^2 original -> rotated: ARD {by0['ard']['r2']:.3f} -> {by['ard']['r2']:.3f}, "
            f"SO(3) {by0['so3']['r2']:.3f} -> {by['so3']['r2']:.3f}"
        )
    lines.append(f"(total {elapsed:.0f} s; the full 5-fold evaluation is benchmarks/oilsands_eval.py)")
    return "\n".join(lines)
