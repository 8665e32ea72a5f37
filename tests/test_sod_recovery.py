"""Issue 17 recovery benchmark (``benchmarks/sod_recovery.py``): its helpers (fast) and the targets on one seed (slow).

The fast tests check the axis-matching helper against known answers (an embedded scipy rotation, signed
permutations, a known planar tilt), that the synthetic field is drawn from the ``RotatedAnisotropicKernel``
covariance, and that the truth's representative is the same metric. The slow tests rerun seed 0 of d = 2 and d = 6
with the benchmark's defaults and compare with the issue's targets; the parts of a target that the benchmark
measured as *not* met are strict xfails, so that a change that meets them shows up (and the test is updated).
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
from scipy.spatial.transform import Rotation

from benchmarks.sod_recovery import (
    TARGET_ANGLE_DEG,
    TARGET_RMSE_RATIO,
    axis_angle_errors,
    best_representative,
    make_sod_field,
    measure,
)
from gpytorch_so3 import sod
from gpytorch_so3.kernels.rotated_kernel import RotatedAnisotropicKernel
from gpytorch_so3.priors import ShrinkageRotationPrior


def _signed_permutation(perm: list[int], signs: list[float]) -> torch.Tensor:
    P = torch.zeros(len(perm), len(perm), dtype=torch.float64)
    for j, (i, s) in enumerate(zip(perm, signs, strict=True)):
        P[i, j] = s
    return P


def test_axis_angle_errors_zero_for_signed_permutations_of_a_scipy_rotation():
    # d = 3 truth from scipy; the fit is the same metric written with permuted, sign-flipped columns (det +1 and -1:
    # the helper compares undirected axes, so any signs are fine).
    R = torch.as_tensor(Rotation.from_rotvec([0.3, -1.1, 0.7]).as_matrix())
    ls = torch.tensor([0.15, 0.4, 1.0], dtype=torch.float64)
    P = _signed_permutation([2, 0, 1], [-1.0, 1.0, -1.0])
    errors = axis_angle_errors(ls @ P.abs(), R @ P, ls, R)
    assert errors == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)


def test_axis_angle_errors_known_tilt_embedded_in_six_dimensions():
    # A 6-D truth; the "fit" is the truth followed by a 7 degree rotation in the plane of its shortest and longest
    # axes (scipy's planar rotation embedded), then a signed permutation. Known answer: 7 degrees on those two axes,
    # 0 on the others.
    g = torch.Generator().manual_seed(3)
    R = sod.random_rotation(6, generator=g, dtype=torch.float64)
    ls = torch.tensor([0.2, 0.3, 0.5, 0.8, 1.3, 2.0], dtype=torch.float64)
    G = torch.eye(6, dtype=torch.float64)
    planar = torch.as_tensor(Rotation.from_euler("z", 7.0, degrees=True).as_matrix()[:2, :2])
    idx = torch.tensor([0, 5])
    G[idx.unsqueeze(1), idx.unsqueeze(0)] = planar
    P = _signed_permutation([4, 1, 5, 0, 3, 2], [1.0, -1.0, 1.0, 1.0, -1.0, -1.0])
    errors = axis_angle_errors(ls @ P.abs(), R @ G @ P, ls, R)
    assert errors == pytest.approx([7.0, 0.0, 0.0, 0.0, 0.0, 7.0], abs=1e-9)
    assert all(0.0 <= e <= 90.0 for e in errors)


def test_axis_angle_errors_right_angle_when_axes_are_swapped():
    # The fitted short axis along the true long one: 90 degrees on both (the worst case).
    R = torch.eye(2, dtype=torch.float64)
    errors = axis_angle_errors(torch.tensor([0.15, 0.6]), R, torch.tensor([0.6, 0.15]), R)
    assert errors == pytest.approx([90.0, 90.0])


def test_field_is_drawn_from_the_rotated_kernel_covariance():
    # The field's covariance (whitened Matern on X R / l) equals RotatedAnisotropicKernel(dim, 2.5) with the same R, l.
    f = make_sod_field(4, 30, 10, (0.2, 0.4, 0.7, 1.5), seed=1)
    k = RotatedAnisotropicKernel(4, nu=2.5).to(torch.float64)
    k.lengthscale = f["lengthscale"].reshape(1, -1)
    k.rotation = sod.log_map(f["R"])
    torch.testing.assert_close(k.rotation_matrix.detach(), f["R"], atol=1e-10, rtol=0)
    X = torch.cat((f["train_X"], f["test_X"]))
    Z = X @ f["R"] / f["lengthscale"]
    r = torch.cdist(Z, Z)
    expected = (1 + math.sqrt(5) * r + 5 / 3 * r**2) * torch.exp(-math.sqrt(5) * r)  # Matern-5/2 closed form
    with torch.no_grad():
        torch.testing.assert_close(k(X).to_dense(), expected, atol=1e-10, rtol=0)
    # reproducible from the seed, different across seeds
    torch.testing.assert_close(make_sod_field(4, 30, 10, (0.2, 0.4, 0.7, 1.5), seed=1)["train_Y"], f["train_Y"])
    assert not torch.allclose(make_sod_field(4, 30, 10, (0.2, 0.4, 0.7, 1.5), seed=2)["train_Y"], f["train_Y"])


def test_best_representative_is_the_same_metric_with_the_best_prior_value():
    g = torch.Generator().manual_seed(0)
    R = sod.random_rotation(4, generator=g, dtype=torch.float64)
    ls = torch.tensor([0.2, 0.4, 0.8, 1.6], dtype=torch.float64)
    prior = ShrinkageRotationPrior(4).to(torch.float64)
    ls_b, w_b = best_representative(ls, R, prior.log_prob)
    M = R @ torch.diag(ls**-2) @ R.T
    M_b = sod.exp_map(w_b, 4) @ torch.diag(ls_b**-2) @ sod.exp_map(w_b, 4).T
    torch.testing.assert_close(M_b, M, atol=1e-10, rtol=1e-10)
    assert float(prior.log_prob(w_b)) >= float(prior.log_prob(sod.log_map(R))) - 1e-12


# ------------------------------------------------------------------------------------------------ slow: the targets
@functools.cache
def _record(dim: int, seed: int, truth: bool) -> dict:
    return measure(dim, seed, truth=truth)


@pytest.mark.slow
def test_d2_seed0_directions_within_target():
    # Seed 0, n = 200 train / 200 held out, length-scales (0.15, 0.6), noise 0.05, fit_map defaults (8 Haar restarts,
    # data-aligned and identity starts, seed 0): ~2 s. Measured 0.08 degrees (0.08-2.9 over seeds 0-4 in
    # results/sod_recovery.json); the fit reaches the optimum a polish from the truth reaches (loss gap ~0), so the
    # error is the estimator's, far inside the 6 degrees.
    rec = _record(2, 0, True)
    assert max(rec["angle_error_shortest_deg"], rec["angle_error_longest_deg"]) <= TARGET_ANGLE_DEG
    assert abs(rec["loss_gap_returned_minus_from_truth"]) < 1e-3


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="measured RMSE ratio 0.89 at seed 0 (noise floor 0.05, anisotropy ratio 4)")
def test_d2_seed0_rmse_ratio_within_target():
    rec = _record(2, 0, True)
    assert rec["rmse_ratio_rotated_over_ard"] <= TARGET_RMSE_RATIO


@pytest.mark.slow
def test_d6_seed0_shortest_axis_and_rmse_within_target():
    # Seed 0, n = 600 train / 600 held out, length-scales geometric 0.2-2.0, noise 0.05, fit_map defaults: ~15 s.
    # Measured: shortest axis 3.4 degrees, RMSE ratio 0.68 (0.59-0.68 over seeds 0-4). The fit is deterministic given
    # the seeds; the margin (2.6 degrees, 0.07 in ratio) covers BLAS rounding differences between machines unless they
    # move the fit to another local optimum (6-D MLLs have many; see the report in results/sod_recovery.json).
    rec = _record(6, 0, True)
    assert rec["angle_error_shortest_deg"] <= TARGET_ANGLE_DEG
    assert rec["rmse_ratio_rotated_over_ard"] <= TARGET_RMSE_RATIO
    # The optimisation: a polish started at the truth (its best-prior representative) ended 13 nats (0.0217 per point)
    # below fit_map's result before fit_map moved fits to their best-prior representative, 2.9 nats (0.0048) after.
    # 0.01 per point (6 nats) separates the two.
    assert rec["loss_gap_returned_minus_from_truth"] < 0.01


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="measured 16.9 deg at seed 0 (20.4 without a rotation prior, where fit_map reaches the truth-started "
    "optimum exactly): the longest scales (1.26, 2.0) are not resolved at n = 600",
)
def test_d6_seed0_longest_axis_within_target():
    rec = _record(6, 0, True)
    assert rec["angle_error_longest_deg"] <= TARGET_ANGLE_DEG


@pytest.mark.slow
def test_d6_seed0_without_rotation_prior_reaches_the_truth_started_optimum():
    # Seed 0 as above, no rotation prior: measured gap 0.000 nats (5/5 seeds in results/sod_recovery_noprior.json),
    # i.e. the remaining angle errors are the MAP estimator's at n = 600, not the optimiser's. 1e-4 per point is
    # 0.06 nats: L-BFGS tolerance, not a different optimum.
    rec = measure(6, 0, truth=True, rotation_prior=False)
    assert abs(rec["loss_gap_returned_minus_from_truth"]) < 1e-4
    assert rec["angle_error_shortest_deg"] <= TARGET_ANGLE_DEG


def test_fixed_rotation_keeps_the_draws_paired():
    # --angles-deg study: the given rotation replaces the Haar draw; inputs, normals and noise are the same draws
    c, s = math.cos(math.radians(30.0)), math.sin(math.radians(30.0))
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    haar = make_sod_field(2, 6, 3, (0.15, 0.6), seed=4)
    fixed = make_sod_field(2, 6, 3, (0.15, 0.6), seed=4, rotation=rot)
    torch.testing.assert_close(fixed["R"], rot)
    torch.testing.assert_close(fixed["train_X"], haar["train_X"], rtol=0, atol=0)
    torch.testing.assert_close(fixed["test_X"], haar["test_X"], rtol=0, atol=0)
    assert not torch.allclose(fixed["train_Y"], haar["train_Y"])  # a different metric gives a different field
    with pytest.raises(ValueError, match="dim = 2 only"):
        measure(6, 0, angle_deg=10.0)
