"""fit_map leaves the parameters a user froze (``requires_grad=False``) alone, as BoTorch's fit_gpytorch_mll does.

Freezing a raw parameter is the usual gpytorch/BoTorch way to fix a hyperparameter (e.g. a rotation known from
geology) and fit the rest. Every start used to re-initialise the kernel regardless, so the frozen value came back as
a Haar draw; and the batched path fell back to the sequential one (a frozen parameter's prior term had no start
dimension). Reference: BoTorch's own fit_gpytorch_mll on the same model.
"""

import pytest
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from gpytorch.kernels import ScaleKernel
from gpytorch.mlls import ExactMarginalLogLikelihood
from reference import map_loss

from gpytorch_so3 import FullSPDKernel, fit_map
from gpytorch_so3.bo import rotated_covar_module
from gpytorch_so3.priors import so3_covar_module

F64 = torch.float64


def _data(dim, n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, dim, generator=g, dtype=F64)
    Y = torch.sin(6 * X[:, :2].sum(-1, keepdim=True)) + 0.05 * torch.randn(n, 1, generator=g, dtype=F64)
    return X, Y


def _rotated(dim):
    covar = (so3_covar_module() if dim == 3 else rotated_covar_module(dim)).to(F64)
    k = covar.base_kernel
    k.rotation = torch.linspace(-0.4, 0.6, dim * (dim - 1) // 2, dtype=F64)
    k.lengthscale = torch.linspace(0.3, 1.2, dim, dtype=F64).reshape(1, dim)
    return covar, k


@pytest.mark.parametrize("dim", [3, 4])
@pytest.mark.parametrize("frozen", ["raw_rotation", "raw_lengthscale"])
@pytest.mark.parametrize("strategy", ["batched", "sequential"])
def test_frozen_rotation_or_lengthscale_is_kept(dim, frozen, strategy):
    X, Y = _data(dim)
    covar, k = _rotated(dim)
    param = getattr(k, frozen)
    param.requires_grad_(False)
    before = param.detach().clone()
    other = k.raw_lengthscale if frozen == "raw_rotation" else k.raw_rotation
    other_before = other.detach().clone()
    model = SingleTaskGP(X, Y, covar_module=covar)
    fit_map(model, num_restarts=2, seed=0, strategy=strategy)
    torch.testing.assert_close(param.detach(), before, rtol=0, atol=0)
    assert not torch.allclose(other.detach(), other_before)  # the rest was fitted
    info = model.fit_map_info_
    assert info.strategy == strategy and info.fallback_reason is None  # the batched path handles frozen parameters
    # the fit is at least as good as BoTorch's from the same initial state and frozen parameter
    ref_covar, ref_k = _rotated(dim)
    getattr(ref_k, frozen).requires_grad_(False)
    ref = SingleTaskGP(X, Y, covar_module=ref_covar)
    fit_gpytorch_mll(ExactMarginalLogLikelihood(ref.likelihood, ref))
    torch.testing.assert_close(getattr(ref_k, frozen).detach(), before, rtol=0, atol=0)
    assert info.best_loss <= map_loss(ref) + 1e-6


@pytest.mark.parametrize("frozen", ["raw_rotation", "raw_lengthscale"])
def test_identical_data_driven_starts_run_once(frozen, monkeypatch):
    # In d = 4 the data-aligned, identity and gradient starts are all on by default; with a frozen parameter each of
    # them keeps the kernel's current values, so they are one state and run once (and no pilot GP is fitted for
    # the gradient start).
    import gpytorch_so3.fit as fit_module

    X, Y = _data(4)
    covar, k = _rotated(4)
    getattr(k, frozen).requires_grad_(False)
    model = SingleTaskGP(X, Y, covar_module=covar)

    def no_pilot(*args, **kwargs):
        raise AssertionError("the gradient start's pilot GP ran for a kernel with a frozen part")

    with monkeypatch.context() as m:
        m.setattr(fit_module, "_model_gradient_outer_product", no_pilot)
        fit_map(model, num_restarts=2, seed=0)
    info = model.fit_map_info_
    assert info.start_kinds == ["aligned", "haar", "haar"] and len(info.losses) == 3
    covar, _ = _rotated(4)  # nothing frozen: three distinct data-driven starts
    model = SingleTaskGP(X, Y, covar_module=covar)
    fit_map(model, num_restarts=2, seed=0)
    assert model.fit_map_info_.start_kinds == ["aligned", "identity", "gradient", "haar", "haar"]


def test_frozen_full_spd_diagonal_is_kept():
    X, Y = _data(3)
    k = FullSPDKernel(nu=2.5).to(F64)
    k.raw_cholesky_diag.requires_grad_(False)
    before = k.raw_cholesky_diag.detach().clone()
    model = SingleTaskGP(X, Y, covar_module=ScaleKernel(k))
    fit_map(model, num_restarts=2, seed=0)
    torch.testing.assert_close(k.raw_cholesky_diag.detach(), before, rtol=0, atol=0)
    assert model.fit_map_info_.fallback_reason is None


def test_known_noise_follows_the_subsets_of_the_halving_rounds():
    # SingleTaskGP(X, Y, train_Yvar) has one known variance per point. The halving rounds evaluate subsets of the
    # points (128 here); the variances must be subset with them (they used to stay those of all n points, which
    # gpytorch treats as no noise at all, with a GPInputWarning per evaluation). Reference: a SingleTaskGP built on
    # the subset with its own variances and the same hyperparameters.
    import warnings

    from botorch.optim.utils import get_parameters_and_bounds
    from gpytorch.utils.warnings import GPInputWarning

    from gpytorch_so3 import fit as fit_module

    n = 200
    g = torch.Generator().manual_seed(1)
    X = torch.rand(n, 3, generator=g, dtype=F64)
    Yvar = 0.01 + 0.2 * torch.rand(n, 1, generator=g, dtype=F64)
    Y = torch.sin(6 * X[:, :2].sum(-1, keepdim=True)) + Yvar.sqrt() * torch.randn(n, 1, generator=g, dtype=F64)
    model = SingleTaskGP(X, Y, Yvar, covar_module=so3_covar_module().to(F64), outcome_transform=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GPInputWarning)
        fit_map(model, num_restarts=2, seed=0)
    info = model.fit_map_info_
    assert info.strategy == "batched" and info.fallback_reason is None
    assert info.phases[0].num_points < n  # the first round did run on a subset

    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    names = [nm for nm, p in model.named_parameters() if p.requires_grad]
    params = dict(model.named_parameters())
    obj = fit_module._BatchedObjective(model, {nm: params[nm] for nm in names}, get_parameters_and_bounds(mll)[1])
    index = torch.randperm(n, generator=g)[:128].sort().values
    obj.set_points(index)
    with torch.no_grad():
        loss = float(obj.losses(obj.tensor(obj.to_internal(obj.flat(model)[None])))[0])
    ref = SingleTaskGP(X[index], Y[index], Yvar[index], covar_module=so3_covar_module().to(F64), outcome_transform=None)
    ref.covar_module.load_state_dict(model.covar_module.state_dict())
    ref.mean_module.load_state_dict(model.mean_module.state_dict())
    assert abs(loss - map_loss(ref)) < 1e-8
