"""Rotation maths: scipy parity, identities, gradients at 0 and pi, batching, Haar sampling, canonical form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from reference import TOLS, scipy_exp, scipy_log, signed_permutations, to_np
from scipy import stats

from gpytorch_so3 import so3

PI = math.pi
BATCH_SHAPES = [(), (5,), (2, 3)]
BATCH_IDS = ["scalar", "5", "2x3"]

# Angles that exercise every branch: exactly 0, inside the Taylor branch (< 1e-3), its edge, generic, near pi,
# at pi and just past pi (exp_map does not reduce modulo 2 pi; scipy does not either).
SPECIAL_ANGLES = [0.0, 1e-8, 1e-5, 1e-3 - 1e-9, 1e-3 + 1e-9, 0.5, 2.0, PI - 1e-3, PI - 1e-6, PI, PI + 1e-6]


def _axes(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return a / a.norm(dim=-1, keepdim=True)


def _special_vectors() -> torch.Tensor:
    """``(len(SPECIAL_ANGLES) * 8, 3)`` float64 axis-angle vectors: 8 axes (incl. coordinate axes) per angle."""
    axes = torch.cat([torch.eye(3, dtype=torch.float64), _axes(5)])
    return torch.cat([axes * a for a in SPECIAL_ANGLES])


# ---------------------------------------------------------------------------------------------------------------
# exp_map / log_map against scipy
# ---------------------------------------------------------------------------------------------------------------
def test_exp_map_matches_scipy_random(dtype):
    w = torch.randn(500, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 2.0
    R = so3.exp_map(w.to(dtype))
    np.testing.assert_allclose(to_np(R), scipy_exp(w), **TOLS[dtype])


def test_exp_map_matches_scipy_special_angles(dtype):
    w = _special_vectors()
    R = so3.exp_map(w.to(dtype))
    # float32: the input vector itself is rounded (relative 6e-8), which moves R by up to ~|w| * 6e-8.
    tol = {"atol": 1e-6, "rtol": 0} if dtype == torch.float32 else {"atol": 1e-15, "rtol": 0}
    np.testing.assert_allclose(to_np(R), scipy_exp(w.to(dtype)), **tol)


def test_exp_map_zero_is_identity(dtype):
    R = so3.exp_map(torch.zeros(3, dtype=dtype))
    assert torch.equal(R, torch.eye(3, dtype=dtype))


def test_log_map_matches_scipy_random(dtype):
    # scipy's as_rotvec returns |w| in [0, pi]; keep clear of pi where the sign of the axis is arbitrary.
    w = _axes(300, seed=2) * torch.rand(300, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 3.0
    R = torch.as_tensor(scipy_exp(w)).to(dtype)
    np.testing.assert_allclose(to_np(so3.log_map(R)), scipy_log(R), **TOLS[dtype])


@pytest.mark.parametrize("angle", [0.0, 1e-8, 1e-5, 1e-3, PI - 1e-3, PI - 1e-6], ids=lambda a: f"{a:.8g}")
def test_log_map_matches_scipy_tiny_and_near_pi(angle, dtype):
    w = torch.cat([torch.eye(3, dtype=torch.float64), _axes(8)]) * angle
    R = torch.as_tensor(scipy_exp(w)).to(dtype)
    # Absolute tolerance: near pi the axis is determined by O(1) entries of R, so no conditioning loss; float32
    # rounds R itself to ~6e-8 per entry.
    atol = 2e-6 if dtype == torch.float32 else 1e-13
    np.testing.assert_allclose(to_np(so3.log_map(R)), scipy_log(R), atol=atol, rtol=0)


def test_log_map_at_pi_up_to_sign(dtype):
    w = torch.cat([torch.eye(3, dtype=torch.float64), -torch.eye(3, dtype=torch.float64), _axes(10)]) * PI
    R = torch.as_tensor(scipy_exp(w)).to(dtype)
    out = so3.log_map(R)
    ref = scipy_log(R)
    atol = 2e-6 if dtype == torch.float32 else 1e-13
    np.testing.assert_allclose(to_np(out.norm(dim=-1)), np.full(len(w), PI), atol=atol)
    # At pi, w and -w are the same rotation: compare up to sign, and the round trip exactly.
    err = np.minimum(np.abs(to_np(out) - ref).max(-1), np.abs(to_np(out) + ref).max(-1))
    assert err.max() < atol
    np.testing.assert_allclose(to_np(so3.exp_map(out)), to_np(R), atol=atol * 2)


def test_log_map_reduces_angles_beyond_pi():
    # exp(w) for |w| in (pi, 2 pi) is also exp(w') with |w'| = 2 pi - |w|; log returns that representative.
    w = _axes(20, seed=4) * 5.0
    R = so3.exp_map(w)
    out = so3.log_map(R)
    np.testing.assert_allclose(to_np(out), to_np(w * (1 - 2 * PI / 5.0)), atol=1e-12)


def test_exp_log_round_trip(dtype):
    w = _axes(200, seed=5) * torch.linspace(0, PI - 1e-3, 200, dtype=torch.float64)[:, None]
    out = so3.log_map(so3.exp_map(w.to(dtype)))
    atol = 2e-6 if dtype == torch.float32 else 1e-13
    np.testing.assert_allclose(to_np(out), to_np(w.to(dtype)), atol=atol, rtol=0)


# ---------------------------------------------------------------------------------------------------------------
# identities
# ---------------------------------------------------------------------------------------------------------------
def test_hat_is_cross_product(dtype):
    g = torch.Generator().manual_seed(6)
    w = torch.randn(50, 3, generator=g, dtype=dtype)
    v = torch.randn(50, 3, generator=g, dtype=dtype)
    got = (so3.hat(w) @ v[..., None]).squeeze(-1)
    np.testing.assert_allclose(to_np(got), np.cross(to_np(w), to_np(v)), **TOLS[dtype])
    H = so3.hat(w)
    assert torch.equal(H, -H.transpose(-1, -2))


def test_vee_inverts_hat(dtype):
    w = torch.randn(4, 7, 3, generator=torch.Generator().manual_seed(7), dtype=dtype)
    assert torch.equal(so3.vee(so3.hat(w)), w)


def test_vee_takes_skew_part():
    W = torch.randn(10, 3, 3, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    skew = 0.5 * (W - W.transpose(-1, -2))
    torch.testing.assert_close(so3.vee(W), so3.vee(skew), rtol=0, atol=1e-15)
    torch.testing.assert_close(so3.hat(so3.vee(W)), skew, rtol=0, atol=1e-15)


def test_exp_map_is_a_rotation(dtype):
    w = torch.cat([_special_vectors(), torch.randn(100, 3, generator=torch.Generator().manual_seed(9)) * 4])
    R = so3.exp_map(w.to(dtype))
    eye = torch.eye(3, dtype=dtype).expand_as(R)
    atol = 1e-6 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(R.transpose(-1, -2) @ R, eye, rtol=0, atol=atol)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(len(w), dtype=dtype), rtol=0, atol=atol)


def test_exp_map_rotates_right_handed():
    # A quarter turn about +z maps e_x to e_y (right-hand rule), and w is the fixed axis.
    R = so3.exp_map(torch.tensor([0.0, 0.0, PI / 2], dtype=torch.float64))
    torch.testing.assert_close(R[:, 0], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), rtol=0, atol=1e-15)
    w = torch.tensor([0.3, -1.2, 0.8], dtype=torch.float64)
    torch.testing.assert_close(so3.exp_map(w) @ w, w, rtol=0, atol=1e-15)


def test_exp_map_homomorphism_on_one_axis():
    # exp((a + b) u) = exp(a u) exp(b u): checks the angle scaling independently of scipy.
    u = _axes(10, seed=10)
    a, b = 0.7, 1.9
    torch.testing.assert_close(so3.exp_map((a + b) * u), so3.exp_map(a * u) @ so3.exp_map(b * u), rtol=0, atol=1e-14)


# ---------------------------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("angle", SPECIAL_ANGLES, ids=lambda a: f"{a:.8g}")
def test_exp_map_gradients_finite(angle, dtype):
    w = (torch.cat([torch.eye(3, dtype=torch.float64), _axes(5)]) * angle).to(dtype).requires_grad_(True)
    C = torch.randn(8, 3, 3, generator=torch.Generator().manual_seed(11), dtype=dtype)
    R = so3.exp_map(w)
    assert torch.isfinite(R).all()
    (R * C).sum().backward()
    assert torch.isfinite(w.grad).all()


@pytest.mark.parametrize("angle", SPECIAL_ANGLES[:-1], ids=lambda a: f"{a:.8g}")
def test_log_map_gradients_finite(angle, dtype):
    w = torch.cat([torch.eye(3, dtype=torch.float64), _axes(5)]) * angle
    R = so3.exp_map(w).to(dtype).requires_grad_(True)
    out = so3.log_map(R)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(R.grad).all()


def test_exp_map_jacobian_at_zero_is_hat():
    # d exp(hat(w)) / d w_i at 0 is hat(e_i): an analytic value, not a finite difference.
    J = torch.autograd.functional.jacobian(so3.exp_map, torch.zeros(3, dtype=torch.float64))
    for i in range(3):
        torch.testing.assert_close(J[..., i], so3.hat(torch.eye(3, dtype=torch.float64)[i]), rtol=0, atol=0)


@pytest.mark.parametrize("angle", [0.0, 1e-7, 1e-3, 1.0, PI - 0.1], ids=lambda a: f"{a:.8g}")
def test_log_exp_jacobian_is_identity(angle):
    # log(exp(w)) = w for |w| < pi, so its Jacobian is I; a stringent check of both backward passes together.
    for w in torch.cat([torch.eye(3, dtype=torch.float64), _axes(3, seed=12)]) * angle:
        J = torch.autograd.functional.jacobian(lambda v: so3.log_map(so3.exp_map(v)), w)
        torch.testing.assert_close(J, torch.eye(3, dtype=torch.float64), rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "w",
    [
        torch.zeros(3),
        torch.full((3,), 1e-9),
        torch.tensor([4e-4, -3e-4, 5e-4]),  # straddles the 1e-3 Taylor threshold under gradcheck's eps
        torch.tensor([0.3, -0.5, 1.1]),
        torch.tensor([0.0, 0.0, PI]),
        torch.tensor([1.0, -2.0, 2.0]) / 3.0 * (PI - 1e-4),
        torch.tensor([2.0, 3.0, -1.0]),
    ],
    ids=["zero", "1e-9", "taylor-edge", "generic", "pi", "near-pi", "beyond-pi"],
)
def test_exp_map_gradcheck(w):
    assert torch.autograd.gradcheck(so3.exp_map, (w.to(torch.float64).requires_grad_(True),))


@pytest.mark.parametrize(
    "w",
    [
        torch.full((3,), 1e-6),
        torch.tensor([4e-4, -3e-4, 5e-4]),
        torch.tensor([0.3, -0.5, 1.1]),
        torch.tensor([0.2, -0.5, 0.9]) / math.sqrt(1.1) * (PI - 0.2),
    ],
    ids=["tiny", "taylor-edge", "generic", "pi-minus-0.2"],
)
def test_log_map_gradcheck(w):
    # gradcheck also perturbs R off SO(3). There, Shepperd's four formulas differ at first order, so the axis
    # must not give two tied quaternion components (e.g. (1, -2, 2) / 3): the branch would flip inside the
    # finite difference. Along SO(3) all branches agree (see test_log_exp_jacobian_is_identity).
    R = so3.exp_map(w.to(torch.float64)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: so3.log_map(m, check=False), (R,))  # perturbed R is off SO(3)


# ---------------------------------------------------------------------------------------------------------------
# hypothesis properties
# ---------------------------------------------------------------------------------------------------------------
_unit = st.tuples(*[st.floats(-1.0, 1.0, allow_nan=False)] * 3).filter(lambda v: sum(c * c for c in v) > 1e-4)
_angle = st.one_of(st.sampled_from([0.0, 1e-12, 1e-7, PI - 1e-7, PI]), st.floats(0.0, PI))
_dtype = st.sampled_from([torch.float32, torch.float64])


def _rotvec(axis, angle, dtype) -> torch.Tensor:
    a = torch.tensor(axis, dtype=torch.float64)
    return (a / a.norm() * angle).to(dtype)


@given(axis=_unit, angle=_angle, dtype=_dtype)
def test_property_exp_map(axis, angle, dtype):
    w = _rotvec(axis, angle, dtype)
    R = so3.exp_map(w)
    atol = 2e-6 if dtype == torch.float32 else 1e-14
    np.testing.assert_allclose(to_np(R), scipy_exp(w), atol=atol)
    np.testing.assert_allclose(to_np(R.T @ R), np.eye(3), atol=atol)
    assert abs(float(torch.linalg.det(R)) - 1.0) < atol
    assert torch.equal(so3.vee(so3.hat(w)), w)


@given(axis=_unit, angle=_angle, dtype=_dtype)
def test_property_log_map(axis, angle, dtype):
    w = _rotvec(axis, angle, dtype)
    R = so3.exp_map(w)
    out = so3.log_map(R)
    atol = 5e-6 if dtype == torch.float32 else 1e-13
    assert float(out.norm()) <= PI + atol
    # exp(log(R)) == R always; log(exp(w)) == w up to the sign ambiguity at exactly pi.
    np.testing.assert_allclose(to_np(so3.exp_map(out)), to_np(R), atol=atol)
    if angle < PI - 1e-3:
        np.testing.assert_allclose(to_np(out), to_np(w), atol=atol)


@given(axis=_unit, angle=_angle, dtype=_dtype)
def test_property_gradients_finite(axis, angle, dtype):
    w = _rotvec(axis, angle, dtype).requires_grad_(True)
    R = so3.exp_map(w)
    out = so3.log_map(R)
    (R.sum() + out.sum()).backward()
    assert torch.isfinite(w.grad).all()


# ---------------------------------------------------------------------------------------------------------------
# dtype, device, batch shapes
# ---------------------------------------------------------------------------------------------------------------
_DEVICES = ["cpu", "meta"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", _DEVICES)
def test_dtype_and_device_preserved(device, dtype):
    # The meta device runs every op without data: a cheap check that nothing falls back to a default device.
    w = torch.zeros(4, 3, dtype=dtype, device=device)
    R = torch.eye(3, dtype=dtype, device=device).expand(4, 3, 3)
    ls = torch.ones(4, 3, dtype=dtype, device=device)
    outs = {
        "hat": so3.hat(w),
        "vee": so3.vee(R),
        "exp_map": so3.exp_map(w),
        "log_map": so3.log_map(R),
        "random_rotation": so3.random_rotation(4, dtype=dtype, device=device),
        "canonicalize_l": so3.canonicalize(ls, R)[0],
        "canonicalize_R": so3.canonicalize(ls, R)[1],
        "angle_between_axes": so3.angle_between_axes(w + 1, w + 2),
        "quaternion_to_matrix": so3.quaternion_to_matrix(torch.ones(4, 4, dtype=dtype, device=device)),
    }
    for name, out in outs.items():
        assert out.dtype == dtype, name
        assert out.device.type == torch.device(device).type, name


def test_random_rotation_default_dtype():
    assert so3.random_rotation(2).dtype == torch.get_default_dtype()


@pytest.mark.parametrize("batch", BATCH_SHAPES, ids=BATCH_IDS)
def test_batch_shapes(batch, dtype):
    g = torch.Generator().manual_seed(13)
    w = torch.randn(*batch, 3, generator=g, dtype=dtype)
    R = so3.exp_map(w)
    assert R.shape == (*batch, 3, 3)
    assert so3.hat(w).shape == (*batch, 3, 3)
    assert so3.vee(R).shape == (*batch, 3)
    assert so3.log_map(R).shape == (*batch, 3)
    assert so3.random_rotation(*batch, generator=g, dtype=dtype).shape == (*batch, 3, 3)
    assert so3.random_rotation(batch, generator=g, dtype=dtype).shape == (*batch, 3, 3)
    ls, Rc = so3.canonicalize(torch.rand(*batch, 3, generator=g, dtype=dtype) + 0.1, R)
    assert ls.shape == (*batch, 3) and Rc.shape == (*batch, 3, 3)
    assert so3.angle_between_axes(w, w + 1).shape == batch
    # Batched results equal the element-wise ones, to a few ulp: torch runs batched and single-element arithmetic
    # through different vectorised kernels, whose roundings differ by CPU (bit-equal on the machines of sessions 1-7,
    # 1 element off by half an ulp on 2026-12-01's); a batching bug would be off by O(1).
    flat = w.reshape(-1, 3)
    R_loop = torch.stack([so3.exp_map(v) for v in flat]).reshape(*batch, 3, 3)
    torch.testing.assert_close(R, R_loop, rtol=0, atol=4 * torch.finfo(dtype).eps)


def test_canonicalize_broadcasts_lengthscale_against_rotations():
    R = so3.random_rotation(4, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    ls = torch.tensor([2.0, 0.5, 1.0], dtype=torch.float64)
    a = so3.canonicalize(ls, R)
    b = so3.canonicalize(ls.expand(4, 3), R)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------------------------
# Haar measure
# ---------------------------------------------------------------------------------------------------------------
# Seed 2024 is fixed; n = 20,000. Under the Haar measure the rotation angle has density (1 - cos t) / pi on
# [0, pi] (CDF (t - sin t) / pi), and R e_z is uniform on the sphere: its z-coordinate is uniform on [-1, 1]
# (Archimedes) and its azimuth uniform on (-pi, pi]. Each KS test uses p > 1e-3: a correct sampler fails it
# for 0.1 % of seeds (the seed is fixed, so the test is deterministic), while the alternatives checked in
# `test_haar_tests_have_power` give p < 1e-10 at this n.
_HAAR_N = 20_000
_P_MIN = 1e-3


def _angles_from_trace(R: torch.Tensor) -> np.ndarray:
    # Independent of log_map: cos(theta) = (trace R - 1) / 2.
    c = (to_np(R).trace(axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.arccos(np.clip(c, -1.0, 1.0))


def _haar_angle_cdf(t):
    return (t - np.sin(t)) / np.pi


def _haar_pvalues(R: torch.Tensor) -> dict[str, float]:
    ez = to_np(R[..., :, 2])
    return {
        "angle": stats.kstest(_angles_from_trace(R), _haar_angle_cdf).pvalue,
        "ez_z": stats.kstest(ez[:, 2], stats.uniform(loc=-1, scale=2).cdf).pvalue,
        "ez_azimuth": stats.kstest(
            np.arctan2(ez[:, 1], ez[:, 0]), stats.uniform(loc=-np.pi, scale=2 * np.pi).cdf
        ).pvalue,
    }


def test_random_rotation_is_haar():
    g = torch.Generator().manual_seed(2024)
    R = so3.random_rotation(_HAAR_N, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        R.transpose(-1, -2) @ R, torch.eye(3, dtype=torch.float64).expand_as(R), rtol=0, atol=1e-13
    )
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(_HAAR_N, dtype=torch.float64), rtol=0, atol=1e-13)
    pvals = _haar_pvalues(R)
    assert min(pvals.values()) > _P_MIN, pvals


def test_random_rotation_is_haar_float32():
    R = so3.random_rotation(_HAAR_N, generator=torch.Generator().manual_seed(2025), dtype=torch.float32)
    pvals = _haar_pvalues(R)
    assert min(pvals.values()) > _P_MIN, pvals


def test_haar_tests_have_power():
    # Two plausible but wrong samplers: angle uniform on [0, pi] (w uniform in direction and |w|), and
    # w uniform in the ball of radius pi. Both must be rejected, or the Haar test above proves nothing.
    g = torch.Generator().manual_seed(2026)
    axes = torch.randn(_HAAR_N, 3, generator=g, dtype=torch.float64)
    axes = axes / axes.norm(dim=-1, keepdim=True)
    uniform_angle = so3.exp_map(axes * torch.rand(_HAAR_N, 1, generator=g, dtype=torch.float64) * PI)
    ball = so3.exp_map(axes * torch.rand(_HAAR_N, 1, generator=g, dtype=torch.float64).pow(1 / 3) * PI)
    for R in (uniform_angle, ball):
        assert _haar_pvalues(R)["angle"] < 1e-10


def test_random_rotation_reproducible():
    a = so3.random_rotation(3, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    b = so3.random_rotation(3, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    c = so3.random_rotation(3, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_random_rotation_with_generator_leaves_global_rng(seed):
    state = torch.get_rng_state()
    so3.random_rotation(10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    # Without a generator, the global RNG is used (and so is seeded by torch.manual_seed).
    torch.manual_seed(3)
    a = so3.random_rotation(2)
    torch.manual_seed(3)
    assert torch.equal(a, so3.random_rotation(2))


@pytest.mark.parametrize(
    "shape, error",
    [((-1,), ValueError), ((2.0,), TypeError), ((True,), TypeError), (((2, "3"),), TypeError)],
    ids=["negative", "float", "bool", "str"],
)
def test_random_rotation_bad_shape(shape, error):
    with pytest.raises(error, match="random_rotation: shape"):
        so3.random_rotation(*shape)


# ---------------------------------------------------------------------------------------------------------------
# canonicalize
# ---------------------------------------------------------------------------------------------------------------
def _metric_np(ls, R) -> np.ndarray:
    ls, R = to_np(ls), to_np(R)
    return np.einsum("...ik,...k,...jk->...ij", R, ls**-2, R)


def _symmetric_versions(ls: np.ndarray, R: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All 24 ``(l', R P)`` giving the same metric: ``l'_j = l_i`` where column ``j`` of ``P`` is ``+-e_i``."""
    Ps = signed_permutations(det=1)
    assert len(Ps) == 24
    ls_v = np.stack([ls[np.abs(P).argmax(0)] for P in Ps])
    R_v = np.stack([R @ P for P in Ps])
    return ls_v, R_v


@pytest.mark.parametrize("case", range(5))
def test_canonicalize_removes_the_24_fold_symmetry(case, dtype):
    g = torch.Generator().manual_seed(100 + case)
    R = so3.random_rotation(generator=g, dtype=torch.float64)
    ls = torch.rand(3, generator=g, dtype=torch.float64) * 3 + 0.1
    ls_v, R_v = _symmetric_versions(to_np(ls), to_np(R))
    M = _metric_np(ls, R)
    np.testing.assert_allclose(_metric_np(ls_v, R_v), np.broadcast_to(M, (24, 3, 3)), rtol=1e-12)  # construction

    lc, Rc = so3.canonicalize(torch.as_tensor(ls_v).to(dtype), torch.as_tensor(R_v).to(dtype))
    tol = TOLS[dtype]
    # Same canonical output for all 24 versions.
    np.testing.assert_allclose(to_np(lc), np.broadcast_to(to_np(lc[0]), (24, 3)), **tol)
    np.testing.assert_allclose(to_np(Rc), np.broadcast_to(to_np(Rc[0]), (24, 3, 3)), **tol)
    # Metric unchanged, length-scales ascending, a proper rotation, sign rule, column 3 = column 1 x column 2.
    mtol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-11, "atol": 1e-12}
    np.testing.assert_allclose(_metric_np(lc, Rc), np.broadcast_to(M, (24, 3, 3)), **mtol)
    np.testing.assert_allclose(to_np(lc[0]), np.sort(to_np(ls)), **tol)
    assert (lc[:, 1:] >= lc[:, :-1]).all()
    Rc_np = to_np(Rc)
    np.testing.assert_allclose(np.linalg.det(Rc_np), np.ones(24), **mtol)
    np.testing.assert_allclose(np.swapaxes(Rc_np, -1, -2) @ Rc_np, np.broadcast_to(np.eye(3), (24, 3, 3)), **mtol)
    for col in (0, 1):
        c = Rc_np[:, :, col]
        assert (c[np.arange(24), np.abs(c).argmax(-1)] > 0).all()
    np.testing.assert_allclose(Rc_np[:, :, 2], np.cross(Rc_np[:, :, 0], Rc_np[:, :, 1]), **mtol)
    # The canonical R is R P for one of the signed permutations (it is a relabelling, not a new rotation).
    Q = to_np(R).T @ Rc_np[0]
    assert np.abs(np.abs(Q).round() - np.abs(Q)).max() < 1e-5
    assert any(np.abs(Q - P).max() < 1e-5 for P in signed_permutations(det=1))


def test_canonicalize_identity_example():
    ls, R = so3.canonicalize(torch.tensor([3.0, 1.0, 2.0]), torch.eye(3))
    assert torch.equal(ls, torch.tensor([1.0, 2.0, 3.0]))
    # Columns reordered by ascending length-scale: e_y (l=1), e_z (l=2), then e_y x e_z = e_x.
    assert torch.equal(R, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))


def test_canonicalize_fixes_sign_and_handedness():
    # Negated columns (det = -1 input) come out with positive leading entries and det = +1.
    R = -torch.eye(3, dtype=torch.float64)
    _, Rc = so3.canonicalize(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), R)
    assert torch.equal(Rc, torch.eye(3, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------------------
# angle_between_axes
# ---------------------------------------------------------------------------------------------------------------
def test_angle_between_axes_values(dtype):
    ex, ey = torch.tensor([1.0, 0.0, 0.0], dtype=dtype), torch.tensor([0.0, 1.0, 0.0], dtype=dtype)
    assert float(so3.angle_between_axes(ex, ex)) == 0.0
    assert float(so3.angle_between_axes(ex, -3 * ex)) == 0.0  # undirected and scale-free
    assert abs(float(so3.angle_between_axes(ex, ey)) - 90.0) < 1e-5
    assert abs(float(so3.angle_between_axes(ex, ex + ey)) - 45.0) < 1e-5
    assert abs(float(so3.angle_between_axes(ex, -ex + ey)) - 45.0) < 1e-5
    assert abs(float(so3.angle_between_axes(ex, ey, degrees=False)) - PI / 2) < 1e-6


def test_angle_between_axes_vs_arccos_reference():
    g = torch.Generator().manual_seed(15)
    u, v = torch.randn(200, 3, generator=g, dtype=torch.float64), torch.randn(200, 3, generator=g, dtype=torch.float64)
    un, vn = to_np(u), to_np(v)
    c = np.abs((un * vn).sum(-1)) / (np.linalg.norm(un, axis=-1) * np.linalg.norm(vn, axis=-1))
    ref = np.degrees(np.arccos(np.clip(c, 0, 1)))
    got = to_np(so3.angle_between_axes(u, v))
    assert ((got >= 0) & (got <= 90)).all()
    np.testing.assert_allclose(got, ref, atol=1e-9)


def test_angle_between_nearly_parallel_axes_is_accurate():
    # 1e-9 rad: arccos of the rounded cosine would return 0 in float64 (1 - 5e-19 rounds to 1).
    u = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    v = torch.tensor([1.0, 1e-9, 0.0], dtype=torch.float64)
    assert abs(float(so3.angle_between_axes(u, v, degrees=False)) - 1e-9) < 1e-18


# ---------------------------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fn", "arg"),
    [
        (so3.hat, torch.zeros(4)),
        (so3.hat, torch.zeros(())),
        (so3.vee, torch.zeros(3, 2)),
        (so3.vee, torch.zeros(3)),
        (so3.exp_map, torch.zeros(5, 2)),
        (so3.log_map, torch.zeros(3)),
        (so3.log_map, torch.zeros(2, 3, 4)),
        (so3.quaternion_to_matrix, torch.zeros(3)),
    ],
    ids=["hat-4", "hat-scalar", "vee-3x2", "vee-3", "exp-2", "log-3", "log-3x4", "quat-3"],
)
def test_bad_shapes_raise_value_error(fn, arg):
    with pytest.raises(ValueError, match=r"must have shape \(\.\.\., "):
        fn(arg)


def test_bad_shapes_canonicalize_and_angles():
    with pytest.raises(ValueError, match="lengthscale must have shape"):
        so3.canonicalize(torch.ones(4), torch.eye(3))
    with pytest.raises(ValueError, match="R must have shape"):
        so3.canonicalize(torch.ones(3), torch.eye(4))
    with pytest.raises(ValueError, match="u must have shape"):
        so3.angle_between_axes(torch.ones(2), torch.ones(3))
    with pytest.raises(ValueError, match="v must have shape"):
        so3.angle_between_axes(torch.ones(3), torch.ones(2))


def test_bad_types_raise_type_error():
    with pytest.raises(TypeError, match="floating dtype"):
        so3.exp_map(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        so3.exp_map([0.0, 0.0, 0.0])
    with pytest.raises(TypeError, match="floating dtype"):
        so3.log_map(torch.eye(3, dtype=torch.int32))


# ---------------------------------------------------------------------------------------------------------------
# log_map validates its input (issue 15): matrices that are not rotations raise instead of returning a vector
# ---------------------------------------------------------------------------------------------------------------
def _not_rotations(dtype):
    R = so3.exp_map(torch.tensor([0.3, -0.2, 0.4], dtype=dtype))
    shear = torch.eye(3, dtype=dtype)
    shear[0, 1] = 0.1
    return {
        "reflection": (torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=dtype)), "a reflection"),
        "rotoreflection": (-R, "a reflection"),
        "2I": (2 * torch.eye(3, dtype=dtype), r"det = 8"),
        "zeros": (torch.zeros(3, 3, dtype=dtype), "singular"),
        "non-orthogonal": (R @ shear, r"max \|R\^T R - I\| = 0\.1"),
        "scaled by 1+1e-2": (R * 1.01, r"det = 1\.03"),
        "nan": (torch.full((3, 3), math.nan, dtype=dtype), "non-finite"),
        "inf": (R.masked_fill(torch.eye(3, dtype=torch.bool), math.inf), "non-finite"),
    }


@pytest.mark.parametrize("case", list(_not_rotations(torch.float64)))
def test_log_map_rejects_non_rotations(case, dtype):
    bad, problem = _not_rotations(dtype)[case]
    with pytest.raises(ValueError, match=f"R is not a rotation matrix: .*{problem}"):
        so3.log_map(bad)
    so3.log_map(bad, check=False)  # the unchecked hot path computes something and does not raise


def test_log_map_names_the_offending_batch_entry():
    R = so3.random_rotation(2, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    R[1, 2] = torch.diag(torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"at batch index \(1, 2\) \(shape \(2, 4, 3, 3\)\)"):
        so3.log_map(R)


def test_log_map_check_tolerance_is_dtype_aware():
    """Rounding of genuine rotations passes in each dtype; a scale error of 5e-5 passes in float32, not float64."""
    w = 4 * torch.rand(1000, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 2
    for dtype in (torch.float32, torch.float64):
        R = so3.exp_map(w.to(dtype))
        R3 = R @ R @ R.transpose(-1, -2)  # products of rotations accumulate rounding
        so3.log_map(R3)
        so3.log_map(
            torch.linalg.eigh(R3 + R3.transpose(-1, -2))[1]
            * torch.linalg.det(torch.linalg.eigh(R3 + R3.transpose(-1, -2))[1])[..., None, None]
        )  # eigenvector frames
        so3.log_map(torch.round(R.double() * 1e6).to(dtype) / 1e6)  # six decimals, as read from a text file
    off = so3.exp_map(torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)) * (1 + 5e-5)
    so3.log_map(off.float())
    with pytest.raises(ValueError, match="not a rotation"):
        so3.log_map(off)
    so3.log_map(off, check=False)
    with pytest.raises(ValueError, match="not a rotation"):
        so3.check_rotation(off.float(), atol=1e-6)  # explicit tolerance


def test_log_map_check_keeps_gradients_and_meta():
    w = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64, requires_grad=True)
    so3.log_map(so3.exp_map(w)).sum().backward()
    assert torch.isfinite(w.grad).all()
    assert so3.log_map(torch.empty(4, 3, 3, device="meta")).shape == (4, 3)
    assert so3.log_map(torch.empty(0, 3, 3)).shape == (0, 3)
