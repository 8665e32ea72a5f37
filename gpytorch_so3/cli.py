"""Command line: ``gpytorch-so3 demo`` and ``gpytorch-so3 fit FILE.csv --coords x y z --target value``.

This module only parses, calls the library and prints; the maths lives in :mod:`gpytorch_so3.compare`.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from gpytorch_so3 import so3

__all__ = ["main"]

MIN_ROWS = 10


class CLIError(Exception):
    """A user error: printed as one line, exit code 2."""


# ----------------------------------------------------------------------------------------------- reporting
def _fmt_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True))
    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _axes_report(fitted, scale: float, truth: tuple[torch.Tensor, torch.Tensor] | None, units: str) -> str:
    from gpytorch_so3.compare import azimuth_dip

    header = ["model", "axis", f"length-scale{units}", "direction (x, y, z)", "azimuth", "dip"]
    if truth is not None:
        header.append("angle err (deg)")
    rows = []
    if truth is not None:
        t_ls, t_ax = truth
        az, dip = azimuth_dip(t_ax.T)
        for i in range(3):
            u = t_ax[:, i]
            rows.append(
                [
                    "truth",
                    str(i + 1),
                    f"{float(t_ls[i]) * scale:.4g}",
                    f"({u[0]:+.3f}, {u[1]:+.3f}, {u[2]:+.3f})",
                    f"{float(az[i]):.1f}",
                    f"{float(dip[i]):.1f}",
                    "",
                ]
            )
    for fm in fitted:
        az, dip = azimuth_dip(fm.axes.T)
        for i in range(3):
            u = fm.axes[:, i]
            row = [
                fm.name,
                str(i + 1),
                f"{float(fm.lengthscale[i]) * scale:.4g}",
                f"({u[0]:+.3f}, {u[1]:+.3f}, {u[2]:+.3f})",
                f"{float(az[i]):.1f}",
                f"{float(dip[i]):.1f}",
            ]
            if truth is not None:
                row.append(f"{float(so3.angle_between_axes(u, truth[1][:, i])):.2f}")
            rows.append(row)
    return _fmt_table(header, rows)


def _skill_report(fitted, metrics) -> str:
    rows = [
        [fm.name, f"{m['rmse']:.4g}", f"{m['nlpd']:.4g}", f"{m['r2']:.3f}", f"{fm.fit_seconds:.1f}"]
        for fm, m in zip(fitted, metrics, strict=True)
    ]
    return _fmt_table(["model", "held-out RMSE", "NLPD", "R^2", "fit time (s)"], rows)


def _ratio_line(fitted, metrics) -> str:
    by = {fm.kind: m for fm, m in zip(fitted, metrics, strict=True)}
    if "so3" in by and "ard" in by and by["ard"]["rmse"] > 0:
        return f"RMSE ratio SO(3) / ARD: {by['so3']['rmse'] / by['ard']['rmse']:.3f}"
    return ""


def _run_comparison(train_X, train_Y, test_X, test_Y, args, say) -> list:
    """Fit every requested kind; returns (fitted, metrics, predictors).

    With more training rows than ``--max-fit-points`` (``fit`` only), hyper-parameters are fitted on a random subset
    of that size and each model is then conditioned on all training rows (``compare.condition_on``: KeOps products,
    CG solves), which is what held-out skill and ``--predict`` use. Otherwise the predictor is the fitted model.
    """
    from gpytorch_so3.compare import condition_on, evaluate, fit_model

    max_fit = getattr(args, "max_fit_points", None)
    large = max_fit is not None and len(train_X) > max_fit
    if large:
        g = torch.Generator().manual_seed(args.seed)
        sub = torch.randperm(len(train_X), generator=g)[:max_fit].to(train_X.device)
        fit_X, fit_Y = train_X[sub], train_Y[sub]
    else:
        fit_X, fit_Y = train_X, train_Y
    fitted, metrics, predictors = [], [], []
    for kind in args.models:
        say(f"fitting {kind} ...")
        fm = fit_model(kind, fit_X, fit_Y, nu=args.nu, num_restarts=args.restarts, seed=args.seed)
        fitted.append(fm)
        predictor = condition_on(fm, train_X, train_Y, nu=args.nu) if large else fm.model
        predictors.append(predictor)
        if test_X is not None and len(test_X):
            if large:
                say(f"conditioning {kind} on all {len(train_X)} training rows (CG) and predicting ...")
            metrics.append(evaluate(predictor, test_X, test_Y, iterative=large))
        else:
            metrics.append({"rmse": math.nan, "nlpd": math.nan, "r2": math.nan})
    return fitted, metrics, predictors


# ----------------------------------------------------------------------------------------------- commands
def _cmd_demo(args: argparse.Namespace) -> int:
    from gpytorch_so3.datasets import make_rotated_field

    if args.data == "oilsands":
        from gpytorch_so3.experiments import run_oilsands_demo

        print(run_oilsands_demo(seed=args.seed, quiet=args.quiet))
        return 0
    say = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    if args.n < MIN_ROWS:
        raise CLIError(f"--n must be at least {MIN_ROWS}, got {args.n}")
    field = make_rotated_field(n_train=args.n, n_test=args.n, nu=args.nu, seed=args.seed)
    print(
        f"gpytorch-so3 demo: GP field on the unit cube, {_nu_name(args.nu)} kernel, principal length-scales "
        f"{tuple(round(float(v), 3) for v in field.lengthscale)}, Haar-random rotation (seed {args.seed}), "
        f"noise sd {field.noise_std}; {args.n} training and {args.n} held-out points"
    )
    fitted, metrics, _ = _run_comparison(field.train_X, field.train_Y, field.test_X, field.test_Y, args, say)
    truth = field.true_canonical()
    print("\nPrincipal axes, canonical order (shortest length-scale first); angle error vs truth per axis")
    print(_axes_report(fitted, 1.0, truth, ""))
    print("\nHeld-out skill (noisy held-out observations)")
    print(_skill_report(fitted, metrics))
    print(_ratio_line(fitted, metrics))
    return 0


def _nu_name(nu) -> str:
    return "RBF" if nu is None else f"Matern-{nu}"


def _read_csv(path: str, columns: Sequence[str], what: str) -> torch.Tensor:
    p = Path(path)
    if not p.is_file():
        raise CLIError(f"{what} file not found: {path}")
    try:
        with p.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None:
                raise CLIError(f"{path} is empty")
            missing = [c for c in columns if c not in reader.fieldnames]
            if missing:
                raise CLIError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(reader.fieldnames)}")
            rows = []
            for lineno, rec in enumerate(reader, start=2):
                try:
                    vals = [float(rec[c]) for c in columns]
                except (TypeError, ValueError):
                    raise CLIError(f"{path}, line {lineno}: non-numeric value in {', '.join(columns)}") from None
                if not all(math.isfinite(v) for v in vals):
                    raise CLIError(f"{path}, line {lineno}: NaN or infinite value in {', '.join(columns)}")
                rows.append(vals)
    except UnicodeDecodeError:
        raise CLIError(f"{path} is not a text CSV file") from None
    if not rows:
        raise CLIError(f"{path} has no data rows")
    return torch.tensor(rows, dtype=torch.float64)


def _cmd_fit(args: argparse.Namespace) -> int:
    from gpytorch_so3.compare import IsotropicScaling
    from gpytorch_so3.kernels.keops import keops_available
    from gpytorch_so3.large import predict_in_chunks

    say = (lambda *a: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr))
    if len(args.coords) != 3:
        raise CLIError(f"--coords needs exactly 3 column names, got {len(args.coords)}")
    if not 0 <= args.test_fraction < 1:
        raise CLIError(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
    data = _read_csv(args.file, [*args.coords, args.target], "data")
    if len(data) < MIN_ROWS:
        raise CLIError(f"{args.file} has {len(data)} rows; at least {MIN_ROWS} are needed")
    X_raw, Y = data[:, :3], data[:, 3:]
    if float(Y.std()) == 0.0:
        raise CLIError(f"target column {args.target!r} is constant; nothing to fit")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise CLIError(f"unknown --device {args.device!r}; use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda requested but CUDA is not available on this machine")
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
    print(
        f"gpytorch-so3 fit: {args.file}: {len(X)} rows, coordinates {', '.join(args.coords)}, target "
        f"{args.target}; {len(train_idx)} training / {n_test} held-out rows; {_nu_name(args.nu)} kernel; "
        f"coordinates centred and scaled by one factor ({scaling.scale:.6g} data units)"
    )
    if len(train_idx) > args.max_fit_points:
        print(
            f"{len(train_idx)} training rows > --max-fit-points {args.max_fit_points}: hyper-parameters are fitted "
            f"on a random subset of {args.max_fit_points} rows, then every model is conditioned on all "
            f"{len(train_idx)} training rows (CG; KeOps {'on' if keops_available() else 'not installed: dense'})"
        )
    fitted, metrics, predictors = _run_comparison(train_X, train_Y, test_X, test_Y, args, say)
    print(
        "\nPrincipal axes in data units, canonical order (shortest length-scale first); "
        f"x = {args.coords[0]} (East), y = {args.coords[1]} (North), z = {args.coords[2]} (Up)"
    )
    print(_axes_report([_to_cpu(fm) for fm in fitted], scaling.scale, None, " [data units]"))
    if n_test:
        print("\nHeld-out skill")
        print(_skill_report(fitted, metrics))
        print(_ratio_line(fitted, metrics))
    if args.predict:
        grid_raw = _read_csv(args.predict, args.coords, "prediction grid")
        best, predictor = fitted[-1], predictors[-1]
        grid = scaling(grid_raw).to(**to)
        mean, var = predict_in_chunks(predictor, grid, output_device="cpu")
        mean, std = mean.squeeze(-1), var.clamp_min(0).sqrt().squeeze(-1)
        out = Path(args.out)
        with out.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([*args.coords, f"{args.target}_mean", f"{args.target}_std"])
            for row, m, s in zip(grid_raw.tolist(), mean.tolist(), std.tolist(), strict=True):
                w.writerow([*row, m, s])
        print(
            f"\nwrote {len(grid_raw)} predictions of the {best.name} model (posterior mean and sd of the latent "
            f"field) to {out}"
        )
    return 0


def _to_cpu(fm):
    fm.lengthscale, fm.axes = fm.lengthscale.cpu(), fm.axes.cpu()
    return fm


# ----------------------------------------------------------------------------------------------- parser
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


def _models(value: str) -> list[str]:
    from gpytorch_so3.compare import MODEL_KINDS

    kinds = [v.strip() for v in value.split(",") if v.strip()]
    bad = [k for k in kinds if k not in MODEL_KINDS]
    if bad or not kinds:
        raise argparse.ArgumentTypeError(f"models must be a comma list of {', '.join(MODEL_KINDS)}; got {value!r}")
    return kinds


def _positive_int(value: str) -> int:
    try:
        v = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``gpytorch-so3``."""
    from gpytorch_so3 import __version__

    parser = argparse.ArgumentParser(
        prog="gpytorch-so3",
        description="Rotated-anisotropy (SO(3)) Gaussian-process kernels: fit and compare with ARD.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--nu", type=_nu, default=2.5, help="base kernel: rbf, 0.5, 1.5 or 2.5 (default 2.5)")
        p.add_argument("--restarts", type=_positive_int, default=8, help="MAP restarts over rotations (default 8)")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        p.add_argument(
            "--models",
            type=_models,
            default=["ard", "spd", "so3"],
            help="comma list of iso, ard, spd, so3 (default ard,spd,so3)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress messages")

    demo = sub.add_parser("demo", help="fit ARD, full-SPD and SO(3) kernels to a built-in rotated 3-D field")
    demo.add_argument("--n", type=int, default=300, help="training points (and as many held-out; default 300)")
    demo.add_argument(
        "--data",
        choices=("synthetic", "oilsands"),
        default="synthetic",
        help="built-in data: a synthetic rotated field (default) or the real oil-sands drill holes "
        "(held-out whole holes, original and rotated coordinates)",
    )
    common(demo)
    demo.set_defaults(func=_cmd_demo)

    fit = sub.add_parser("fit", help="fit and compare kernels on a CSV file")
    fit.add_argument("file", help="CSV file with a header row")
    fit.add_argument("--coords", nargs="+", required=True, metavar="COL", help="three coordinate columns (x y z)")
    fit.add_argument("--target", required=True, help="target column")
    fit.add_argument("--test-fraction", type=float, default=0.2, help="held-out fraction (default 0.2)")
    fit.add_argument("--predict", metavar="GRID.csv", help="CSV of points (same coordinate columns) to predict")
    fit.add_argument("--out", metavar="PRED.csv", help="where --predict writes mean and sd")
    fit.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    fit.add_argument(
        "--max-fit-points",
        type=_positive_int,
        default=2000,
        metavar="N",
        help="fit hyper-parameters on at most N random training rows, then condition on all of them "
        "with CG (KeOps products if pykeops is installed); default 2000",
    )
    common(fit)
    fit.set_defaults(func=_cmd_fit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gpytorch-so3`` console script; returns the exit code.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``); see ``gpytorch-so3 --help``.

    Returns:
        0 on success, 2 on a user error (message on stderr); argparse exits with 2 on bad arguments.

    Example:
        The ``demo`` command at a toy budget (the defaults use 300 points, 8 restarts and three kernels):

        >>> main(["demo", "--n", "20", "--restarts", "1", "--models", "ard,so3", "--quiet"])  # doctest: +ELLIPSIS
        gpytorch-so3 demo: GP field on the unit cube, Matern-2.5 kernel, ...
        RMSE ratio SO(3) / ARD: ...
        0
        >>> main(["fit", "no-such-file.csv", "--coords", "x", "y", "z", "--target", "v"])  # error on stderr
        2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "predict", None) and not getattr(args, "out", None):
        parser.error("--predict needs --out")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="botorch")
            warnings.filterwarnings("ignore", module="linear_operator")
            return args.func(args)
    except CLIError as e:
        print(f"gpytorch-so3: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
