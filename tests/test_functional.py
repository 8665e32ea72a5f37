"""The parameter-free covariance core: whitening/metric identities, base correlations, principal axes, nu checks."""

from __future__ import annotations

import math

import gpytorch
import numpy as np
import pytest
import torch
from reference import TOLS, base_kernel, gram, so3_metric, to_np

from gpytorch_so3 import functional as F
from gpytorch_so3 import so3

NUS = [None, 0.5, 1.5, 2.5]
NU_IDS = ["rbf", "matern12", "matern32", "matern52"]


def _params(seed: int, dtype: torch.dtype, batch=()):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(*batch, 3, generator=g, dtype=torch.float64) * 1.5
    ls = torch.rand(*batch, 3, generator=g, dtype=torch.float64) * 2 + 0.2
    return ls.to(dtype), w.to(dtype)


def test_metric_matches_reference(dtype):
    for seed in range(5):
        ls, w = _params(seed, dtype)
        M = F.metric(ls, so3.exp_map(w))
        np.testing.assert_allclose(
            to_np(M), so3_metric(ls, w), rtol=TOLS[dtype]["rtol"] * 10, atol=TOLS[dtype]["atol"] * 100
        )
        assert torch.equal(M, M.transpose(-1, -2)) or torch.allclose(M, M.transpose(-1, -2), rtol=0, atol=1e-6)
        # Eigenvalues are l^-2: the length-scales are the principal length-scales.
        ev = np.sort(np.linalg.eigvalsh(to_np(M)))
        np.testing.assert_allclose(ev, np.sort(to_np(ls) ** -2.0), rtol=1e-5 if dtype == torch.float32 else 1e-11)


def test_whitening_matrix_factors_the_metric(dtype):
    ls, w = _params(1, dtype, batch=(4,))
    R = so3.exp_map(w)
    A = F.so3_whitening_matrix(ls, R)
    assert A.shape == (4, 3, 3)
    torch.testing.assert_close(A @ A.transpose(-1, -2), F.metric(ls, R), rtol=0, atol=0)
    # Column i of A is column i of R divided by l_i.
    for i in range(3):
        torch.testing.assert_close(A[..., :, i], R[..., :, i] / ls[..., i : i + 1])


def test_whitened_distances_equal_mahalanobis(dtype):
    ls, w = _params(2, dtype)
    x = torch.rand(15, 3, generator=torch.Generator().manual_seed(3), dtype=dtype) * 4 - 2
    z = F.whiten(x, F.so3_whitening_matrix(ls, so3.exp_map(w)))
    M = so3_metric(ls, w)
    xn = to_np(x)
    ref = np.array([[(xn[i] - xn[j]) @ M @ (xn[i] - xn[j]) for j in range(15)] for i in range(15)])
    got = to_np(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    np.testing.assert_allclose(got, ref, **tol)


def test_whiten_broadcasts_batches():
    ls, w = _params(4, torch.float64, batch=(2, 1))
    A = F.so3_whitening_matrix(ls, so3.exp_map(w))  # 2 x 1 x 3 x 3
    x = torch.randn(5, 7, 3, dtype=torch.float64)
    z = F.whiten(x, A)
    assert z.shape == (2, 5, 7, 3)
    torch.testing.assert_close(z[1, 3], x[3] @ A[1, 0])


@pytest.mark.parametrize("nu", NUS, ids=NU_IDS)
def test_base_correlation_closed_forms(nu, dtype):
    r = torch.cat([torch.zeros(1), torch.logspace(-6, 1.2, 60)]).to(dtype)
    got = F.base_correlation(r**2, nu)
    ref = np.array([base_kernel(float(v), nu) for v in to_np(r)])
    np.testing.assert_allclose(
        to_np(got), ref, rtol=1e-5 if dtype == torch.float32 else 1e-13, atol=1e-7 if dtype == torch.float32 else 1e-15
    )
    # At r = 0 the Matern forms see r = sqrt(1e-30) = 1e-15 (the clamp that keeps d sqrt / d r^2 finite, as in
    # gpytorch's `dist`), so k(0) = exp(-sqrt(2 nu) 1e-15): within 3e-15 of 1, not bit-exact 1.
    assert abs(float(got[0]) - 1.0) <= max(3e-15, torch.finfo(dtype).eps)


@pytest.mark.parametrize("nu", NUS, ids=NU_IDS)
def test_base_correlation_equals_gpytorch_unit_lengthscale(nu):
    # gpytorch's own 1-D kernels at length-scale 1: a second independent reference for the base forms.
    x = torch.linspace(0, 6, 40, dtype=torch.float64)[:, None]
    k = gpytorch.kernels.RBFKernel() if nu is None else gpytorch.kernels.MaternKernel(nu=nu)
    k = k.to(torch.float64)
    k.lengthscale = 1.0
    with torch.no_grad():
        ref = k(x[:1], x).to_dense()
    got = F.base_correlation((x[:1] - x).T ** 2, nu)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("nu", NUS, ids=NU_IDS)
def test_base_correlation_gradient_finite_at_zero(nu, dtype):
    sq = torch.zeros(3, dtype=dtype, requires_grad=True)
    F.base_correlation(sq, nu).sum().backward()
    assert torch.isfinite(sq.grad).all()


def test_base_correlation_rejects_bad_nu():
    with pytest.raises(ValueError, match="nu"):
        F.base_correlation(torch.zeros(2), 3.5)


@pytest.mark.parametrize("nu", NUS, ids=NU_IDS)
def test_covariance_matches_double_loop(nu, dtype):
    ls, w = _params(5, dtype)
    g = torch.Generator().manual_seed(6)
    x1 = torch.rand(7, 3, generator=g, dtype=dtype)
    x2 = torch.rand(5, 3, generator=g, dtype=dtype)
    A = F.so3_whitening_matrix(ls, so3.exp_map(w))
    M = so3_metric(ls, w)
    tol = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-13}
    np.testing.assert_allclose(to_np(F.covariance(x1, x2, A, nu)), gram(x1, x2, M, nu), **tol)
    np.testing.assert_allclose(
        to_np(F.covariance(x1[:5], x2, A, nu, diag=True)), gram(x1[:5], x2, M, nu, diag=True), **tol
    )


def test_metric_to_canonical_round_trip(dtype):
    for seed in range(6):
        ls, w = _params(10 + seed, dtype, batch=(3,))
        R = so3.exp_map(w)
        M = F.metric(ls, R)
        l2, R2 = F.metric_to_canonical(M)
        tol = {"rtol": 2e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-11}
        torch.testing.assert_close(F.metric(l2, R2), M, **tol)
        torch.testing.assert_close(l2, ls.sort(-1).values, **tol)
        # Same canonical form as canonicalizing the generating parameters (length-scales are distinct here).
        lc, Rc = so3.canonicalize(ls, R)
        torch.testing.assert_close(l2, lc, **tol)
        torch.testing.assert_close(R2, Rc, **tol)
        torch.testing.assert_close(torch.linalg.det(R2), torch.ones(3, dtype=dtype), **tol)


def test_metric_to_canonical_of_diagonal_metric():
    M = torch.diag(torch.tensor([4.0, 0.25, 1.0], dtype=torch.float64))
    ls, R = F.metric_to_canonical(M)
    torch.testing.assert_close(ls, torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64))
    # Ascending: e_x (l=0.5), e_z (l=1), then e_x x e_z = -e_y.
    expect = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(R, expect, rtol=0, atol=1e-15)


@pytest.mark.parametrize("nu", [None, 0.5, 1.5, 2.5, np.float64(1.5)], ids=["none", "0.5", "1.5", "2.5", "np1.5"])
def test_check_nu_accepts(nu):
    out = F.check_nu(nu)
    if nu is None:
        assert out is None
    else:
        assert type(out) is float and out == nu


@pytest.mark.parametrize("nu", [1, 1.0, 3.5, 0.0, -0.5, "0.5", True, math.inf, float("nan"), [0.5]])
def test_check_nu_rejects(nu):
    with pytest.raises(ValueError, match=r"nu must be None \(squared exponential\) or one of 0.5, 1.5, 2.5"):
        F.check_nu(nu)


def test_supported_nu():
    assert F.SUPPORTED_NU == (None, 0.5, 1.5, 2.5)


def test_metric_to_principal_is_a_deprecated_alias():
    M = F.metric(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64), torch.eye(3, dtype=torch.float64))
    with pytest.warns(DeprecationWarning, match="metric_to_principal is deprecated.*metric_to_canonical"):
        old = F.metric_to_principal(M)
    for a, b in zip(old, F.metric_to_canonical(M), strict=True):
        assert torch.equal(a, b)


def test_private_names_are_aliases_of_the_public_ones():
    from gpytorch_so3 import priors, so3

    assert F._SQRT_CLAMP == F.SQRT_CLAMP
    assert so3._sinc is so3.sinc and so3._safe_norm is so3.safe_norm
    assert priors._Default is priors.Default and priors._DEFAULT is priors.DEFAULT
    assert priors._as_batch_shape is priors.as_batch_shape and priors._initial_lengthscale is priors.initial_lengthscale
