"""Held-out-by-hole evaluation on pygeostat's oil-sands drill holes: ordinary kriging vs isotropic, ARD, full-SPD
and SO(3) GPs, all on all training samples of each fold.

Protocol (the demo's, gpytorch_so3/cli/_demo.py; shared helpers in benchmarks/_experiments.py):
- 5 folds of whole drill holes (hole_folds, seed 0); each fold's ~56 holes (~1,200 samples) are the test set, all
  samples of the other holes (~4,600) the training set (--max-train N: a random subset, the older protocol);
- GPs: Matern-5/2 kernels, MAP (fit_map with --restarts restarts over rotations for SO(3) and full SPD; BoTorch's
  fit_gpytorch_mll for isotropic/ARD), the same priors for every kernel (length-scale prior, and the matching
  prior on the full-SPD Cholesky diagonal); hyper-parameters fitted on all training samples, or on --max-fit
  random ones and then conditioned on all of them; coordinates centred and divided by one common factor;
- ordinary kriging ("okrige", original coordinates only), as a practitioner would with GSTools: directional
  experimental variograms in the layering's frame (vertical along the holes; horizontal East and North in 2 m
  elevation slices), the best of Exponential/Spherical/Gaussian fitted by least squares, then
  gstools.krige.Ordinary(exact=False, cond_err="nugget") on all training samples;
- experiments: "original" coordinates on Bitumen and Fines (all kinds); "rotated" coordinates on Bitumen
  (x -> Q x, Q = 40 deg about the vertical then 30 deg about East; ARD, full SPD, SO(3)); "no-ls-prior":
  Bitumen on original coordinates without the length-scale prior (ARD, SO(3)).
- scores: R^2 and RMSE of the held-out observations, NLPD and 90% interval coverage of the predictive
  distribution with noise, fit and prediction time.

Writes benchmarks/results/oilsands.json (config, environment, per-fold records, summary) after every fit (so an
interrupted run resumes with --resume) and benchmarks/results/oilsands.md (markdown tables).

Usage:
    OMP_NUM_THREADS=1 python benchmarks/oilsands_eval.py            # full run (hours on 2 busy cores)
    python benchmarks/oilsands_eval.py --quick                      # smoke run: 1 fold, 600 samples, ~5 min
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
from _experiments import (
    ABOUT_HORIZONTAL_DEG,
    ABOUT_VERTICAL_DEG,
    KIND_NAMES,
    known_rotation,
    kriging_fold,
    markdown_table,
    oilsands_fold,
    summarize,
)

from gpytorch_so3 import so3
from gpytorch_so3.datasets import hole_folds, load_oilsands

HERE = Path(__file__).resolve().parent


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--targets", default="Bitumen,Fines")
    p.add_argument("--kinds", default="okrige,iso,ard,spd,so3")
    p.add_argument("--n-folds", type=int, default=5)
    p.add_argument("--folds", default=None, help="comma list of folds to run (default: all)")
    p.add_argument("--max-train", type=int, default=None, help="random training samples per fold (default: all)")
    p.add_argument(
        "--max-fit",
        type=int,
        default=None,
        help="fit GP hyper-parameters on this many random training samples, then condition on all "
        "(default: fit on all)",
    )
    p.add_argument("--max-iter", type=int, default=None, help="L-BFGS iteration cap per start (default: none)")
    p.add_argument(
        "--kriging-families",
        default="Exponential,Spherical,Gaussian",
        help="variogram families tried for kriging (best least-squares fit kept)",
    )
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--nu", type=float, default=2.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--experiments", default="original,rotated,no-ls-prior")
    p.add_argument("--out", default=str(HERE / "results" / "oilsands.json"))
    p.add_argument("--resume", action="store_true", help="keep records already in --out and skip them")
    p.add_argument("--quick", action="store_true", help="smoke run: fold 0, 600 samples, 1 restart, Bitumen")
    args = p.parse_args(argv)
    if args.quick:
        args.folds, args.max_train, args.restarts, args.targets = "0", 600, 1, "Bitumen"
        args.experiments = "original"
        if args.out == str(HERE / "results" / "oilsands.json"):
            args.out = str(HERE / "results" / "oilsands_quick.json")
    return args


def plan(args):
    kinds = args.kinds.split(",")
    targets = args.targets.split(",")
    folds = [int(f) for f in args.folds.split(",")] if args.folds else list(range(args.n_folds))
    exps = args.experiments.split(",")
    jobs = []
    for fold in folds:  # fold-major, so a partial run already has every experiment on the first folds
        if "original" in exps:
            jobs += [("original", t, fold, kinds, False, True) for t in targets]
        if "rotated" in exps:
            jobs.append(("rotated", "Bitumen", fold, [k for k in kinds if k not in ("iso", "okrige")], True, True))
        if "no-ls-prior" in exps:
            jobs.append(("no-ls-prior", "Bitumen", fold, [k for k in kinds if k in ("ard", "so3")], False, False))
    return jobs


def headline(records):
    """Rotated-coordinates figures per fold: vertical-axis angle error, R^2 of ARD vs SO(3), equivariance."""
    Q = known_rotation()
    by = {(r["experiment"], r["target"], r["fold"], r["kind"]): r for r in records}
    rows = []
    for (exp, target, fold, kind), r in sorted(by.items()):
        if exp != "rotated" or kind != "so3":
            continue
        row = {"fold": fold, "so3_vertical_angle_deg": r["vertical_angle_deg"], "so3_r2_rotated": r["r2"]}
        for k in ("ard", "spd"):
            if ("rotated", target, fold, k) in by:
                row[f"{k}_r2_rotated"] = by[("rotated", target, fold, k)]["r2"]
                row[f"{k}_vertical_angle_deg"] = by[("rotated", target, fold, k)]["vertical_angle_deg"]
        for k in ("ard", "so3"):
            if ("original", target, fold, k) in by:
                row[f"{k}_r2_original"] = by[("original", target, fold, k)]["r2"]
        orig = by.get(("original", target, fold, "so3"))
        if orig is not None:
            # Equivariance: the rotated fit's minor axis vs Q times the original fit's minor axis (same fold).
            m0 = Q @ torch.tensor(orig["minor_axis"], dtype=torch.float64)
            m1 = torch.tensor(r["minor_axis"], dtype=torch.float64)
            row["so3_minor_axis_vs_Q_original_fit_deg"] = float(so3.angle_between_axes(m1, m0))
            row["so3_original_minor_axis_tilt_deg"] = orig["vertical_angle_deg"]
        rows.append(row)
    agg = {}
    for key in sorted({k for row in rows for k in row if k != "fold"}):
        vals = [row[key] for row in rows if row.get(key) is not None]
        if vals:
            agg[key] = {
                "mean": statistics.fmean(vals),
                "sd": statistics.stdev(vals) if len(vals) > 1 else 0.0,
                "max": max(vals),
                "min": min(vals),
            }
    return {"per_fold": rows, "over_folds": agg}


def versus_kriging(records):
    """Per fold: each GP's R^2 and NLPD against ordinary kriging's on the same fold (original coordinates)."""
    by = {(r["experiment"], r["target"], r["fold"], r["kind"]): r for r in records}
    lines = []
    for (exp, target, fold, kind), r in sorted(by.items()):
        k = by.get((exp, target, fold, "okrige"))
        if exp != "original" or kind == "okrige" or k is None:
            continue
        wins = r["r2"] > k["r2"] and r["nlpd"] < k["nlpd"]
        lines.append(
            f"- {target} fold {fold}: {KIND_NAMES[kind]} R^2 {r['r2']:.3f} vs kriging {k['r2']:.3f}, NLPD "
            f"{r['nlpd']:.3f} vs {k['nlpd']:.3f}: {'better on both' if wins else 'not better on both'}"
        )
    return ["", "Against ordinary kriging, fold by fold:", *lines] if lines else []


def write(out: Path, config, records, t_start):
    summary = summarize(records, keys=("experiment", "target", "kind"))
    result = {
        "config": config,
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "platform": platform.platform(),
        },
        "wall_seconds": time.perf_counter() - t_start,
        "records": records,
        "summary": summary,
        "rotated_headline": headline(records),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=float))
    tmp.replace(out)
    fit_text = (
        "all of them" if config["max_fit"] is None else f"{config['max_fit']} random ones, then conditioned on all"
    )
    md = [
        "# Oil-sands drill holes: held-out-by-hole comparison",
        "",
        f"{config['n_folds']} folds of whole drill holes; training samples per fold: "
        f"{'all' if config['max_train'] is None else config['max_train']}; GP hyper-parameters fitted on "
        f"{fit_text}"
        f"; Matern-{config['nu']} kernels with the same priors; MAP with {config['restarts']} restarts over rotations "
        "(SO(3), full SPD); coordinates centred and divided by one factor. Ordinary kriging: GSTools, directional "
        "variograms in the layering's frame, Ordinary(exact=False, cond_err='nugget'). Mean ± sd over folds. "
        "R^2/RMSE of held-out observations, NLPD and 90% interval coverage of the predictive distribution "
        "with noise. Rotated: all coordinates rotated by 40° about the vertical then 30° about East before fitting.",
        "",
        markdown_table(summary),
        "",
    ]
    h = result["rotated_headline"]["over_folds"]
    if "so3_vertical_angle_deg" in h:
        a = h["so3_vertical_angle_deg"]
        md.append(
            f"Rotated coordinates: SO(3) minor axis vs rotated vertical: {a['mean']:.2f} ± {a['sd']:.2f} deg "
            f"(max {a['max']:.2f}) over {len(result['rotated_headline']['per_fold'])} folds."
        )
        for k in ("ard", "spd", "so3"):
            if f"{k}_r2_rotated" in h:
                md.append(f"- R^2 rotated, {k}: {h[f'{k}_r2_rotated']['mean']:.3f} ± {h[f'{k}_r2_rotated']['sd']:.3f}")
        if "so3_minor_axis_vs_Q_original_fit_deg" in h:
            e = h["so3_minor_axis_vs_Q_original_fit_deg"]
            md.append(
                f"- SO(3) minor axis (rotated fit) vs Q x minor axis (original fit): {e['mean']:.2f} ± "
                f"{e['sd']:.2f} deg"
            )
    md += versus_kriging(records)
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    return result


def main(argv=None):
    args = parse_args(argv)
    out = Path(args.out)
    nu = None if math.isnan(args.nu) else args.nu
    config = {
        k: getattr(args, k)
        for k in (
            "targets",
            "kinds",
            "n_folds",
            "folds",
            "max_train",
            "max_fit",
            "max_iter",
            "restarts",
            "nu",
            "seed",
            "experiments",
        )
    }
    config.update(
        rotation={"about_vertical_deg": ABOUT_VERTICAL_DEG, "about_east_deg": ABOUT_HORIZONTAL_DEG},
        fold_seed=args.seed,
        subsample="random rows of the training holes, seed + fold",
    )
    records = []
    if args.resume and out.exists():
        records = json.loads(out.read_text())["records"]
    done = {(r["experiment"], r["target"], r["fold"], r["kind"]) for r in records}
    t_start = time.perf_counter()
    data_cache = {}
    Q = known_rotation()
    say = lambda msg: print(msg, file=sys.stderr, flush=True)
    warnings.filterwarnings("ignore", module="botorch")
    warnings.filterwarnings("ignore", module="linear_operator")
    for exp, target, fold, kinds, rotated, prior in plan(args):
        todo = [k for k in kinds if (exp, target, fold, k) not in done]
        if not todo:
            continue
        if target not in data_cache:
            d = load_oilsands(target=target)
            data_cache[target] = (d, hole_folds(d.hole_ids, args.n_folds, seed=args.seed))
        data, folds = data_cache[target]
        say(f"[{time.perf_counter() - t_start:6.0f} s] {exp} {target} fold {fold}: {','.join(todo)}")
        for kind in todo:
            if kind == "okrige":
                rec = kriging_fold(
                    data,
                    folds,
                    fold,
                    max_train=args.max_train,
                    seed=args.seed,
                    families=args.kriging_families.split(","),
                    say=say,
                )
            else:
                (rec,) = oilsands_fold(
                    data,
                    folds,
                    fold,
                    kinds=[kind],
                    max_train=args.max_train,
                    max_fit=args.max_fit,
                    max_iter=args.max_iter,
                    rotation=Q if rotated else None,
                    nu=nu,
                    num_restarts=args.restarts,
                    seed=args.seed,
                    lengthscale_prior=prior,
                    say=say,
                )
            rec["experiment"] = exp
            records.append(rec)
            write(out, config, records, t_start)
    result = write(out, config, records, t_start)
    print(out.with_suffix(".md").read_text())
    return result


if __name__ == "__main__":
    main()
