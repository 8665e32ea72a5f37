"""Tests of gpytorch_so3.datasets: shapes, reproducibility, validation, and that the fields have the covariance
they claim.

The covariance checks use an independent reference written here with NumPy/SciPy (``Rotation.from_rotvec`` for
the rotation, closed-form RBF/Matern correlations, the metric ``R diag(l)^-2 R^T``); they do not call
``gpytorch_so3.functional``. Seeds are fixed, so every test is deterministic; statistical thresholds are justified
where they are set.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg, stats
from scipy.spatial.transform import Rotation

from gpytorch_so3 import so3
from gpytorch_so3.datasets import (
    DEFAULT_FIELD_LENGTHSCALE,
    MAX_FIELD_POINTS,
    SyntheticField,
    make_axis_aligned_field,
    make_rotated_field,
)

TENSOR_FIELDS = (
    "train_X",
    "train_Y",
    "test_X",
    "test_Y",
    "test_F",
    "train_F",
    "lengthscale",
    "rotation",
    "rotation_matrix",
)


def reference_correlation(X: np.ndarray, lengthscale, rotvec, nu) -> np.ndarray:
    """Dense correlation matrix of the SO(3) kernel, from scratch."""
    R = Rotation.from_rotvec(np.asarray(rotvec, dtype=np.float64)).as_matrix()
    M = R @ np.diag(np.asarray(lengthscale, dtype=np.float64) ** -2) @ R.T
    d = X[:, None, :] - X[None, :, :]
    r2 = np.maximum(np.einsum("ijk,kl,ijl->ij", d, M, d), 0.0)
    r = np.sqrt(r2)
    if nu is None:
        return np.exp(-0.5 * r2)
    if nu == 0.5:
        return np.exp(-r)
    if nu == 1.5:
        return (1 + math.sqrt(3) * r) * np.exp(-math.sqrt(3) * r)
    return (1 + math.sqrt(5) * r + 5.0 / 3.0 * r2) * np.exp(-math.sqrt(5) * r)


def all_points(field: SyntheticField):
    X = torch.cat((field.train_X, field.test_X)).double().numpy()
    Y = torch.cat((field.train_Y, field.test_Y)).double().numpy()[:, 0]
    F = torch.cat((field.train_F, field.test_F)).double().numpy()[:, 0]
    return X, Y, F


def whitened_statistics(field: SyntheticField, rotvec=None):
    """u = L^-1 y for L L^T = signal^2 (K + jitter I) + noise^2 I: exactly N(0, I_n) if the generator is right.

    Returns the chi-square z-score (u^T u - n) / sqrt(2 n) and the KS p-value of u against N(0, 1).
    """
    X, Y, _ = all_points(field)
    rotvec = field.rotation.double().numpy() if rotvec is None else rotvec
    K = reference_correlation(X, field.lengthscale.double().numpy(), rotvec, field.nu)
    n = len(Y)
    C = field.signal_std**2 * (K + field.jitter * np.eye(n)) + field.noise_std**2 * np.eye(n)
    u = linalg.solve_triangular(linalg.cholesky(C, lower=True), Y, lower=True)
    return (u @ u - n) / math.sqrt(2 * n), stats.kstest(u, "norm").pvalue


# ------------------------------------------------------------------------------------------ structure
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(dtype):
    f = make_rotated_field(30, 12, seed=1, dtype=dtype)
    assert isinstance(f, SyntheticField)
    assert f.train_X.shape == (30, 3) and f.train_Y.shape == (30, 1) and f.train_F.shape == (30, 1)
    assert f.test_X.shape == (12, 3) and f.test_Y.shape == (12, 1) and f.test_F.shape == (12, 1)
    assert f.lengthscale.shape == (3,) and f.rotation.shape == (3,) and f.rotation_matrix.shape == (3, 3)
    for name in TENSOR_FIELDS:
        assert getattr(f, name).dtype == dtype, name
        assert torch.isfinite(getattr(f, name)).all(), name
    assert f.nu == 2.5 and f.noise_std == 0.05 and f.signal_std == 1.0 and f.seed == 1
    torch.testing.assert_close(f.lengthscale, torch.tensor(DEFAULT_FIELD_LENGTHSCALE, dtype=dtype))
    assert 0 < f.jitter <= 1e-6


def test_float32_is_the_float64_draw_rounded():
    f32 = make_rotated_field(40, 10, seed=5, dtype=torch.float32)
    f64 = make_rotated_field(40, 10, seed=5, dtype=torch.float64)
    for name in TENSOR_FIELDS:
        assert torch.equal(getattr(f32, name), getattr(f64, name).float()), name


def test_rotation_matrix_matches_rotation():
    f = make_rotated_field(10, 0, seed=2)
    ref = Rotation.from_rotvec(f.rotation.numpy()).as_matrix()
    np.testing.assert_allclose(f.rotation_matrix.numpy(), ref, atol=1e-14)
    assert float(f.rotation.norm()) <= math.pi + 1e-12  # the random rotation is stored as log_map of a Haar draw


def test_inputs_inside_domain_and_independent_test_points():
    f = make_rotated_field(200, 100, seed=4, domain=(-2.0, 3.0))
    for X in (f.train_X, f.test_X):
        assert X.min() >= -2.0 and X.max() <= 3.0
    # uniform on the cube: every coordinate has mean 0.5 and sd 5/sqrt(12) = 1.44; 300 points give a standard
    # error of 0.083 for the mean, so +-0.4 is ~5 standard errors.
    X = torch.cat((f.train_X, f.test_X))
    assert (X.mean(0) - 0.5).abs().max() < 0.4
    assert f.domain == (-2.0, 3.0)
    assert f.test_X.shape == (100, 3)


def test_explicit_rotation_kept():
    w = [0.3, -1.2, 2.5]
    f = make_rotated_field(10, 5, rotation=w, seed=0)
    torch.testing.assert_close(f.rotation, torch.tensor(w, dtype=torch.float64))
    torch.testing.assert_close(f.rotation_matrix, so3.exp_map(torch.tensor(w, dtype=torch.float64)))
    big = torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64)  # |w| > pi is accepted as given
    torch.testing.assert_close(make_rotated_field(5, 0, rotation=big).rotation, big)


def test_canonical():
    f = make_rotated_field(10, 0, lengthscale=(0.7, 0.2, 0.4), seed=3)
    ls, R = f.canonical()
    torch.testing.assert_close(ls, torch.tensor([0.2, 0.4, 0.7], dtype=torch.float64))
    # the same metric, written canonically
    M = R @ torch.diag(ls**-2) @ R.T
    torch.testing.assert_close(M, f.metric)
    ref = Rotation.from_rotvec(f.rotation.numpy()).as_matrix()
    np.testing.assert_allclose(f.metric.numpy(), ref @ np.diag(np.array([0.7, 0.2, 0.4]) ** -2) @ ref.T, rtol=1e-12)


def test_axis_aligned_field():
    f = make_axis_aligned_field(20, 5, lengthscale=(1.0, 0.2, 0.5), seed=7)
    assert torch.equal(f.rotation, torch.zeros(3, dtype=torch.float64))
    assert torch.equal(f.rotation_matrix, torch.eye(3, dtype=torch.float64))
    ls, R = f.canonical()
    torch.testing.assert_close(ls, torch.tensor([0.2, 0.5, 1.0], dtype=torch.float64))
    torch.testing.assert_close(R, torch.eye(3, dtype=torch.float64)[:, [1, 2, 0]])


# ------------------------------------------------------------------------------------------ reproducibility
def test_seed_reproducibility():
    state = torch.get_rng_state()
    a = make_rotated_field(50, 20, seed=11)
    b = make_rotated_field(50, 20, seed=11)
    assert torch.equal(torch.get_rng_state(), state)  # private generator: the global RNG is untouched
    for name in TENSOR_FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    c = make_rotated_field(50, 20, seed=12)
    for name in ("train_X", "test_X", "train_Y", "rotation"):
        assert not torch.allclose(getattr(a, name), getattr(c, name)), name
    # Same seed, same inputs whatever the rotation: rotated and axis-aligned fields are paired (only the metric
    # differs), which makes comparisons between them sharper.
    d = make_axis_aligned_field(50, 20, seed=11)
    assert torch.equal(d.train_X, a.train_X) and torch.equal(d.test_X, a.test_X)
    assert not torch.allclose(d.train_Y, a.train_Y)


# ------------------------------------------------------------------------------------------ the covariance is right
@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": 0},
        {"seed": 1, "nu": None},
        {"seed": 2, "nu": 0.5, "lengthscale": (0.3, 0.1, 0.6)},
        {
            "seed": 3,
            "nu": 1.5,
            "signal_std": 2.0,
            "noise_std": 0.1,
            "domain": (-2.0, 3.0),
            "lengthscale": (0.75, 2.0, 5.0),
        },
    ],
    ids=["matern52", "rbf", "matern12", "matern32-scaled-domain"],
)
def test_observations_are_exact_gp_draws(kwargs):
    # Whitening test: with the reference covariance C of all (train + test) noisy observations, u = L^-1 y is
    # exactly N(0, I_800) when the generator is right. u^T u is chi-square(800): its z-score is within +-4 with
    # probability 1 - 6e-5 (normal approximation; the exact chi-square tail is similar at 800 dof), and the KS
    # p-value of u against N(0, 1) is uniform, so p > 1e-3 fails once in 1000 seeds. The negative control shows
    # the power: the same data under the identity rotation are rejected (z-scores 9 to 600 here).
    f = make_rotated_field(400, 400, **kwargs)
    z, p = whitened_statistics(f)
    assert abs(z) < 4, z
    assert p > 1e-3, p
    z_wrong, _ = whitened_statistics(f, rotvec=np.zeros(3))
    assert z_wrong > 4, z_wrong


def test_axis_aligned_observations_are_exact_gp_draws():
    f = make_axis_aligned_field(300, 300, seed=8)
    z, p = whitened_statistics(f)
    assert abs(z) < 4 and p > 1e-3


def test_noise_level():
    # train_Y - train_F is the noise: its sample sd over 800 points has relative standard error 1/sqrt(2*800) = 2.5%;
    # a 12.5% band is 5 standard errors.
    f = make_rotated_field(500, 300, noise_std=0.2, seed=9)
    resid = torch.cat((f.train_Y - f.train_F, f.test_Y - f.test_F))
    assert float(resid.std()) == pytest.approx(0.2, rel=0.125)
    g = make_rotated_field(20, 5, noise_std=0.0, seed=9)
    assert torch.equal(g.train_Y, g.train_F) and torch.equal(g.test_Y, g.test_F)


def test_directional_variograms_follow_the_principal_axes():
    # Semivariogram of the noiseless field at lags 0.05..0.15 for pairs within 20 degrees of each true principal
    # direction. The estimator gamma = (1/2m) sum (f_i - f_j)^2 is a Gaussian quadratic form f^T Q f, so its
    # mean E = tr(Q K) and variance 2 tr((Q K)^2) are exact (computed from the reference covariance K). We compare
    # it with a scaled chi-square of nu = 2 E^2 / Var degrees of freedom (two moments matched) and require a
    # two-sided p-value > 1e-3. Over seeds 0..11 the z-scores were within +-2 (nu = 17..49 pairs-equivalents).
    # Expected values here: 0.32 (shortest, l = 0.15), 0.075 (middle), 0.027 (longest), so the empirical
    # ordering short > middle > long must also hold (observed ratios >= 2.1 and >= 1.7 over those seeds).
    f = make_rotated_field(1000, 500, noise_std=0.0, seed=0)
    X, _, F = all_points(f)
    R = f.rotation_matrix.numpy()
    K = f.signal_std**2 * reference_correlation(X, f.lengthscale.numpy(), f.rotation.numpy(), f.nu)
    i, j = np.triu_indices(len(X), 1)
    h = X[i] - X[j]
    dist = np.linalg.norm(h, axis=1)
    in_lag = (dist > 0.05) & (dist < 0.15)
    gammas = []
    for k in np.argsort(f.lengthscale.numpy()):  # shortest, middle, longest
        sel = in_lag & (np.abs(h @ R[:, k]) > dist * math.cos(math.radians(20)))
        I, J = i[sel], j[sel]
        m = len(I)
        assert m > 300
        gamma = 0.5 * np.mean((F[I] - F[J]) ** 2)
        G = K[np.ix_(I, I)] - K[np.ix_(I, J)] - K[np.ix_(J, I)] + K[np.ix_(J, J)]
        mean = np.trace(G) / (2 * m)
        var = 2 * np.sum(G * G) / (2 * m) ** 2
        dof = 2 * mean**2 / var
        cdf = stats.chi2.cdf(dof * gamma / mean, dof)
        assert 2 * min(cdf, 1 - cdf) > 1e-3, (k, gamma, mean, dof)
        gammas.append(gamma)
    assert gammas[0] > gammas[1] > gammas[2]


def test_a_few_thousand_points():
    f = make_rotated_field(2500, 500, seed=0)
    assert f.train_X.shape == (2500, 3) and f.test_Y.shape == (500, 1)
    assert torch.isfinite(f.train_Y).all() and torch.isfinite(f.test_Y).all()
    assert f.jitter <= 1e-8
    # the field has unit variance on average: sample variance of 3000 correlated values; loose sanity band only
    # (the exact check is the whitening test above)
    assert 0.2 < float(torch.cat((f.train_F, f.test_F)).var()) < 3.0


# ------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"lengthscale": (0.1, 0.2)}, ValueError, "shape"),
        ({"lengthscale": [[0.1, 0.2, 0.3]]}, ValueError, "shape"),
        ({"lengthscale": (0.1, 0.0, 0.3)}, ValueError, "positive"),
        ({"lengthscale": (0.1, -0.2, 0.3)}, ValueError, "positive"),
        ({"lengthscale": (0.1, float("nan"), 0.3)}, ValueError, "finite"),
        ({"lengthscale": "abc"}, ValueError, "lengthscale"),
        ({"rotation": (0.1, 0.2)}, ValueError, "rotation"),
        ({"rotation": (0.1, 0.2, float("inf"))}, ValueError, "finite"),
        ({"n_train": 0}, ValueError, "n_train"),
        ({"n_train": -3}, ValueError, "n_train"),
        ({"n_test": -1}, ValueError, "n_test"),
        ({"n_train": 2.5}, TypeError, "n_train"),
        ({"n_train": True}, TypeError, "n_train"),
        ({"n_train": MAX_FIELD_POINTS, "n_test": 1}, ValueError, "MAX_FIELD_POINTS"),
        ({"nu": 1.0}, ValueError, "nu"),
        ({"noise_std": -0.1}, ValueError, "noise_std"),
        ({"noise_std": float("nan")}, ValueError, "noise_std"),
        ({"signal_std": 0.0}, ValueError, "signal_std"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": 1.5}, TypeError, "seed"),
        ({"dtype": torch.float16}, TypeError, "dtype"),
        ({"dtype": torch.int64}, TypeError, "dtype"),
        ({"domain": (1.0, 0.0)}, ValueError, "domain"),
        ({"domain": (0.0, float("inf"))}, ValueError, "domain"),
        ({"domain": 5}, ValueError, "domain"),
    ],
)
def test_bad_input(kwargs, exc, match):
    args = {"n_train": 5, "n_test": 2, **kwargs}
    with pytest.raises(exc, match=match):
        make_rotated_field(**args)


def test_axis_aligned_bad_input():
    with pytest.raises(ValueError, match="positive"):
        make_axis_aligned_field(5, 2, lengthscale=(0.1, 0.2, -1.0))
    with pytest.raises(TypeError):
        make_axis_aligned_field(5, 2, rotation=(0.0, 0.0, 1.0))  # no rotation argument: it is axis-aligned


def test_true_canonical_is_a_deprecated_alias():
    f = make_rotated_field(10, 0, seed=3)
    with pytest.warns(
        DeprecationWarning, match=r"SyntheticField\.true_canonical is deprecated.*use SyntheticField\.canonical"
    ):
        old = f.true_canonical()
    for a, b in zip(old, f.canonical(), strict=True):
        assert torch.equal(a, b)
