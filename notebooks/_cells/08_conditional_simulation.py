# %% [markdown]
# # 08 · Conditional simulation of the drill-hole bitumen field, and GSTools' `CondSRF`
#
# **The question.** A kriged (posterior-mean) map is the best single guess of the grade, but it is smoother than
# the real field: it cannot answer "how much ore lies above the cut-off grade, and how sure are we?". Mining and
# reservoir studies answer with *conditional realisations*: many equally likely fields that honour the drill holes
# and have the fitted spatial variability. Pointwise averages of the realisations give the E-type mean (it should
# match the kriged mean), their pointwise spread the uncertainty, and counting realisations above a cut-off the
# probability of ore.
#
# **How.** `gpytorch_so3.simulate` draws realisations by pathwise (Matheron) conditioning: a prior path built from
# random Fourier features of the rotated Matérn kernel (exact in distribution as the number of features grows),
# corrected by the kriging of its residuals at the data, $f(x) + k(x, X)(K + \sigma^2 I)^{-1}(y - f(X) - e)$. It
# streams any number of grid cells in blocks.
#
# **This notebook.**
# 1. Fits an SO(3) Matérn-5/2 GP to the bundled oil-sands drill holes (Bitumen) and reads its axes as azimuth/dip.
# 2. Draws conditional realisations on a regular 3-D grid over the data's box; E-type mean vs kriged mean, and
#    the realisations' spread vs the posterior standard deviation.
# 3. Maps the probability that Bitumen exceeds a cut-off grade, from the realisations and in closed form.
# 4. Runs GSTools' `CondSRF` with the exported covariance (`to_gstools`) on the same data and compares means,
#    spreads, exceedance probabilities, a multi-point statistic (the variance of a slice-average grade) and the
#    variograms of single realisations, with timings.
#
# **Runtime:** the full run shown here took 6 minutes with one thread on a shared 2-core machine that was running
# other benchmarks (load average about 4, so well under one core for this notebook; timings below are from that run:
# compare ratios, not absolute seconds); about 20 seconds with `SMOKE_TEST=1`, which fits on fewer samples,
# conditions on a random subset of 1,500 samples and uses a coarse grid.

# %%
import math
import os
import time

import gpytorch
import gstools as gs
import matplotlib.pyplot as plt
import numpy as np
import torch
from botorch.models import SingleTaskGP
from gpytorch.kernels import ScaleKernel
from IPython.display import Markdown, display

from gpytorch_so3 import SO3AnisotropicKernel
from gpytorch_so3.cli._models import IsotropicScaling, fit_model  # the command line's model code
from gpytorch_so3.datasets import load_oilsands
from gpytorch_so3.geo import AnisotropicCovariance, to_gstools
from gpytorch_so3.pathwise import regular_grid, simulate

SMOKE_TEST = os.environ.get("SMOKE_TEST")
N_FIT = 150 if SMOKE_TEST else 1000  # samples the hyper-parameters are fitted on (exact MAP)
RESTARTS = 1 if SMOKE_TEST else 4  # Haar restarts over rotations (plus the data-aligned start)
N_COND = 1500 if SMOKE_TEST else None  # samples the realisations are conditioned on (None: all 5,808)
GRID = (12, 20, 10) if SMOKE_TEST else (45, 81, 27)  # cells East x North x elevation
NUM_SIMS = 4 if SMOKE_TEST else 16  # realisations on the grid (ours and GSTools')
NUM_CHECK = 24 if SMOKE_TEST else 48  # realisations for the slice-average check
PER_CALL = 8  # realisations per simulate call (memory: see section 2)
PLAN_STEP = 2 if SMOKE_TEST else 3  # GSTools cells: every PLAN_STEP-th cell of the plan view (both axes) ...
NORTH_STEP = 2 if SMOKE_TEST else 4  # ... and every NORTH_STEP-th North cell of the section (all elevations)
CUTOFF = 10.0  # cut-off grade, Bitumen mass %
dtype = torch.float64
plt.rcParams["figure.dpi"] = 80

# %% [markdown]
# ## The data and the cut-off grade
#
# 5,808 bitumen grades (mass %, 3 m composites) from 280 vertical drill holes. Coordinates are metres (East,
# North, elevation). The cut-off is **10 mass %**: it lies between the median and the upper quartile of the samples
# (see the printout), so about 40% of the samples are above it: an exceedance map then has contrast
# everywhere between 0 and 1 instead of being almost all 0 or all 1, which makes the comparison between methods
# informative. Change `CUTOFF` to study another grade.

# %%
data = load_oilsands(target="Bitumen")
X_m, Y = data.coordinates.to(dtype), data.targets.to(dtype)
q = torch.quantile(Y[:, 0], torch.tensor([0.25, 0.5, 0.75], dtype=dtype))
print(f"{len(data)} samples from {data.n_holes} holes; Bitumen mean {Y.mean():.2f}, sd {Y.std():.2f} mass %")
print(
    f"quartiles {q[0]:.2f} / {q[1]:.2f} / {q[2]:.2f} mass %; "
    f"fraction above {CUTOFF:g}: {(Y > CUTOFF).double().mean():.2f}"
)

fig, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
ax.hist(Y[:, 0], bins=40, color="0.6")
ax.axvline(CUTOFF, color="C3", label=f"cut-off {CUTOFF:g}%")
for v, lab in zip(q, ("quartiles", None, None), strict=True):
    ax.axvline(v, color="k", ls=":", lw=1, label=lab)
ax.set_xlabel("Bitumen (mass %)")
ax.set_ylabel("samples")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 1 · Fit the SO(3) Matérn-5/2 GP, then condition on all samples
#
# The model is the one of notebook 05 and `gpytorch-so3 demo --data oilsands`: coordinates centred and divided by
# **one** factor (the largest side of the data box, `IsotropicScaling`; per-axis scaling would shear space), a
# BoTorch `SingleTaskGP` with `ScaleKernel(SO3AnisotropicKernel(nu=2.5))`, the default length-scale prior
# (`LogNormal(log 0.3, 1)` in scaled units) and the Haar (uniform) rotation prior, a constant mean, Gaussian noise
# and a `Standardize` outcome transform, fitted by `fit_map` (MAP with restarts over rotations).
#
# The MAP fit is exact (a Cholesky factorisation per objective evaluation), so its cost grows like $n^3$: on all
# 5,808 samples every L-BFGS step would factorise a 5,808 × 5,808 matrix, several minutes for the fit on this shared
# CPU (the 5-fold benchmark `benchmarks/results/oilsands_fit2000.md` fits on 2,000 samples per fold, about 2 minutes
# each with 8 restarts). Here the hyper-parameters are fitted on `N_FIT` = 1,000 random samples, and the fitted
# covariance is then **conditioned on all samples**: one factorisation.
#
# The conditioned model carries the fitted covariance over in data units (`AnisotropicCovariance.from_model`:
# length-scales via the coordinate scale, output-scale, noise and constant mean with the outcome standardisation
# undone), in a `SingleTaskGP` on all samples without an outcome transform. (`gpytorch_so3.cli._models.condition_on`
# would do this in standardised units, but BoTorch's `SingleTaskGP` refits a `Standardize` transform to the new
# targets, so its hyper-parameters would be reinterpreted in the new standard deviation.)

# %%
scaling = IsotropicScaling.from_data(X_m)
Xs = scaling(X_m)
perm = torch.randperm(len(Xs), generator=torch.Generator().manual_seed(0))
fit_idx = perm[:N_FIT]
cond_idx = perm[:N_COND].sort().values if N_COND else torch.arange(len(Xs))
t0 = time.perf_counter()
fitted = fit_model("so3", Xs[fit_idx], Y[fit_idx], nu=2.5, num_restarts=RESTARTS, seed=0)
fit_seconds = time.perf_counter() - t0
print(f"MAP fit on {len(fit_idx)} samples ({RESTARTS} Haar restarts + the data-aligned start): {fit_seconds:.0f} s")
cov = AnisotropicCovariance.from_model(fitted.model, coordinate_scale=scaling)  # data units: metres, mass %

# the fitted covariance conditioned on all samples (scaled inputs, targets in mass %)
kernel = ScaleKernel(SO3AnisotropicKernel(nu=2.5)).to(dtype)
kernel.base_kernel.lengthscale = (cov.lengthscale / scaling.scale).reshape(1, 3)
kernel.base_kernel.rotation = cov.rotation
kernel.outputscale = torch.tensor(cov.outputscale, dtype=dtype)
model = SingleTaskGP(Xs[cond_idx], Y[cond_idx], covar_module=kernel, outcome_transform=None)
model.likelihood.noise = torch.tensor(cov.noise, dtype=dtype)
model.mean_module.constant = torch.tensor(cov.mean, dtype=dtype)
model.eval()
X_cond, y_cond = X_m[cond_idx], Y[cond_idx, 0]
print(f"conditioned on {len(cond_idx)} samples")
print(cov.principal_directions(units="m"))
print(
    f"\nsill (output-scale) {cov.outputscale:.2f}, nugget (noise variance) {cov.noise:.2f} (mass %)², "
    f"constant mean {cov.mean:.2f} mass %"
)
minor = cov.principal_directions().axes[:, 2]
print(f"minor axis vs vertical: {math.degrees(math.acos(min(1.0, abs(float(minor[2]))))):.2f}°")

# %% [markdown]
# How to read it: the minor axis is (almost) vertical, with a length-scale of about ten metres, and the two long
# axes lie in the horizontal plane with length-scales of several hundred metres: the flat layering of the deposit.
# The azimuths of the two horizontal axes are the least certain part (their length-scales are close).
#
# ## 2 · Conditional realisations on a 3-D grid
#
# A regular grid over the data's box (`regular_grid`): with the full budget 45 × 81 × 27 = 98,415 cells, about 75 m
# apart horizontally and 5 m vertically (the vertical length-scale is about 12 m). `simulate` returns the *latent*
# grade (no nugget): the field a block model would hold.
#
# `simulate` is called for at most `PER_CALL` = 8 realisations at a time (different seeds per call, so fresh random
# features too): inside it, BoTorch's pathwise update (`gaussian_update`) solves with one broadcast copy of the
# $n \times n$ Cholesky factor per realisation, 270 MB each for $n$ = 5,808, so 100 realisations in one call would
# ask for 27 GB.
#
# The **kriged mean** and **posterior standard deviation** are computed here independently of the library, from
# the exported covariance in metres (`cov.covariance`) with a plain Cholesky factorisation of $K + \sigma^2 I$ on the
# conditioning data; a spot check against the model's own `posterior` follows. The posterior variance costs
# $O(n^2)$ per cell ($n$ = 5,808), about $3 \cdot 10^{12}$ operations on the whole grid, so both are computed on the
# two slices shown (a plan view at mid elevation and a North-elevation section at mid East; 3,645 + 2,187 cells).

# %%
lo, hi = X_m.min(0).values, X_m.max(0).values
nx, ny, nz = GRID
grid = regular_grid(torch.stack([lo, hi]), GRID)  # metres, C order: grid.reshape(nx, ny, nz, 3)


def draw(points, num, seed):
    """``num`` realisations (mass %) at ``points`` (metres), in calls of at most ``PER_CALL`` realisations."""
    calls = range(0, num, PER_CALL)
    return torch.cat([simulate(model, scaling(points), min(PER_CALL, num - i), seed=seed + i) for i in calls])


t0 = time.perf_counter()
sims = draw(grid, NUM_SIMS, seed=0)  # NUM_SIMS x cells
sim_seconds = time.perf_counter() - t0
sims = sims.reshape(NUM_SIMS, nx, ny, nz)
print(f"simulate: {NUM_SIMS} realisations x {grid.shape[0]:,} cells in {sim_seconds:.1f} s")

# exact kriging with the exported covariance (metres, mass %)
K = cov.covariance(X_cond, X_cond)
K.diagonal().add_(cov.noise)
L = torch.linalg.cholesky(K)
alpha = torch.cholesky_solve((y_cond - cov.mean).unsqueeze(-1), L).squeeze(-1)


def kriged_mean(pts, chunk=4096):
    return torch.cat([cov.covariance(p, X_cond) @ alpha + cov.mean for p in pts.split(chunk)])


def kriged_sd(pts, chunk=2048):
    out = []
    for p in pts.split(chunk):
        V = torch.linalg.solve_triangular(L, cov.covariance(X_cond, p), upper=False)
        out.append((cov.outputscale - V.pow(2).sum(0)).clamp_min(0).sqrt())
    return torch.cat(out)


G = grid.reshape(nx, ny, nz, 3)
kz, ix = nz // 2, nx // 2  # plan view at mid elevation, section at mid East
plan_pts, sec_pts = G[:, :, kz].reshape(-1, 3), G[ix].reshape(-1, 3)
t0 = time.perf_counter()
m_plan, m_sec = kriged_mean(plan_pts).reshape(nx, ny), kriged_mean(sec_pts).reshape(ny, nz)
sd_plan, sd_sec = kriged_sd(plan_pts).reshape(nx, ny), kriged_sd(sec_pts).reshape(ny, nz)
print(f"kriged mean and sd on the two slices: {time.perf_counter() - t0:.1f} s")

# spot check: the model's own posterior (exact Cholesky: raise gpytorch's CG threshold above n)
spot = grid[torch.randperm(len(grid), generator=torch.Generator().manual_seed(1))[:300]]
with torch.no_grad(), gpytorch.settings.max_cholesky_size(10**5):
    post = model.posterior(scaling(spot))
print(
    "model.posterior vs the hand-written kriging at 300 random cells: max |mean diff| "
    f"{(post.mean.squeeze(-1) - kriged_mean(spot)).abs().max():.1e}, max |sd diff| "
    f"{(post.variance.squeeze(-1).sqrt() - kriged_sd(spot)).abs().max():.1e} mass %"
)

# %% [markdown]
# ### Slices of three realisations and the kriged mean
#
# Top: plan view at the middle elevation (white dots: samples within 2.5 m of it). Bottom: the North-elevation
# section at the middle East coordinate (vertically exaggerated; white dots: samples within 40 m of it).
# The realisations agree with each other and with the kriged mean at the drill holes and differ between them;
# each has the short-range variability the kriged mean smooths away.

# %%
E_ax, N_ax, Z_ax = (torch.linspace(float(lo[i]), float(hi[i]), n) for i, n in enumerate(GRID))
z_slice, e_slice = float(Z_ax[kz]), float(E_ax[ix])
near_plan = (X_m[:, 2] - z_slice).abs() < 2.5
near_sec = (X_m[:, 0] - e_slice).abs() < 40.0
EXT_PLAN = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))
EXT_SEC = (float(lo[1]), float(hi[1]), float(lo[2]), float(hi[2]))


def show_plan(ax, arr, title, points=True, **kw):
    im = ax.imshow(np.asarray(arr).T, origin="lower", extent=EXT_PLAN, **kw)
    if points:
        ax.scatter(X_m[near_plan, 0], X_m[near_plan, 1], s=4, c="w", lw=0)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("East (m)", fontsize=8)
    ax.set_ylabel("North (m)", fontsize=8)
    return im


def show_sec(ax, arr, title, points=True, **kw):
    im = ax.imshow(np.asarray(arr).T, origin="lower", extent=EXT_SEC, aspect="auto", **kw)
    if points:
        ax.scatter(X_m[near_sec, 1], X_m[near_sec, 2], s=3, c="w", lw=0)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("North (m)", fontsize=8)
    ax.set_ylabel("elevation (m)", fontsize=8)
    return im


grade = {"vmin": 0.0, "vmax": 18.0, "cmap": "viridis"}
fig, axes = plt.subplots(2, 4, figsize=(14, 8), layout="constrained", height_ratios=[1.6, 1])
for c in range(3):
    show_plan(axes[0, c], sims[c, :, :, kz], f"realisation {c + 1}: elevation {z_slice:.0f} m", **grade)
    show_sec(axes[1, c], sims[c, ix], f"realisation {c + 1}: East {e_slice:.0f} m", **grade)
show_plan(axes[0, 3], m_plan, "kriged mean", **grade)
im = show_sec(axes[1, 3], m_sec, "kriged mean", **grade)
fig.colorbar(im, ax=axes, shrink=0.6, label="Bitumen (mass %)")
plt.show()

# %% [markdown]
# ### E-type mean vs kriged mean, and the spread of the realisations vs the posterior standard deviation
#
# The E-type mean (the pointwise mean of the realisations) estimates the posterior mean with a Monte-Carlo error
# of $\mathrm{sd}/\sqrt{K}$ for $K$ realisations: with 16 that is a quarter of the posterior standard deviation, so
# the difference map should look like structured noise, largest between holes and near zero at them. The check
# is the standardised difference $(\bar f - m) / (\mathrm{sd}/\sqrt K)$, whose mean should be near 0 and its
# standard deviation near 1. Likewise the pointwise sd of $K$ realisations has a relative sampling error of about
# $1/\sqrt{2(K-1)}$ (18% for 16).

# %%
sims_plan, sims_sec = sims[:, :, :, kz], sims[:, ix]  # K x nx x ny, K x ny x nz
etype_plan, etype_sec = sims_plan.mean(0), sims_sec.mean(0)
sdmc_plan, sdmc_sec = sims_plan.std(0), sims_sec.std(0)
diff_plan, diff_sec = etype_plan - m_plan, etype_sec - m_sec
diff = torch.cat([diff_plan.flatten(), diff_sec.flatten()])
print(
    f"E-type - kriged mean on the two slices ({diff.numel():,} cells): mean {diff.mean():+.3f}, "
    f"mean |.| {diff.abs().mean():.3f}, max |.| {diff.abs().max():.2f} mass %"
)
z_std = diff / (torch.cat([sd_plan.flatten(), sd_sec.flatten()]) / NUM_SIMS**0.5)
ratio = torch.cat([(sdmc_plan / sd_plan).flatten(), (sdmc_sec / sd_sec).flatten()])
print(f"standardised difference: mean {z_std.mean():+.2f}, sd {z_std.std():.2f} (expected 0, 1)")
print(
    f"realisations' sd / posterior sd: median {ratio.median():.3f}, mean {ratio.mean():.3f}, "
    f"5-95% {ratio.quantile(0.05):.2f}-{ratio.quantile(0.95):.2f} "
    f"(expected 1, 90% of cells within +- {1.645 / math.sqrt(2 * (NUM_SIMS - 1)):.2f})"
)

fig, axes = plt.subplots(2, 4, figsize=(14, 8), layout="constrained", height_ratios=[1.6, 1])
dmax = float(diff.abs().max())
show_plan(axes[0, 0], etype_plan, f"E-type mean of {NUM_SIMS}", **grade)
show_plan(axes[0, 1], m_plan, "kriged mean", **grade)
show_plan(axes[0, 2], diff_plan, "E-type - kriged", cmap="RdBu_r", vmin=-dmax, vmax=dmax)
show_sec(axes[1, 0], etype_sec, f"E-type mean of {NUM_SIMS}", **grade)
show_sec(axes[1, 1], m_sec, "kriged mean", **grade)
imd = show_sec(axes[1, 2], diff_sec, "E-type - kriged", cmap="RdBu_r", vmin=-dmax, vmax=dmax)
smax = float(max(sdmc_plan.max(), sd_plan.max()))
show_plan(axes[0, 3], sdmc_plan, "sd of the realisations", cmap="magma", vmin=0, vmax=smax)
ax = axes[1, 3]
ax.scatter(sd_plan.flatten(), sdmc_plan.flatten(), s=2, alpha=0.3, label="plan view")
ax.scatter(sd_sec.flatten(), sdmc_sec.flatten(), s=2, alpha=0.3, label="section")
ax.plot([0, smax], [0, smax], "k--", lw=1)
ax.set_xlabel("posterior sd (mass %)", fontsize=8)
ax.set_ylabel("sd of the realisations", fontsize=8)
ax.legend(fontsize=7, markerscale=4)
fig.colorbar(imd, ax=axes[:, 2], shrink=0.6, label="difference (mass %)")
plt.show()

# %% [markdown]
# ## 3 · Probability of exceeding the cut-off
#
# From the realisations: the fraction of realisations above the cut-off in each cell. In closed form: the posterior
# of the latent grade at a cell is Gaussian, $N(m, s^2)$, so $P(f > c) = 1 - \Phi((c - m)/s)$. The realisations are
# draws from (a random-feature approximation of) that same Gaussian, so the two agree up to Monte-Carlo error: a
# frequency of $K$ Bernoulli draws has standard error $\sqrt{p(1-p)/K} \le 0.125$ for $K = 16$, and takes only the
# values $0, 1/16, \dots, 1$. Both refer to the latent grade (no nugget); the probability that a *sample* exceeds
# the cut-off would use $s^2 + \sigma^2$.

# %%
normal = torch.distributions.Normal(0.0, 1.0)


def p_closed(m, s):
    return 1 - normal.cdf((CUTOFF - m) / s.clamp_min(1e-9))


p_mc_plan, p_cf_plan = (sims_plan > CUTOFF).double().mean(0), p_closed(m_plan, sd_plan)
p_mc_sec, p_cf_sec = (sims_sec > CUTOFF).double().mean(0), p_closed(m_sec, sd_sec)
dp = torch.cat([(p_mc_plan - p_cf_plan).flatten(), (p_mc_sec - p_cf_sec).flatten()])
se = torch.cat([p_cf_plan.flatten(), p_cf_sec.flatten()])
se = (se * (1 - se) / NUM_SIMS).sqrt()
print(
    f"P(Bitumen > {CUTOFF:g}%), realisations - closed form, on the two slices: mean {dp.mean():+.3f}, "
    f"mean |.| {dp.abs().mean():.3f}, max |.| {dp.abs().max():.3f}"
)
print(
    f"cells within 2 binomial standard errors: {(dp.abs() <= 2 * se + 1e-12).double().mean():.1%} "
    "(about 95% expected, more with the discreteness)"
)
print(
    f"expected ore fraction on the plan slice: closed form {p_cf_plan.mean():.3f}, realisations {p_mc_plan.mean():.3f}"
)

fig, axes = plt.subplots(1, 3, figsize=(13, 5.2), layout="constrained")
prob = {"vmin": 0, "vmax": 1, "cmap": "cividis"}
show_plan(axes[0], p_mc_plan, f"P(> {CUTOFF:g}%) from {NUM_SIMS} realisations", **prob)
im = show_plan(axes[1], p_cf_plan, "P(> cut-off), closed form 1 - Φ((c - m)/s)", **prob)
fig.colorbar(im, ax=axes[:2], shrink=0.7, label="probability")
im = show_plan(axes[2], p_mc_plan - p_cf_plan, "difference", cmap="RdBu_r", vmin=-0.5, vmax=0.5)
fig.colorbar(im, ax=axes[2], shrink=0.7)
plt.show()

# %% [markdown]
# ## 4 · GSTools' `CondSRF` with the exported covariance
#
# `to_gstools` turns the fitted model into a GSTools `Matern(nu=2.5)` in metres: `len_scale` along the longest
# axis (GSTools' Matérn length is ours divided by $\sqrt 2$), `anis` the two ratios, `angles` the rotation in GSTools'
# convention ($R = R_x(\gamma) R_y(\beta) R_z(\alpha)$, columns the main axes; see `gpytorch_so3.geo` and the checked
# notes), `var` the output-scale and `nugget` the noise.
#
# One adjustment is needed for a like-for-like comparison. `CondSRF` adds white noise of variance `nugget` to
# every realisation (it simulates *observations*), while `simulate` returns the latent field. So the nugget is set
# to 0 in the model and the fitted noise is passed to simple kriging as the measurement error (`cond_err`, with
# `exact=False`): the kriging system is then $K + \sigma^2 I$, exactly the GP's, and the kriging variance the latent
# posterior variance. Simple kriging with the fitted constant mean is the GP posterior mean; `pseudo_inv=False`
# solves the system instead of forming a pseudo-inverse (an SVD), which is exact here and faster.
#
# **Cost.** GSTools' kriging evaluates the kriging variance with a double loop over the data for every target
# point, $O(n^2)$ per point: about 0.1 s per point with $n$ = 5,808 on this shared machine (see the timing table),
# hours for the 98,415 cells. So GSTools runs on a subset of the same grid: every 3rd cell of the plan view
# along both axes and every 4th North cell of the section (all elevations), 405 + 567 = 972 cells. The ratio of
# the per-cell costs in the timing table is the fair comparison.

# %%
gs_model = to_gstools(fitted.model, coordinate_scale=scaling)
print("exported:", gs_model)
noise = float(gs_model.nugget)
gs_model.nugget = 0.0
plan_idx = (slice(None, None, PLAN_STEP), slice(None, None, PLAN_STEP))
sec_idx = slice(None, None, NORTH_STEP)
pc = G[plan_idx[0], plan_idx[1], kz]  # plan subset, (nx', ny', 3)
sc = G[ix, sec_idx]  # section subset, (ny'', nz, 3)
gs_pts = torch.cat([pc.reshape(-1, 3), sc.reshape(-1, 3)])
n_pc = pc.shape[0] * pc.shape[1]
print(f"GSTools cells: {n_pc} (plan) + {sc.shape[0] * sc.shape[1]} (section) = {len(gs_pts)}")

t0 = time.perf_counter()
krige = gs.krige.Simple(
    gs_model, X_cond.T.numpy(), y_cond.numpy(), mean=cov.mean, exact=False, cond_err=noise, pseudo_inv=False
)
srf = gs.CondSRF(krige)  # generator: GSTools' randomisation method, 1,000 modes (its default)
gs_setup = time.perf_counter() - t0
gs_sims = np.empty((NUM_SIMS, len(gs_pts)))
t0 = time.perf_counter()
gs_sims[0] = srf(gs_pts.T.numpy(), seed=1000, chunk_size=256)  # the first call also kriges the points
gs_first = time.perf_counter() - t0
t0 = time.perf_counter()
for r in range(1, NUM_SIMS):
    gs_sims[r] = srf(seed=1000 + r)  # same points: the kriged mean and variance are reused
gs_rest = (time.perf_counter() - t0) / max(NUM_SIMS - 1, 1)
gs_mean, gs_var = np.asarray(krige.field), np.asarray(krige.krige_var)

# the same cells in our realisations, kriged mean and posterior sd
ours = torch.cat(
    [sims[:, plan_idx[0], plan_idx[1], kz].reshape(NUM_SIMS, -1), sims[:, ix, sec_idx].reshape(NUM_SIMS, -1)], 1
)
m_ref = torch.cat([m_plan[plan_idx].flatten(), m_sec[sec_idx].flatten()])
s_ref = torch.cat([sd_plan[plan_idx].flatten(), sd_sec[sec_idx].flatten()])
print(
    f"GSTools simple kriging vs ours: max |mean diff| {np.abs(gs_mean - m_ref.numpy()).max():.1e}, "
    f"max |sd diff| {np.abs(np.sqrt(gs_var) - s_ref.numpy()).max():.1e} mass % (the export is exact)"
)

# %% [markdown]
# The kriged means and standard deviations of GSTools and of our hand-written kriging agree to rounding, which
# checks the exported length-scales, angles and units. Now the realisations, on the same cells. Pointwise
# statistics (E-type mean, spread, exceedance probability) only involve the marginal distribution at each cell.

# %%
p_ref = p_closed(m_ref, s_ref)


def pointwise_stats(s):
    """Pointwise statistics of realisations ``s`` (K x cells) against the exact posterior on the GSTools cells."""
    z = (s.mean(0) - m_ref) / (s_ref / NUM_SIMS**0.5)
    dp = (s > CUTOFF).double().mean(0) - p_ref
    return [
        (s.mean(0) - m_ref).abs().mean(),
        z.mean(),
        z.std(),
        (s.std(0) / s_ref).median(),
        dp.abs().mean(),
        dp.abs().max(),
    ]


expected = [
    f"{0.8 * (s_ref / NUM_SIMS**0.5).mean():.3f}",
    "≈ 0",
    "≈ 1",
    f"1 ± {1 / math.sqrt(2 * (NUM_SIMS - 1)):.2f}",
    f"≤ {math.sqrt(0.25 / NUM_SIMS):.3f} (s.e.)",
    "",
]
names = [
    "mean \\|E-type − kriged mean\\| (mass %)",
    "mean of (E-type − kriged) / (sd/√K)",
    "sd of (E-type − kriged) / (sd/√K)",
    "median of sd of realisations / posterior sd",
    f"mean \\|P(> {CUTOFF:g}%) − closed form\\|",
    f"max \\|P(> {CUTOFF:g}%) − closed form\\|",
]
stats_ours, stats_gs = pointwise_stats(ours), pointwise_stats(torch.as_tensor(gs_sims))
rows = ["| statistic on the GSTools cells | `simulate` | GSTools `CondSRF` | expected |", "| --- | --- | --- | --- |"]
for name, a, b, e in zip(names, stats_ours, stats_gs, expected, strict=True):
    rows.append(f"| {name} | {float(a):.3f} | {float(b):.3f} | {e} |")
display(Markdown("\n".join(rows)))

# %% [markdown]
# On pointwise statistics the two methods agree with each other and with the closed forms, up to Monte-Carlo
# error (the "Monte-Carlo scale" column: $0.8\,\mathrm{sd}/\sqrt K$ is the expected absolute error of a mean of $K$
# Gaussian draws).
#
# ### A multi-point statistic: the variance of a slice-average grade
#
# Reserves are sums over many cells, so what matters next is the *joint* distribution of the cells. GSTools'
# `CondSRF` (version 1.7, `gstools/field/cond_srf.py`) builds a realisation as the kriged mean plus an
# *unconditional* field rescaled cell by cell to the kriging standard deviation,
# $m(x) + \frac{s(x)}{\sigma_0}\, u(x)$. That has the right mean and variance at every cell but not the right
# covariance between cells: the posterior covariance is $C(x, x') - k(x)^\top (K + \sigma^2 I)^{-1} k(x')$, not
# $\frac{s(x) s(x')}{\sigma_0^2} C(x, x')$. Pathwise conditioning draws from the posterior covariance itself.
#
# The check: the average grade over the plan-view cells, a linear functional of the field, has exactly the
# variance $\frac{1}{N^2} \mathbf 1^\top \Sigma_{\text{post}} \mathbf 1$. Its sample variance over `NUM_CHECK`
# realisations has a relative standard error of $\sqrt{2/(R-1)}$ (21% for 48). The value implied by `CondSRF`'s
# recipe, $\frac{1}{N^2 \sigma_0^2} \sum_{x, x'} s(x) s(x') C(x, x')$, is printed as well: it shows that GSTools'
# realisations do what its recipe says, and that the gap is the recipe's, not a sampling accident.

# %%
Kpp = cov.covariance(pc.reshape(-1, 3), pc.reshape(-1, 3))
V = torch.linalg.solve_triangular(L, cov.covariance(X_cond, pc.reshape(-1, 3)), upper=False)
var_exact = float((Kpp - V.T @ V).mean())
s_pc = sd_plan[plan_idx].flatten()
var_condsrf = float((s_pc[:, None] * Kpp * s_pc[None, :]).mean() / cov.outputscale)  # what CondSRF's recipe implies
t0 = time.perf_counter()
ours_chk = draw(pc.reshape(-1, 3), NUM_CHECK, seed=1000)
ours_chk_seconds = time.perf_counter() - t0
gs_chk = np.empty((NUM_CHECK, n_pc))
t0 = time.perf_counter()
for r in range(NUM_CHECK):
    gs_chk[r] = srf(seed=5000 + r)[:n_pc]
gs_chk_seconds = time.perf_counter() - t0
rel_se = math.sqrt(2 / (NUM_CHECK - 1))
v_ours = float(ours_chk.mean(1).var())
v_gs = float(gs_chk.mean(1).var(ddof=1))
print(f"variance of the plan-slice average grade ({n_pc} cells), (mass %)²:")
for label, v, note in (
    ("exact (posterior covariance)", var_exact, ""),
    (f"simulate, {NUM_CHECK} realisations", v_ours, f"ratio {v_ours / var_exact:.2f} +- {rel_se:.2f}"),
    (f"GSTools CondSRF, {NUM_CHECK} realisations", v_gs, f"ratio {v_gs / var_exact:.2f} +- {rel_se:.2f}"),
    ("implied by CondSRF's recipe", var_condsrf, "s(x) s(x') C(x, x') / sill, averaged"),
):
    print(f"  {label:<34} {v:8.4f}  {note}")
print(f"  time: simulate {ours_chk_seconds:.1f} s, CondSRF {gs_chk_seconds:.1f} s (kriging reused)")

# %% [markdown]
# ### Variograms of the realisations
#
# Experimental variograms along the grid axes (GSTools' `vario_estimate_axis`: East and North on the plan view,
# vertical on the section; half the extent at most), against the model's latent variogram
# $\gamma(h) = \sigma_0^2 (1 - \rho(h e))$ along the same directions (from the fitted covariance; the minor axis is
# within a fraction of a degree of the vertical, the horizontal axes are turned from East/North by the azimuths
# printed above). Lines: one realisation (ours also on the whole 3-D grid, all elevations or all columns pooled).
# Markers: the mean of the experimental variograms of all realisations on the GSTools cells, which removes most of
# the realisation-to-realisation scatter (one slice through a field whose horizontal range is a third of the box
# fluctuates a lot). Dashed: the kriged mean on the same slice, far below the model: it is too smooth, which is
# why realisations are needed.

# %%
dx, dy, dz = ((hi - lo) / (torch.tensor(GRID, dtype=dtype) - 1)).tolist()


def model_vario(h, axis):
    e = torch.zeros(len(h), 3, dtype=dtype)
    e[:, axis] = h
    return cov.outputscale - cov.covariance(torch.zeros(1, 3, dtype=dtype), e)[0]


def axis_vario(field, direction):
    """Experimental semivariance of a 2-D/3-D array along one array axis, up to half its length."""
    g = gs.vario_estimate_axis(np.ascontiguousarray(np.asarray(field)), direction=direction)
    return g[: (len(g) + 1) // 2]


ours_plan_c = sims_plan[:, plan_idx[0], plan_idx[1]].numpy()  # K x nx' x ny'
ours_sec_c = sims_sec[:, sec_idx].numpy()  # K x ny'' x nz
gs_plan_c = gs_sims[:, :n_pc].reshape(NUM_SIMS, pc.shape[0], pc.shape[1])
gs_sec_c = gs_sims[:, n_pc:].reshape(NUM_SIMS, sc.shape[0], sc.shape[1])
panels = (  # name, axis, 3-D direction, slice direction, grid spacing, cell spacing, our cells, GSTools cells, kriged
    ("East", 0, "x", "x", dx, PLAN_STEP * dx, ours_plan_c, gs_plan_c, m_plan),
    ("North", 1, "y", "y", dy, PLAN_STEP * dy, ours_plan_c, gs_plan_c, m_plan),
    ("vertical", 2, "z", "y", dz, dz, ours_sec_c, gs_sec_c, m_sec),
)
fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), layout="constrained")
for ax, (name, axis, d3, d2, step, cstep, ours_c, gs_c, m_slice) in zip(axes, panels, strict=True):
    g = axis_vario(sims[0].numpy(), d3)
    ax.plot(np.arange(len(g)) * step, g, "C0-", lw=1.5, label="simulate, 1 realisation, 3-D grid")
    for cells, color, mark, who in ((ours_c, "C0", "o", "simulate"), (gs_c, "C1", "s", "GSTools CondSRF")):
        gv = np.stack([axis_vario(f, d2) for f in cells])
        hc = np.arange(gv.shape[1]) * cstep
        ax.plot(hc, gv[0], color=color, lw=1, alpha=0.6, label=f"{who}, 1 realisation, GSTools cells")
        ax.plot(hc, gv.mean(0), color=color, marker=mark, ls="none", ms=5, label=f"{who}, mean of {NUM_SIMS}")
    g = axis_vario(m_slice.numpy(), d2)
    ax.plot(np.arange(len(g)) * step, g, "k--", lw=1, label="kriged mean (slice)")
    hh = torch.linspace(0, float(hc[-1]), 100, dtype=dtype)
    ax.plot(hh, model_vario(hh, axis), "k-", lw=2.5, alpha=0.4, label="model (latent)")
    ax.set_xlabel(f"lag along {name} (m)")
    ax.set_ylabel("semivariance (mass %)²")
    ax.set_title(name, fontsize=10)
axes[0].legend(fontsize=7)
plt.show()

# %% [markdown]
# How to read it: on one slice the variogram is dominated by the structure the data impose (the dashed kriged
# mean has the same bumps), and one realisation scatters a lot around the model: the horizontal range is a third of
# the box. Averaged over the realisations (markers), our fields and `CondSRF`'s have similar variograms, GSTools'
# a little lower at most horizontal lags: a two-point statistic of two-point-correct marginals barely separates the
# methods, the slice-average variance above does. Vertically *both* methods and even the kriged mean exceed the
# model's sill: the grade has a vertical trend (a rich layer at about 210-240 m, lean above and below; see the
# section plots) that a stationary model with a constant mean does not describe, so the data impose it on every
# conditional field. That is a property of the data and the model, not of the simulation.

# %% [markdown]
# ### Timings
#
# Wall-clock seconds of this run, single thread, on a shared 2-core machine that was running other benchmarks
# (absolute numbers are noisy; the ratios are the point). "Per cell-realisation" divides by cells × realisations.

# %%
n_grid, n_gs = grid.shape[0], len(gs_pts)
gs_total = gs_setup + gs_first + gs_rest * (NUM_SIMS - 1)
timing = [
    "| step | cells | realisations | seconds | µs per cell-realisation |",
    "| --- | --- | --- | --- | --- |",
    f"| `simulate`, whole grid ({-(-NUM_SIMS // PER_CALL)} calls, each factorising the {len(cond_idx)} data) | "
    f"{n_grid:,} | {NUM_SIMS} | "
    f"{sim_seconds:.1f} | {1e6 * sim_seconds / (n_grid * NUM_SIMS):.1f} |",
    f"| `simulate`, plan-view cells (slice-average check, {-(-NUM_CHECK // PER_CALL)} calls) | {n_pc} | "
    f"{NUM_CHECK} | {ours_chk_seconds:.1f} | "
    f"{1e6 * ours_chk_seconds / (n_pc * NUM_CHECK):.1f} |",
    f"| GSTools: kriging system (`Simple(pseudo_inv=False)`) | | | {gs_setup:.1f} | |",
    f"| GSTools: first `CondSRF` call (kriging of the cells + 1 field) | {n_gs} | 1 | {gs_first:.1f} | "
    f"{1e6 * gs_first / n_gs:.0f} |",
    f"| GSTools: each further `CondSRF` call (kriging reused) | {n_gs} | 1 | {gs_rest:.2f} | "
    f"{1e6 * gs_rest / n_gs:.0f} |",
    f"| GSTools total, {NUM_SIMS} realisations | {n_gs} | {NUM_SIMS} | {gs_total:.1f} | "
    f"{1e6 * gs_total / (n_gs * NUM_SIMS):.0f} |",
]
display(Markdown("\n".join(timing)))
print(
    f"per cell-realisation, GSTools ({NUM_SIMS} realisations incl. setup) / simulate (whole grid): "
    f"{(gs_total / (n_gs * NUM_SIMS)) / (sim_seconds / (n_grid * NUM_SIMS)):.0f}x"
)

# %% [markdown]
# ## Conclusion

# %%
pdir = cov.principal_directions()
summary = [
    f"* **Model**: SO(3) Matérn-5/2 fitted by MAP on {len(fit_idx)} samples in {fit_seconds:.0f} s, conditioned "
    f"on {len(cond_idx)}; minor axis {float(pdir.lengthscale[2]):.1f} m, dip {float(pdir.dip[2]):.1f}°; horizontal "
    f"length-scales {float(pdir.lengthscale[0]):.0f} m (azimuth {float(pdir.azimuth[0]):.0f}°) and "
    f"{float(pdir.lengthscale[1]):.0f} m (azimuth {float(pdir.azimuth[1]):.0f}°).",
    f"* **Realisations**: {NUM_SIMS} on {n_grid:,} cells in {sim_seconds:.0f} s. E-type − kriged mean: mean "
    f"\\|.\\| {diff.abs().mean():.2f} mass % on the two slices, standardised sd {z_std.std():.2f} (expected 1); "
    f"realisations' sd / posterior sd median {ratio.median():.2f}.",
    f"* **P(Bitumen > {CUTOFF:g}%)**: realisations vs closed form, mean \\|diff\\| {dp.abs().mean():.3f}, max "
    f"{dp.abs().max():.3f} (binomial standard error ≤ {math.sqrt(0.25 / NUM_SIMS):.3f}).",
    f"* **GSTools `CondSRF`** with the exported model: kriging identical to ours (max diff "
    f"{np.abs(gs_mean - m_ref.numpy()).max():.0e}); pointwise statistics agree; variance of the plan-slice "
    f"average: exact {var_exact:.4f}, simulate {v_ours:.4f} ({v_ours / var_exact:.2f}x), CondSRF {v_gs:.4f} "
    f"({v_gs / var_exact:.2f}x), ± {rel_se:.2f} relative.",
    f"* **Time per cell-realisation**: simulate {1e6 * sim_seconds / (n_grid * NUM_SIMS):.1f} µs on the whole grid, "
    f"GSTools {1e6 * gs_total / (n_gs * NUM_SIMS):.0f} µs on {n_gs} cells (its kriging variance is O(n²) per cell).",
]
display(Markdown("\n".join(summary)))

# %% [markdown]
# **Take-aways.** `simulate` draws conditional realisations of the fitted rotated field on a 10⁵-cell grid in about
# a minute, conditioned on all 5,808 samples. Their E-type mean, pointwise spread and exceedance probabilities match
# the exact Gaussian posterior to within Monte-Carlo error, and so do those of GSTools' `CondSRF` run with the
# exported covariance (whose kriging reproduces ours to rounding). The two differ where the joint distribution of
# the cells matters: the variance of an average grade over a slice (what a reserve estimate needs) is reproduced by
# pathwise conditioning within its sampling error, while `CondSRF`'s kriging-plus-rescaled-noise recipe inflates it
# several-fold. Per cell and realisation GSTools was two orders of magnitude slower here, because its kriging
# variance costs $O(n^2)$ per cell with all 5,808 data in the system (a moving search neighbourhood, the usual
# remedy in geostatistics, is not part of GSTools' `Krige`).
