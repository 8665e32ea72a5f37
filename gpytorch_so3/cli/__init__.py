"""Command line: ``gpytorch-so3 demo`` and ``gpytorch-so3 fit FILE.csv --coords x y z --target value``.

A thin front end: it parses, checks every input before any work is done, calls the library and prints. Its
support modules (``_models``: the model zoo, ``_demo``, ``_io``: CSV in and out, ``_report``: tables) are
application code that nothing else in the library imports.

Contract: every bad input gets one line on stderr (``gpytorch-so3: error: ...``) and exit code 2, never a
traceback; an interrupt (Ctrl-C) exits with 130 and one line; no input file and no existing output file (without
``--force``) is ever written over, and an output file appears whole or not at all. Progress (messages and tqdm
bars) goes to stderr only on a terminal and never under ``--quiet``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
import warnings
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

import numpy as np
import torch
from botorch.exceptions.errors import ModelFittingError
from linear_operator.utils.errors import NanError, NotPSDError
from tqdm import tqdm

from gpytorch_so3.cli import _models, _scalable
from gpytorch_so3.cli._demo import EXACT_MAX_ROWS, run_oilsands_demo
from gpytorch_so3.cli._io import CLIError, check_output, read_table, write_npz_atomic, write_points
from gpytorch_so3.cli._models import IsotropicScaling, condition_on, evaluate, log_evidence
from gpytorch_so3.cli._report import axes_report, skill_report, unbounded_notes
from gpytorch_so3.datasets import make_rotated_field
from gpytorch_so3.large import predict_in_chunks
from gpytorch_so3.pathwise import regular_grid, simulate

__all__ = ["CLIError", "build_parser", "main"]

#: Fewest data rows (and training rows after the hold-out split) the command line accepts.
MIN_ROWS = 10
#: Training sets up to this size are fitted exactly on all rows by default (``--max-fit-points``).
DEFAULT_MAX_FIT_POINTS = 5000
#: Target values beyond this magnitude overflow the float64 variance of the standardisation.
MAX_ABS_VALUE = 1e150
#: Largest accepted ``--seed`` (torch and numpy generators take 64-bit seeds; ``fit_map`` adds restart offsets).
MAX_SEED = 2**63 - 1
#: Singular-value ratio of the centred coordinates below which the geometry is reported as planar/collinear.
DEGENERATE_RATIO = 1e-6
#: Exit code after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
#: Methods of ``fit --method``.
METHODS = ("auto", "exact", "svgp", "nngp")
#: ``--method auto``: exact GP up to this many training rows, SVGP above. Measured with
#: ``benchmarks/bench_cli_large.py`` on a 200,000-row CSV (``results/cli_large_svgp.json`` vs ``cli_large_nngp.json``):
#: SVGP's RMSE against the noise-free field was 0.012 vs NNGP's 0.023, in less time; NNGP won on the shorter-range
#: 10:1 field of ``results/scalable.json`` (10^5 points), so ``--method nngp`` stays one option away.
AUTO_EXACT_MAX_ROWS = 5000
#: Default ``--max-seconds`` of the scalable methods' minibatch training (chosen with
#: ``benchmarks/bench_cli_large.py``: a 200,000-row CSV end to end in well under 10 minutes on 2 cores).
DEFAULT_MAX_SECONDS = 120.0
#: Largest number of simulated values (points x realisations) written as CSV; above, ``--out`` must be ``.npz``.
MAX_CSV_VALUES = 1_000_000
#: Largest number of grid points ``--grid`` accepts.
MAX_GRID_POINTS = 50_000_000
_DEMO_DEFAULTS = {"n": 300, "restarts": 2, "models": ["ard", "so3"]}


# ----------------------------------------------------------------------------------------------- helpers
def _progress_on(args: argparse.Namespace) -> bool:
    """Progress messages and bars: on a terminal only, and never under ``--quiet``."""
    return not args.quiet and sys.stderr.isatty()


def _sayer(args: argparse.Namespace):
    if not _progress_on(args):
        return lambda msg: None
    return lambda msg: print(msg, file=sys.stderr, flush=True)


def _warn(msg: str) -> None:
    if _scalable.process_rank() > 0:  # under torchrun only rank 0 talks
        return
    print(f"gpytorch-so3: warning: {msg}", file=sys.stderr, flush=True)


def _nu_name(nu) -> str:
    return "RBF" if nu is None else f"Matern-{nu}"


def _check_values(Y, name: str) -> None:
    """Reject targets that cannot be standardised in float64: constant, too large, too small, too flat."""
    big = float(Y.abs().max())
    if big == 0.0:
        raise CLIError(f"target column {name!r} is constant; nothing to fit")
    if big > MAX_ABS_VALUE:
        k = math.floor(math.log10(big))
        raise CLIError(
            f"target column {name!r} has values too large to fit (largest |value| {big:.3g}); rescale it, "
            f"e.g. divide by 1e{k}"
        )
    if big < 1.0 / MAX_ABS_VALUE:
        k = -math.floor(math.log10(big))
        raise CLIError(
            f"target column {name!r} has values too small to fit (largest |value| {big:.3g}); rescale "
            f"it, e.g. multiply by 1e{k}"
        )
    sd = float((Y / big).std()) * big  # no overflow or underflow in the squares
    if sd == 0.0:
        raise CLIError(f"target column {name!r} is constant; nothing to fit")
    if sd < 1e-8:  # BoTorch's Standardize leaves such outcomes unscaled: the noise floor would swamp them
        k = -math.floor(math.log10(sd))
        raise CLIError(
            f"target column {name!r} varies too little to fit (sd {sd:.3g}); rescale it, e.g. multiply by 1e{k}"
        )
    if sd < 1e-12 * big:  # float64 keeps ~16 digits: fewer than 4 would be left for the variation
        raise CLIError(
            f"target column {name!r} varies too little relative to its size (sd {sd:.3g}, values around "
            f"{float(Y.mean()):.10g}); subtract a constant first"
        )


def _check_geometry(X, names: Sequence[str]) -> str | None:
    """Reject coincident coordinates; return a warning for collinear or planar ones (else ``None``)."""
    lo, hi = X.min(0).values, X.max(0).values
    extent = float((hi - lo).max())
    if extent == 0.0:
        raise CLIError(
            f"all {len(X)} rows have the same coordinates ({', '.join(names)}) = "
            f"({', '.join(f'{v:.6g}' for v in lo.tolist())}); a spatial model needs different places"
        )
    if not math.isfinite(extent) or extent > 1e150 or float(X.abs().max()) > 1e150:
        raise CLIError(f"coordinate values are too large to fit (extent {extent:.3g}); rescale them")
    if extent < 1e-12 * float(X.abs().max()):
        raise CLIError(
            f"the coordinates vary by only {extent:.3g} around {float(X.abs().max()):.6g}: below float64 resolution; "
            "subtract an origin (e.g. the first point) first"
        )
    Xc = (X - X.mean(0)) / extent
    _, s, Vh = torch.linalg.svd(Xc, full_matrices=False)
    rel = (s / s[0]).tolist()
    if rel[1] < DEGENERATE_RATIO:
        d = Vh[0].tolist()
        return (
            f"degenerate geometry: all points lie on one line (direction ({d[0]:+.3f}, {d[1]:+.3f}, "
            f"{d[2]:+.3f})); nothing is learned across it: length-scales and directions off the line are "
            "unidentified and predictions off the line are not supported by the data"
        )
    if rel[2] < DEGENERATE_RATIO:
        d = Vh[2].tolist()
        return (
            f"degenerate geometry: all points lie on one plane (normal ({d[0]:+.3f}, {d[1]:+.3f}, {d[2]:+.3f})); "
            "the length-scale across it is unidentified and predictions off the plane are not supported by "
            "the data"
        )
    return None


#: Numerical failures of a fit or a prediction (answered with one line and exit code 2, like bad input).
NUMERICAL_ERRORS = (ModelFittingError, NotPSDError, NanError, torch.linalg.LinAlgError)


def _device(spec: str):

    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise CLIError(f"unknown --device {spec!r}; use cpu or cuda") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CLIError("--device cuda requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CLIError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise CLIError("--device mps requested but MPS is not available on this machine")
    elif device.type != "cpu":
        raise CLIError(f"unsupported --device {spec!r}; use cpu or cuda")
    return device


# ----------------------------------------------------------------------------------------------- fitting
def _fit_all(train_X, train_Y, args, max_fit: int | None, show: bool, say):
    """Fit every requested kind (on a random subset of ``max_fit`` rows if there are more); see ``_cmd_fit``."""
    n = len(train_X)
    if max_fit is not None and n > max_fit:
        g = torch.Generator().manual_seed(args.seed)
        sub = torch.randperm(n, generator=g)[:max_fit].to(train_X.device)
        fit_X, fit_Y = train_X[sub], train_Y[sub]
    else:
        fit_X, fit_Y = train_X, train_Y
    fitted = []
    with tqdm(args.models, desc="fitting", unit="model", disable=not show, leave=False, file=sys.stderr) as bar:
        for kind in bar:
            bar.set_postfix_str(kind)
            try:
                fitted.append(
                    _models.fit_model(
                        kind,
                        fit_X,
                        fit_Y,
                        nu=args.nu,
                        num_restarts=args.restarts,
                        seed=args.seed,
                        max_iter=args.max_iter,
                        progress=show,
                    )
                )
            except NUMERICAL_ERRORS as e:
                raise CLIError(
                    f"the {kind} fit failed numerically ({type(e).__name__}: {_first_line(e)}); check for "
                    "extreme or duplicated values, or rescale the data"
                ) from None
            say(f"fitted {kind} in {fitted[-1].fit_seconds:.1f} s")
    return fitted, fit_X


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else ""


def _scores(fitted, train_X, train_Y, test_X, test_Y, *, nu, conditioned: bool, show: bool, say) -> tuple[list, list]:
    """Predictors (conditioned on all training rows when the fit used a subset) and held-out scores."""
    large = len(train_X) > EXACT_MAX_ROWS
    predictors, metrics = [], []
    for fm in fitted:
        try:
            predictor = fm.model
            if conditioned:
                say(f"conditioning {fm.kind} on all {len(train_X)} training rows ({'CG' if large else 'Cholesky'})")
                predictor = condition_on(fm, train_X, train_Y, nu=nu, use_keops=None if large else False)
            predictors.append(predictor)
            if test_X is not None and len(test_X):
                metrics.append(evaluate(predictor, test_X, test_Y, iterative=large, progress=show))
        except NUMERICAL_ERRORS as e:
            raise CLIError(
                f"scoring the {fm.name} model failed numerically ({type(e).__name__}: {_first_line(e)})"
            ) from None
    return predictors, metrics


# ----------------------------------------------------------------------------------------------- commands
def _cmd_demo(args: argparse.Namespace) -> int:
    show, say = _progress_on(args), _sayer(args)
    if args.data == "oilsands":
        max_fit = None if args.max_fit_points == 0 else args.max_fit_points
        print(
            run_oilsands_demo(
                seed=args.seed,
                max_fit=max_fit,
                quiet=not show,
                num_restarts=args.restarts,
                kinds=args.models,
                nu=args.nu,
                max_iter=args.max_iter,
                say=say,
            )
        )
        return 0
    if not MIN_ROWS <= args.n <= DEFAULT_MAX_FIT_POINTS:
        raise CLIError(f"--n must be between {MIN_ROWS} and {DEFAULT_MAX_FIT_POINTS}, got {args.n}")

    t0 = time.perf_counter()
    field = make_rotated_field(n_train=args.n, n_test=args.n, nu=args.nu, seed=args.seed)
    print(
        f"gpytorch-so3 demo: GP field on the unit cube, {_nu_name(args.nu)} kernel, principal length-scales "
        f"{', '.join(f'{float(v):.3g}' for v in field.lengthscale)}, Haar-random rotation (seed {args.seed}), "
        f"noise sd {field.noise_std:g}; {args.n} training and {args.n} held-out points; models "
        f"{', '.join(args.models)}, {args.restarts} restart(s)"
    )
    fitted, _ = _fit_all(field.train_X, field.train_Y, args, None, show, say)
    _, metrics = _scores(
        fitted,
        field.train_X,
        field.train_Y,
        field.test_X,
        field.test_Y,
        nu=args.nu,
        conditioned=False,
        show=show,
        say=say,
    )
    print("\nPrincipal axes, canonical order (shortest length-scale first); angle error vs truth per axis;")
    print(
        "direction = the lower end of each axis (z <= 0), the end whose azimuth (clockwise from +y) and dip "
        "(below horizontal) are shown"
    )
    print(axes_report(fitted, 1.0, field.canonical(), ""))
    for note in unbounded_notes(fitted, field.train_X, 1.0, ""):
        print(note)
    print("\nHeld-out skill (noisy held-out observations)")
    print(skill_report(fitted, metrics))
    print(f"(total {time.perf_counter() - t0:.0f} s)")
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    # Everything that can be checked is checked before anything slow: arguments, input files, the output path.
    coords = list(args.coords)
    if len(coords) != 3:
        raise CLIError(f"--coords needs exactly 3 column names, got {len(coords)}")
    if len(set(coords)) != 3:
        raise CLIError(f"--coords names a column twice ({' '.join(coords)}); give three different columns")
    if args.target in coords:
        raise CLIError(f"--target {args.target!r} is also one of --coords")
    if not 0 <= args.test_fraction < 1:
        raise CLIError(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    if args.predict and args.grid:
        raise CLIError("--predict GRID.csv and --grid NX NY NZ are alternatives; give one of them")
    wants_points = bool(args.predict or args.grid)
    if args.out and not (wants_points or args.simulate):
        raise CLIError("--out needs --predict GRID.csv or --grid NX NY NZ (the points), or --simulate K")
    if args.simulate and not args.out:
        raise CLIError("--simulate needs --out SIMS.csv or SIMS.npz (where the realisations go)")
    if args.simulate and not wants_points:
        raise CLIError("--simulate needs the points: --grid NX NY NZ (over the data's box) or --predict GRID.csv")
    if wants_points and not args.out:
        what = "--predict" if args.predict else "--grid"
        raise CLIError(f"{what} needs --out PRED.csv (where the predictions go)")
    if args.simulate and args.method in _scalable.SCALABLE_METHODS:
        raise CLIError(f"--simulate works only with --method exact (or auto on small data), not --method {args.method}")
    world = _scalable.world_size()
    if args.method == "nngp" and world > 1:
        raise CLIError(f"--method nngp runs in one process, but torchrun started {world}; use --method svgp")
    if args.max_seconds is not None and not (args.max_seconds > 0 and math.isfinite(args.max_seconds)):
        raise CLIError(f"--max-seconds must be a positive number, got {args.max_seconds}")
    npz = bool(args.out) and args.out.lower().endswith(".npz")
    if args.grid:
        n_grid = math.prod(args.grid)
        if n_grid > MAX_GRID_POINTS:
            raise CLIError(f"--grid {' '.join(map(str, args.grid))} has {n_grid} points; at most {MAX_GRID_POINTS}")
        _check_csv_size(args, n_grid, npz)
    device = _device(args.device)

    data = read_table(args.file, [*coords, args.target], "data", delimiter=args.delimiter)
    grid = read_table(args.predict, coords, "prediction grid", delimiter=args.delimiter) if args.predict else None
    if grid is not None:
        _check_csv_size(args, len(grid.values), npz)
    out = check_output(args.out, [args.file, args.predict], force=args.force) if args.out else None
    if len(data.values) < MIN_ROWS:
        raise CLIError(f"{args.file} has {len(data.values)} data rows; at least {MIN_ROWS} are needed")
    X_raw, Y = data.values[:, :3], data.values[:, 3:]
    _check_values(Y, args.target)
    geometry_warning = _check_geometry(X_raw, coords)
    if grid is not None and float(grid.values.abs().max()) > 1e150:
        raise CLIError(f"{args.predict}: coordinate values are too large; rescale them")
    if args.grid:
        bounds = torch.stack([X_raw.min(0).values, X_raw.max(0).values])
        points = regular_grid(bounds, tuple(args.grid))
    else:
        points = grid.values if grid is not None else None
    n_train = len(X_raw) - round(args.test_fraction * len(X_raw))
    method = _resolve_method(args, n_train, world)
    if method != "exact":
        return _run_scalable(args, method, coords, X_raw, Y, points, out, geometry_warning)
    return _run_fit(args, coords, data, points, out, X_raw, Y, device, geometry_warning)


def _check_csv_size(args, n_points: int, npz: bool) -> None:
    if args.simulate and not npz and n_points * args.simulate > MAX_CSV_VALUES:
        raise CLIError(
            f"--simulate {args.simulate} on {n_points} points is {n_points * args.simulate} values, too many for CSV "
            f"(at most {MAX_CSV_VALUES}); give an --out file ending in .npz"
        )


def _resolve_method(args, n_train: int, world: int) -> str:
    """The method ``--method`` means for ``n_train`` training rows (``auto``: by size; see the help)."""
    if args.method != "auto":
        return args.method
    method = "exact" if n_train <= AUTO_EXACT_MAX_ROWS and world == 1 else "svgp"
    if args.simulate and method != "exact":
        raise CLIError(
            f"--simulate needs an exact GP, but --method auto picks {method} for {n_train} training rows "
            f"(> {AUTO_EXACT_MAX_ROWS}, or several processes); give --method exact to force one"
        )
    return method


def _run_scalable(args, method, coords, X_raw, Y, points, out, geometry_warning) -> int:
    """``fit --method svgp|nngp``: split, fit on the training rows, score the held-out rows, predict, write."""
    show, say = _progress_on(args), _sayer(args)
    rank = _scalable.process_rank()
    X_np, Y_np = X_raw.numpy(), Y.numpy().reshape(-1)
    g = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(X_np), generator=g).numpy()
    n_test = round(args.test_fraction * len(X_np))
    if len(X_np) - n_test < MIN_ROWS:
        raise CLIError(f"only {len(X_np) - n_test} training rows after the split; lower --test-fraction")
    test_idx, train_idx = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    n_train = len(train_idx)
    max_seconds = DEFAULT_MAX_SECONDS if args.max_seconds is None and args.epochs is None else args.max_seconds
    world = _scalable.world_size()
    budget = ", ".join(
        b
        for b in (
            f"at most {max_seconds:g} s of training" if max_seconds is not None else "",
            f"{args.epochs} epoch(s)" if args.epochs is not None else "",
        )
        if b
    )
    print(
        f"gpytorch-so3 fit: {args.file}: {len(X_np)} rows, coordinates {', '.join(coords)}, target {args.target}; "
        f"{n_train} training / {n_test} held-out rows; {_nu_name(args.nu)} kernel; method {method}"
        + (f" ({world} processes)" if world > 1 else "")
        + f" ({budget})"
    )
    if args.method == "auto":
        why = (
            f"{n_train} training rows > {AUTO_EXACT_MAX_ROWS}"
            if n_train > AUTO_EXACT_MAX_ROWS
            else f"{world} processes"
        )
        print(f"--method auto: {why}: sparse variational GP (SVGP, minibatches; data-parallel under torchrun)")
    if geometry_warning:
        _warn(geometry_warning)
    if args.models != ["ard", "spd", "so3"] and args.models != ["so3"]:
        _warn(f"--method {method} fits the SO(3) kernel only; --models is ignored")
    Xtr, Ytr = X_np[train_idx], Y_np[train_idx]
    say(f"fitting {method} on {n_train} rows")
    try:
        sf = _scalable.fit_scalable(
            method,
            Xtr,
            Ytr,
            nu=args.nu,
            seed=args.seed,
            max_seconds=max_seconds,
            epochs=args.epochs,
            num_inducing=args.num_inducing,
            batch_size=args.batch_size,
            init_restarts=args.init_restarts,
            progress=show,
        )
    except NUMERICAL_ERRORS as e:
        raise CLIError(f"the {method} fit failed numerically ({type(e).__name__}: {_first_line(e)})") from None
    del Xtr, Ytr
    if rank > 0:  # every rank holds the same model; rank 0 reports and writes
        return 0
    say(f"fitted {method} in {sf.fit_seconds:.1f} s ({sf.epochs} epoch(s), {sf.steps} step(s))")
    if sf.lengthscale is not None:
        print(
            f"\nPrincipal axes in data units, canonical order (shortest length-scale first); x = {coords[0]} (East), "
            f"y = {coords[1]} (North), z = {coords[2]} (Up); direction = the lower end of each axis (z <= 0), the "
            "end whose azimuth (clockwise from North) and dip (below horizontal) are shown"
        )
        print(axes_report([sf], sf.scale, None, " [data units]", tuple(coords)))
    print(f"fitted noise sd {math.sqrt(sf.noise):.4g} (target units)")
    if n_test:
        say(f"scoring {n_test} held-out rows")
        metrics = _scalable.score(sf, X_np[test_idx], Y_np[test_idx])
        print("\nHeld-out skill")
        print(skill_report([sf], [metrics]))
    if points is None:
        return 0
    say(f"predicting {len(points)} points")
    mean, var = _scalable.predict(sf, points)
    _write_points(
        out, coords, points, [f"{args.target}_mean", f"{args.target}_std"], [mean, var.sqrt()], grid=args.grid
    )
    print(
        f"\nwrote {len(points)} predictions (posterior mean and sd of the latent field) of the {sf.name} model to "
        f"{out.path}; the model was fitted on the {n_train} training rows"
    )
    return 0


def _write_points(out, coords, points, names, columns, *, grid=None, extra=None) -> None:
    """Write ``points`` and per-point ``columns`` as CSV, or as ``.npz`` arrays if ``out`` ends in ``.npz``."""
    pts = np.asarray(points.detach().cpu().numpy() if torch.is_tensor(points) else points, dtype=np.float64)
    cols = [np.asarray(c.detach().cpu().numpy() if torch.is_tensor(c) else c, dtype=np.float64) for c in columns]
    cols = [c.reshape(-1) for c in cols]
    if str(out.path).lower().endswith(".npz"):
        arrays = {"points": pts, "coords": np.array(coords)}
        for name, c in zip(names, cols, strict=True):
            arrays[name] = c
        if grid:
            arrays["grid_shape"] = np.array(grid, dtype=np.int64)
        arrays.update(extra or {})
        write_npz_atomic(out, arrays)
    else:
        write_points(out, [*coords, *names], pts, cols)


def _run_fit(args, coords, data, grid, out, X_raw, Y, device, geometry_warning) -> int:

    show, say = _progress_on(args), _sayer(args)
    scaling = IsotropicScaling.from_data(X_raw)
    X = scaling(X_raw)
    g = torch.Generator().manual_seed(args.seed)
    perm = torch.randperm(len(X), generator=g)
    n_test = round(args.test_fraction * len(X))
    if len(X) - n_test < MIN_ROWS:
        raise CLIError(f"only {len(X) - n_test} training rows after the split; lower --test-fraction")
    test_idx, train_idx = perm[:n_test], perm[n_test:]
    to = dict(device=device, dtype=torch.float64)
    train_X, train_Y = X[train_idx].to(**to), Y[train_idx].to(**to)
    test_X, test_Y = X[test_idx].to(**to), Y[test_idx].to(**to)
    n_train = len(train_idx)
    max_fit = args.max_fit_points
    subset = n_train > max_fit
    print(
        f"gpytorch-so3 fit: {args.file}: {len(X)} rows, coordinates {', '.join(coords)}, target {args.target}; "
        f"{n_train} training / {n_test} held-out rows; {_nu_name(args.nu)} kernel; coordinates centred and "
        f"scaled by one factor ({scaling.scale:.6g} data units)"
    )
    if geometry_warning:
        _warn(geometry_warning)
    if subset:
        print(
            f"{n_train} training rows > --max-fit-points {max_fit}: hyper-parameters are fitted on a random "
            f"subset of {max_fit} rows, then every model is conditioned on all {n_train} training rows"
        )
    else:
        print(f"hyper-parameters fitted on all {n_train} training rows (exact)")
    fitted, _ = _fit_all(train_X, train_Y, args, max_fit, show, say)
    _, metrics = _scores(fitted, train_X, train_Y, test_X, test_Y, nu=args.nu, conditioned=subset, show=show, say=say)
    names = tuple(coords)
    print(
        f"\nPrincipal axes in data units, canonical order (shortest length-scale first); x = {coords[0]} (East), "
        f"y = {coords[1]} (North), z = {coords[2]} (Up); direction = the lower end of each axis (z <= 0), the "
        "end whose azimuth (clockwise from North) and dip (below horizontal) are shown"
    )
    cpu = [_to_cpu(fm) for fm in fitted]
    print(axes_report(cpu, scaling.scale, None, " [data units]", names))
    for note in unbounded_notes(cpu, train_X, scaling.scale, " data units"):
        print(note)
    if n_test:
        print("\nHeld-out skill")
        print(skill_report(fitted, metrics))
    if grid is None:
        return 0
    if torch.is_tensor(grid):
        grid_values = grid
    else:
        grid_values = grid.values

    # The model whose predictions are written: lowest held-out NLPD, else highest log evidence on the fit rows.
    if metrics:
        best_i = min(range(len(fitted)), key=lambda i: metrics[i]["nlpd"])
        why = "lowest held-out NLPD"
    else:
        best_i = max(range(len(fitted)), key=lambda i: log_evidence(fitted[i].model))
        why = "highest log marginal likelihood; no held-out rows to score"
    chosen = range(len(fitted)) if args.write == "all" else [best_i]
    all_X, all_Y = X.to(**to), Y.to(**to)
    n_all = len(all_X)
    large = n_all > EXACT_MAX_ROWS
    grid_X = scaling(grid_values).to(**to)
    if args.simulate:
        return _simulate_exact(args, fitted[best_i], why, all_X, all_Y, grid_values, grid_X, coords, out, n_train, say)
    columns, values = [], []
    for i in chosen:
        fm = fitted[i]
        say(f"conditioning {fm.kind} on all {n_all} rows and predicting {len(grid_X)} points")
        try:
            predictor = condition_on(fm, all_X, all_Y, nu=args.nu, use_keops=None if large else False)
            mean, var = predict_in_chunks(predictor, grid_X, output_device="cpu", iterative=large, progress=show)
        except NUMERICAL_ERRORS as e:
            raise CLIError(f"prediction with the {fm.name} model failed numerically ({_first_line(e)})") from None
        suffix = "" if args.write == "best" else f"_{fm.kind}"
        columns += [f"{args.target}_mean{suffix}", f"{args.target}_std{suffix}"]
        values += [mean.reshape(-1), var.clamp_min(0).sqrt().reshape(-1)]
    _write_points(out, coords, grid_values, columns, values, grid=args.grid)
    which = (
        f"the {fitted[best_i].name} model ({why})"
        if args.write == "best"
        else f"every model ({', '.join(fm.name for fm in fitted)}; columns suffixed by model)"
    )
    fit_rows = min(n_train, max_fit)
    print(
        f"\nwrote {len(grid_X)} predictions (posterior mean and sd of the latent field) of {which} to {out.path}; "
        f"predictions use all {n_all} rows ({n_train} training + {n_test} held-out), hyper-parameters fitted on "
        f"{fit_rows} rows{' (a random subset of the training rows)' if fit_rows < n_train else ''}"
    )
    return 0


def _simulate_exact(args, fm, why, all_X, all_Y, points, grid_X, coords, out, n_train, say) -> int:
    """``--simulate K``: conditional realisations of the chosen exact model (conditioned on all rows) at the points."""
    n_all = len(all_X)
    say(f"conditioning {fm.kind} on all {n_all} rows and drawing {args.simulate} realisations at {len(grid_X)} points")
    try:
        predictor = condition_on(fm, all_X, all_Y, nu=args.nu, use_keops=False)
        draws = simulate(predictor, grid_X, args.simulate, seed=args.seed, num_features=args.num_features)
    except NUMERICAL_ERRORS as e:
        raise CLIError(f"simulation with the {fm.name} model failed numerically ({_first_line(e)})") from None
    draws = draws.detach().cpu()
    if str(out.path).lower().endswith(".npz"):
        _write_points(out, coords, points, [], [], grid=args.grid, extra={"sims": draws.numpy()})
    else:
        names = [f"sim_{k}" for k in range(args.simulate)]
        _write_points(out, coords, points, names, list(draws), grid=args.grid)
    print(
        f"\nwrote {args.simulate} conditional realisations of the latent field at {len(grid_X)} points of the "
        f"{fm.name} model ({why}; seed {args.seed}, {args.num_features} random features) to {out.path}; conditioned "
        f"on all {n_all} rows"
    )
    return 0


def _to_cpu(fm):
    fm.lengthscale, fm.axes = fm.lengthscale.cpu(), fm.axes.cpu()
    return fm


# ----------------------------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``prog: error: message``) and exit code 2."""

    def error(self, message: str):
        """Print ``prog: error: message`` on one line and exit with 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _nu(value: str):
    if value.lower() in ("rbf", "none", "inf"):
        return None
    try:
        nu = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"nu must be rbf, 0.5, 1.5 or 2.5, got {value!r}") from None
    if nu not in (0.5, 1.5, 2.5):
        raise argparse.ArgumentTypeError(f"nu must be rbf, 0.5, 1.5 or 2.5, got {value!r}")
    return nu


def _model_list(value: str) -> list[str]:
    kinds = [v.strip() for v in value.split(",") if v.strip()]
    allowed = ("iso", "ard", "spd", "so3")
    bad = [k for k in kinds if k not in allowed]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"models must be a comma list of {', '.join(allowed)}; got {value!r}")
    if len(set(kinds)) != len(kinds):
        raise argparse.ArgumentTypeError(f"models lists a kind twice: {value!r}")
    return kinds


def _int_in(low: int, high: int, what: str):
    def parse(value: str) -> int:
        try:
            v = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be an integer, got {value!r}") from None
        if not low <= v <= high:
            raise argparse.ArgumentTypeError(f"{what} must be an integer in [{low}, {high}], got {value}")
        return v

    return parse


def _fraction(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    return v


def _delimiter(value: str) -> str:
    value = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "space": " "}.get(value, value)
    if len(value) != 1 or value in '"\r\n':
        raise argparse.ArgumentTypeError(f"the delimiter must be one character (or tab), got {value!r}")
    return value


def _even_features(value: str) -> int:
    v = _int_in(2, 1_000_000, "--num-features")(value)
    if v % 2:
        raise argparse.ArgumentTypeError(f"--num-features must be even (sine and cosine pairs), got {v}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``gpytorch-so3``."""
    try:
        __version__ = version("gpytorch-so3")
    except PackageNotFoundError:  # pragma: no cover - a source tree without installation
        __version__ = "0.0.0+unknown"
    parser = _Parser(
        prog="gpytorch-so3",
        description="Rotated-anisotropy (SO(3)) Gaussian-process kernels: fit and compare with ARD.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, restarts: int, models: list[str]):
        p.add_argument("--nu", type=_nu, default=2.5, help="base kernel: rbf, 0.5, 1.5 or 2.5 (default 2.5)")
        p.add_argument(
            "--restarts",
            type=_int_in(1, 1000, "--restarts"),
            default=restarts,
            help=f"MAP restarts over rotations (default {restarts})",
        )
        p.add_argument(
            "--max-iter",
            type=_int_in(1, 100_000, "--max-iter"),
            default=None,
            metavar="N",
            help="cap on optimiser iterations per start (default: the optimiser's own)",
        )
        p.add_argument("--seed", type=_int_in(0, MAX_SEED, "--seed"), default=0, help="random seed (default 0)")
        p.add_argument(
            "--models",
            type=_model_list,
            default=models,
            help=f"comma list of iso, ard, spd, so3 (default {','.join(models)})",
        )
        p.add_argument("--quiet", action="store_true", help="no progress output (progress shows only on a terminal)")

    demo = sub.add_parser("demo", help="fit ARD and SO(3) kernels to a built-in rotated 3-D field (10-30 s)")
    demo.add_argument(
        "--n",
        type=_int_in(MIN_ROWS, DEFAULT_MAX_FIT_POINTS, "--n"),
        default=_DEMO_DEFAULTS["n"],
        help=f"training points (and as many held-out; default {_DEMO_DEFAULTS['n']})",
    )
    demo.add_argument(
        "--data",
        choices=("synthetic", "oilsands"),
        default="synthetic",
        help="built-in data: a synthetic rotated field (default) or the real oil-sands drill holes "
        "(held-out whole holes, original and rotated coordinates; a few minutes)",
    )
    demo.add_argument(
        "--max-fit-points",
        type=_int_in(0, 100_000, "--max-fit-points"),
        default=500,
        metavar="N",
        help="--data oilsands: fit hyper-parameters on N random training samples, then condition on "
        "all of them (0: fit on all; default 500)",
    )
    common(demo, _DEMO_DEFAULTS["restarts"], _DEMO_DEFAULTS["models"])
    demo.set_defaults(func=_cmd_demo)

    fit = sub.add_parser("fit", help="fit and compare kernels on a CSV file")
    fit.add_argument("file", help="CSV file with a header row (UTF-8)")
    fit.add_argument("--coords", nargs="+", required=True, metavar="COL", help="three coordinate columns (x y z)")
    fit.add_argument("--target", required=True, help="target column")
    fit.add_argument("--test-fraction", type=_fraction, default=0.2, help="held-out fraction (default 0.2)")
    fit.add_argument("--predict", metavar="GRID.csv", help="CSV of points (same coordinate columns) to predict")
    fit.add_argument(
        "--grid",
        nargs=3,
        type=_int_in(1, MAX_GRID_POINTS, "--grid sizes"),
        metavar=("NX", "NY", "NZ"),
        help="instead of --predict: a regular NX x NY x NZ grid over the data's bounding box (C order: the last "
        "coordinate varies fastest)",
    )
    fit.add_argument(
        "--out",
        metavar="FILE",
        help="where --predict/--grid write mean and sd, or --simulate the realisations (a new file): CSV, or "
        "NumPy .npz if the name ends in .npz (arrays points, coords, grid_shape, and <target>_mean/_std or sims "
        "of shape K x points)",
    )
    fit.add_argument(
        "--simulate",
        type=_int_in(1, 100_000, "--simulate"),
        metavar="K",
        help="write K conditional realisations of the latent field at the --grid/--predict points instead of mean "
        f"and sd (exact GP only; CSV columns: coordinates, sim_0..sim_K-1; above {MAX_CSV_VALUES:,} values "
        "(points x K) --out must end in .npz); --seed makes them reproducible",
    )
    fit.add_argument(
        "--num-features",
        type=_even_features,
        default=4096,
        metavar="F",
        help="--simulate: random Fourier features of the prior paths (even; default 4096)",
    )
    fit.add_argument("--force", action="store_true", help="replace an existing --out file (never an input file)")
    fit.add_argument(
        "--write",
        choices=("best", "all"),
        default="best",
        help="predictions of the best model (lowest held-out NLPD; default) or of every model",
    )
    fit.add_argument("--delimiter", type=_delimiter, default=",", help="field delimiter (default ',')")
    fit.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default cpu)")
    fit.add_argument(
        "--method",
        choices=METHODS,
        default="auto",
        help=f"exact: exact GP (fit on up to --max-fit-points rows, conditioned on all); svgp: sparse variational "
        "GP (minibatches; data-parallel under torchrun); nngp: nearest-neighbour (Vecchia) GP with neighbours in "
        f"the kernel's whitened coordinates (one process); auto (default): exact up to {AUTO_EXACT_MAX_ROWS:,} "
        "training rows, svgp above (and under torchrun)",
    )
    fit.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        metavar="S",
        help=f"svgp/nngp: training time budget in seconds (default {DEFAULT_MAX_SECONDS:g} unless --epochs is "
        "given; initialisation, scoring and prediction come on top)",
    )
    fit.add_argument(
        "--epochs",
        type=_int_in(0, 1_000_000, "--epochs"),
        default=None,
        metavar="N",
        help="svgp/nngp: passes over the training rows (with --max-seconds, whichever comes first)",
    )
    fit.add_argument(
        "--num-inducing",
        type=_int_in(1, 100_000, "--num-inducing"),
        default=1024,
        metavar="M",
        help="svgp: inducing points (default 1024)",
    )
    fit.add_argument(
        "--init-restarts",
        type=_int_in(1, 1000, "--init-restarts"),
        default=1,
        metavar="R",
        help="svgp/nngp: MAP restarts of the exact fit on a 1,000-row subset that initialises the kernel (default 1; "
        "the minibatch training then refines it on all rows)",
    )
    fit.add_argument(
        "--batch-size",
        type=_int_in(1, 10_000_000, "--batch-size"),
        default=4096,
        metavar="B",
        help="svgp/nngp: minibatch size (global across processes; default 4096)",
    )
    fit.add_argument(
        "--max-fit-points",
        type=_int_in(MIN_ROWS, 1_000_000, "--max-fit-points"),
        default=DEFAULT_MAX_FIT_POINTS,
        metavar="N",
        help="fit hyper-parameters exactly on all training rows up to N (default "
        f"{DEFAULT_MAX_FIT_POINTS}); above, on N random rows, then condition on all of them (CG, "
        "KeOps products if pykeops is installed)",
    )
    common(fit, 8, ["ard", "spd", "so3"])
    fit.set_defaults(func=_cmd_fit)
    return parser


def _run(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        # The command line's own policy, whatever the caller's filters: third-party chatter off, the rest as one
        # line each (never a multi-line warning with source code).
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for module in ("botorch", "linear_operator", "gpytorch", "pyro", "pykeops", "keopscore"):
            warnings.filterwarnings("ignore", module=module)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.showwarning = lambda message, category, *a, **k: _warn(f"{category.__name__}: {message}")
        if _scalable.process_rank() == 0:
            return args.func(args)
        args.quiet = True  # under torchrun only rank 0 prints (errors still reach stderr)
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            return args.func(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gpytorch-so3`` console script; returns the exit code.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``); see ``gpytorch-so3 --help``.

    Returns:
        0 on success; 2 on a user error (one line on stderr, no traceback), bad arguments included; 130 after an
        interrupt (Ctrl-C); 1 on an internal error (one line; set ``GPYTORCH_SO3_TRACEBACK=1`` to see the
        traceback).

    Example:
        The ``demo`` command at a toy budget:

        >>> main(["demo", "--n", "20", "--restarts", "1", "--max-iter", "20", "--quiet"])  # doctest: +ELLIPSIS
        gpytorch-so3 demo: GP field on the unit cube, Matern-2.5 kernel, ...
        RMSE ratio SO(3) / ARD: ...
        0
        >>> main(["fit", "no-such-file.csv", "--coords", "x", "y", "z", "--target", "v"])  # error on stderr
        2
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help/--version (0) or a bad argument (2, one line already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    try:
        return _run(args)
    except CLIError as e:
        if _scalable.process_rank() > 0:
            e = CLIError(f"{e} [rank {_scalable.process_rank()}]")
        print(f"gpytorch-so3: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gpytorch-so3: interrupted; no output file was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # a bug: one line, the traceback on request
        if os.environ.get("GPYTORCH_SO3_TRACEBACK"):
            raise
        print(
            f"gpytorch-so3: internal error: {type(e).__name__}: {_first_line(e)} (please report it; set "
            "GPYTORCH_SO3_TRACEBACK=1 to see where)",
            file=sys.stderr,
        )
        return 1
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
