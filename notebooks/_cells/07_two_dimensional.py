# %% [markdown]
# # 07 · Two dimensions: maps, sections and "do no harm" in Bayesian optimisation
#
# **The setting.** Most geostatistics is two-dimensional -- maps of a layer, vertical cross-sections -- and an
# elongated correlation ellipse whose long axis is oblique to the coordinate axes is the rule, not the exception.
# `RotatedAnisotropicKernel(2)` learns it: `M = R diag(l)^-2 R^T` with the planar rotation
# `R = [[cos t, -sin t], [sin t, cos t]]`, one angle `t` (the so(2) coordinate) and two principal length-scales.
#
# **What this notebook shows.**
# 1. A synthetic 2-D field with a known orientation: the rotated kernel recovers the angle; ARD cannot.
# 2. Real data: a vertical section through the oil-sands drill holes (`oilsands_section`): the fitted layering is
#    flat (dip about 0) and the rotated kernel matches ARD; with a known 15-degree tilt added, it recovers the dip
#    and keeps its skill while ARD collapses. A collar-level map (`oilsands_map`): the azimuth of the longest range.
# 3. Bayesian optimisation: `gpytorch_so3.bo.fit_rotated_or_ard` keeps the rotated metric only when the evidence
#    pays for the extra angle (BIC), so an axis-aligned objective gets the ARD surrogate.
#
# Priors: for data whose frame means nothing (a map's East/North) use the frame-invariant `HaarAnglePrior`
# (uniform angle: the Haar measure of SO(2)); for Bayesian optimisation, whose input axes are meaningful variables,
# the default `default_sod_rotation_prior(2)` shrinks towards the identity (ARD).
#
# The held-out evaluation over all folds is `benchmarks/oilsands_2d.py` (results in
# `benchmarks/results/oilsands_2d.md`); the BO benchmark in d = 2, 3, 6, 10 is `benchmarks/bench_bo_sod.py`.
#
# **Runtime:** about 1-2 minutes for the full run on a shared 2-core machine; seconds with `SMOKE_TEST=1`.

# %%
import math
import os
import warnings

import matplotlib.pyplot as plt
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.transforms import Standardize
from gpytorch.mlls import ExactMarginalLogLikelihood

from gpytorch_so3.bo import ard_covar_module, fit_rotated_or_ard, rotated_covar_module
from gpytorch_so3.datasets import hole_folds, oilsands_map, oilsands_section
from gpytorch_so3.fit import fit_map
from gpytorch_so3.kernels.rotated_kernel import RotatedAnisotropicKernel
from gpytorch_so3.priors import HaarAnglePrior

SMOKE_TEST = os.environ.get("SMOKE_TEST")
N_FIELD = 50 if SMOKE_TEST else 200  # synthetic training points
MAX_TRAIN = 80 if SMOKE_TEST else 600  # drill-hole samples per fit
RESTARTS = 1 if SMOKE_TEST else 3
N_SEEDS = 2 if SMOKE_TEST else 10  # random designs in the BO section
dtype = torch.float64
torch.set_num_threads(1)
warnings.filterwarnings("ignore", message=".*float32.*")
plt.rcParams["figure.dpi"] = 80


def fit_ard(X, Y):
    model = SingleTaskGP(X, Y, covar_module=ard_covar_module(2).to(X), outcome_transform=Standardize(1))
    fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
    return model.eval()


def fit_rotated(X, Y, seed=0):
    covar = rotated_covar_module(2, rotation_prior=HaarAnglePrior()).to(X)
    model = SingleTaskGP(X, Y, covar_module=covar, outcome_transform=Standardize(1))
    return fit_map(model, num_restarts=RESTARTS, seed=seed)


def long_axis(model):
    """Unit direction of the longest length-scale, and the length-scales (sorted ascending)."""
    k = model.covar_module.base_kernel
    ls = k.lengthscale.detach()[0]
    R = k.rotation_matrix.detach() if isinstance(k, RotatedAnisotropicKernel) else torch.eye(2, dtype=ls.dtype)
    return R[:, int(ls.argmax())], ls.sort().values


def rmse(model, X, y):
    with torch.no_grad():
        return float((model.posterior(X).mean.squeeze(-1) - y).square().mean().sqrt())


# %% [markdown]
# ## 1. A synthetic field with a known orientation
#
# A Matern-5/2 field on the unit square with length-scales 0.06 and 0.5, the short axis at 30 degrees from the
# first axis, drawn exactly (Cholesky) from the rotated kernel itself, observed with a little noise.

# %%
g = torch.Generator().manual_seed(0)
truth = RotatedAnisotropicKernel(2, nu=2.5).to(dtype)
truth.lengthscale = torch.tensor([[0.06, 0.5]], dtype=dtype)
truth.rotation = torch.tensor([math.radians(30.0)], dtype=dtype)
X_all = torch.rand(N_FIELD + (100 if SMOKE_TEST else 400), 2, generator=g, dtype=dtype)
with torch.no_grad():
    K = truth(X_all).to_dense() + 1e-8 * torch.eye(len(X_all), dtype=dtype)
    f_all = torch.linalg.cholesky(K) @ torch.randn(len(X_all), generator=g, dtype=dtype)
y_all = f_all + 0.05 * torch.randn(len(X_all), generator=g, dtype=dtype)
X, Y, Xt, ft = X_all[:N_FIELD], y_all[:N_FIELD, None], X_all[N_FIELD:], f_all[N_FIELD:]

ard, rot = fit_ard(X, Y), fit_rotated(X, Y)
u, ls = long_axis(rot)
short_dir = torch.tensor([-u[1], u[0]])
err = math.degrees(math.acos(min(1.0, abs(float(short_dir @ truth.rotation_matrix.detach()[:, 0])))))
print(f"rotated: length-scales {ls.numpy().round(3)}, short axis {err:.1f} degrees from the truth")
print(f"held-out RMSE of the latent field: ARD {rmse(ard, Xt, ft):.3f}, rotated {rmse(rot, Xt, ft):.3f}")

# %%
fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
grid = torch.linspace(0, 1, 60, dtype=dtype)
G = torch.stack(torch.meshgrid(grid, grid, indexing="xy"), -1).reshape(-1, 2)
for ax, (title, model) in zip(axes[1:], [("ARD", ard), ("rotated", rot)], strict=True):
    with torch.no_grad():
        m = model.posterior(G).mean.reshape(60, 60)
    ax.contourf(grid, grid, m, levels=20, cmap="viridis")
    ax.scatter(*X.T, s=6, c="w")
    ax.set_title(f"{title}: held-out RMSE {rmse(model, Xt, ft):.3f}")
axes[0].tricontourf(*Xt.T, ft, levels=20, cmap="viridis")
axes[0].set_title("truth (test points)")
for ax in axes:
    ax.set_aspect("equal")
plt.tight_layout()

# %% [markdown]
# ## 2. Real data: a vertical section through the drill holes
#
# `oilsands_section()` takes the holes within 250 m of the line through the collars' centroid along their
# principal direction (nearly North) and returns every sample as (distance along the section, elevation). The
# coordinates are centred and divided by one common factor (angles are kept); one fold of whole holes is held out.

# %%
sec = oilsands_section()
folds = hole_folds(sec.hole_ids, 5, seed=0)
scale = float((sec.coordinates.max(0).values - sec.coordinates.min(0).values).max())
centre = sec.coordinates.mean(0)


def section_experiment(coords_m, tilt_deg=0.0):
    t = math.radians(tilt_deg)
    Q = torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=dtype)
    Xs = ((coords_m - centre) @ Q.T) / scale
    tr, te = torch.nonzero(folds != 0).squeeze(-1), folds == 0
    tr = tr[torch.randperm(tr.numel(), generator=torch.Generator().manual_seed(0))[:MAX_TRAIN]]
    out = {}
    for name, fit in (("ARD", fit_ard), ("rotated", fit_rotated)):
        model = fit(Xs[tr], sec.targets[tr])
        y = sec.targets[te, 0]
        with torch.no_grad():
            mu = model.posterior(Xs[te]).mean.squeeze(-1)
        r2 = 1 - float((mu - y).square().sum() / (y - y.mean()).square().sum())
        v, ls = long_axis(model)
        dip = (math.degrees(math.atan2(float(v[1]), float(v[0]))) + 90) % 180 - 90
        out[name] = model
        print(
            f"tilt {tilt_deg:4.1f}: {name:8s} held-out R2 {r2:.3f}, dip of the layering {dip:6.1f} deg, "
            f"ranges {(ls * scale).numpy().round(0)} m"
        )
    return Xs, out


Xs0, models0 = section_experiment(sec.coordinates)
Xs15, models15 = section_experiment(sec.coordinates, tilt_deg=15.0)

# %%
fig, axes = plt.subplots(2, 1, figsize=(11, 6))
for ax, (Xs, models, title) in zip(
    axes, [(Xs0, models0, "section"), (Xs15, models15, "section tilted 15 deg")], strict=True
):
    lo, hi = Xs.min(0).values, Xs.max(0).values
    gx, gz = torch.linspace(lo[0], hi[0], 200, dtype=dtype), torch.linspace(lo[1], hi[1], 60, dtype=dtype)
    G = torch.stack(torch.meshgrid(gx, gz, indexing="xy"), -1).reshape(-1, 2)
    with torch.no_grad():
        m = models["rotated"].posterior(G).mean.reshape(60, 200)
    ax.contourf(gx * scale, gz * scale, m, levels=20, cmap="YlOrBr")
    ax.scatter(Xs[:, 0] * scale, Xs[:, 1] * scale, s=2, c="k")
    ax.set_title(f"{title}: rotated-kernel prediction of Bitumen (vertical scale exaggerated)")
    ax.set_xlabel("distance along section (m)")
    ax.set_ylabel("elevation (m, centred)")
plt.tight_layout()

# %% [markdown]
# The layering in this section is flat: the fitted dip is about 0 and the rotated kernel reproduces the ARD fit
# (the identity start is among `fit_map`'s starts). The tilted copy is the same data in a frame where the layers
# dip 15 degrees: the rotated kernel finds the dip and keeps its skill; ARD, tied to the axes, loses most of it.
#
# ## 3. A collar-level map: azimuth of the longest range
#
# `oilsands_map(elevation_range=(200, 240))` averages each hole's samples within one 40 m slab (the layers are
# nearly flat) and places the mean at the hole's collar: 279 points in (East, North).

# %%
mp = oilsands_map(elevation_range=(200.0, 240.0))
mscale = float((mp.coordinates.max(0).values - mp.coordinates.min(0).values).max())
Xm = (mp.coordinates - mp.coordinates.mean(0)) / mscale
mfolds = hole_folds(mp.hole_ids, 5, seed=0)
tr, te = mfolds != 0, mfolds == 0
map_models = {"ARD": fit_ard(Xm[tr], mp.targets[tr]), "rotated": fit_rotated(Xm[tr], mp.targets[tr])}
for name, model in map_models.items():
    v, ls = long_axis(model)
    az = math.degrees(math.atan2(float(v[0]), float(v[1]))) % 180
    print(
        f"{name:8s} held-out RMSE {rmse(model, Xm[te], mp.targets[te, 0]):.3f}, azimuth of the longest range "
        f"{az:5.1f} deg, ranges {(ls * mscale).numpy().round(0)} m"
    )

# %%
fig, ax = plt.subplots(figsize=(5, 7))
sc = ax.scatter(*mp.coordinates.T, c=mp.targets[:, 0], cmap="YlOrBr", s=18)
plt.colorbar(sc, label="mean Bitumen, 200-240 m (%)")
k = map_models["rotated"].covar_module.base_kernel
R, ls = k.rotation_matrix.detach(), k.lengthscale.detach()[0] * mscale
t = torch.linspace(0, 2 * math.pi, 100, dtype=dtype)
ell = (R @ torch.stack([ls[0] * torch.cos(t), ls[1] * torch.sin(t)])).T + mp.coordinates.mean(0)
ax.plot(*ell.T, "b-", label="fitted correlation ellipse (1 length-scale)")
ax.set_aspect("equal")
ax.set_xlabel("East (m)")
ax.set_ylabel("North (m)")
ax.legend(loc="lower left", fontsize=8)
plt.tight_layout()

# %% [markdown]
# The map's anisotropy is moderate (ranges about 270 m and 430 m) and the longest range runs roughly East-West:
# azimuth 82-94 degrees over the five folds of `benchmarks/oilsands_2d.py`. The coordinate axes are already within
# about 8 degrees of the principal directions, so the rotated kernel has nothing to gain here: its held-out skill
# equals ARD's, and the evidence rule keeps ARD in 5/5 folds. That is the honest answer for this slab.
#
# ## 4. Bayesian optimisation: choose the metric by evidence
#
# For a BoTorch loop, `fit_rotated_or_ard(train_X, train_Y)` fits both surrogates and keeps the rotated one only
# if its log marginal likelihood beats ARD's by the BIC charge `log(n) / 2` per extra coordinate. Ten random
# designs of 20 points on an axis-aligned and on a rotated bump (noise sd 0.005): how often is the rotated metric kept?
# (The package default, `penalty="auto"`, compares leave-one-out predictive densities instead in d <= 3 and
# uses BIC above; this cell asks for BIC to show the charge.)


# %%
def bump(x, angle):
    c, s = math.cos(angle), math.sin(angle)
    R = torch.tensor([[c, -s], [s, c]], dtype=dtype)
    z = (x - torch.tensor([0.62, 0.38], dtype=dtype)) @ R
    return torch.exp(-0.5 * ((z / torch.tensor([0.05, 0.4], dtype=dtype)) ** 2).sum(-1))


kept = {"axis-aligned": [], "rotated 34 deg": []}
for seed in range(N_SEEDS):
    g = torch.Generator().manual_seed(seed)
    Xb = torch.rand(20, 2, generator=g, dtype=dtype)
    for name, angle in (("axis-aligned", 0.0), ("rotated 34 deg", 0.6)):
        Yb = bump(Xb, angle) + 0.005 * torch.randn(20, generator=g, dtype=dtype)
        ch = fit_rotated_or_ard(Xb, Yb.unsqueeze(-1), seed=seed, num_restarts=RESTARTS, penalty="bic").surrogate_choice_
        kept[name].append((ch.chosen, ch.log_likelihood_rotated - ch.log_likelihood_ard))
print(f"BIC charge for n = 20, one extra coordinate: {0.5 * math.log(20):.2f} nats")
for name, rows in kept.items():
    gains = ", ".join(f"{gain:.1f}" for _, gain in rows)
    n_rot = sum(c == "rotated" for c, _ in rows)
    print(f"{name:15s}: rotated kept in {n_rot}/{len(rows)} designs; log-likelihood gains {gains}")

# %% [markdown]
# The rule is a statistical test, not an oracle: on these small, nearly noise-free designs the rotated fit gains
# more than the charge on some axis-aligned bumps too (the kept rotations were small, 2-7 degrees, in the designs
# we inspected: the Matern kernel's mismatch to a Gaussian bump is partly absorbed by a slight turn). The ARD side
# of the comparison is fitted from two starts (BoTorch's default and the rotated optimum's length-scales moved to
# the nearest axes) so that an ARD fit stuck in a worse local optimum does not hand the win to the rotation; when
# ARD wins, the model returned is BoTorch's default-start fit itself, so the loop takes the same steps as with ARD.
# What it costs or saves in a Bayesian-optimisation loop is measured in
# `benchmarks/results/bo_sod.md` (paired sign tests against ARD and BoTorch's default, d = 2, 3, 6).
