# %% [markdown]
# # 03 · Fully Bayesian inference with NUTS: symmetries, canonical summaries, diagnostics
#
# **Why sample instead of optimise?** With a hundred points, a MAP fit (notebooks 01 and 02) gives one ellipsoid,
# but the data support a whole family of them. Sampling the hyperparameters with the No-U-Turn Sampler (NUTS) gives
# their posterior: how well each principal direction and length-scale is determined, and predictions that average
# over that uncertainty. `SO3FullyBayesianGP` is a BoTorch model whose hyperparameters (output-scale, noise, mean,
# three length-scales, rotation) are sampled by Pyro's NUTS through `fit_nuts`; its `posterior` is a mixture over
# the samples, exactly like BoTorch's own fully Bayesian models.
#
# **What this notebook shows.**
# 1. The kernel's **symmetries**: 24 relabellings of the axes give the same kernel, so raw samples of
#    length-scales and rotations are not interpretable (and chains may sit in different labellings).
# 2. **Canonicalisation** removes that symmetry; `summarize_posterior` reports canonical length-scales and
#    directions with R-hat and effective sample sizes.
# 3. **Diagnostics**: trace and rank plots per chain.
# 4. The **stereonet** of the principal axes: orientation uncertainty at a glance.
# 5. **Weak identifiability**: when two length-scales are equal, the directions in their plane are not determined
#    by the data, and the summary says so.
#
# **Runtime:** the full run shown here took 3.5 minutes on a shared 2-core machine (two fits on 100 points: 2 chains ×
# (200 warm-up + 200 draws), then 2 × (150 + 150); a moderate budget, BoTorch's default is 512 + 256 per chain);
# under a minute with `SMOKE_TEST=1` (tiny budgets: the diagnostics will then rightly report that the chains have
# not converged).

# %%
import os

import matplotlib.pyplot as plt
import torch
from botorch.models.transforms import Standardize

from gpytorch_so3 import so3
from gpytorch_so3.datasets import make_rotated_field
from gpytorch_so3.fully_bayesian import SO3FullyBayesianGP
from gpytorch_so3.nuts import fit_nuts
from gpytorch_so3.plot import (
    plot_lengthscale_posterior,
    plot_predictions,
    plot_stereonet,
    plot_traces,
)
from gpytorch_so3.summary import summarize_posterior

SMOKE_TEST = os.environ.get("SMOKE_TEST")
N_TRAIN = 30 if SMOKE_TEST else 100
N_TEST = 30 if SMOKE_TEST else 200
WARMUP = 16 if SMOKE_TEST else 200
SAMPLES = 16 if SMOKE_TEST else 200
CHAINS = 2
TREE_DEPTH = 3 if SMOKE_TEST else 6  # NUTS makes at most 2**depth - 1 leapfrog steps per draw (6: BoTorch's default)
plt.rcParams["figure.dpi"] = 80

# %% [markdown]
# ## Data and fit
#
# A rotated Matérn-5/2 field (length-scales 0.15, 0.4, 1.0 in the unit cube, a random rotation) observed at 100
# points. The model standardises the outcome (its priors assume that, like BoTorch's). `fit_nuts` runs the chains
# in parallel worker processes (one per core), each from its own random (Haar-uniform) initial rotation, and loads
# every `thinning`-th draw into the model for prediction; all draws are kept in `model.fit_nuts_info_` for
# diagnostics.

# %%
field = make_rotated_field(n_train=N_TRAIN, n_test=N_TEST, seed=1)
model = SO3FullyBayesianGP(field.train_X, field.train_Y, nu=2.5, outcome_transform=Standardize(m=1))
fit_nuts(
    model,
    warmup_steps=WARMUP,
    num_samples=SAMPLES,
    num_chains=CHAINS,
    thinning=4,
    seed=0,
    max_tree_depth=TREE_DEPTH,
    disable_progbar=True,
)
info = model.fit_nuts_info_
print(
    f"{info.num_chains} chains, {info.num_samples} draws each, {info.num_divergences} divergent transitions, "
    f"{info.elapsed:.0f} s; {model.num_mcmc_samples} samples loaded for prediction"
)

# %% [markdown]
# ## 1 · The symmetries: why raw samples mislead
#
# The metric $M = R\,\mathrm{diag}(l)^{-2} R^\top$ does not change if we permute the columns of $R$ together with
# the entries of $l$, or flip the signs of two columns (keeping $R$ a rotation): 6 permutations × 4 sign patterns
# = **24 equivalent $(l, R)$ pairs**. First a check of that claim on one posterior draw:

# %%
ls0 = info.samples["lengthscale"][0, -1]  # last draw of chain 0, raw
R0 = so3.exp_map(info.samples["rotation"][0, -1])
P = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=R0.dtype)  # a cyclic permutation
S = torch.diag(torch.tensor([-1.0, -1.0, 1.0], dtype=R0.dtype))  # flip two axes
R1, ls1 = R0 @ P @ S, ls0 @ P  # columns and length-scales relabelled together
M = lambda ls, R: R @ torch.diag(ls**-2) @ R.T
print("raw (l, w) of the draw:    ", ls0.numpy().round(3), so3.log_map(R0).numpy().round(2))
print("relabelled (l, w):         ", ls1.numpy().round(3), so3.log_map(R1).numpy().round(2))
print("same metric:", torch.allclose(M(ls0, R0), M(ls1, R1)))
print(
    "same canonical form:",
    all(torch.allclose(a, b) for a, b in zip(so3.canonicalize(ls0, R0), so3.canonicalize(ls1, R1), strict=True)),
)

# %% [markdown]
# So the sampler may report the short axis in any column, and two chains started from different random rotations
# can settle in *different* labellings of the same posterior (`fit_nuts` starts each chain from the labelling with
# the smallest rotation angle, which makes agreement more likely, but nothing guarantees it). Below, per chain, the
# posterior median of the raw length-scale columns and of the raw rotation vector, then the same after
# canonicalisation (`so3.canonicalize`: length-scales sorted ascending, directions permuted with them, fixed sign
# rule). Whatever the raw numbers do, the canonical ones are comparable across draws and chains, and they are
# what every summary below uses.

# %%
raw_ls, raw_w = info.samples["lengthscale"], info.samples["rotation"]  # chains x draws x 3
can_ls, can_axes = so3.canonicalize(raw_ls, so3.exp_map(raw_w))
for c in range(info.num_chains):
    print(
        f"chain {c}: raw l median {raw_ls[c].median(0).values.numpy().round(3)}, "
        f"raw w median {raw_w[c].median(0).values.numpy().round(2)}"
    )
same = torch.equal(raw_ls[0].median(0).values.argsort(), raw_ls[1].median(0).values.argsort())
print(f"-> the two chains use {'the same' if same else 'different'} raw labellings of the axes in this run\n")
for c in range(info.num_chains):
    print(
        f"chain {c}: canonical l median {can_ls[c].median(0).values.numpy().round(3)}, "
        f"short axis (first draw) {can_axes[c, 0, :, 0].numpy().round(3)}"
    )

# %% [markdown]
# ## 2 · The canonical posterior summary
#
# `summarize_posterior` canonicalises every draw, averages each canonical direction sign-free (the principal
# eigenvector of $\mathbb E[u u^\top]$, so that $u$ and $-u$ agree), and reports means, standard deviations, 90%
# credible intervals, split-R-hat and effective sample sizes (ESS; Pyro's estimators) per canonical quantity. The
# directions are also given as azimuth (clockwise from North = +y) and dip (below the horizontal), with the angle
# within which 90% of the draws lie. Rules of thumb: R-hat below about 1.05 and an ESS of a hundred or more mean
# the chains agree and the numbers are usable; a larger R-hat means: sample longer.
#
# With only 100 points the posterior is broad: even a true ratio of 2.5 between two length-scales can leave their
# 90% intervals overlapping, and the summary then flags the pair as weakly identified (section 5 shows the
# extreme case). The flag is a warning about what the *data* determine, not a failure of the sampler.

# %%
summary = summarize_posterior(model)
print(summary)
true_ls, true_axes = field.canonical()
print("\ntruth: length-scales", true_ls.numpy().round(3))
print(
    "angle between posterior mean direction and truth (short, middle, long):",
    so3.angle_between_axes(summary.directions.T, true_axes.T).numpy().round(1),
    "degrees",
)

# %% [markdown]
# ## 3 · Diagnostics: traces and ranks per chain
#
# Left: the marginal posterior of each canonical quantity per chain; right: its trace (the value at each draw).
# Good chains look like stationary noise and overlap each other. `plot_traces` uses ArviZ when it is installed
# (`summary.to_arviz()` gives an ArviZ `InferenceData` for any other ArviZ plot), plain matplotlib otherwise.

# %%
fig, axes = plot_traces(summary)
plt.show()

# %% [markdown]
# Rank plots are more sensitive to chains that disagree: every draw is ranked among all draws of all chains, and
# each chain's ranks are histogrammed. If the chains sample the same distribution, every histogram is flat.

# %%
fig, axes = plot_traces(summary, kind="rank")
plt.show()

# %% [markdown]
# ## 4 · Length-scales and directions
#
# Left: the posterior of the three canonical length-scales (log axis; dashed lines: truth). Right: every draw's
# three principal axes on a lower-hemisphere equal-area (Schmidt) stereonet: North up, East right, vertical axes at
# the centre, horizontal ones on the rim; stars are the true axes. A tight cloud means a well-determined
# direction. The short axis is usually the tightest: the field changes fastest along it, so the data constrain it
# most. The long axis (1.0, the size of the domain) is the least constrained, and its length-scale posterior is the
# widest.

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained", width_ratios=[1.4, 1])
plot_lengthscale_posterior(summary, ax=a1, truth=field)
plot_stereonet(summary, ax=a2, truth=field)
plt.show()

# %% [markdown]
# ## Predictions from the mixture posterior
#
# `model.posterior(X)` is BoTorch's `GaussianMixturePosterior`: one Gaussian per loaded sample. Its
# `mixture_mean` and `mixture_variance` are the moments of the mixture; with `observation_noise=True` they describe
# a new noisy observation, which is what the held-out values are. The box reports RMSE, $R^2$ and the coverage of
# the 90% intervals.

# %%
with torch.no_grad():
    post = model.posterior(field.test_X, observation_noise=True)
fig, ax = plot_predictions(
    field.test_Y, post.mixture_mean, post.mixture_variance.sqrt(), title="held-out predictions, fully Bayesian SO(3)"
)
plt.show()

# %% [markdown]
# ## 5 · Weak identifiability: two equal length-scales
#
# If two principal length-scales are equal, the ellipsoid is a spheroid: rotating it about its distinct axis
# changes nothing, so the two directions in that plane are **not identified**: any orthonormal pair in the plane
# gives the same kernel. Only the plane (equivalently its normal, the distinct axis) is determined. Near-equal
# length-scales give the same problem in a milder form.
#
# Here the field has length-scales (0.15, 0.5, 0.5): the short axis is well defined, the other two are not.
# `summarize_posterior` flags the pair and explains which quantities remain meaningful. On the stereonet, the short
# axis stays a tight cloud, while the middle and long axes smear along a great circle: the plane perpendicular to
# the short axis. (The true middle and long axes, stars, are themselves just one arbitrary choice within that
# plane.)

# %%
iso_field = make_rotated_field(n_train=N_TRAIN, n_test=N_TEST, lengthscale=(0.15, 0.5, 0.5), seed=2)
iso_model = SO3FullyBayesianGP(iso_field.train_X, iso_field.train_Y, nu=2.5, outcome_transform=Standardize(m=1))
iso_budget = 16 if SMOKE_TEST else 150  # near-isotropic posteriors need longer NUTS trajectories: a smaller budget
fit_nuts(
    iso_model,
    warmup_steps=iso_budget,
    num_samples=iso_budget,
    num_chains=CHAINS,
    thinning=4,
    seed=0,
    max_tree_depth=TREE_DEPTH,
    disable_progbar=True,
)
iso_summary = summarize_posterior(iso_model)
print("flagged pairs (0 = short, 1 = middle, 2 = long):", iso_summary.weak_pairs)
print(iso_summary.explanation)
print("R-hat of the canonical length-scales:", iso_summary.rhat["lengthscale"].numpy().round(3))

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(12, 4.6), layout="constrained", width_ratios=[1.4, 1])
plot_lengthscale_posterior(iso_summary, ax=a1, truth=iso_field)
plot_stereonet(iso_summary, ax=a2, truth=iso_field)
a2.set_title("two equal length-scales: middle and long axes smear in a plane", fontsize=9)
plt.show()

# %% [markdown]
# How to read it: sorting each draw (canonicalisation) pushes two equal length-scales apart, so "middle" and "long"
# look like two close but distinct posteriors; the summary's flag (median ratio below 1.2, or overlapping 90%
# intervals) is the signal that they are not really distinguished. In such a case report the short axis, the
# plane of the other two and the length-scales, not two separate directions; their R-hat/ESS are not meaningful
# either, since the directions wander freely within the plane.
#
# **Where next:** [04 · BoTorch loop](04_botorch_loop.ipynb) uses the fully Bayesian model as a surrogate for
# Bayesian optimisation; [05 · Drill holes](05_drill_holes.ipynb) applies the kernels to real data.
