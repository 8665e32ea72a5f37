"""Tests of gpytorch_so3.priors: rotation priors (densities, samplers, shapes) and the named defaults.

References are independent of the code under test: closed-form densities with scipy's normal CDF, scipy's
``multivariate_normal`` and ``Rotation``, numerical integration with ``scipy.integrate``.

Statistical tests use fixed seeds (the ``seed`` fixture seeds torch with 0 and restores the RNG afterwards), so
they are deterministic; each states its sample size and why its threshold holds for a correct implementation
and fails for a wrong one (negative controls are included where the test's power is not obvious).
"""

from __future__ import annotations

import itertools
import math
import pickle

import gpytorch
import numpy as np
import pyro
import pytest
import torch
from botorch.models import SingleTaskGP
from botorch.optim.utils import sample_all_priors
from gpytorch.constraints import Positive
from gpytorch.kernels import ScaleKernel
from gpytorch.priors import GammaPrior, LogNormalPrior
from scipy import integrate, stats
from scipy.spatial.transform import Rotation

from gpytorch_so3 import so3
from gpytorch_so3.kernels import SO3AnisotropicKernel
from gpytorch_so3.priors import (
    DEFAULT_LENGTHSCALE_MEDIAN,
    INITIAL_LENGTHSCALE_RANGE,
    GaussianRotationPrior,
    HaarRotationPrior,
    default_lengthscale_constraint,
    default_lengthscale_prior,
    default_noise_prior,
    default_outputscale_prior,
    default_rotation_prior,
    so3_covar_module,
)

PI = math.pi
SMOOTHINGS = (0.02, 0.1, 0.3, 0.5)


def closed_form_haar_log_density(t: np.ndarray | float, s: float) -> np.ndarray:
    """log p_s(w) at |w| = t, written directly: log[(1 - cos t) / (4 pi^2 t^2)] + log Phi((pi - t) / s).

    ``1 - cos t`` is evaluated as ``2 sin^2(t/2)`` (the same number without cancellation for tiny t); the limit at
    t = 0 is 1/(8 pi^2). ``log Phi`` is scipy's ``norm.logcdf``.
    """
    t = np.asarray(t, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        radial = np.where(t == 0, 1.0 / (8 * PI**2), 2 * np.sin(t / 2) ** 2 / (4 * PI**2 * t**2))
    return np.log(radial) + stats.norm.logcdf((PI - t) / s)


def radial_log_prob(prior: HaarRotationPrior, t: np.ndarray, direction=(0.6, -0.0, 0.8)) -> np.ndarray:
    """log_prob of the prior at vectors of length t along a fixed unit direction (float64)."""
    u = torch.tensor(direction, dtype=torch.float64)
    u = u / u.norm()
    w = torch.as_tensor(np.asarray(t, dtype=np.float64))[..., None] * u
    return prior.double().log_prob(w).numpy()


def sample_radial_cdf(prior: HaarRotationPrior, s: float):
    """CDF of |w| under the prior, from its own log_prob: F(t) = 4 pi int_0^t u^2 p(u) du, on a fine grid."""
    grid = np.linspace(0.0, 2 * PI, 200_001)
    dens = 4 * PI * grid**2 * np.exp(radial_log_prob(prior, grid))
    cdf = integrate.cumulative_simpson(dens, x=grid, initial=0.0)
    return lambda t: np.interp(t, grid, cdf), cdf[-1]


# ------------------------------------------------------------------------------------------ Haar: density
@pytest.mark.parametrize("s", SMOOTHINGS)
def test_haar_normalisation_by_quadrature(s):
    # Radial integral 4 pi int_0^inf t^2 p_s(t) dt of the class's own log_prob. The construction is exact up to the
    # mass beyond 2 pi, which is below Phi(-pi/s) (<= 1e-9 for s <= 0.5); quad's own error is ~1e-13 here.
    prior = HaarRotationPrior(s)

    def f(t):
        return 4 * PI * t * t * math.exp(float(radial_log_prob(prior, np.array([t]))[0]))

    breaks = [0.0, PI - 6 * s, PI, PI + 6 * s, 2 * PI, 2 * PI + 80 * s]
    pieces = [integrate.quad(f, a, b, epsabs=1e-14, epsrel=1e-12, limit=200)[0] for a, b in itertools.pairwise(breaks)]
    total = sum(pieces)
    assert abs(total - 1.0) < max(1e-10, 2 * stats.norm.cdf(-PI / s))


def test_haar_unsmoothed_normalisation_reference():
    # Sanity check of the reference itself: the hard-wall Haar density integrates to 1 over the ball |w| <= pi.
    total = integrate.quad(lambda t: 4 * PI * t * t * (1 - math.cos(t)) / (4 * PI**2 * t * t), 0, PI)[0]
    assert total == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("s", SMOOTHINGS)
def test_haar_log_prob_matches_closed_form(s):
    prior = HaarRotationPrior(s)
    t = np.array([0.0, 1e-7, 1e-4, 1.9e-3, 2.1e-3, 0.3, 1.0, 2.5, PI - s, PI, PI + s, PI + 3 * s, 4.5, 5.5])
    expected = closed_form_haar_log_density(t, s)
    got = radial_log_prob(prior, t)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_haar_known_values():
    prior = HaarRotationPrior(0.1).double()
    zero = prior.log_prob(torch.zeros(3, dtype=torch.float64))
    # At w = 0: (1 - cos t)/t^2 -> 1/2, so p = 1/(8 pi^2) (times Phi(pi/0.1) = 1 - 1e-215).
    assert float(zero) == pytest.approx(math.log(1 / (8 * PI**2)), abs=1e-14)
    at_pi = prior.log_prob(torch.tensor([0.0, 0.0, PI], dtype=torch.float64))
    # At |w| = pi: (1 - cos pi)/(4 pi^2 pi^2) = 1/(2 pi^4), times Phi(0) = 1/2: half of each antipodal pair's mass.
    assert float(at_pi) == pytest.approx(math.log(1 / (2 * PI**4)) + math.log(0.5), abs=1e-14)


def test_haar_log_prob_is_radial():
    prior = HaarRotationPrior().double()
    g = torch.Generator().manual_seed(3)
    u = torch.randn(50, 3, generator=g, dtype=torch.float64)
    u = u / u.norm(dim=-1, keepdim=True)
    lp = prior.log_prob(2.0 * u)
    torch.testing.assert_close(lp, lp[:1].expand(50), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("t", [0.0, 1e-6, 1e-3, 1.0, PI, 4.0, 2 * PI, 2 * PI + 1e-3, 10.0, 40.0])
def test_haar_finite_values_and_gradients(dtype, t):
    prior = HaarRotationPrior().to(dtype)
    w = (torch.tensor([0.48, -0.6, 0.64], dtype=dtype) * t).requires_grad_(True)
    lp = prior.log_prob(w)
    (grad,) = torch.autograd.grad(lp, w)
    assert lp.dtype == dtype
    assert torch.isfinite(lp)
    assert torch.isfinite(grad).all()


def test_haar_gradient_at_zero_is_zero_and_points_inward_beyond_pi():
    prior = HaarRotationPrior().double()
    w0 = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    (g0,) = torch.autograd.grad(prior.log_prob(w0), w0)
    assert torch.equal(g0, torch.zeros(3, dtype=torch.float64))  # smooth radial maximum at the origin
    for t in (PI, PI + 0.3, 5.0):  # no wall: a finite gradient pulls back towards the ball
        w = torch.tensor([t, 0.0, 0.0], dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(prior.log_prob(w), w)
        assert float(g[0]) < 0 and torch.isfinite(g).all()


def test_haar_gradcheck():
    prior = HaarRotationPrior(0.3).double()
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 3, generator=g, dtype=torch.float64)
    radii = torch.tensor([1e-4, 0.7, 2.0, PI - 0.01, PI + 0.2, 4.0], dtype=torch.float64)
    w = w / w.norm(dim=-1, keepdim=True) * radii[:, None]
    assert torch.autograd.gradcheck(lambda x: prior.log_prob(x), (w.requires_grad_(True),))


# ------------------------------------------------------------------------------------------ Haar: sampler
N_SAMPLES = 20_000
# KS thresholds: with a fixed seed the tests are deterministic; for a correct sampler the p-value is uniform over
# seeds, so p > 1e-3 fails for 1 seed in 1000. The KS critical distance at alpha = 1e-3 and n = 20000 is
# 1.95 / sqrt(n) = 0.014, below every error the negative controls below produce.


@pytest.mark.parametrize("s", [0.1, 0.5])
def test_haar_samples_push_forward_to_haar(seed, s):
    w = HaarRotationPrior(s).double().sample((N_SAMPLES,))
    rot = Rotation.from_rotvec(w.numpy())  # scipy's own exp map, independent of so3.exp_map
    theta = rot.magnitude()
    # Haar: the rotation angle has density (1 - cos theta)/pi on [0, pi], CDF (theta - sin theta)/pi.
    assert stats.kstest(theta, lambda x: (x - np.sin(x)) / PI).pvalue > 1e-3
    # ... and the rotation axis is uniform on the sphere: its z-component is U(-1, 1).
    axis = rot.as_rotvec() / theta[:, None]
    assert stats.kstest(axis[:, 2], stats.uniform(-1, 2).cdf).pvalue > 1e-3


def test_haar_angle_test_has_power(seed):
    # Negative control for the test above: Gaussian(1.0) axis-angle samples are not Haar and must be rejected.
    w = GaussianRotationPrior(1.0).double().sample((N_SAMPLES,))
    theta = Rotation.from_rotvec(w.numpy()).magnitude()
    assert stats.kstest(theta, lambda x: (x - np.sin(x)) / PI).pvalue < 1e-6


@pytest.mark.parametrize("s", [0.1, 0.5])
def test_haar_samples_radial_distribution_matches_density(seed, s):
    prior = HaarRotationPrior(s).double()
    cdf, total = sample_radial_cdf(prior, s)
    assert total == pytest.approx(1.0, abs=1e-9)  # the sampler's support [0, 2 pi] holds all the mass
    r = prior.sample((N_SAMPLES,)).norm(dim=-1).numpy()
    assert r.max() <= 2 * PI + 1e-12
    assert stats.kstest(r, cdf).pvalue > 1e-3
    # The flip to the far preimage happens at the right rate: P(|w| > pi) = 1 - F(pi) (0.025 at s = 0.1, 0.13 at
    # s = 0.5); binomial count within 4.5 standard deviations (two-sided P ~ 7e-6 for a correct sampler).
    p_beyond = 1.0 - float(cdf(PI))
    k = int((r > PI).sum())
    sd = math.sqrt(N_SAMPLES * p_beyond * (1 - p_beyond))
    assert abs(k - N_SAMPLES * p_beyond) < 4.5 * sd
    # Negative control: the same rotations wrapped back into the ball (no flips) are rejected by the KS test.
    wrapped = so3.log_map(so3.exp_map(prior.sample((N_SAMPLES,)))).norm(dim=-1).numpy()
    assert stats.kstest(wrapped, cdf).pvalue < 1e-3


@pytest.mark.parametrize("prior_cls", [HaarRotationPrior, GaussianRotationPrior])
def test_sample_shapes(seed, prior_cls):
    prior = prior_cls()
    assert prior.event_shape == torch.Size([3])
    assert prior.batch_shape == torch.Size([])
    assert prior.sample().shape == (3,)
    assert prior.sample((5,)).shape == (5, 3)
    assert prior.sample(torch.Size([4, 2])).shape == (4, 2, 3)
    expanded = prior.expand((2, 7, 3))
    assert expanded.batch_shape == (2, 7) and expanded.event_shape == (3,)
    assert expanded.sample().shape == (2, 7, 3)
    assert expanded.sample((5,)).shape == (5, 2, 7, 3)
    batched = prior_cls(batch_shape=(4,))
    assert batched.sample((2,)).shape == (2, 4, 3)
    assert torch.equal(batched.mean, torch.zeros(4, 3))  # both densities are symmetric about 0
    assert batched.log_prob(torch.zeros(3)).shape == (4,)
    assert batched.log_prob(torch.zeros(6, 1, 3)).shape == (6, 4)


@pytest.mark.parametrize("prior_cls", [HaarRotationPrior, GaussianRotationPrior])
def test_dtype_and_device_follow_module(seed, prior_cls):
    prior = prior_cls()
    assert prior.sample().dtype == torch.get_default_dtype()
    prior64 = prior.double()
    assert prior64.sample((3,)).dtype == torch.float64
    assert prior64.expand((2, 3)).sample().dtype == torch.float64
    assert prior.float().log_prob(torch.ones(3, dtype=torch.float32)).dtype == torch.float32


def test_haar_rsample_not_reparameterised():
    prior = HaarRotationPrior()
    assert not prior.has_rsample
    with pytest.raises(NotImplementedError, match="sample"):
        prior.rsample()


# ------------------------------------------------------------------------------------------ Gaussian
@pytest.mark.parametrize("scale", [0.2, 1.0, 3.0])
def test_gaussian_log_prob_matches_scipy(scale):
    prior = GaussianRotationPrior(torch.tensor(scale, dtype=torch.float64))
    pts = np.random.default_rng(0).normal(size=(10, 3)) * 2
    ref = stats.multivariate_normal(np.zeros(3), scale**2 * np.eye(3)).logpdf(pts)
    np.testing.assert_allclose(prior.log_prob(torch.from_numpy(pts)).numpy(), ref, rtol=1e-12)


def test_gaussian_batched_scale_log_prob_and_moments(seed):
    scales = torch.tensor([0.5, 2.0], dtype=torch.float64)
    prior = GaussianRotationPrior(scales, batch_shape=(2,))
    x = torch.tensor([0.1, -0.3, 0.7], dtype=torch.float64)
    ref = [stats.multivariate_normal(np.zeros(3), float(s) ** 2 * np.eye(3)).logpdf(x.numpy()) for s in scales]
    np.testing.assert_allclose(prior.log_prob(x).numpy(), ref, rtol=1e-12)
    # Sample variance per coordinate: relative standard error sqrt(2/n) = 1% at n = 20000; 5% is 5 standard errors.
    draws = prior.sample((N_SAMPLES,))
    var = draws.var(dim=0)
    torch.testing.assert_close(var, (scales**2)[:, None].expand(2, 3), rtol=0.05, atol=0)
    assert prior.has_rsample


def test_gaussian_rsample_is_reparameterised():
    scale = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    prior = GaussianRotationPrior(1.0).double()
    prior.scale = scale  # a buffer may hold a tensor that requires grad
    w = prior.rsample((4,))
    (g,) = torch.autograd.grad(w.sum(), scale)
    assert torch.isfinite(g) and float(g) != 0.0


# ------------------------------------------------------------------------------------------ expand / pickling
@pytest.mark.parametrize("make", [lambda: HaarRotationPrior(0.2), lambda: GaussianRotationPrior(0.5)])
def test_expand_round_trip(make):
    prior = make().double()
    expanded = prior.expand(torch.Size([2, 3]))
    assert expanded.batch_shape == (2,)
    assert type(expanded) is type(prior)
    w = torch.tensor([[0.1, 0.2, 0.3], [2.0, -1.5, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(expanded.log_prob(w), prior.log_prob(w))
    twice = expanded.expand((4, 2, 3))
    assert twice.batch_shape == (4, 2) and twice.event_shape == (3,)
    torch.testing.assert_close(twice.log_prob(w), prior.log_prob(w).expand(4, 2))
    assert twice.sample().shape == (4, 2, 3)
    restored = pickle.loads(pickle.dumps(expanded))
    assert restored.batch_shape == (2,)
    torch.testing.assert_close(restored.log_prob(w), prior.log_prob(w))


@pytest.mark.parametrize("prior_cls", [HaarRotationPrior, GaussianRotationPrior])
def test_expand_rejects_torch_style_batch_shape(prior_cls):
    with pytest.raises(ValueError, match=r"\(\*batch_shape, 3\)"):
        prior_cls().expand((2,))


def test_validation_errors():
    for bad in (0.0, -0.1, 0.51, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="smoothing"):
            HaarRotationPrior(bad)
    with pytest.raises(TypeError):
        HaarRotationPrior("0.1")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="scale"):
            GaussianRotationPrior(bad)
    with pytest.raises(ValueError, match="broadcast"):
        GaussianRotationPrior(torch.ones(3), batch_shape=(2,))
    for prior in (HaarRotationPrior(), GaussianRotationPrior()):
        with pytest.raises(ValueError, match=r"\(\.\.\., 3\)"):
            prior.log_prob(torch.zeros(4, 2))


def _log_prior_sum(module) -> torch.Tensor:
    return sum(prior.log_prob(closure(m)).sum() for _, m, prior, closure, _ in module.named_priors())


def test_pickle_kernel_with_priors(seed):
    for rotation_prior in (HaarRotationPrior(0.2), GaussianRotationPrior(0.5)):
        k = so3_covar_module(rotation_prior=rotation_prior).double()
        k.base_kernel.sample_from_prior("rotation_prior")
        k2 = pickle.loads(pickle.dumps(k))
        assert isinstance(k2.base_kernel.rotation_prior, type(rotation_prior))
        torch.testing.assert_close(k2.base_kernel.rotation, k.base_kernel.rotation)
        torch.testing.assert_close(_log_prior_sum(k2), _log_prior_sum(k))
        x = torch.rand(5, 3, dtype=torch.float64)
        torch.testing.assert_close(k2(x).to_dense(), k(x).to_dense())
        # state_dict: only tensors (BoTorch's checkpoints call .detach() on every entry); the Gaussian scale is a
        # buffer and travels with it, the Haar smoothing is a constructor setting (like the kernel's nu)
        sd = k.state_dict()
        assert all(torch.is_tensor(v) for v in sd.values())
        k3 = so3_covar_module(
            rotation_prior=type(rotation_prior)(
                **({"smoothing": 0.2} if isinstance(rotation_prior, HaarRotationPrior) else {})
            )
        ).double()
        k3.load_state_dict(sd)
        torch.testing.assert_close(_log_prior_sum(k3), _log_prior_sum(k))
        if isinstance(rotation_prior, GaussianRotationPrior):
            assert float(k3.base_kernel.rotation_prior.scale) == 0.5


# ------------------------------------------------------------------------------------------ gpytorch / pyro / botorch
@pytest.mark.parametrize("rotation_prior", [HaarRotationPrior(), GaussianRotationPrior(0.8)], ids=["haar", "gauss"])
def test_gpytorch_sample_from_prior(seed, rotation_prior):
    k = SO3AnisotropicKernel(nu=2.5, rotation_prior=rotation_prior)
    before = k.rotation.detach().clone()
    k.sample_from_prior("rotation_prior")
    assert k.rotation.shape == (3,)
    assert not torch.equal(k.rotation.detach(), before)
    assert torch.isfinite(_log_prior_sum(k))


@pytest.mark.parametrize("batch_shape", [torch.Size([]), torch.Size([2])])
@pytest.mark.parametrize("rotation_prior", [HaarRotationPrior(), GaussianRotationPrior(0.8)], ids=["haar", "gauss"])
def test_pyro_sample_from_prior(seed, batch_shape, rotation_prior):
    k = so3_covar_module(batch_shape=batch_shape, rotation_prior=rotation_prior).double()
    holder = {}

    def model():
        holder["module"] = k.pyro_sample_from_prior()

    trace = pyro.poutine.trace(model).get_trace()
    site = trace.nodes["base_kernel.rotation_prior"]
    assert site["value"].shape == (*batch_shape, 3)
    assert site["fn"].batch_shape == batch_shape and site["fn"].event_shape == (3,)
    assert torch.isfinite(site["fn"].log_prob(site["value"])).all()
    sampled = holder["module"].base_kernel
    torch.testing.assert_close(sampled.rotation, site["value"].to(sampled.rotation))
    assert trace.nodes["base_kernel.lengthscale_prior"]["value"].shape == (*batch_shape, 1, 3)


def test_botorch_sample_all_priors_single_task_gp(seed):
    X = torch.rand(15, 3, dtype=torch.float64)
    Y = torch.randn(15, 1, dtype=torch.float64)
    model = SingleTaskGP(X, Y, covar_module=so3_covar_module())
    base = model.covar_module.base_kernel
    before = base.rotation.detach().clone()
    sample_all_priors(model)
    assert base.rotation.shape == (3,)
    assert not torch.equal(base.rotation.detach(), before)
    assert base.lengthscale.shape == (1, 3)
    model.eval()
    post = model.posterior(torch.rand(4, 3, dtype=torch.float64))
    assert torch.isfinite(post.mean).all()


def test_botorch_sample_all_priors_batched_kernel(seed):
    X = torch.rand(15, 3, dtype=torch.float64)
    Y = torch.randn(15, 2, dtype=torch.float64)  # two outputs: SingleTaskGP batches the kernel over them
    model = SingleTaskGP(X, Y, covar_module=so3_covar_module(batch_shape=torch.Size([2])))
    base = model.covar_module.base_kernel
    sample_all_priors(model)
    assert base.rotation.shape == (2, 3)
    assert not torch.allclose(base.rotation[0], base.rotation[1])  # independent draws per batch member
    assert base.lengthscale.shape == (2, 1, 3)


# ------------------------------------------------------------------------------------------ defaults
def test_default_priors_and_constraint():
    ls = default_lengthscale_prior()
    assert isinstance(ls, LogNormalPrior)
    q = ls.icdf(torch.tensor([0.025, 0.5, 0.975]))
    # the documented 95% interval 0.042..2.1 around the median 0.3
    torch.testing.assert_close(q, torch.tensor([0.3 * math.exp(-1.959964), 0.3, 0.3 * math.exp(1.959964)]))
    assert float(q[0]) == pytest.approx(0.042, abs=5e-4) and float(q[2]) == pytest.approx(2.13, abs=5e-3)
    assert isinstance(default_rotation_prior(), HaarRotationPrior)
    out, noise = default_outputscale_prior(), default_noise_prior()
    assert isinstance(out, GammaPrior) and isinstance(noise, GammaPrior)
    assert (float(out.concentration), float(out.rate)) == pytest.approx((2.0, 0.15))
    assert (float(noise.concentration), float(noise.rate)) == pytest.approx((1.1, 0.05))
    assert isinstance(default_lengthscale_constraint(), Positive)
    assert default_lengthscale_prior() is not ls  # fresh objects: no prior shared between models


def test_so3_covar_module_defaults():
    k = so3_covar_module()
    assert isinstance(k, ScaleKernel) and isinstance(k.base_kernel, SO3AnisotropicKernel)
    base = k.base_kernel
    assert base.nu == 2.5
    assert isinstance(base.lengthscale_prior, LogNormalPrior)
    assert isinstance(base.rotation_prior, HaarRotationPrior)
    assert isinstance(k.outputscale_prior, GammaPrior)
    assert isinstance(base.raw_lengthscale_constraint, Positive)
    torch.testing.assert_close(base.lengthscale.detach(), torch.full((1, 3), DEFAULT_LENGTHSCALE_MEDIAN))
    assert torch.equal(base.rotation.detach(), torch.zeros(3))
    assert float(k.outputscale.detach()) == pytest.approx(1.0)
    # every registered prior is finite at the initial values
    assert torch.isfinite(_log_prior_sum(k))


def test_so3_covar_module_options():
    k = so3_covar_module(
        None,
        batch_shape=(3,),
        active_dims=(1, 2, 4),
        lengthscale_prior=None,
        rotation_prior=None,
        outputscale_prior=None,
    )
    assert k.base_kernel.nu is None
    assert k.batch_shape == (3,) and k.base_kernel.rotation.shape == (3, 3)
    assert len(list(k.named_priors())) == 0
    assert k.base_kernel.active_dims.tolist() == [1, 2, 4]
    x = torch.rand(3, 6, 5)
    assert k(x).to_dense().shape == (3, 6, 6)
    # initial length-scale from a custom prior: LogNormal median, Gamma mode (no icdf), clipped to the sane range
    k = so3_covar_module(lengthscale_prior=LogNormalPrior(math.log(0.5), 0.5))
    assert float(k.base_kernel.lengthscale.detach()[0, 0]) == pytest.approx(0.5, rel=1e-5)
    k = so3_covar_module(lengthscale_prior=GammaPrior(3.0, 6.0))
    assert float(k.base_kernel.lengthscale.detach()[0, 0]) == pytest.approx(2.0 / 6.0, rel=1e-5)
    k = so3_covar_module(lengthscale_prior=LogNormalPrior(math.log(50.0), 1.0))
    assert float(k.base_kernel.lengthscale.detach()[0, 0]) == pytest.approx(INITIAL_LENGTHSCALE_RANGE[1], rel=1e-5)
    with pytest.raises(ValueError, match="nu"):
        so3_covar_module(nu=1.0)


def test_mll_includes_rotation_prior():
    X = torch.rand(12, 3, dtype=torch.float64)
    Y = torch.randn(12, 1, dtype=torch.float64)
    model = SingleTaskGP(X, Y, covar_module=so3_covar_module())
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    model.train()
    base = model.covar_module.base_kernel
    w = torch.tensor([0.3, -2.9, 1.1], dtype=torch.float64)
    values = {}
    for label, vec in (("in", w), ("out", w * (-(2 * PI - w.norm()) / w.norm()))):  # the same rotation
        base.rotation = vec
        values[label] = mll(model(X), model.train_targets)
    # same rotation, same likelihood: the difference is exactly the rotation prior's log-density difference / n
    prior = base.rotation_prior
    expected = (prior.log_prob(w) - prior.log_prob(w * (-(2 * PI - w.norm()) / w.norm()))) / X.shape[0]
    torch.testing.assert_close(values["in"] - values["out"], expected, rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------------------ slow: NUTS crosses |w| = pi
@pytest.mark.slow
def test_nuts_on_haar_prior_has_haar_pushforward(seed):  # `seed` restores the global RNGs afterwards
    # Pyro NUTS targeting the default prior alone (no likelihood: the step size adapts to the flat interior, the
    # hardest case for the edge at |w| = pi). Under Haar, cos(theta) of the rotation angle has mean -1/2 and
    # variance 1/4; with the chain's effective sample size ESS (arviz) the Monte Carlo standard error of the mean
    # is 0.5 / sqrt(ESS), and we require |mean + 1/2| < 4 standard errors. The chain must also cross the smooth
    # edge (visit |w| > pi) and have (almost) no divergent transitions: measured 0 of 1500 at the default
    # s = 0.3 (and 163 at s = 0.1); the threshold of 15 (1%) leaves room for other Pyro/torch versions.
    # About 30 s on one core.
    import arviz as az
    from pyro.infer import MCMC, NUTS

    prior = default_rotation_prior().double()

    def model():
        pyro.sample("w", prior)

    pyro.set_rng_seed(0)
    mcmc = MCMC(NUTS(model), num_samples=1500, warmup_steps=500, disable_progbar=True)
    mcmc.run()
    w = mcmc.get_samples()["w"]
    c = np.cos(Rotation.from_rotvec(w.numpy()).magnitude())
    ess = float(az.ess(c[None, :]))
    assert ess > 300
    assert abs(c.mean() + 0.5) < 4 * 0.5 / math.sqrt(ess)
    assert (w.norm(dim=-1) > PI).any()
    assert len(mcmc.diagnostics()["divergences"]["chain 0"]) <= 15
