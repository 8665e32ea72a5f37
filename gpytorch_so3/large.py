r"""Large data sets: CG training settings and chunked (bounded-memory) prediction on large grids.

Recipe: fit an exact GP on ``10^5`` points (CPU or GPU)
--------------------------------------------------------

An exact GP never needs the ``N x N`` kernel matrix if every solve and log-determinant is done with
conjugate gradients (CG) and stochastic Lanczos quadrature, and every product with the kernel matrix is
computed on the fly. :class:`~gpytorch_so3.kernels.keops.KeOpsSO3AnisotropicKernel` supplies the products
(KeOps, ``O(N)`` memory) and gpytorch's settings select the solvers::

    import torch, gpytorch
    from gpytorch_so3.kernels.keops import KeOpsSO3AnisotropicKernel
    from gpytorch_so3.large import cg_settings, predict_in_chunks

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    train_x, train_y = train_x.to(device), train_y.to(device)   # (N, 3), (N,); float32 is fine on GPU

    class GP(gpytorch.models.ExactGP):
        def __init__(self, x, y, likelihood):
            super().__init__(x, y, likelihood)
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = gpytorch.kernels.ScaleKernel(KeOpsSO3AnisotropicKernel(nu=2.5))

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))

    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    model = GP(train_x, train_y, likelihood).to(device)
    # Start from hyper-parameters fitted on a subset (e.g. gpytorch_so3.fit_map on 2,000 points), then refine:
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    model.train()
    with cg_settings():                       # CG + Lanczos, pivoted-Cholesky preconditioner, no Cholesky
        for _ in range(20):
            optimizer.zero_grad()
            loss = -mll(model(train_x), train_y)
            loss.backward()
            optimizer.step()
    mean, var = predict_in_chunks(model, grid, chunk_size=8192)   # streamed, bounded memory

What the settings do (:func:`cg_settings`):

* ``fast_computations(True, True, True)``: CG/Lanczos for log-probabilities, solves and root decompositions.
  **Needed whenever BoTorch is imported** (and ``gpytorch_so3`` imports it): ``import botorch`` switches these
  three gpytorch defaults off for the whole process, after which an exact MLL Cholesky-factorises the dense
  ``N x N`` matrix (80 GB at ``N = 10^5`` in float64) whatever ``max_cholesky_size`` says.
* ``max_cholesky_size(0)``: never Cholesky-factorise (which would build the dense matrix); CG instead.
* ``cg_tolerance`` (gpytorch's training default 1.0): the relative residual at which CG stops during
  training. Looser is faster; the MLL gradient is a stochastic estimate anyway.
* ``max_preconditioner_size`` (rank of the pivoted-Cholesky preconditioner, default 15; used only for
  ``N >= min_preconditioning_size``, 2,000): larger ranks cut CG iterations when the noise is small.
* ``num_trace_samples`` (probe vectors of the stochastic log-determinant, default 10): each CG iteration
  multiplies the kernel matrix with ``1 + num_trace_samples`` vectors at once.

Memory is ``O(N (num_trace_samples + max_cg_iterations))``: the CG/Lanczos vectors, not the matrix.
Time is dominated by KeOps products, ``O(N^2)`` each; on a GPU they run at the speeds of KeOps' published
benchmarks (3-D Gaussian matvec: ~15 ms at ``10^5`` points on an RTX 2080 Ti in float32), on a CPU they take
tens of seconds at ``10^5`` points, so prefer a GPU there (``benchmarks/README.md`` has measured numbers).
float32 halves memory and is much faster on GPUs; CG residuals then stall near ``1e-4``, which is below the
default tolerances (training 1.0, prediction 0.01) but matters if you tighten them.

Several GPUs: wrap the kernel in ``gpytorch.kernels.MultiDeviceKernel(kernel, device_ids=[...],
output_device=...)`` (Wang et al., 2019, "Exact Gaussian processes on a million data points"); it splits the
rows of the kernel matrix across devices. It needs CUDA (on a CPU-only machine ``torch.nn.DataParallel``
does not set itself up and gpytorch's ``MultiDeviceKernel.forward`` fails, for gpytorch's own kernels too).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import gpytorch
import torch
from torch import Tensor
from tqdm import tqdm

from gpytorch_so3._validation import check_int

__all__ = ["cg_settings", "predict_in_chunks"]


@contextmanager
def cg_settings(
    *,
    max_cholesky_size: int = 0,
    cg_tolerance: float = 1.0,
    max_preconditioner_size: int = 15,
    num_trace_samples: int = 10,
    max_cg_iterations: int = 1000,
) -> Iterator[None]:
    """Settings of gpytorch for training exact GPs on large data with CG/Lanczos instead of Cholesky.

    Enters ``gpytorch.settings.fast_computations(True, True, True)`` (iterative log-probabilities, solves and
    root decompositions: gpytorch's defaults, which ``import botorch`` turns off process-wide),
    ``max_cholesky_size`` (0: always iterative), ``cg_tolerance``, ``max_preconditioner_size``,
    ``num_trace_samples`` and ``max_cg_iterations``. The other defaults are gpytorch's own.

    Args:
        max_cholesky_size: matrices up to this size still use Cholesky (gpytorch's default is 800).
        cg_tolerance: relative residual norm at which CG stops during training.
        max_preconditioner_size: rank of the pivoted-Cholesky preconditioner (0 disables it).
        num_trace_samples: probe vectors of the stochastic log-determinant estimate.
        max_cg_iterations: upper bound on CG iterations.

    Yields:
        None; the settings hold inside the ``with`` block.

    Raises:
        TypeError: an integer setting that is not an int (numpy integers are accepted).
        ValueError: a tolerance that is not positive or an integer setting out of range.

    Example:
        >>> with cg_settings(cg_tolerance=0.5):
        ...     gpytorch.settings.max_cholesky_size.value()
        0
    """
    if not (isinstance(cg_tolerance, int | float) and math.isfinite(cg_tolerance) and cg_tolerance > 0):
        raise ValueError(f"cg_tolerance must be a positive number, got {cg_tolerance!r}")
    max_cholesky_size = check_int("max_cholesky_size", max_cholesky_size, 0)
    max_preconditioner_size = check_int("max_preconditioner_size", max_preconditioner_size, 0)
    num_trace_samples = check_int("num_trace_samples", num_trace_samples, 1)
    max_cg_iterations = check_int("max_cg_iterations", max_cg_iterations, 1)
    with ExitStack() as stack:
        stack.enter_context(gpytorch.settings.fast_computations(True, True, True))
        stack.enter_context(gpytorch.settings.max_cholesky_size(max_cholesky_size))
        stack.enter_context(gpytorch.settings.cg_tolerance(cg_tolerance))
        stack.enter_context(gpytorch.settings.max_preconditioner_size(max_preconditioner_size))
        stack.enter_context(gpytorch.settings.num_trace_samples(num_trace_samples))
        stack.enter_context(gpytorch.settings.max_cg_iterations(max_cg_iterations))
        yield


def _num_train(model) -> int | None:
    train_inputs = getattr(model, "train_inputs", None)
    if not train_inputs:
        return None
    return int(train_inputs[0].shape[-2])


def predict_in_chunks(
    model,
    X: Tensor,
    *,
    chunk_size: int = 4096,
    observation_noise: bool = False,
    return_variance: bool = True,
    iterative: bool | None = None,
    output_device: torch.device | str | None = None,
    progress: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Predictive mean and variance of a GP on a large set of points, streamed in chunks.

    Memory is bounded by one chunk: the test-train cross-covariance of a chunk (``chunk_size x N`` values on
    the dense path, ``O(chunk_size + N)`` with a KeOps kernel) plus gpytorch's prediction caches, which are
    computed on the first chunk and reused: the mean cache ``K^-1 y`` (``O(N)``) and, for variances on the
    iterative path, LOVE's rank-``k`` root (``O(N k)``, ``k = gpytorch.settings.max_root_decomposition_size``,
    default 100; gpytorch's ``fast_pred_var``). Runs under ``torch.no_grad()`` and puts the model in eval mode.

    Args:
        model: a gpytorch ``ExactGP`` (its ``likelihood`` is used with ``observation_noise``) or a BoTorch
            ``Model`` (then ``model.posterior`` is used, so input and outcome transforms apply).
        X: ``batch_shape x n x d`` test inputs, on the model's device.
        chunk_size: number of test points per chunk.
        observation_noise: add the likelihood's noise to the variance.
        return_variance: compute variances; ``False`` skips them (``gpytorch.settings.skip_posterior_variances``)
            and returns ``None`` in their place.
        iterative: ``True``: CG for the mean cache and LOVE for the variances
            (``gpytorch.settings.fast_computations(True, True, True)``, ``fast_pred_var`` and
            ``max_cholesky_size(0)``), never a Cholesky factor of the training matrix; ``False``: gpytorch's
            current settings (with BoTorch imported: Cholesky, exact, which needs the ``N x N`` matrix);
            ``None`` (default): ``True`` when the model has more than
            ``gpytorch.settings.max_cholesky_size`` training points.
        output_device: device of the returned tensors (default: that of ``X``); e.g. ``"cpu"`` to collect a
            large grid predicted on a GPU in host memory.
        progress: show a progress bar (tqdm, on stderr) over the points; the first chunk includes gpytorch's
            prediction caches (the CG solve for ``K^-1 y`` and LOVE's root), so it is the slowest.

    Returns:
        ``(mean, variance)``, each ``batch_shape x n`` for a single-output gpytorch model, ``batch_shape x n x t``
        for multitask models and BoTorch models (``t`` outputs); ``variance`` is ``None`` if not requested.

    Raises:
        TypeError: ``X`` is not a floating tensor, or ``chunk_size`` is not an int (numpy integers are accepted).
        ValueError: ``X`` has fewer than 2 dimensions or ``chunk_size < 1``.

    Example:
        >>> import torch, gpytorch
        >>> from gpytorch_so3 import SO3AnisotropicKernel
        >>> class GP(gpytorch.models.ExactGP):
        ...     def __init__(self, x, y):
        ...         super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood())
        ...         self.covar_module = gpytorch.kernels.ScaleKernel(SO3AnisotropicKernel())
        ...     def forward(self, x):
        ...         return gpytorch.distributions.MultivariateNormal(torch.zeros_like(x[..., 0]), self.covar_module(x))
        >>> model = GP(torch.rand(50, 3), torch.randn(50))
        >>> mean, var = predict_in_chunks(model, torch.rand(1000, 3), chunk_size=256)
        >>> mean.shape, var.shape
        (torch.Size([1000]), torch.Size([1000]))
    """
    if not torch.is_tensor(X) or not X.is_floating_point():
        raise TypeError(f"X must be a floating-point torch.Tensor, got {type(X).__name__}")
    if X.dim() < 2 or X.shape[-2] == 0:
        raise ValueError(f"X must have shape (..., n, d) with n >= 1, got {tuple(X.shape)}")
    chunk_size = check_int("chunk_size", chunk_size, 1)
    if iterative is None:
        n_train = _num_train(model)
        iterative = n_train is not None and n_train > gpytorch.settings.max_cholesky_size.value()
    out_device = X.device if output_device is None else torch.device(output_device)

    is_botorch = _is_botorch_model(model)
    model.eval()
    likelihood = getattr(model, "likelihood", None)
    if likelihood is not None:
        likelihood.eval()

    means: list[Tensor] = []
    variances: list[Tensor] = []
    cat_dim = -1
    with ExitStack() as stack:
        stack.enter_context(torch.no_grad())
        if iterative:
            stack.enter_context(gpytorch.settings.fast_computations(True, True, True))
            stack.enter_context(gpytorch.settings.fast_pred_var(True))
            # Also when iterative=True is forced on a model with few training points: no Cholesky of the training
            # matrix (which would materialise a KeOps operator), CG as documented.
            stack.enter_context(gpytorch.settings.max_cholesky_size(0))
        stack.enter_context(gpytorch.settings.skip_posterior_variances(not return_variance))
        bar = stack.enter_context(
            tqdm(total=X.shape[-2], desc="predicting", unit="pt", disable=not progress, leave=False, file=sys.stderr)
        )
        for start in range(0, X.shape[-2], chunk_size):
            xb = X[..., start : start + chunk_size, :]
            if is_botorch:
                post = model.posterior(xb, observation_noise=observation_noise)
                mean, var = post.mean, (post.variance if return_variance else None)
                cat_dim = -2
            else:
                out = model(xb)
                if observation_noise:
                    if likelihood is None:
                        raise ValueError("observation_noise=True needs a model with a `likelihood` attribute")
                    out = likelihood(out, xb)
                mean, var = out.mean, (out.variance if return_variance else None)
                if isinstance(out, gpytorch.distributions.MultitaskMultivariateNormal):
                    cat_dim = -2
            means.append(mean.to(out_device))
            if var is not None:
                variances.append(var.to(out_device))
            bar.update(xb.shape[-2])
    mean = torch.cat(means, dim=cat_dim)
    variance = torch.cat(variances, dim=cat_dim) if return_variance else None
    return mean, variance


def _is_botorch_model(model) -> bool:
    try:
        from botorch.models.model import Model
    except ImportError:  # pragma: no cover - botorch is a dependency
        return False
    return isinstance(model, Model)
