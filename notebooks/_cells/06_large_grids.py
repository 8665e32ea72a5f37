# %% [markdown]
# # 06 · Large data and large grids: KeOps, conjugate gradients, chunked prediction
#
# **The problem.** An exact Gaussian process on $N$ points needs solves and a log-determinant of the $N \times N$
# kernel matrix. Stored densely in float64 that matrix takes $8N^2$ bytes: 80 MB at $N = 10^3$... and 80 GB at
# $N = 10^5$, the size of a dense voxel grid or a large drill-hole or radar volume. The way out, used by GPyTorch,
# is to never build the matrix:
#
# * **KeOps** computes products of the kernel matrix with vectors *on the fly*, in $O(N)$ memory:
#   `KeOpsSO3AnisotropicKernel` whitens the inputs once, $z = (x - \bar x) R\,\mathrm{diag}(1/l)$, and hands $z$
#   to a KeOps formula of the isotropic correlation, so gradients still reach the rotation and length-scales.
# * **Conjugate gradients and stochastic Lanczos quadrature** (GPyTorch's iterative solvers) need nothing but those
#   products; `gpytorch_so3.large.cg_settings()` switches them on.
# * **Chunked prediction** (`predict_in_chunks`) streams a large grid of test points in blocks.
#
# **This notebook** checks the KeOps path against the dense kernel, times both at CPU-friendly sizes, then fits a
# field on a few thousand points the scalable way (hyperparameters from a small subset, refined with CG on all
# points) and predicts a large grid. On a CPU every product still costs $O(N^2)$ work, so the sizes here stay
# moderate (one product at $N = 10^5$ takes minutes on 2 cores); the payoff at large $N$ comes on a GPU, for which
# the last section gives the recipe. Measured benchmarks up to $N = 10^5$ are in `benchmarks/README.md`
# (`bench_keops.py`).
#
# **Runtime:** the full run shown here took under 2 minutes on a shared 2-core machine, plus one to two minutes of
# one-off KeOps compilation the first time (cached afterwards in `~/.cache/keops*`, or in `$KEOPS_CACHE_FOLDER`);
# about 20 seconds with `SMOKE_TEST=1` (plus about 20 seconds to compile its single KeOps formula the first time),
# which trains on the dense path.

# %%
import os
import time

import gpytorch
import matplotlib.pyplot as plt
import torch
from botorch.models import SingleTaskGP

from gpytorch_so3 import SO3AnisotropicKernel, fit_map
from gpytorch_so3.datasets import make_rotated_field
from gpytorch_so3.kernels.keops import KeOpsSO3AnisotropicKernel, keops_available
from gpytorch_so3.large import cg_settings, predict_in_chunks
from gpytorch_so3.priors import so3_covar_module

SMOKE_TEST = os.environ.get("SMOKE_TEST")
SIZES = [500] if SMOKE_TEST else [1000, 2000, 4000]  # for the matrix-vector timings
N_TRAIN = 600 if SMOKE_TEST else 2000  # the "large" training set
N_SUBSET = 200 if SMOKE_TEST else 500  # subset for the hyperparameters
ADAM_STEPS = 1 if SMOKE_TEST else 3  # CG refinement steps on all points
KEOPS_TRAINING = not SMOKE_TEST  # smoke mode trains on the dense path (no KeOps gradient formulas to compile)
dtype = torch.float64
plt.rcParams["figure.dpi"] = 80
print("pykeops available:", keops_available())
if not keops_available():
    print(
        "without pykeops the KeOps kernel falls back to the dense path (with one warning); the notebook still runs.\n"
        "Install it with: pip install 'gpytorch-so3[keops]' (needs a C++ compiler)"
    )

# %% [markdown]
# ## 1 · The KeOps kernel computes the same matrix
#
# Same parameters, same values: a product of the (symbolic) KeOps kernel matrix with a vector equals the dense
# product. `use_keops=True` forces the KeOps path even at this small size (by default it is chosen automatically
# for large inputs). The first call compiles the formula with the system C++ compiler: that takes a while once, and
# is cached on disk for later sessions.

# %%
g = torch.Generator().manual_seed(0)
x = torch.rand(300, 3, generator=g, dtype=dtype)
v = torch.randn(300, 1, generator=g, dtype=dtype)
dense = SO3AnisotropicKernel(nu=2.5).to(dtype)
dense.initialize(
    lengthscale=torch.tensor([0.1, 0.3, 0.8], dtype=dtype), rotation=torch.tensor([0.4, -0.2, 0.7], dtype=dtype)
)
keops = KeOpsSO3AnisotropicKernel(nu=2.5, use_keops=True).to(dtype)
keops.load_state_dict(dense.state_dict())
t0 = time.perf_counter()
with torch.no_grad():
    Kv_keops = keops(x) @ v
print(f"first KeOps product (includes compilation if not cached): {time.perf_counter() - t0:.1f} s")
with torch.no_grad():
    Kv_dense = dense(x).to_dense() @ v
print("largest difference to the dense product:", f"{(Kv_keops - Kv_dense).abs().max().item():.2e}")

# %% [markdown]
# ## 2 · Memory and time of one kernel-matrix product
#
# The dense path builds the $N \times N$ matrix and multiplies; the KeOps path streams it. The table shows the
# dense matrix's size (what KeOps never allocates) and the time of one product on this CPU; memory is what limits
# the dense path, long before time does.


# %%
def timed(fn, repeats=3):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


print(f"{'N':>8}{'dense matrix':>14}{'dense product':>15}{'KeOps product':>15}")
for n in SIZES:
    xn = torch.rand(n, 3, generator=g, dtype=dtype)
    vn = torch.randn(n, 1, generator=g, dtype=dtype)
    with torch.no_grad():
        t_dense = timed(lambda xn=xn, vn=vn: dense(xn).to_dense() @ vn)
        t_keops = timed(lambda xn=xn, vn=vn: keops(xn) @ vn)
    print(f"{n:>8}{8 * n * n / 1e6:>11.0f} MB{t_dense:>13.3f} s{t_keops:>13.3f} s")
for n in (10**5, 10**6):
    print(f"{n:>8}{8 * n * n / 1e9:>11.0f} GB{'(no)':>15}{'(GPU)':>15}")

# %% [markdown]
# ## 3 · Fitting a field on all points, the scalable way
#
# The recipe (also in the docstring of `gpytorch_so3.large`):
# 1. fit the hyperparameters by `fit_map` on a random **subset** of a few hundred points (dense and exact: the
#    restarts over rotations are cheap there);
# 2. put them into a model on **all** points with `KeOpsSO3AnisotropicKernel`, and refine with a few Adam steps under
#    `cg_settings()` (CG and stochastic Lanczos instead of Cholesky: the dense matrix is never built);
# 3. predict with `predict_in_chunks`.
#
# Our field: a rotated Matérn-5/2 field (length-scales 0.15, 0.4, 1.0) with `N_TRAIN` training points and 1,000
# held-out points. We compare the held-out error of the subset model with the model that uses all points: what the
# extra data buy.

# %%
field = make_rotated_field(n_train=N_TRAIN, n_test=1000, seed=0)
train_x, train_y = field.train_X, field.train_Y.squeeze(-1)
sub = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(1))[:N_SUBSET]

# 1. hyperparameters from the subset (a BoTorch model with default priors; centred targets)
y_mean = train_y.mean()
small = SingleTaskGP(
    train_x[sub], (train_y[sub] - y_mean).unsqueeze(-1), covar_module=so3_covar_module(nu=2.5), outcome_transform=None
)  # keep the targets' units, so the hyperparameters carry over
fit_map(small, num_restarts=2 if SMOKE_TEST else 4, seed=0)


# 2. a plain gpytorch model on all points, with the KeOps kernel, initialised from the subset fit
class LargeGP(gpytorch.models.ExactGP):
    def __init__(self, x, y):
        super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood())
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.ScaleKernel(KeOpsSO3AnisotropicKernel(nu=2.5, use_keops=KEOPS_TRAINING))

    def forward(self, x):
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))


large = LargeGP(train_x, train_y - y_mean).to(dtype)
large.covar_module.outputscale = small.covar_module.outputscale.detach()
large.covar_module.base_kernel.lengthscale = small.covar_module.base_kernel.lengthscale.detach()
large.covar_module.base_kernel.rotation = small.covar_module.base_kernel.rotation.detach()
large.likelihood.noise = small.likelihood.noise.detach()
large.mean_module.constant.data.fill_(small.mean_module.constant.item())

mll = gpytorch.mlls.ExactMarginalLogLikelihood(large.likelihood, large)
optimizer = torch.optim.Adam(large.parameters(), lr=0.02)
large.train()
t0 = time.perf_counter()
with cg_settings():
    for step in range(ADAM_STEPS):
        optimizer.zero_grad()
        loss = -mll(large(train_x), train_y - y_mean)
        loss.backward()
        optimizer.step()
        print(f"Adam step {step + 1}: loss (per point) {loss.item():.4f}  ({time.perf_counter() - t0:.0f} s)")

# %% [markdown]
# The loss is a stochastic estimate (random probe vectors for the log-determinant), so it need not fall
# monotonically. Held-out error of the subset model and of the model on all points: `predict_in_chunks` streams
# the test points in chunks; under `cg_settings()` it computes the mean with CG (once: the solve is cached for
# later calls) and the variances (not needed here) with LOVE, never with the dense matrix. Without
# `cg_settings()`, GPyTorch falls back to dense Cholesky whenever training plus test points number at most
# `max_cholesky_size` (4,096 once BoTorch is imported), which for a KeOps kernel means materialising the matrix:
# correct, but slow.


# %%
def rmse(mean):
    return (mean.reshape(-1) + y_mean - field.test_F.reshape(-1)).pow(2).mean().sqrt().item()


mean_small, _ = predict_in_chunks(small, field.test_X, chunk_size=500, return_variance=False)
with cg_settings():
    mean_large, _ = predict_in_chunks(large, field.test_X, chunk_size=4096, return_variance=False)
ls_small = small.covar_module.base_kernel.canonical()[0]
ls_large = large.covar_module.base_kernel.canonical()[0]
print(
    f"subset ({N_SUBSET} points): held-out RMSE vs noiseless field {rmse(mean_small):.4f}, "
    f"length-scales {ls_small.numpy().round(3)}"
)
print(
    f"all ({N_TRAIN} points):    held-out RMSE vs noiseless field {rmse(mean_large):.4f}, "
    f"length-scales {ls_large.numpy().round(3)}"
)

# %% [markdown]
# ## 4 · Predicting a large grid
#
# A 3-D grid of $50^3 = 125{,}000$ points (in smoke mode $20^3$), predicted in chunks of 4,096: memory stays that of
# one chunk however large the grid is. (On the dense path keep chunks moderate: GPyTorch evaluates the prior
# covariance of training and test points jointly, so one chunk of $c$ points costs $O((N + c)^2)$ there.) The
# figure shows three horizontal slices of the predicted mean: the structure is oblique, following the rotated
# principal axes.

# %%
res = 20 if SMOKE_TEST else 50
ticks = torch.linspace(0, 1, res, dtype=dtype)
grid = torch.stack(torch.meshgrid(ticks, ticks, ticks, indexing="ij"), -1).reshape(-1, 3)
t0 = time.perf_counter()
with cg_settings():
    mean_grid, _ = predict_in_chunks(large, grid, chunk_size=4096, return_variance=False)
print(f"{grid.shape[0]} grid points predicted in {time.perf_counter() - t0:.0f} s")
cube = (mean_grid + y_mean).reshape(res, res, res)
fig, axes = plt.subplots(1, 3, figsize=(13, 4), layout="constrained")
vmin, vmax = cube.min().item(), cube.max().item()
for ax, k in zip(axes, [0, res // 2, res - 1], strict=True):
    im = ax.imshow(cube[:, :, k].T, origin="lower", extent=(0, 1, 0, 1), vmin=vmin, vmax=vmax, cmap="viridis")
    ax.set_title(f"predicted mean, z = {ticks[k]:.2f}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
fig.colorbar(im, ax=axes, shrink=0.9)
plt.show()

# %% [markdown]
# ## 5 · On a GPU: fitting $10^5$ points
#
# The same code runs on CUDA; only the device (and, for speed, float32) changes. KeOps' GPU kernels make one
# product at $N = 10^5$ take milliseconds to tens of milliseconds instead of minutes:
#
# ```python
# device = torch.device("cuda")
# train_x, train_y = train_x.to(device, torch.float32), train_y.to(device, torch.float32)   # N = 100_000
# model = LargeGP(train_x, train_y).to(device, torch.float32)     # KeOpsSO3AnisotropicKernel inside
# # ... initialise from a subset fit as above (fit_map on ~2,000 points, on the GPU or the CPU) ...
# model.train()
# with cg_settings():                      # CG + Lanczos, pivoted-Cholesky preconditioner, never Cholesky
#     for _ in range(20):
#         optimizer.zero_grad()
#         loss = -mll(model(train_x), train_y)
#         loss.backward()
#         optimizer.step()
# mean, var = predict_in_chunks(model, grid.to(device, torch.float32), chunk_size=8192, output_device="cpu")
# ```
#
# Notes:
# * `cg_settings` matters whenever BoTorch has been imported (and `gpytorch_so3` imports it): BoTorch switches
#   GPyTorch's fast (iterative) computations off process-wide, after which an exact marginal likelihood would
#   Cholesky-factorise the full dense matrix.
# * float32 halves memory and is much faster on GPUs; CG residuals then stall near $10^{-4}$, below GPyTorch's
#   default tolerances (training 1.0, prediction 0.01).
# * Several GPUs: wrap the base kernel in `gpytorch.kernels.MultiDeviceKernel(kernel, device_ids=[0, 1, ...],
#   output_device=0)` (Wang et al., 2019, *Exact Gaussian processes on a million data points*).
# * `gpytorch-so3 fit data.csv ... --device cuda` runs the command-line fit on a GPU.
