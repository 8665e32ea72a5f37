"""Pathwise sampling with the package's kernels: BoTorch registration, simulate, Thompson sampling.

Statistical checks use fixed seeds; each states its Monte Carlo (MC) budget and why its threshold holds. Two error
sources appear: the MC error of averaging over draws, and the random-Fourier-feature (RFF) error of one set of
``F' = num_features / 2`` frequencies shared by all draws of one call. For a unit-variance stationary kernel the
RFF estimate ``k~(x, x') = mean_k cos(w_k^T (x - x'))`` has variance ``V / F'`` with
``V = (1 + k(2 (x - x'))) / 2 - k(x - x')^2 <= 1`` for i.i.d. frequencies; BoTorch's scrambled-Sobol normals only
lower it (measured: RBF error ~1/F, Matern close to 1/sqrt(F) through the i.i.d. Gamma mixing), so ``V / F'`` is
a conservative bound.
"""

from __future__ import annotations

import math
import warnings

import gpytorch
import numpy as np
import pytest
import torch
from botorch.exceptions import InputDataWarning
from botorch.models import ModelListGP, SingleTaskGP
from botorch.models.transforms import Normalize, Standardize
from botorch.sampling.pathwise import draw_matheron_paths
from botorch.sampling.pathwise.features.generators import GenKernelFeatures
from gpytorch.kernels import MaternKernel, PeriodicKernel, RBFKernel, ScaleKernel

from gpytorch_so3 import functional as Fn
from gpytorch_so3.botorch_utils import IsotropicNormalize
from gpytorch_so3.fully_bayesian import SO3FullyBayesianGP
from gpytorch_so3.kernels import FullSPDKernel, SO3AnisotropicKernel
from gpytorch_so3.pathwise import gen_anisotropic_features, register_pathwise, regular_grid, simulate

DT = torch.float64
LENGTHSCALE = torch.tensor([0.3, 0.6, 1.2], dtype=DT)
ROTATION = torch.tensor([0.3, -0.5, 1.0], dtype=DT)
NUS = (None, 0.5, 1.5, 2.5)


def so3_kernel(nu, outputscale=1.0, **kw) -> ScaleKernel:
    base = SO3AnisotropicKernel(nu=nu, **kw).to(DT)
    base.lengthscale = LENGTHSCALE
    base.rotation = ROTATION
    k = ScaleKernel(base).to(DT)
    k.outputscale = outputscale
    return k


def rff_variance(kernel: ScaleKernel, X: torch.Tensor) -> torch.Tensor:
    """``sigma^4 V`` of the module docstring for the SO(3) kernel (explicit formula on whitened inputs)."""
    base = kernel.base_kernel
    Z = Fn.whiten(X, base.whitening_matrix.detach())
    D = Z[:, None] - Z[None]
    k1 = Fn.base_correlation((D**2).sum(-1), base.nu)
    k2 = Fn.base_correlation(((2 * D) ** 2).sum(-1), base.nu)
    return kernel.outputscale.detach() ** 2 * ((1 + k2) / 2 - k1**2)


def make_data(n=12, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=DT)
    Y = torch.sin(3 * X[:, :1]) + X[:, 1:2] ** 2
    return X, Y


def fb_model(X, Y, num_mcmc=3, seed=0):
    """An SO3FullyBayesianGP with explicit, distinct hyperparameter samples (no NUTS: fast and deterministic)."""
    model = SO3FullyBayesianGP(X, Y, outcome_transform=Standardize(m=1), nu=2.5)
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=g, dtype=DT)
    model.load_mcmc_samples(
        {
            "mean": 0.2 * r(num_mcmc) - 0.1,
            "outputscale": r(num_mcmc) + 0.5,
            "noise": 1e-3 * (1 + r(num_mcmc)),
            "lengthscale": 0.3 + r(num_mcmc, 3),
            "rotation": 2 * r(num_mcmc, 3) - 1,
        }
    )
    return model.eval()


# ------------------------------------------------------------------------------------------ registration
def test_registration_dispatches_our_kernels_only():
    register_pathwise()
    register_pathwise()  # idempotent
    assert GenKernelFeatures.dispatch(SO3AnisotropicKernel) is gen_anisotropic_features
    assert GenKernelFeatures.dispatch(FullSPDKernel) is gen_anisotropic_features
    # Products without a package kernel are left to BoTorch, which does not support them (unchanged behaviour).
    with pytest.raises(NotImplementedError):
        GenKernelFeatures(RBFKernel() * MaternKernel(), num_inputs=2, num_outputs=8)


@pytest.mark.parametrize("nu", NUS)
def test_features_equal_botorch_ard_features_at_rotation_zero(nu):
    """Independent reference: at rotation 0 the kernel is gpytorch's ARD kernel, and with the same RNG state our
    generator draws the same frequencies as BoTorch's RBF/Matern generator, so the feature maps agree exactly."""
    ours = SO3AnisotropicKernel(nu=nu).to(DT)
    ours.lengthscale = LENGTHSCALE
    ref = (RBFKernel(ard_num_dims=3) if nu is None else MaternKernel(nu=nu, ard_num_dims=3)).to(DT)
    ref.lengthscale = LENGTHSCALE
    X = torch.rand(7, 3, dtype=DT)
    with torch.random.fork_rng():
        torch.manual_seed(5)
        f_ours = GenKernelFeatures(ours, num_inputs=3, num_outputs=64)
        torch.manual_seed(5)
        f_ref = GenKernelFeatures(ref, num_inputs=3, num_outputs=64)
    torch.testing.assert_close(f_ours(X), f_ref(X))


@pytest.mark.parametrize("batch_shape", [torch.Size([]), torch.Size([2]), torch.Size([2, 3])])
def test_feature_map_shapes_and_batches(batch_shape, seed):
    k = ScaleKernel(FullSPDKernel(nu=1.5, batch_shape=batch_shape), batch_shape=batch_shape).to(DT)
    fmap = GenKernelFeatures(k, num_inputs=3, num_outputs=32)
    out = fmap(torch.rand(5, 3, dtype=DT))
    assert out.shape == (*batch_shape, 5, 32)
    with pytest.raises(ValueError, match="even"):
        gen_anisotropic_features(k.base_kernel, num_inputs=3, num_outputs=7)
    with pytest.raises(TypeError, match="num_outputs"):
        gen_anisotropic_features(k.base_kernel, num_inputs=3, num_outputs=8.0)


@pytest.mark.parametrize("nu", (None, 1.5, 2.5))
def test_feature_map_covariance_and_rff_scaling(nu):
    """``phi phi^T -> K``: RMS error over 16 seeds x 120 pairs at F = 256 and 4096 features.

    Bound: RMS <= sqrt(mean V / F') (i.i.d. theory, see module docstring; Sobol only helps); 1.25x slack covers the
    RMS estimate's own spread (16 x 120 terms). Rate: the F = 256 / F = 4096 error ratio is >= 3 (1/sqrt(F) gives 4;
    the estimate's spread is ~10-15%); for Matern (i.i.d. Gamma mixing) it is also <= 6 (QMC-only rates like the
    RBF's ~1/F would give ~16).
    """
    k = so3_kernel(nu)
    X = 2 * torch.rand(16, 3, generator=torch.Generator().manual_seed(1), dtype=DT)
    K = k(X).to_dense().detach()
    mean_V = rff_variance(k, X).mean()
    rms = {}
    for F in (256, 4096):
        errs = []
        with torch.random.fork_rng():
            for s in range(16):
                torch.manual_seed(s)
                P = GenKernelFeatures(k, num_inputs=3, num_outputs=F)(X).detach()
                errs.append(((P @ P.T - K) ** 2).mean())
        rms[F] = torch.stack(errs).mean().sqrt()
        assert rms[F] <= 1.25 * (mean_V / (F // 2)).sqrt(), (F, rms[F])
    ratio = float(rms[256] / rms[4096])
    assert ratio >= 3.0, ratio
    if nu is not None:
        assert ratio <= 6.0, ratio


# ------------------------------------------------------------------------------------------ unconditional draws
@pytest.mark.parametrize("nu", NUS)
def test_unconditional_covariance_matches_kernel(nu):
    """Empirical covariance of S = 10^4 draws (F = 2048) at 12 points vs the kernel matrix.

    z_ij = (C_ij - K_ij) / sqrt(MC var + RFF var): MC var of a zero-mean Gaussian second moment is
    (K_ii K_jj + K_ij^2) / S; RFF var <= sigma^4 V_ij / F'. |z| < 4.5 for all 78 pairs (per-pair two-sided p ~ 7e-6).
    Power: the same statistic against the unrotated kernel (rotation 0) fails the test.
    """
    k = so3_kernel(nu, outputscale=1.7)
    X = torch.rand(12, 3, generator=torch.Generator().manual_seed(2), dtype=DT)
    S, F = 10_000, 2048
    draws = simulate(k, X, S, seed=11, num_features=F)
    C = draws.T @ draws / S
    K = k(X).to_dense().detach()
    d = K.diagonal()
    se = ((d[:, None] * d[None] + K**2) / S + rff_variance(k, X) / (F // 2)).sqrt()
    iu = torch.triu_indices(12, 12)
    z = ((C - K) / se)[iu[0], iu[1]]
    assert z.abs().max() < 4.5, z.abs().max()
    k0 = so3_kernel(nu, outputscale=1.7)
    k0.base_kernel.rotation = torch.zeros(3, dtype=DT)
    z0 = ((C - k0(X).to_dense().detach()) / se)[iu[0], iu[1]]
    assert z0.abs().max() > 4.5  # fails the same test


def test_product_kernel_covariance():
    """SO(3) kernel on columns 0-2 times a Matern on column 3 (and the factor order swapped): covariance of draws
    vs the product kernel, same statistic as above with the conservative RFF bound V <= 1."""
    X = torch.rand(10, 4, generator=torch.Generator().manual_seed(3), dtype=DT)
    S, F = 10_000, 2048
    for swap in (False, True):
        so3 = so3_kernel(1.5, active_dims=(0, 1, 2)).base_kernel
        other = MaternKernel(nu=2.5, active_dims=(3,)).to(DT)
        other.lengthscale = 0.4
        k = ScaleKernel((other * so3) if swap else (so3 * other)).to(DT)
        k.outputscale = 1.3
        draws = simulate(k, X, S, seed=4, num_features=F)
        C = draws.T @ draws / S
        K = k(X).to_dense().detach()
        d = K.diagonal()
        se = ((d[:, None] * d[None] + K**2) / S + 1.3**2 / (F // 2)).sqrt()
        assert ((C - K) / se).abs().max() < 4.5


# ------------------------------------------------------------------------------------------ simulate: API
def test_simulate_seed_chunks_rng_and_dtypes():
    k = so3_kernel(2.5)
    X = torch.rand(50, 3, dtype=DT)
    state = torch.get_rng_state()
    a = simulate(k, X, 3, seed=7, num_features=128)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert torch.equal(a, simulate(k, X, 3, seed=7, num_features=128))
    assert not torch.allclose(a, simulate(k, X, 3, seed=8, num_features=128))
    torch.testing.assert_close(a, simulate(k, X, 3, seed=7, num_features=128, chunk_size=7))  # blocks don't matter
    # Conditional draws are blocked the same way (prior path and update both evaluated per block).
    tX, tY = make_data()
    gp = SingleTaskGP(tX, tY, covar_module=so3_kernel(2.5)).eval()
    torch.testing.assert_close(simulate(gp, X, 2, seed=1, chunk_size=9), simulate(gp, X, 2, seed=1))
    # A learned input transform in train mode would refit itself per block: simulate switches to eval mode first.
    gpn = SingleTaskGP(tX * 5, tY, covar_module=so3_kernel(2.5), input_transform=IsotropicNormalize(3))
    gpn.train()
    a_train = simulate(gpn, X * 5, 2, seed=1, chunk_size=9)
    torch.testing.assert_close(a_train, simulate(gpn, X * 5, 2, seed=1))
    assert not gpn.training
    # float32: dtype follows the model, float64 X is cast
    k32 = so3_kernel(2.5).float()
    out = simulate(k32, X, 2, seed=0, num_features=64)
    assert out.dtype == torch.float32 and out.shape == (2, 50) and bool(torch.isfinite(out).all())
    gp32 = SingleTaskGP(tX.float(), tY.float(), covar_module=so3_kernel(2.5).float()).eval()
    out = simulate(gp32, X.float(), 2, seed=0)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())


def test_simulate_model_without_training_data_is_unconditional():
    class Prior(gpytorch.models.ExactGP):
        def __init__(self):
            super().__init__(None, None, gpytorch.likelihoods.GaussianLikelihood())
            self.mean_module = gpytorch.means.ConstantMean()
            self.covar_module = so3_kernel(None)

    gp = Prior().to(DT)
    gp.mean_module.constant = 3.0
    X = torch.rand(4, 3, dtype=DT)
    draws = simulate(gp, X, 2000, seed=0, num_features=512)
    # Mean 3 (the mean module) within 5 MC standard errors of a unit-variance mean over 2000 draws.
    assert (draws.mean(0) - 3.0).abs().max() < 5 / math.sqrt(2000)


def test_simulate_bad_input():
    k = so3_kernel(None)
    X = torch.rand(5, 3, dtype=DT)
    with pytest.raises(ValueError, match="num_samples"):
        simulate(k, X, 0)
    with pytest.raises(ValueError, match="num_features"):
        simulate(k, X, 2, num_features=33)
    with pytest.raises(TypeError, match="simulate: num_features"):
        simulate(k, X, 2, num_features=32.0)
    with pytest.raises(ValueError, match="N x d"):
        simulate(k, X[0], 2)
    with pytest.raises(TypeError, match="floating"):
        simulate(k, X.long(), 2)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        simulate(k, X.numpy(), 2)
    Xn = X.clone()
    Xn[1, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        simulate(k, Xn, 2)
    with pytest.raises(TypeError, match="PeriodicKernel"):
        simulate(ScaleKernel(PeriodicKernel()).to(DT), X, 2)
    with pytest.raises(TypeError, match="PeriodicKernel"):
        simulate(ScaleKernel(so3_kernel(None).base_kernel * PeriodicKernel().to(DT)), X, 2)
    with pytest.raises(TypeError, match="ExactGP or a Kernel"):
        simulate("model", X, 2)
    with pytest.raises(ValueError, match="batch_shape"):
        simulate(so3_kernel(None, batch_shape=torch.Size([2])), X, 2)
    tX, tY = make_data()
    gp = SingleTaskGP(tX, tY, covar_module=so3_kernel(None))
    with pytest.raises(ValueError, match="ModelListGP"):
        simulate(ModelListGP(gp, gp), X, 2)
    with pytest.raises(ValueError, match="columns"):
        simulate(gp, X[:, :2], 2)
    with pytest.raises(ValueError, match="3 columns"):
        simulate(k, X[:, :2], 2)
    with pytest.raises(ValueError, match="active_dims"):
        simulate(so3_kernel(None, active_dims=(1, 2, 3)), X, 2)


# ------------------------------------------------------------------------------------------ conditional draws
def _rff_sd_bound(covar, noise, Xtr, Xt, F):
    """sd of the RFF error of the draws' variance: sigma^2 (1 + |a|_1)^2 / sqrt(F'), a = (K + S)^-1 k(X, x).

    Each of the three terms of var~ - var (k~(x, x), -2 a^T k~(X, x), a^T k~(X, X) a) has RFF entries with sd
    <= sigma^2 / sqrt(F'), hence the triangle-inequality bound. Batched over MCMC samples: the largest one.
    """
    with torch.no_grad():
        K = covar(Xtr).to_dense() + noise * torch.eye(Xtr.shape[-2], dtype=Xtr.dtype)
        a = torch.linalg.solve(K, covar(Xtr, Xt).to_dense())
        sd = covar.outputscale.reshape(-1, 1) * (1 + a.abs().sum(-2)).reshape(covar.batch_shape.numel(), -1) ** 2
    return sd.max(0).values / math.sqrt(F // 2)


def _model_cases():
    X, Y = make_data(n=12)
    a = SingleTaskGP(
        X * 10,
        Y,
        covar_module=so3_kernel(2.5),
        input_transform=IsotropicNormalize(3),
        outcome_transform=Standardize(m=1),
    )
    X4, Y4 = make_data(n=14, d=4)
    prod = ScaleKernel(so3_kernel(1.5, active_dims=(0, 1, 2)).base_kernel * MaternKernel(nu=2.5, active_dims=(3,)))
    b = SingleTaskGP(X4, Y4, covar_module=prod.to(DT), input_transform=Normalize(4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputDataWarning)  # float32 on purpose
        c = SingleTaskGP(
            (X * 10).float(),
            Y.float(),
            covar_module=so3_kernel(1.5).float(),
            input_transform=IsotropicNormalize(3),
            outcome_transform=Standardize(m=1),
        )
    return {
        "so3+isonormalize+standardize": a,
        "product+normalize": b,
        "fully_bayesian": fb_model(X, Y),
        "so3-float32": c,
    }


@pytest.mark.parametrize("case", ["so3+isonormalize+standardize", "product+normalize", "fully_bayesian", "so3-float32"])
def test_conditional_moments_match_posterior(case):
    """Mean and variance of S = 4800 conditional draws at 6 test points vs the exact posterior (mixture for the
    fully Bayesian model; 4800 = 1600 per MCMC sample, round-robin).

    Mean: pathwise draws are unbiased for the posterior mean whatever the frequencies (zero-mean weights and noise),
    so |mean - mu| < 4.5 sqrt(var / S). Variance: MC sd of a sample variance is var sqrt(2 / (S - 1)) (Gaussian
    draws; for the mixture we use the mixture variance, conservative enough at 4.5 sd), plus 4.5x the RFF bound of
    `_rff_sd_bound` in the model's outcome units.
    """
    model = _model_cases()[case].eval()
    if case != "fully_bayesian":
        model.likelihood.noise = 1e-2
    d = model.train_inputs[0].shape[-1]
    dtype = model.train_inputs[0].dtype
    Xt = torch.rand(6, d, generator=torch.Generator().manual_seed(9), dtype=DT).to(dtype)
    if case.startswith("so3"):
        Xt = Xt * 10
    S, F = 4800, 4096
    draws = simulate(model, Xt, S, seed=3, num_features=F)
    assert draws.dtype == dtype
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputDataWarning)
        post = model.posterior(Xt)
    fb = case == "fully_bayesian"
    mu = (post.mixture_mean if fb else post.mean).detach().squeeze(-1)
    var = (post.mixture_variance if fb else post.variance).detach().squeeze(-1)
    assert ((draws.mean(0) - mu).abs() / (var / S).sqrt()).max() < 4.5
    Xtr = model.train_inputs[0]
    Xt_t = model.transform_inputs(Xt) if hasattr(model, "input_transform") else Xt
    ystd2 = model.outcome_transform.stdvs.squeeze() ** 2 if hasattr(model, "outcome_transform") else 1.0
    noise = model.likelihood.noise.detach().reshape(-1, 1, 1)
    rff = ystd2 * _rff_sd_bound(model.covar_module, noise, Xtr, Xt_t, F)
    tol = 4.5 * (var * math.sqrt(2 / (S - 1)) + rff)
    assert ((draws.var(0) - var).abs() < tol).all(), (draws.var(0), var, tol)


def test_conditional_draws_honour_the_data():
    """With noise variance 1e-4 the posterior sd at a training point is < 1e-2: 64 draws stay within 5e-2 of the
    data (5 sd; the posterior mean's own residual is checked first), unconditional draws do not."""
    X, Y = make_data(n=12)
    gp = SingleTaskGP(X, Y, covar_module=so3_kernel(2.5, outputscale=2.0)).eval()
    gp.likelihood.noise = 1e-4
    mu = gp.posterior(X).mean.detach().squeeze(-1)
    assert (mu - Y.squeeze(-1)).abs().max() < 1e-2
    draws = simulate(gp, X, 64, seed=0)
    assert (draws - Y.T).abs().max() < 5e-2
    assert (simulate(gp.covar_module, X, 64, seed=0) - Y.T).abs().max() > 0.5


# ------------------------------------------------------------------------------------------ BoTorch paths
@pytest.mark.parametrize("nu", NUS)
def test_draw_matheron_paths_single_task(nu, seed):
    X, Y = make_data()
    for base in (SO3AnisotropicKernel(nu=nu), FullSPDKernel(nu=nu)):
        gp = SingleTaskGP(X, Y, covar_module=ScaleKernel(base).to(DT)).eval()
        paths = draw_matheron_paths(gp, torch.Size([4]))
        out = paths(torch.rand(5, 3, dtype=DT))
        assert out.shape == (4, 5)
        assert torch.isfinite(out).all()


def test_draw_matheron_paths_batched_model_list_and_fully_bayesian(seed):
    X, Y = make_data()
    # a two-output SingleTaskGP: kernel batch_shape (2,)
    Y2 = torch.cat([Y, -Y], dim=-1)
    gp2 = SingleTaskGP(X, Y2, covar_module=so3_kernel(1.5, batch_shape=torch.Size([2]))).eval()
    assert draw_matheron_paths(gp2, torch.Size([3]))(torch.rand(5, 3, dtype=DT)).shape == (3, 2, 5)
    X4, _ = make_data(d=4)
    prod = SingleTaskGP(
        X4,
        Y,
        covar_module=ScaleKernel(so3_kernel(None, active_dims=(1, 2, 3)).base_kernel * RBFKernel(active_dims=(0,))),
    )
    ml = ModelListGP(prod, SingleTaskGP(X4, Y2[:, 1:], covar_module=so3_kernel(0.5, active_dims=(0, 1, 2)))).eval()
    out = draw_matheron_paths(ml, torch.Size([3]))(torch.rand(5, 4, dtype=DT))
    assert [o.shape for o in out] == [(3, 5), (3, 5)]
    fb = fb_model(X, Y, num_mcmc=4)
    assert draw_matheron_paths(fb, torch.Size([3]))(torch.rand(5, 3, dtype=DT)).shape == (3, 4, 5)


def test_fully_bayesian_simulate_assignment():
    """Which MCMC sample each draw uses: the samples get constant means 0, 10, 20 (standardised units) and the test
    point is far from the data (the update and the prior draw are O(1) there), so each draw sits near its sample's
    mean. Round-robin for num_samples >= M, evenly spread ((j M) // S) otherwise."""
    X, Y = make_data()
    fb = fb_model(X, Y, num_mcmc=3)
    samples = {
        "mean": torch.tensor([0.0, 10.0, 20.0], dtype=DT),
        "outputscale": torch.ones(3, dtype=DT),
        "noise": torch.full((3,), 1e-3, dtype=DT),
        "lengthscale": torch.full((3, 3), 0.3, dtype=DT),
        "rotation": torch.zeros(3, 3, dtype=DT),
    }
    fb.load_mcmc_samples(samples)
    tf = fb.outcome_transform
    far = torch.full((1, 3), 50.0, dtype=DT)
    for S, expected in ((7, [0, 1, 2, 0, 1, 2, 0]), (2, [0, 1])):
        out = simulate(fb, far, S, seed=2, num_features=64)
        z = (out[:, 0] - tf.means.squeeze()) / tf.stdvs.squeeze()
        assert (z / 10).round().long().tolist() == expected


# ------------------------------------------------------------------------------------------ Thompson sampling
def test_thompson_sampling_map_and_fully_bayesian(seed):
    from botorch.acquisition.thompson_sampling import PathwiseThompsonSampling
    from botorch.generation.sampling import MaxPosteriorSampling
    from botorch.optim import optimize_acqf

    X, Y = make_data(n=10)
    bounds = torch.tensor([[0.0] * 3, [1.0] * 3], dtype=DT)
    gp = SingleTaskGP(X, Y, covar_module=so3_kernel(2.5), outcome_transform=Standardize(m=1)).eval()
    for model in (gp, fb_model(X, Y)):
        acq = PathwiseThompsonSampling(model)  # global RNG: seeded and restored by the `seed` fixture
        cand, val = optimize_acqf(acq, bounds, q=1, num_restarts=2, raw_samples=32)
        assert cand.shape == (1, 3) and bool(((cand >= 0) & (cand <= 1)).all())
        # the optimiser's answer is at least as good as any of 64 random points of the same sample path
        assert float(val.detach()) >= float(acq(torch.rand(64, 1, 3, dtype=DT)).detach().max()) - 1e-6
        Xc = torch.rand(40, 3, dtype=DT)
        picks = MaxPosteriorSampling(model, replacement=False)(Xc, num_samples=2)
        # BoTorch returns batch_shape x num_samples x d: (2, 3) for MAP, per MCMC sample (M, 2, 3) for ensembles
        assert picks.shape[-2:] == (2, 3)
        assert all(bool((Xc == p).all(-1).any()) for p in picks.reshape(-1, 3))


# ------------------------------------------------------------------------------------------ independent references
def test_simulate_equals_botorch_draw_matheron_paths():
    """simulate evaluates its own replica of BoTorch's Matheron paths block-wise (without BoTorch's per-draw copies
    of the features): with the same RNG stream it must give BoTorch's values."""
    import functools

    from botorch.sampling.pathwise import draw_kernel_feature_paths

    for case, model in _model_cases().items():
        model.eval()
        dtype = model.train_inputs[0].dtype
        Xt = torch.rand(9, model.train_inputs[0].shape[-1], dtype=DT).to(dtype) * (10 if case.startswith("so3") else 1)
        with torch.random.fork_rng():
            torch.manual_seed(4)
            sampler = functools.partial(
                draw_kernel_feature_paths, num_features=64, weight_generator=functools.partial(torch.randn, dtype=dtype)
            )
            ref = draw_matheron_paths(model, torch.Size([3]), prior_sampler=sampler)(Xt).detach()
        M = model.batch_shape.numel() if getattr(model, "_is_fully_bayesian", False) else 1
        out = simulate(model, Xt, 3 * M, seed=4, num_features=64, chunk_size=4)
        # float64: rounding only; float32: the two evaluation orders round differently (phases ~10 rad, eps 6e-8)
        tol = {} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
        torch.testing.assert_close(out, ref.reshape(3 * M, -1), **tol, msg=case)


def test_update_solves_all_draws_against_one_factor(monkeypatch):
    """The Matheron update factorises once and solves with the draws as columns: the factor passed to
    ``cholesky_solve`` is never broadcast to one copy per draw (BoTorch's update allocated ``draws x n^2`` floats:
    40 GB for 200 draws at n = 5,000). Checked for a plain and a batched (fully Bayesian-like) model."""
    import gpytorch_so3.pathwise as pw

    seen = []
    real = torch.cholesky_solve

    def spy(rhs, factor, *args, **kwargs):
        seen.append((tuple(rhs.shape), tuple(factor.shape)))
        return real(rhs, factor, *args, **kwargs)

    monkeypatch.setattr(pw.torch, "cholesky_solve", spy)
    X = torch.rand(30, 3, dtype=DT)
    gp = SingleTaskGP(X, torch.randn(30, 1, dtype=DT), covar_module=so3_kernel(2.5)).eval()
    simulate(gp, torch.rand(4, 3, dtype=DT), 50, seed=0, num_features=64)
    assert seen == [((30, 50), (30, 30))]
    seen.clear()
    fb = fb_model(*make_data(n=12)).eval()  # a batch of MCMC samples: one factor per sample, the draws as columns
    M = fb.batch_shape.numel()
    out = simulate(fb, torch.rand(4, 3, dtype=DT), 5 * M, seed=0, num_features=64)
    assert seen == [((M, 12, 5), (M, 12, 12))] and out.shape == (5 * M, 4)


@pytest.mark.parametrize("nu", [None, 1.5])
def test_variogram_along_principal_axes_gstools(nu):
    """GSTools' experimental variogram of realisations on a grid along the kernel's principal axes vs the model
    variogram sigma^2 (1 - kappa(h / l_i)) along each axis.

    The 32^3 grid is laid out in principal coordinates and rotated into space (x = u R^T), so GSTools'
    ``vario_estimate_axis`` along array axis i measures the field exactly along the principal direction R[:, i].
    Matheron's estimator is unbiased for the variogram of the simulated field on any domain, so the mean over R = 16
    realisations differs from the model by MC error (SE from the spread of the 16 estimates, t with 15 dof) plus the
    RFF error shared by all realisations (sd <= sigma^2 / sqrt(F'), F' = 1024). Threshold: 5 combined sd at each of
    the 3 x 10 lags (t15 two-sided p(5) ~ 2e-4). Power: the model variogram with the axes' length-scales swapped is
    rejected at the same threshold.
    """
    gs = pytest.importorskip("gstools")
    n, R, F, sigma2 = 32, 16, 2048, 1.5
    ls = torch.tensor([2.0, 4.0, 8.0], dtype=DT)
    k = so3_kernel(nu, outputscale=sigma2)
    k.base_kernel.lengthscale = ls
    Rm = k.base_kernel.rotation_matrix.detach()
    u = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=DT),) * 3, indexing="ij"), -1).reshape(-1, 3)
    X = u @ Rm.T + torch.tensor([100.0, -50.0, 20.0], dtype=DT)
    fields = simulate(k, X, R, seed=21, num_features=F).reshape(R, n, n, n).numpy()
    lags = np.arange(1, 11)

    def model_gamma(length):
        h2 = torch.as_tensor(lags / length, dtype=DT) ** 2
        return sigma2 * (1 - Fn.base_correlation(h2, nu)).numpy()

    rff_sd = sigma2 / math.sqrt(F // 2)
    for axis in range(3):
        est = np.stack([gs.vario_estimate_axis(f, direction=axis)[lags] for f in fields])
        mean, se = est.mean(0), est.std(0, ddof=1) / math.sqrt(R)
        z = (mean - model_gamma(float(ls[axis]))) / np.sqrt(se**2 + rff_sd**2)
        assert np.abs(z).max() < 5, (axis, z)
        other = float(ls[(axis + 1) % 3])
        z_wrong = (mean - model_gamma(other)) / np.sqrt(se**2 + rff_sd**2)
        assert np.abs(z_wrong).max() > 5, (axis, z_wrong)  # fails the same test


def test_regular_grid():
    b = torch.tensor([[0.0, -1.0, 5.0], [2.0, 1.0, 5.0]], dtype=DT)
    G = regular_grid(b, (3, 2, 1))
    assert G.shape == (6, 3) and G.dtype == DT
    torch.testing.assert_close(G.reshape(3, 2, 1, 3)[:, 0, 0, 0], torch.tensor([0.0, 1.0, 2.0], dtype=DT))
    torch.testing.assert_close(G[:, 2], torch.full((6,), 5.0, dtype=DT))
    with pytest.raises(ValueError, match="positive ints"):
        regular_grid(b, (3, 2))
    with pytest.raises(ValueError, match="positive ints"):
        regular_grid(b, (3, 0, 2))
    with pytest.raises(TypeError, match="shape entries"):
        regular_grid(b, (3, 2.0, 2))
    assert torch.equal(regular_grid(b, np.array([3, 2, 1])), G)  # numpy integers are ints
    with pytest.raises(ValueError, match="lower <= upper"):
        regular_grid(b.flip(0), (2, 2, 2))
    with pytest.raises(ValueError, match="2 x d"):
        regular_grid(b[0], (2, 2, 2))


def test_feature_generator_is_generic_over_the_dimension():
    """gen_anisotropic_features only needs whitening_matrix (batch x d x d), nu, active_dims, batch_shape: a toy
    2-D kernel (as the d-dimensional rotated kernel will be) gets a correct map. Threshold: 5 RFF sd (V <= 1)."""

    class Toy2D(gpytorch.kernels.Kernel):
        nu = 2.5

        @property
        def whitening_matrix(self):
            return torch.tensor([[3.0, 1.5], [0.0, 0.5]], dtype=DT)

        def forward(self, x1, x2, diag=False, **params):
            return Fn.covariance(x1, x2, self.whitening_matrix, self.nu, diag=diag)

    k = Toy2D(active_dims=(1, 3))
    X = torch.rand(8, 4, generator=torch.Generator().manual_seed(6), dtype=DT)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        fmap = gen_anisotropic_features(k, num_inputs=4, num_outputs=4096)
    P = fmap(X)
    K = k(X).to_dense()
    assert P.shape == (8, 4096)
    assert (P @ P.T - K).abs().max() < 5 / math.sqrt(2048)
    # power: a transposed whitening matrix would differ by 0.47 here
    assert (Fn.covariance(X[:, [1, 3]], X[:, [1, 3]], k.whitening_matrix.T, 2.5) - K).abs().max() > 5 / math.sqrt(2048)
