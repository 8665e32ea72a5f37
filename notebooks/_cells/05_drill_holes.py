# %% [markdown]
# # 05 · Real data: oil-sands drill holes
#
# **The data.** 5,808 bitumen-grade samples (3 m composites, mass %) from 280 vertical drill holes over about
# 3.3 km × 6.0 km and 130 m of elevation: pygeostat's oil-sands example (MIT licence), shipped with this package
# and loaded offline by `gpytorch_so3.datasets.load_oilsands`. Geology makes this field strongly anisotropic:
# layers are nearly flat, so grades correlate over hundreds of metres horizontally but only about ten metres
# vertically.
#
# **What this notebook shows.**
# 1. A held-out-by-hole comparison: whole drill holes are held out (predicting them is interpolation between
#    neighbouring holes), and isotropic, ARD and SO(3) kernels are compared on them.
# 2. Reading the fitted anisotropy the geoscientist's way: azimuth, dip, ranges and ratios, and export to GSTools.
# 3. The decisive test: rotate all coordinates by a known rotation (40° about the vertical, then 30° about East), as
#    if the layers were tilted. An axis-aligned ARD kernel can no longer follow the layers; the SO(3) kernel should
#    keep its skill and find the rotated vertical.
#
# The full 5-fold study (also with full-SPD kernels and Fines) is `benchmarks/oilsands_eval.py`, with results in
# `benchmarks/results/oilsands.md`; `gpytorch-so3 demo --data oilsands` runs the same comparison from the command
# line.
#
# **Runtime:** the full run shown here (one fold, 500 training samples, 3 restarts) took 1.5 minutes on a shared
# 2-core machine; about 25 seconds with `SMOKE_TEST=1`.

# %%
import os

import matplotlib.pyplot as plt
import torch
from IPython.display import Markdown, display

from gpytorch_so3 import so3
from gpytorch_so3.cli._demo import fit_and_score, known_rotation, rotate_about, split_fold  # the CLI's demo code
from gpytorch_so3.cli._models import MODEL_KINDS, IsotropicScaling
from gpytorch_so3.datasets import hole_folds, load_oilsands
from gpytorch_so3.geo import AnisotropicCovariance
from gpytorch_so3.plot import equal_area_projection, plot_field_slice, plot_predictions, plot_stereonet

SMOKE_TEST = os.environ.get("SMOKE_TEST")
MAX_TRAIN = 80 if SMOKE_TEST else 500  # training samples per fit (an exact GP; more is slower)
RESTARTS = 1 if SMOKE_TEST else 3
KINDS = ["iso", "ard", "so3"]
plt.rcParams["figure.dpi"] = 80

# %% [markdown]
# ## Load the data and hold out one fold of drill holes
#
# `hole_folds` deals whole holes into 5 folds; fold 0 is held out, and `MAX_TRAIN` random samples from the other
# holes train each model. Coordinates are metres (East, North, Elevation).

# %%
data = load_oilsands(target="Bitumen")
X_m, Y = data.coordinates, data.targets
print(
    f"{len(data)} samples from {data.n_holes} holes; East {X_m[:, 0].min():.0f}..{X_m[:, 0].max():.0f} m, "
    f"North {X_m[:, 1].min():.0f}..{X_m[:, 1].max():.0f} m, elevation {X_m[:, 2].min():.0f}..{X_m[:, 2].max():.0f} m"
)
folds = hole_folds(data.hole_ids, n_folds=5, seed=0)
train_idx, test_idx = split_fold(folds, 0, max_train=MAX_TRAIN, seed=0)
print(
    f"training samples: {len(train_idx)}; held-out samples: {len(test_idx)} from "
    f"{torch.unique(data.hole_ids[test_idx]).numel()} holes"
)

fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 5), layout="constrained", width_ratios=[1, 1.2])
collars = torch.stack([X_m[data.hole_ids == h][0] for h in torch.unique(data.hole_ids)])
held = torch.isin(torch.unique(data.hole_ids), torch.unique(data.hole_ids[test_idx]))
a1.scatter(collars[~held, 0], collars[~held, 1], s=12, color="0.5", label="training holes")
a1.scatter(collars[held, 0], collars[held, 1], s=16, color="C3", label="held-out holes (fold 0)")
a1.set_aspect("equal")
a1.set_xlabel("East (m)")
a1.set_ylabel("North (m)")
a1.legend(fontsize=8)
a1.set_title("drill-hole locations")
for h in torch.unique(data.hole_ids)[:: max(1, data.n_holes // 6)][:6]:
    rows = data.hole_ids == h
    a2.plot(Y[rows, 0], X_m[rows, 2], marker=".", lw=1, label=f"hole {int(h)}")
a2.set_xlabel("bitumen (mass %)")
a2.set_ylabel("elevation (m)")
a2.set_title("grade down six holes: layers a few metres thick")
a2.legend(fontsize=7)
plt.show()

# %% [markdown]
# ## Fit on the original coordinates
#
# Coordinates are centred and divided by **one** common factor (`IsotropicScaling`: the largest side of the
# training box), never per axis: per-axis scaling would shear space and change the angles a rotation is meant to
# recover. `experiments.fit_and_score` builds a BoTorch `SingleTaskGP` with the given kernel and default priors,
# fits it by MAP (restarts over rotations for SO(3)) and scores it on the held-out holes: $R^2$, RMSE, NLPD of the
# noisy observations (lower is better) and the coverage of the 90% predictive intervals.


# %%
def fit_all(X_metres, kinds):
    scaling = IsotropicScaling.from_data(X_metres[train_idx])
    train_X, test_X = scaling(X_metres[train_idx]), scaling(X_metres[test_idx])
    results = {}
    for kind in kinds:
        results[kind] = fit_and_score(kind, train_X, Y[train_idx], test_X, Y[test_idx], num_restarts=RESTARTS, seed=0)
        results[kind]["lengthscale_m"] = [v * scaling.scale for v in results[kind]["lengthscale"]]
    return scaling, results


def table(results):
    rows = [
        "| kernel | R² | RMSE | NLPD | 90% coverage | fit time (s) | length-scales (m, ascending) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind, r in results.items():
        ls = ", ".join(f"{v:.3g}" for v in r["lengthscale_m"])
        rows.append(
            f"| {MODEL_KINDS[kind]} | {r['r2']:.3f} | {r['rmse']:.3f} | {r['nlpd']:.3f} | "
            f"{r['coverage90']:.2f} | {r['fit_seconds']:.0f} | {ls} |"
        )
    return Markdown("\n".join(rows))


scaling, original = fit_all(X_m, KINDS)
display(table(original))

# %% [markdown]
# How to read it: the isotropic kernel has one length-scale for all directions and cannot be both long
# horizontally and short vertically, so it predicts held-out holes poorly. ARD and SO(3) both learn a short
# vertical and long horizontal length-scales. Here the layering is nearly axis-aligned (flat), so ARD is already
# the right shape, and the SO(3) kernel should match it: its three rotation parameters must not cost skill.
#
# ## The anisotropy in geoscience terms
#
# `geo.AnisotropicCovariance.from_model` turns a fitted model into data units (length-scales in metres via the
# common coordinate scale, output-scale, noise as the nugget). Its principal directions are reported major axis
# first, with azimuth (clockwise from North), dip (below the horizontal), the practical range (distance at which
# the correlation falls to 5%) and the anisotropy ratios. `.to_gstools()` gives the equivalent GSTools `CovModel`
# for kriging or simulation with GSTools (optional extra `geo`).

# %%
cov = AnisotropicCovariance.from_model(original["so3"]["model"], coordinate_scale=scaling)
print(cov.principal_directions(units="m"))
print(f"\nnugget (noise variance) {cov.noise:.3g}, sill (output-scale) {cov.outputscale:.3g} (mass %)²")
try:
    print("\nGSTools:", cov.to_gstools())
except ImportError:
    print("\n(install GSTools, pip install 'gpytorch-so3[geo]', to export the model)")

# %% [markdown]
# ## Held-out holes and a map of the predicted grade
#
# Left: held-out observations against the SO(3) model's predictions with 90% intervals. Right: a horizontal slice
# of the predicted mean grade and its standard deviation at the middle elevation; white dots are samples within
# 3 m of the slice. The grade map is smooth over hundreds of metres (the long horizontal length-scales), and the
# uncertainty grows between holes.

# %%
model = original["so3"]["model"]
with torch.no_grad():
    post = model.posterior(scaling(X_m[test_idx]), observation_noise=True)
fig, ax = plot_predictions(Y[test_idx], post.mean, post.variance.sqrt(), title="SO(3): held-out holes (fold 0)")
plt.show()
lo, hi = X_m.min(0).values, X_m.max(0).values
z_mid = float((lo[2] + hi[2]) / 2)
fig, axes = plot_field_slice(
    model,
    z=z_mid,
    bounds=((float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))),
    resolution=30 if SMOKE_TEST else 90,
    transform=scaling,
    points=X_m,
    points_tol=3.0,
)
for a in axes:
    a.set_xlabel("East (m)")
    a.set_ylabel("North (m)")
plt.show()

# %% [markdown]
# ## The decisive test: tilted coordinates
#
# Now every coordinate is rotated about the centre of the data by a known rotation $Q$: 40° about the vertical,
# then 30° about the East axis. Distances between samples are unchanged, so the best achievable skill is unchanged;
# only the orientation of the layering moves off the coordinate axes. The vertical (across the layers) becomes
# $Q e_z$, tilted 30° from the new "up". An axis-aligned ARD kernel now has to describe a tilted, thin layering
# with axis-aligned length-scales; the SO(3) kernel can rotate its ellipsoid.

# %%
Q = known_rotation()
center = 0.5 * (X_m.min(0).values + X_m.max(0).values)
X_rot = rotate_about(X_m, Q, center)
scaling_rot, rotated = fit_all(X_rot, ["ard", "so3"])
display(table(rotated))
vertical = Q @ torch.tensor([0.0, 0.0, 1.0], dtype=Q.dtype)
for kind in ("ard", "so3"):
    minor = torch.tensor(rotated[kind]["axes"], dtype=torch.float64)[:, 0]
    print(
        f"{MODEL_KINDS[kind]:>5}: angle between the shortest axis and the rotated vertical Q e_z = "
        f"{so3.angle_between_axes(minor, vertical).item():.2f}°"
    )

# %% [markdown]
# How to read it: ARD's skill collapses towards the isotropic kernel's, while the SO(3) kernel's $R^2$ and NLPD stay
# where they were on the original coordinates, and its shortest axis is the rotated vertical to within a fraction
# of a degree.
#
# The stereonet makes the same point for all three axes. Stars: the SO(3) fit on the *original* coordinates,
# carried by the known rotation $Q$ (where the axes should be). Dots: the fits on the rotated coordinates. The SO(3)
# axes sit on their stars; ARD's can only point along the coordinate axes (centre and rim).

# %%
expected = Q @ torch.tensor(original["so3"]["axes"], dtype=torch.float64)
fig, axes = plt.subplots(1, 2, figsize=(10, 4.8), layout="constrained")
for ax, kind in zip(axes, ["ard", "so3"], strict=True):
    fitted = torch.tensor(rotated[kind]["axes"], dtype=torch.float64)
    plot_stereonet(fitted, ax=ax, truth=expected, markersize=60, alpha=1.0, legend=kind == "so3")
    ax.set_title(f"{MODEL_KINDS[kind]} on rotated coordinates", fontsize=10)
xy = equal_area_projection(vertical)
axes[1].annotate("Q e_z", xy=tuple(xy.tolist()), xytext=(8, -14), textcoords="offset points", fontsize=8)
plt.show()

# %% [markdown]
# **Take-aways.** On real, nearly axis-aligned data the SO(3) kernel matches ARD; when the anisotropy is oblique
# (here by construction) it keeps its skill where ARD cannot, and it reports the orientation directly, in the
# azimuth/dip terms geologists use. The full 5-fold table with spreads over folds is in
# `benchmarks/results/oilsands.md`.
