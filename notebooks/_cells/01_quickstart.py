# %% [markdown]
# # 01 · Quickstart: a rotated-anisotropy kernel in a GPyTorch `ExactGP`
#
# **What this notebook shows.** Many 3-D fields vary quickly along one direction and slowly along the others, and
# that fast direction is usually *not* a coordinate axis: ore grade across a dipping layer, porosity across tilted
# strata, a material property across an oblique ridge of a design space. An ARD kernel (one length-scale per
# coordinate) can only stretch its correlation ellipsoid along x, y and z, so it cannot describe such a field.
# `SO3AnisotropicKernel` learns three principal length-scales **and** a rotation:
#
# $$k(x, x') = \text{base}(r), \qquad r^2 = (x - x')^\top R\,\mathrm{diag}(l)^{-2} R^\top (x - x'), \qquad
# R = \exp(\hat w),$$
#
# where `base` is GPyTorch's RBF or Matérn form at unit length-scale, $l$ holds the three principal length-scales
# and the axis-angle vector $w$ gives the rotation. Column $i$ of $R$ is the direction whose length-scale is
# $l_i$.
#
# In about 20 lines we will: draw a synthetic field with a known random rotation, put the kernel into a plain
# GPyTorch `ExactGP`, fit it, check that it found the true directions, and compare its held-out predictions with
# an ARD kernel. The last section does the same in BoTorch.
#
# **Runtime:** about a minute for the full run whose outputs are shown (measured on a shared 2-core machine); a few
# seconds with `SMOKE_TEST=1`, which CI uses to check that the notebook runs.

# %%
import os

import gpytorch
import matplotlib.pyplot as plt
import torch

from gpytorch_so3 import SO3AnisotropicKernel, fit_map, so3
from gpytorch_so3.datasets import make_rotated_field
from gpytorch_so3.plot import plot_ellipsoid, plot_field_slice, plot_predictions

SMOKE_TEST = os.environ.get("SMOKE_TEST")
N_TRAIN = 60 if SMOKE_TEST else 300  # training points
N_TEST = 50 if SMOKE_TEST else 300  # held-out points
RESTARTS = 2 if SMOKE_TEST else 8  # random restarts of the rotation (see "Fit" below)
torch.manual_seed(0)
plt.rcParams["figure.dpi"] = 80

# %% [markdown]
# ## Data: a field with a known rotated anisotropy
#
# `make_rotated_field` draws a field *exactly* from the Gaussian process with this kernel (Matérn-5/2, principal
# length-scales 0.15, 0.4 and 1.0 in the unit cube, a Haar-random rotation chosen by the seed) at random points
# in the unit cube, and adds 5% observation noise. Because we know the truth, we can check what the fit
# recovers. `canonical()` lists the truth in the package's canonical form: length-scales ascending, and the
# matching principal directions as the columns of a rotation matrix.

# %%
field = make_rotated_field(n_train=N_TRAIN, n_test=N_TEST, seed=0)
train_x, train_y = field.train_X, field.train_Y.squeeze(-1)  # GPyTorch wants 1-D targets
test_x, test_y = field.test_X, field.test_Y.squeeze(-1)

true_ls, true_axes = field.canonical()
print("training inputs", tuple(train_x.shape), " held-out inputs", tuple(test_x.shape))
print("true length-scales (ascending):", true_ls.numpy().round(3))
print("true principal directions (columns: short, middle, long):\n", true_axes.numpy().round(3))

# %% [markdown]
# ## The model: the GPyTorch `ExactGP` recipe with one new line
#
# This is the model class of GPyTorch's "Simple GP regression" tutorial. The only change is the kernel:
# `ScaleKernel(SO3AnisotropicKernel(nu=2.5))` instead of `ScaleKernel(RBFKernel())`. Like every GPyTorch base
# kernel it has unit output-scale, so it is wrapped in a `ScaleKernel`.
#
# We also build the ARD baseline the same way (`MaternKernel(nu=2.5, ard_num_dims=3)`: one length-scale per
# coordinate axis), to see what the rotation buys.


# %%
class GP(gpytorch.models.ExactGP):
    def __init__(self, x, y, base_kernel):
        super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood())
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(base_kernel)

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


so3_gp = GP(train_x, train_y, SO3AnisotropicKernel(nu=2.5)).double()
ard_gp = GP(train_x, train_y, gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=3)).double()
so3_gp.covar_module.base_kernel

# %% [markdown]
# ## Fit: type-II MAP with restarts over rotations
#
# The marginal likelihood is *multimodal* in the rotation: a gradient optimiser started from a badly oriented
# ellipsoid can settle in a local optimum. `fit_map` therefore restarts L-BFGS from several Haar-uniform random
# rotations (with unequal initial length-scales) and keeps the best restart. It works on any GPyTorch `ExactGP`
# (and on BoTorch models) that contains an `SO3AnisotropicKernel`, and returns the model in eval mode.
#
# The ARD kernel has no rotation, so a single run of the usual GPyTorch training loop (Adam on the negative
# marginal log likelihood) is enough for it.

# %%
fit_map(so3_gp, num_restarts=RESTARTS, seed=0)
info = so3_gp.fit_map_info_
print("loss (negative log marginal likelihood per point) of each restart:", [round(v, 4) for v in info.losses])
print("kept restart", info.best_restart)

ard_gp.train()
mll = gpytorch.mlls.ExactMarginalLogLikelihood(ard_gp.likelihood, ard_gp)
optimizer = torch.optim.Adam(ard_gp.parameters(), lr=0.05)
for _ in range(50 if SMOKE_TEST else 300):
    optimizer.zero_grad()
    loss = -mll(ard_gp(train_x), train_y)
    loss.backward()
    optimizer.step()
ard_gp.eval()
print(f"ARD: final loss {loss.item():.4f}")

# %% [markdown]
# How to read this: restarts that reach the same lowest loss found the same optimum (up to the kernel's
# symmetries, below); a restart with a clearly higher loss got stuck, which is why there are several.
#
# ## Did it find the true directions?
#
# The raw parameters are not unique: permuting the three axes together with their length-scales, or flipping
# their signs, gives the same kernel (a 24-fold symmetry). So we compare the **canonical** form
# (`kernel.canonical()`, i.e. `so3.canonicalize`): length-scales sorted ascending, directions as the matching
# columns. The angle between a fitted and a true axis is measured between lines (in $[0°, 90°]$): $u$ and $-u$
# are the same axis.

# %%
ls, axes = so3_gp.covar_module.base_kernel.canonical()
angles = so3.angle_between_axes(axes.T, true_axes.T)  # one angle per canonical axis
print(f"{'axis':<8}{'true l':>8}{'fitted l':>10}{'angle to truth':>16}")
for i, name in enumerate(["short", "middle", "long"]):
    print(f"{name:<8}{true_ls[i].item():>8.3f}{ls[i].item():>10.3f}{angles[i].item():>15.1f}°")
ard_ls = ard_gp.covar_module.base_kernel.lengthscale.detach().reshape(-1)
print("\nARD length-scales (along x, y, z):", ard_ls.numpy().round(3))

# %% [markdown]
# How to read this: angles of a few degrees mean the fit found the true principal frame. The fitted
# length-scales need not match the truth closely: they are estimated from one noisy draw of the field at a few
# hundred points, and the long one (1.0, as long as the domain) is the least informed by the data.
# [Notebook 03](03_fully_bayesian_nuts.ipynb) shows how uncertain they are. The ARD length-scales describe an
# axis-aligned compromise and have no true values to compare with.
#
# ## The picture: correlation ellipsoids
#
# `plot_ellipsoid` draws the set of points that are "one length-scale away" from the centre,
# $\{x : x^\top M x = 1\}$, with its three principal semi-axes in colour (short, middle, long); the black
# wireframe and dashed lines are the truth. A good fit lies on the wireframe. The ARD ellipsoid (left) can only be
# axis-aligned, so it cannot match the tilted truth however its three length-scales are chosen.

# %%
fig = plt.figure(figsize=(11, 5), layout="constrained")
ax1 = fig.add_subplot(1, 2, 1, projection="3d")
ax2 = fig.add_subplot(1, 2, 2, projection="3d")
plot_ellipsoid(ard_gp, ax=ax1, truth=field)
plot_ellipsoid(so3_gp, ax=ax2, truth=field)
ax1.set_title("ARD (axis-aligned)")
ax2.set_title("SO(3) anisotropic")
plt.show()

# %% [markdown]
# ## Held-out predictions
#
# The predictive distribution of a new *observation* is `likelihood(model(x))` (the latent field plus noise).
# Each panel plots the predicted mean against the held-out value, with 90% predictive intervals; the dashed line
# is a perfect prediction. The box gives the RMSE, $R^2$ and the fraction of held-out values inside their 90%
# interval (close to 90% for a calibrated model).


# %%
def predict(gp, x):
    with torch.no_grad(), gpytorch.settings.fast_pred_var(False):
        pred = gp.likelihood(gp(x))
    return pred.mean, pred.stddev


fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.4), sharex=True, sharey=True, layout="constrained")
plot_predictions(test_y, *predict(ard_gp, test_x), ax=a1, title="ARD", color="C1")
plot_predictions(test_y, *predict(so3_gp, test_x), ax=a2, title="SO(3) anisotropic", color="C0")
plt.show()

# %% [markdown]
# ## A slice of the predicted field
#
# `plot_field_slice` evaluates the posterior on a grid in the horizontal plane $z = 0.5$: the mean (left) and its
# standard deviation (right); white dots are training points within 0.05 of the plane. The stripes of the mean
# run obliquely, along the slow directions; the uncertainty is lowest near the data and grows fastest when you
# move along the short axis, where the field decorrelates quickly.

# %%
fig, axes = plot_field_slice(so3_gp, z=0.5, resolution=25 if SMOKE_TEST else 80, points=train_x)
plt.show()

# %% [markdown]
# ## The same in BoTorch
#
# For Bayesian optimisation, pass the kernel to BoTorch's `SingleTaskGP` as `covar_module` and fit it with
# `fit_map` instead of `fit_gpytorch_mll` (the model's outcome transform `Standardize` is used as usual).
# `gpytorch_so3.priors.so3_covar_module()` gives the same `ScaleKernel(SO3AnisotropicKernel(...))` with default
# priors on the length-scales, the rotation and the output-scale, in the spirit of BoTorch's default modules.
#
# One rule matters: **scale the inputs isotropically** (one common factor for all three coordinates). BoTorch's
# `Normalize` scales each axis separately, which shears space and changes the very angles the kernel is meant to
# learn. Here the inputs already live in the unit cube, so nothing needs scaling.

# %%
from botorch.models import SingleTaskGP
from botorch.models.transforms import Standardize

from gpytorch_so3.priors import so3_covar_module

model = SingleTaskGP(
    field.train_X, field.train_Y, covar_module=so3_covar_module(nu=2.5), outcome_transform=Standardize(m=1)
)
fit_map(model, num_restarts=RESTARTS, seed=0)
ls_bo, axes_bo = model.covar_module.base_kernel.canonical()
print("canonical length-scales:", ls_bo.numpy().round(3))
print(f"angle of the short axis to the truth: {so3.angle_between_axes(axes_bo[:, 0], true_axes[:, 0]).item():.1f}°")
posterior = model.posterior(field.test_X[:3])
print("posterior mean at three test points:", posterior.mean.detach().squeeze(-1).numpy().round(3))

# %% [markdown]
# ## Where next
#
# * [02 · Synthetic experiments](02_synthetic_experiments.ipynb): ARD vs full-SPD vs SO(3) kernels on rotated and
#   axis-aligned fields over several seeds, with held-out errors and angle errors.
# * [03 · Fully Bayesian NUTS](03_fully_bayesian_nuts.ipynb): posterior distributions of the length-scales and
#   directions, the kernel's symmetries and when a direction is not identified.
# * [04 · BoTorch loop](04_botorch_loop.ipynb), [05 · Drill holes](05_drill_holes.ipynb) (real data),
#   [06 · Large grids](06_large_grids.ipynb) (KeOps).
