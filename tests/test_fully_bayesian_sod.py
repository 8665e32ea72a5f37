"""RotatedFullyBayesianGP: the fully Bayesian model in d dimensions, with fit_nuts and summarize_posterior.

Default-suite tests use tiny MCMC budgets (n <= 20 points, a dozen NUTS iterations): they check the API and shapes
for d = 2 and d = 4, the sampler/predictive-model parity against explicit formulas (``scipy.linalg.expm``), the
analytic potential against Pyro's generic one (value and gradient, d = 2, 4, 5), that d = 3 is exactly the SO(3)
model, the starting frames, summaries, pickling and parallel chains. The statistical tests (azimuth recovery on a
rotated 2-D field; "do no harm": the posterior concentrates at the identity on axis-aligned fields) run realistic
budgets under ``@pytest.mark.slow``; each states its seed, budget and why its threshold holds.
"""

from __future__ import annotations

import math
import pickle

import pytest
import scipy.linalg
import torch
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.models.transforms.outcome import Standardize
from botorch.optim import optimize_acqf
from botorch.posteriors.fully_bayesian import GaussianMixturePosterior

from gpytorch_so3 import priors, sod
from gpytorch_so3.botorch_utils import check_input_scaling
from gpytorch_so3.fully_bayesian import (
    RotatedFullyBayesianGP,
    RotatedPyroModel,
    SO3FullyBayesianGP,
    SO3PyroModel,
    sample_sites,
)
from gpytorch_so3.kernels.rotated_kernel import RotatedAnisotropicKernel
from gpytorch_so3.kernels.so3_kernel import SO3AnisotropicKernel
from gpytorch_so3.nuts import (
    _initial_values,
    _interior_representative,
    fit_nuts,
    initial_lengthscale_factors,
)
from gpytorch_so3.summary import coordinate_angle, planar_azimuth, summarize_posterior, summarize_samples

# num_workers=1: chains in this process (toy budgets; worker start-up would dominate), except the parallel test.
TINY = {"warmup_steps": 10, "num_samples": 8, "thinning": 4, "disable_progbar": True, "max_tree_depth": 3}
TINY1 = {**TINY, "num_workers": 1}


def _matern52(r: torch.Tensor) -> torch.Tensor:
    return (1 + math.sqrt(5) * r + 5 / 3 * r**2) * torch.exp(-math.sqrt(5) * r)


def _field(n: int, R: torch.Tensor, ls, *, seed: int = 0, noise: float = 0.05, dtype=torch.float64):
    """A Matern-5/2 field on the unit cube with metric R diag(ls)^-2 R^T (explicit formulas), standardised."""
    d = R.shape[-1]
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=torch.float64)
    z = (X[:, None, :] - X[None, :, :]) @ R.double() / torch.as_tensor(ls, dtype=torch.float64)
    K = _matern52(z.norm(dim=-1)) + 1e-8 * torch.eye(n, dtype=torch.float64)
    y = torch.linalg.cholesky(K) @ torch.randn(n, generator=g, dtype=torch.float64)
    y = y + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return X.to(dtype), ((y - y.mean()) / y.std()).unsqueeze(-1).to(dtype)


def _planar(theta_deg: float) -> torch.Tensor:
    t = math.radians(theta_deg)
    return torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=torch.float64)


def _rotated_data(d: int, n: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(100 + d)
    R = sod.random_rotation(d, generator=g, dtype=torch.float64)
    ls = torch.linspace(0.2, 1.0, d, dtype=torch.float64)
    return _field(n, R, ls, seed=seed)


@pytest.fixture(scope="module", params=[2, 4], ids=["d2", "d4"])
def fitted(request) -> RotatedFullyBayesianGP:
    X, Y = _rotated_data(request.param)
    return fit_nuts(RotatedFullyBayesianGP(X, Y), num_chains=2, seed=1, **TINY1)


# ------------------------------------------------------------------------------------------ construction
@pytest.mark.parametrize("d", [2, 4, 6])
def test_model_builds_with_d_dim_sites_and_shrinkage_default(d):
    X, Y = _rotated_data(d, n=10)
    model = RotatedFullyBayesianGP(X, Y)
    m = d * (d - 1) // 2
    assert model.dim == d and not model.is_fitted
    assert model.pyro_model.sample_sites == {
        "outputscale": (),
        "noise": (),
        "mean": (),
        "lengthscale": (d,),
        "rotation": (m,),
    }
    assert sample_sites(d) == model.pyro_model.sample_sites
    prior = model.pyro_model.priors["rotation"]
    assert isinstance(prior, priors.ShrinkageRotationPrior) and prior.event_shape == (m,)
    assert model.anisotropic_input_dims == tuple(range(d))
    # the BoTorch-layer scaling check reads the declared columns (no warning for the unit cube)
    check_input_scaling(model)


def test_d3_default_prior_is_haar_and_so3_classes_are_the_d3_case():
    X, Y = _rotated_data(3, n=10)
    rot = RotatedFullyBayesianGP(X, Y)
    so3m = SO3FullyBayesianGP(X, Y)
    assert isinstance(so3m, RotatedFullyBayesianGP) and isinstance(so3m.pyro_model, RotatedPyroModel)
    assert isinstance(rot.pyro_model.priors["rotation"], priors.HaarRotationPrior)
    assert isinstance(so3m.pyro_model.priors["rotation"], priors.HaarRotationPrior)
    assert SO3PyroModel().dim == 3 and SO3PyroModel().has_default_program
    shrink = RotatedFullyBayesianGP(X, Y, rotation_prior=priors.default_sod_rotation_prior(3))
    assert isinstance(shrink.pyro_model.priors["rotation"], priors.ShrinkageRotationPrior)


def test_custom_rotation_prior_and_validation():
    X2, Y2 = _rotated_data(2, n=10)
    model = RotatedFullyBayesianGP(X2, Y2, rotation_prior=priors.HaarAnglePrior())
    assert isinstance(model.pyro_model.priors["rotation"], priors.HaarAnglePrior)
    with pytest.raises(ValueError, match=r"event_shape \(1,\)"):
        RotatedFullyBayesianGP(X2, Y2, rotation_prior=priors.GaussianLieAlgebraPrior(3))
    with pytest.raises(ValueError, match="d >= 2"):
        RotatedFullyBayesianGP(X2[:, :1], Y2)
    with pytest.raises(ValueError, match="dim = 4 differs"):
        RotatedFullyBayesianGP(X2, Y2, pyro_model=RotatedPyroModel(4))
    with pytest.raises(ValueError, match="not both"):
        RotatedFullyBayesianGP(X2, Y2, pyro_model=RotatedPyroModel(2), rotation_prior=priors.HaarAnglePrior())
    with pytest.raises(TypeError, match="RotatedPyroModel"):
        RotatedFullyBayesianGP(X2, Y2, pyro_model=object())
    with pytest.raises(ValueError, match="RotatedFullyBayesianGP"):  # the 3-D class points to the d-D one
        SO3FullyBayesianGP(torch.rand(10, 4, dtype=torch.float64), Y2)
    with pytest.raises(TypeError, match="dim"):
        RotatedPyroModel(2.0)
    with pytest.raises(ValueError, match="dim"):
        RotatedPyroModel(1)
    pm = RotatedPyroModel(4)
    with pytest.raises(ValueError, match="n x 4"):
        pm.set_inputs(X2, Y2)


# ------------------------------------------------------------------------------------------ fit + posterior
def test_fitted_shapes(fitted):
    d = fitted.dim
    m = d * (d - 1) // 2
    S = 2 * 2  # 2 chains x ceil(8 / 4)
    k = fitted.kernel
    assert type(k) is RotatedAnisotropicKernel and k.dim == d
    assert fitted.num_mcmc_samples == S and fitted.batch_shape == torch.Size([S])
    assert k.lengthscale.shape == (S, 1, d) and k.rotation.shape == (S, m)
    assert k.rotation_matrix.shape == (S, d, d)
    info = fitted.fit_nuts_info_
    assert info.samples["lengthscale"].shape == (2, 8, d) and info.samples["rotation"].shape == (2, 8, m)
    assert info.initial_rotation.shape == (2, m) and info.potential == "analytic"
    assert fitted.median_lengthscale.shape == (d,)
    ls, axes = fitted.canonical()
    assert ls.shape == (S, d) and axes.shape == (S, d, d) and bool((ls.diff(dim=-1) >= 0).all())


def test_posterior_mixture_and_acquisition(fitted):
    d = fitted.dim
    Xt = torch.rand(5, d, dtype=torch.float64)
    post = fitted.posterior(Xt)
    S = fitted.num_mcmc_samples
    assert isinstance(post, GaussianMixturePosterior)
    assert post.mean.shape == (S, 5, 1) and post.mixture_mean.shape == (5, 1)
    assert bool(torch.isfinite(post.mixture_variance).all()) and bool((post.mixture_variance > 0).all())
    with pytest.raises(ValueError, match=f"q x {d}"):
        fitted.posterior(torch.rand(5, d + 1, dtype=torch.float64))
    acqf = qLogNoisyExpectedImprovement(fitted, X_baseline=fitted.train_inputs[0], prune_baseline=False)
    assert acqf(torch.rand(3, 2, d, dtype=torch.float64)).shape == (3,)
    bounds = torch.stack([torch.zeros(d), torch.ones(d)]).double()
    cand, value = optimize_acqf(
        acqf, bounds=bounds, q=2, num_restarts=2, raw_samples=16, options={"maxiter": 5, "batch_limit": 2}
    )
    assert cand.shape == (2, d) and bool(torch.isfinite(value))
    assert bool(((cand >= 0) & (cand <= 1)).all())


def test_loaded_kernel_equals_explicit_covariance(fitted):
    """Sample i of the batched ScaleKernel(RotatedAnisotropicKernel) == s_i * matern52(|(x - x') expm(W_i) / l_i|).

    The reference builds the rotation with ``scipy.linalg.expm`` of the skew matrix (independent of ``sod.exp_map``'s
    closed forms) and the distances by explicit differences; it also equals the sampler's own covariance
    (``noiseless_covariance``), so the sampler and the predictive model describe the same kernel.
    """
    d = fitted.dim
    X = fitted.train_inputs[0]
    k = fitted.kernel
    with torch.no_grad():
        K = fitted.covar_module(X).to_dense()
        for i in range(fitted.num_mcmc_samples):
            R = torch.as_tensor(scipy.linalg.expm(sod.hat(k.rotation[i], d).numpy()))
            z = (X[:, None, :] - X[None, :, :]) @ R / k.lengthscale[i, 0]
            ref = fitted.covar_module.outputscale[i] * _matern52(z.norm(dim=-1))
            torch.testing.assert_close(K[i], ref, rtol=1e-9, atol=1e-10)
            pm = fitted.pyro_model
            sampler = pm.noiseless_covariance(fitted.covar_module.outputscale[i], k.lengthscale[i, 0], k.rotation[i])
            torch.testing.assert_close(sampler, ref, rtol=1e-9, atol=1e-10)  # same points (centring is exact)


@pytest.mark.parametrize(
    ("d", "prior", "fixed_noise"),
    [(2, None, False), (4, None, False), (4, "gauss", True), (5, None, False)],
)
def test_analytic_potential_equals_pyro_potential(d, prior, fixed_noise):
    """make_potential_fn == Pyro's generic potential (value and gradient) in d dimensions, at random points.

    The analytic potential differentiates the GP likelihood in closed form w.r.t. the whitening matrix ``A`` and
    reaches the so(d) coordinates by autograd through ``sod.exp_map`` (``matrix_exp`` for d >= 4); the reference is
    Pyro's autograd through the traced program. Agreement to 1e-9 (float64 round-off).
    """
    from pyro.infer.mcmc.util import initialize_model

    X, Y = _rotated_data(d, n=18)
    Yvar = torch.full_like(Y, 0.05) if fixed_noise else None
    rp = priors.GaussianLieAlgebraPrior(d, scale=0.7) if prior == "gauss" else None
    pm = RotatedFullyBayesianGP(X, Y, Yvar, rotation_prior=rp).pyro_model
    init, pyro_pe, transforms, _ = initialize_model(pm.sample, jit_compile=False)
    fast = pm.make_potential_fn(transforms)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        z = {
            k: (v.detach().double() + 0.5 * torch.randn(v.shape, generator=g, dtype=torch.float64)).requires_grad_()
            for k, v in init.items()
        }
        ref = pyro_pe(z)
        ref_grad = torch.autograd.grad(ref, list(z.values()))
        val = fast(z)
        grad = torch.autograd.grad(val, list(z.values()))
        torch.testing.assert_close(val, ref, rtol=1e-9, atol=1e-9)
        for a, b in zip(grad, ref_grad, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_d3_counterpart_gives_the_same_draws_as_so3():
    """RotatedFullyBayesianGP on 3-D inputs is the SO(3) model: same seed, bitwise the same draws and predictions."""
    X, Y = _rotated_data(3, n=14)
    a = fit_nuts(RotatedFullyBayesianGP(X, Y), num_chains=2, seed=4, **TINY1)
    b = fit_nuts(SO3FullyBayesianGP(X, Y), num_chains=2, seed=4, **TINY1)
    assert type(a.kernel) is SO3AnisotropicKernel  # d = 3 loads the SO(3) kernel
    for k in b.fit_nuts_info_.samples:
        assert torch.equal(a.fit_nuts_info_.samples[k], b.fit_nuts_info_.samples[k]), k
    assert torch.equal(a.fit_nuts_info_.initial_rotation, b.fit_nuts_info_.initial_rotation)
    Xt = torch.rand(4, 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(a.posterior(Xt).mixture_mean, b.posterior(Xt).mixture_mean)


def test_float32_inputs_and_fixed_noise_with_outcome_transform():
    X, Y = _rotated_data(2, n=12)
    model = RotatedFullyBayesianGP(
        X.float(), 3.0 * Y.float() + 1.0, torch.full_like(Y, 0.02).float(), outcome_transform=Standardize(m=1)
    )
    fit_nuts(model, **TINY1)
    assert "noise" not in model.fit_nuts_info_.samples and model.kernel.rotation.dtype == torch.float32
    post = model.posterior(torch.rand(3, 2))
    assert post.mixture_mean.dtype == torch.float32 and bool(torch.isfinite(post.mixture_mean).all())


# ------------------------------------------------------------------------------------------ starting frames
@pytest.mark.parametrize("d", [2, 4, 6])
def test_haar_start_is_nearest_identity_copy_of_the_same_metric(d):
    """Initial (l, R): a Haar-random metric written in the frame nearest the identity (largest trace of R)."""
    X, Y = _rotated_data(d, n=10)
    pm = RotatedFullyBayesianGP(X, Y).pyro_model
    v = _initial_values(pm, torch.Generator().manual_seed(5))
    assert v["lengthscale"].shape == (d,) and v["rotation"].shape == (d * (d - 1) // 2,)
    R = sod.exp_map(v["rotation"], d)
    # Regenerate the Haar draw and check the start is one of its signed-permutation copies (same metric) ...
    g = torch.Generator().manual_seed(5)
    jitter = torch.exp((torch.rand(d, generator=g, dtype=torch.float64) - 0.5) * 0.5)
    spread = float(pm.sampler_X.std(dim=0).pow(2).mean().sqrt())
    ls0 = spread * torch.tensor(initial_lengthscale_factors(d), dtype=torch.float64) * jitter
    R0 = sod.random_rotation(d, generator=g, dtype=torch.float64)
    M0 = R0 @ torch.diag(ls0**-2) @ R0.mT
    M = R @ torch.diag(v["lengthscale"] ** -2) @ R.mT
    torch.testing.assert_close(M, M0, rtol=1e-9, atol=1e-9)
    # ... with the largest trace among all copies (enumerated for d <= 4; the assignment solution for d > 4, which
    # the next test checks against enumeration at d = 4).
    tr = float(R.diagonal().sum())
    assert tr >= float(R0.diagonal().sum()) - 1e-12
    if d <= 4:
        best = float(
            (R0.unsqueeze(0) @ sod.signed_permutations(d, dtype=torch.float64)).diagonal(dim1=-2, dim2=-1).sum(-1).max()
        )
        assert tr == pytest.approx(best, abs=1e-9)
    else:
        torch.testing.assert_close(R, R0 @ sod.nearest_signed_permutation(R0), rtol=0, atol=1e-9)


def test_interior_representative_above_enumeration_keeps_the_metric():
    """d = 5 goes through the assignment path (``sod.nearest_signed_permutation``, tested against enumeration in
    tests/test_sod.py) and keeps the metric."""
    g = torch.Generator().manual_seed(0)
    R5 = sod.random_rotation(5, generator=g, dtype=torch.float64)
    ls5 = torch.tensor([0.1, 0.2, 0.4, 0.8, 1.6], dtype=torch.float64)
    l2, R2 = _interior_representative(ls5, R5)
    torch.testing.assert_close(R2 @ torch.diag(l2**-2) @ R2.mT, R5 @ torch.diag(ls5**-2) @ R5.mT)
    torch.testing.assert_close(R2, R5 @ sod.nearest_signed_permutation(R5), rtol=0, atol=1e-12)


def test_init_strategies_identity_and_auto():
    """ "identity": every chain at rotation 0; "auto" (default): chain 0 at the identity for d != 3, the others Haar;
    for d = 3 "auto" is "haar" (the SO(3) behaviour is unchanged)."""
    X, Y = _rotated_data(4, n=12)
    model = fit_nuts(RotatedFullyBayesianGP(X, Y), num_chains=2, init_strategy="identity", **TINY1)
    assert bool((model.fit_nuts_info_.initial_rotation == 0).all())
    auto = fit_nuts(RotatedFullyBayesianGP(X, Y), num_chains=2, **TINY1).fit_nuts_info_.initial_rotation
    assert bool((auto[0] == 0).all()) and bool((auto[1] != 0).any())
    X3, Y3 = _rotated_data(3, n=10)
    kw = {**TINY1, "warmup_steps": 4, "num_samples": 4, "num_chains": 2}
    a = fit_nuts(SO3FullyBayesianGP(X3, Y3), **kw).fit_nuts_info_
    b = fit_nuts(SO3FullyBayesianGP(X3, Y3), init_strategy="haar", **kw).fit_nuts_info_
    assert torch.equal(a.initial_rotation, b.initial_rotation) and bool((a.initial_rotation != 0).all())
    with pytest.raises(ValueError, match="identity"):
        fit_nuts(model, init_strategy="nope", **TINY1)


# ------------------------------------------------------------------------------------------ summaries
def test_summary_of_fitted_model(fitted):
    d = fitted.dim
    s = summarize_posterior(fitted)
    N = 2 * 8  # every draw of every chain
    assert s.dim == d and s.lengthscale.shape == (N, d) and s.axes.shape == (N, d, d)
    assert bool((s.lengthscale.diff(dim=-1) >= 0).all())
    # canonical axes: the sod.canonicalize of each draw's (l, exp_map(w))
    info = fitted.fit_nuts_info_
    ls_ref, ax_ref = sod.canonicalize(
        info.samples["lengthscale"].reshape(N, d), sod.exp_map(info.samples["rotation"].reshape(N, -1), d)
    )
    torch.testing.assert_close(s.lengthscale, ls_ref)
    torch.testing.assert_close(s.axes, ax_ref)
    for key in ("lengthscale", "outputscale", "noise", "mean", "axes"):
        assert key in s.rhat and key in s.ess
    assert s.rhat["lengthscale"].shape == (d,) and s.ess["axes"].shape == (d, d)
    assert s.coordinate_angle.shape == (N, d) and s.nearest_coordinate.shape == (d,)
    text = str(s)
    assert text.splitlines()[0].startswith(f"RotatedFullyBayesianGP posterior (d = {d}): 2 chain(s) x 8 draws")
    assert "lengthscale[" in text and "outputscale" in text and "R-hat" in text
    if d == 2:
        assert s.planar_angle.shape == (N, 2) and s.azimuth.shape == (2,) and s.dip is None
        assert "azimuth" in text and "lengthscale[long]" in text
    else:
        assert s.planar_angle is None and s.azimuth is None and "nearest" in text and "lengthscale[axis3]" in text
    idata = s.to_arviz()
    assert dict(idata.posterior.sizes) == {"chain": 2, "draw": 8, "axis": d, "coord": d}
    assert "coordinate_angle" in idata.posterior


def test_summary_removes_symmetry_in_2d_and_reports_azimuth():
    """Draws of one 2-D metric written in its 4 equivalent frames (theta + k 90 deg, length-scales swapped for odd k)
    give one canonical answer: short axis at 30 degrees, long axis at -60 degrees."""
    g = torch.Generator().manual_seed(0)
    C, N = 2, 40
    theta = math.radians(30.0) + 0.01 * torch.randn(C, N, 1, generator=g, dtype=torch.float64)
    ls = torch.tensor([0.1, 0.5], dtype=torch.float64) * torch.exp(0.03 * torch.randn(C, N, 2, generator=g))
    k = torch.randint(0, 4, (C, N, 1), generator=g)
    odd = (k % 2 == 1).expand(C, N, 2)
    draws = {
        "lengthscale": torch.where(odd, ls.flip(-1), ls),
        "rotation": theta + k * math.pi / 2,
        "outputscale": torch.ones(C, N, dtype=torch.float64),
        "mean": torch.zeros(C, N, dtype=torch.float64),
    }
    s = summarize_samples(draws)
    assert s.posterior_mean["lengthscale"].tolist() == pytest.approx([0.1, 0.5], rel=0.02)
    assert float(s.azimuth[0]) == pytest.approx(30.0, abs=1.0) and float(s.azimuth[1]) == pytest.approx(-60.0, abs=1.0)
    assert float((s.planar_angle[:, 0] - 30.0).abs().max()) < 5.0
    assert s.coordinate_angle[:, 0].median().item() == pytest.approx(30.0, abs=1.0)
    assert not s.weakly_identified
    assert "30.0" in str(s)


def test_summary_axis_aligned_in_5d_has_zero_coordinate_angles():
    """Axis-aligned metrics written in random signed-permutation frames: every canonical axis is a coordinate axis.

    The frames are quarter turns in the disjoint planes (1, 0) and (3, 2) (so(5) coordinates 2 and 5, see
    ``sod.coordinate_pairs``), composed: ``exp_map`` gives exact signed permutations, and ``(l P, P)`` is the
    axis-aligned metric ``diag(l)^-2`` written in the frame ``P``.
    """
    d, C, N = 5, 2, 12
    g = torch.Generator().manual_seed(0)
    w = torch.zeros(C, N, 10, dtype=torch.float64)
    w[..., 2] = (math.pi / 2) * torch.randint(-1, 2, (C, N), generator=g)
    w[..., 5] = (math.pi / 2) * torch.randint(-1, 2, (C, N), generator=g)
    P = sod.exp_map(w, d)
    ls = torch.tensor([0.1, 0.2, 0.4, 0.8, 1.6], dtype=torch.float64)
    draws = {
        "lengthscale": (ls @ P.abs()),
        "rotation": w,
        "outputscale": torch.ones(C, N, dtype=torch.float64),
        "mean": torch.zeros(C, N, dtype=torch.float64),
    }
    assert bool((draws["lengthscale"] != ls).any(dim=-1).any())  # the frames do differ
    s = summarize_samples(draws)
    torch.testing.assert_close(s.lengthscale, ls.expand(C * N, d))
    assert float(s.coordinate_angle.max()) < 1e-5
    assert s.nearest_coordinate.tolist() == [0, 1, 2, 3, 4]
    assert s.azimuth is None and s.dip is None and "x4" in str(s)


def test_summary_helpers_and_validation():
    assert planar_azimuth(torch.tensor([0.0, -1.0])).item() == 90.0
    angle, idx = coordinate_angle(torch.eye(4, dtype=torch.float64))
    assert angle.tolist() == [0.0] * 4 and idx.tolist() == [0, 1, 2, 3]
    bad = {
        "lengthscale": torch.rand(2, 5, 4) + 0.1,
        "rotation": torch.randn(2, 5, 3),
        "outputscale": torch.ones(2, 5),
        "mean": torch.zeros(2, 5),
    }
    with pytest.raises(ValueError, match="draws x 6"):
        summarize_samples(bad)
    with pytest.raises(TypeError, match="RotatedFullyBayesianGP"):
        summarize_posterior(object())


# ------------------------------------------------------------------------------------------ pickling, processes
def test_fitted_model_and_pyro_model_pickle(fitted):
    """What the spawn pool sends (the chain task with the d-D Pyro model) and a fitted model pickle."""
    pm = pickle.loads(pickle.dumps(fitted.pyro_model))
    assert pm.dim == fitted.dim and pm.has_default_program
    clone = pickle.loads(pickle.dumps(fitted))
    Xt = torch.rand(4, fitted.dim, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(clone.posterior(Xt).mixture_mean, fitted.posterior(Xt).mixture_mean)


@pytest.mark.slow  # ~20 s on the loaded 2-core machine: two spawned workers each import the package
def test_parallel_chains_equal_sequential_chains():
    """2 worker processes give bitwise the chains of the calling process (d = 2).

    Bitwise: same code, same pickled inputs, same seeds and initial values, one torch thread everywhere (see the
    SO(3) counterpart in test_fully_bayesian_robustness.py).
    """
    X, Y = _rotated_data(2, n=12)
    kw = {**TINY, "num_chains": 2, "seed": 5, "warmup_steps": 6, "num_samples": 4}
    seq = fit_nuts(RotatedFullyBayesianGP(X, Y), **kw, num_workers=1).fit_nuts_info_
    par = fit_nuts(RotatedFullyBayesianGP(X, Y), **kw, num_workers=2).fit_nuts_info_
    assert seq.num_workers == 1 and par.num_workers == 2
    for k in par.samples:
        assert torch.equal(seq.samples[k], par.samples[k]), k
    assert torch.equal(seq.initial_rotation, par.initial_rotation)


# ------------------------------------------------------------------------------------------ statistics (slow)
@pytest.mark.slow
def test_recovers_azimuth_of_rotated_2d_field():
    """NUTS recovers the principal azimuth of a rotated 2-D field.

    Data: n = 60 points on the unit square, Matern-5/2 with length-scales (0.08, 0.4) (ratio 5), short axis at
    30 degrees, noise sd 0.05, seed 0. Budget: 2 chains x (128 warm-up + 128 draws), max depth 6, seed 0, default
    (shrinkage) rotation prior and default init ("auto": chain 0 from the identity, chain 1 Haar). Thresholds:
    posterior mean azimuth of the short axis within 6 degrees of 30 (the issue's MAP target for d = 2, at n = 60
    instead of 200); the truth inside the 90% interval of the draws;
    R-hat < 1.1 for the length-scales; long/short ratio > 2.5 (truth 5). Measured on this seed: azimuth 28.9
    degrees, 90% interval of the draws 25.0-32.6, R-hat 1.014/1.020, posterior mean length-scales 0.093/0.479.
    """
    X, Y = _field(60, _planar(30.0), (0.08, 0.4), seed=0)
    model = fit_nuts(
        RotatedFullyBayesianGP(X, Y),
        num_chains=2,
        warmup_steps=128,
        num_samples=128,
        seed=0,
        disable_progbar=True,
        num_workers=1,
    )
    s = summarize_posterior(model)
    assert abs(float(s.azimuth[0]) - 30.0) < 6.0, str(s)
    lo, hi = s.planar_angle[:, 0].quantile(torch.tensor([0.05, 0.95], dtype=torch.float64)).tolist()
    assert lo <= 30.0 <= hi, str(s)
    assert bool((s.rhat["lengthscale"] < 1.1).all()), str(s)
    assert float(s.posterior_mean["lengthscale"][1] / s.posterior_mean["lengthscale"][0]) > 2.5, str(s)


@pytest.mark.slow
def test_do_no_harm_posterior_concentrates_at_identity_2d():
    """Axis-aligned 2-D field: with the default shrinkage prior the rotation posterior concentrates at 0.

    Data: n = 60, Matern-5/2, length-scales (0.08, 0.4) along the input axes, noise sd 0.05, seed 1. Budget:
    2 chains x (128 + 128), seed 0, init_strategy="haar" (Haar-random starts for both chains, not the default's
    identity start of chain 0, so the chains must find the identity themselves). Measured on this seed: median
    1.4 degrees, 90% of the draws within 4 (with HaarAnglePrior instead: median 1.6: with this much data the
    likelihood already pins the angle; the prior matters when the data are weak, see the next test).
    Threshold: posterior median angle of the principal axes to the nearest input axis < 3 degrees (the spike of
    ShrinkageRotationPrior has sd 0.05 rad = 2.9 degrees), and 90% of the draws within 8 degrees.
    """
    X, Y = _field(60, torch.eye(2, dtype=torch.float64), (0.08, 0.4), seed=1)
    model = fit_nuts(
        RotatedFullyBayesianGP(X, Y),
        num_chains=2,
        warmup_steps=128,
        num_samples=128,
        seed=0,
        init_strategy="haar",
        disable_progbar=True,
        num_workers=1,
    )
    s = summarize_posterior(model)
    ang = s.coordinate_angle[:, 0]
    assert float(ang.median()) < 3.0, str(s)
    assert float(ang.quantile(0.9)) < 8.0, str(s)
    assert s.nearest_coordinate.tolist() == [0, 1], str(s)


@pytest.mark.slow
def test_do_no_harm_shrinkage_prior_matters_when_data_are_weak():
    """Weakly informative axis-aligned 2-D data: the shrinkage prior keeps the angle near 0, the Haar prior does not.

    Data: n = 25, length-scales (0.15, 0.3) (ratio 2) along the input axes, noise sd 0.05, seed 3. Budget per
    prior: 2 chains x (128 + 128), seed 0, init_strategy="haar" for both (same starts). Measured: posterior median
    angle to the nearest input axis 4.5 degrees with the default ShrinkageRotationPrior, 18.4 with HaarAnglePrior
    (the likelihood is nearly flat in the angle, so the posterior follows the prior). Thresholds: shrinkage median
    < 8 degrees and less than half the Haar median (measured ratio 0.25).
    """
    X, Y = _field(25, torch.eye(2, dtype=torch.float64), (0.15, 0.3), seed=3)
    kw = {
        "num_chains": 2,
        "warmup_steps": 128,
        "num_samples": 128,
        "seed": 0,
        "init_strategy": "haar",
        "disable_progbar": True,
        "num_workers": 1,
    }
    shrink = summarize_posterior(fit_nuts(RotatedFullyBayesianGP(X, Y), **kw))
    haar = summarize_posterior(fit_nuts(RotatedFullyBayesianGP(X, Y, rotation_prior=priors.HaarAnglePrior()), **kw))
    med_shrink = float(shrink.coordinate_angle[:, 0].median())
    med_haar = float(haar.coordinate_angle[:, 0].median())
    assert med_shrink < 8.0, str(shrink)
    assert med_shrink < 0.5 * med_haar, (med_shrink, med_haar)


class _ARDPyroModel(RotatedPyroModel):
    """The same Pyro model with the rotation fixed at 0 (a fully Bayesian ARD GP), for do-no-harm comparisons.

    Module level so that it pickles. Pyro's generic potential is used for it (``has_default_program`` is False).
    """

    def sample_rotation(self):
        return torch.zeros(sod.num_coordinates(self.dim), dtype=self.dtype, device=self._X.device)

    @property
    def sample_sites(self):
        return {k: v for k, v in super().sample_sites.items() if k != "rotation"}

    def postprocess_mcmc_samples(self, mcmc_samples):
        out = dict(mcmc_samples)
        lead = out["mean"].shape
        out["rotation"] = torch.zeros(*lead, sod.num_coordinates(self.dim), dtype=out["mean"].dtype)
        return super().postprocess_mcmc_samples(out)


@pytest.mark.slow
def test_do_no_harm_4d_matches_ard():
    """Axis-aligned 4-D field: the rotated model predicts like a fully Bayesian ARD GP.

    Data: Matern-5/2 on the unit cube, length-scales (0.15, 0.3, 0.6, 1.2) along the input axes, noise sd 0.05,
    seed 2: n = 80 training points and 200 held-out points of the same draw. Budget for each model: 2 chains x
    (128 + 128), seed 0, default init ("auto"). Models: RotatedFullyBayesianGP with the default shrinkage prior;
    the same Pyro model with the rotation fixed at 0 (a fully Bayesian ARD GP, _ARDPyroModel).
    Thresholds: held-out RMSE of the mixture mean at most 1.1x ARD's (measured 0.489 vs 0.485, ratio 1.008), and
    each posterior mean principal direction nearest to its own input axis (measured: yes).
    Not asserted, measured on this seed: the angles to the input axes do *not* concentrate below 5 degrees at this
    n (posterior medians 5.1, 9.7, 8.2, 8.7 degrees; median relative off-diagonal part of the metric 0.12): the
    summary flags every adjacent pair of length-scales as weakly identified, i.e. 80 points do not pin the 4-D
    directions, and the posterior keeps the slab's share. Concentration is tested in 2-D above.
    """
    d, n, n_test = 4, 80, 200
    X_all, Y_all = _field(n + n_test, torch.eye(d, dtype=torch.float64), (0.15, 0.3, 0.6, 1.2), seed=2)
    X, Y, Xt, Yt = X_all[:n], Y_all[:n], X_all[n:], Y_all[n:]
    kw = {"num_chains": 2, "warmup_steps": 128, "num_samples": 128, "seed": 0, "disable_progbar": True}
    rot = fit_nuts(RotatedFullyBayesianGP(X, Y), num_workers=1, **kw)
    ard = fit_nuts(RotatedFullyBayesianGP(X, Y, pyro_model=_ARDPyroModel(d)), num_workers=1, **kw)
    with torch.no_grad():
        rmse_rot = float((rot.posterior(Xt).mixture_mean - Yt).pow(2).mean().sqrt())
        rmse_ard = float((ard.posterior(Xt).mixture_mean - Yt).pow(2).mean().sqrt())
    s = summarize_posterior(rot)
    info = rot.fit_nuts_info_
    ls = info.samples["lengthscale"].reshape(-1, d)
    R = sod.exp_map(info.samples["rotation"].reshape(-1, 6), d)
    M = R @ torch.diag_embed(ls**-2) @ R.mT
    off = (M - torch.diag_embed(M.diagonal(dim1=-2, dim2=-1))).flatten(-2).norm(dim=-1) / M.flatten(-2).norm(dim=-1)
    print(f"rmse rot {rmse_rot:.4f} ard {rmse_ard:.4f}; off-diagonal median {float(off.median()):.4f}")
    assert rmse_rot <= 1.1 * rmse_ard, (rmse_rot, rmse_ard)
    assert s.nearest_coordinate.tolist() == [0, 1, 2, 3], str(s)
