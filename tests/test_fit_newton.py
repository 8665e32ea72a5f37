"""fit_map's trust-region Newton polish (``fit._newton_polish``): its pieces against independent formulas, the
optimum it reaches against L-BFGS-B's, where it applies, and how it survives failures."""

import math

import gpytorch
import numpy as np
import pytest
import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms import Standardize
from gpytorch.constraints import Interval
from gpytorch.likelihoods import GaussianLikelihood
from linear_operator.utils.errors import NotPSDError

import gpytorch_so3.fit as fit_module
from gpytorch_so3.bo import rotated_covar_module
from gpytorch_so3.fit import fit_map


def _ridge(d=3, n=60, seed=0, dtype=torch.float64):
    """A seeded ridge ``sin(8 (x1 + x2))`` on ``U[0, 1]^d`` with noise sd 0.05 (oblique: the rotation matters)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, d, generator=g, dtype=torch.float64)
    Y = torch.sin(8 * X[:, :2].sum(-1, keepdim=True)) + 0.05 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    return X.to(dtype), Y.to(dtype)


def _model(X, Y, likelihood=None):
    return SingleTaskGP(
        X, Y, covar_module=rotated_covar_module(X.shape[-1]), likelihood=likelihood, outcome_transform=Standardize(1)
    )


def _objective(model):
    """The batched objective of ``model`` and one row (its current parameters, optimiser coordinates)."""
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)
    params = {k: p for k, p in model.named_parameters() if p.requires_grad}
    _, bounds = fit_module.get_parameters_and_bounds(mll)
    obj = fit_module._BatchedObjective(model, params, bounds)
    return obj, obj.to_internal(obj.flat(model)[None])


def _polish_calls(monkeypatch):
    calls = []
    real = fit_module._newton_polish

    def spy(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(fit_module, "_newton_polish", spy)
    return calls


# ------------------------------------------------------------------------------------------------------ the pieces
def test_hessian_matches_second_differences_of_the_loss():
    """``_newton_hessian`` (forward differences of the exact gradient) against second differences of the loss
    *values* along random directions, an independent formula: ``v^T H v`` agrees to 1e-4 relative (seen: <= 5e-6,
    part of it the second differences' own O(t^2) error)."""
    X, Y = _ridge()
    model = _model(X, Y)
    with torch.no_grad():
        model.covar_module.base_kernel.rotation = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
        model.covar_module.base_kernel.lengthscale = torch.tensor([[0.2, 0.5, 1.1]], dtype=torch.float64)
    obj, row = _objective(model)
    x = row[0]
    H = fit_module._newton_hessian(obj, x)
    assert H.shape == (x.size, x.size) and np.allclose(H, H.T)

    def loss(z):
        with torch.no_grad():
            return float(obj.losses(obj.tensor(z[None]))[0])

    g = np.random.default_rng(0)
    t = 1e-3
    for _ in range(3):
        v = g.standard_normal(x.size)
        v /= np.linalg.norm(v)
        second = (loss(x + t * v) - 2 * loss(x) + loss(x - t * v)) / t**2
        assert v @ H @ v == pytest.approx(second, rel=1e-4, abs=1e-6)


def test_trust_step_against_the_explicit_solution():
    """Inside the radius: the Newton step of the absolute-eigenvalue model, ``-|H|^-1 g``. On the boundary: length
    ``radius``, a descent direction, and a model value no higher than any other of 200 random steps of that length."""
    g = np.random.default_rng(1)
    A = g.standard_normal((5, 5))
    H = (A + A.T) / 2  # indefinite
    lam, V = np.linalg.eigh(H)
    assert lam.min() < 0 < lam.max()
    grad = g.standard_normal(5)
    absH = V @ np.diag(np.abs(lam)) @ V.T
    newton = -np.linalg.solve(absH, grad)
    a = fit_module._floored_abs(lam)
    np.testing.assert_array_equal(a, np.abs(lam))  # no eigenvalue below 1e-12 of the largest here
    s = fit_module._trust_step(a, V, grad, radius=10 * np.linalg.norm(newton))
    np.testing.assert_allclose(s, newton, rtol=1e-10, atol=1e-12)

    radius = 0.1 * np.linalg.norm(newton)
    s = fit_module._trust_step(a, V, grad, radius)
    assert np.linalg.norm(s) == pytest.approx(radius, rel=1e-9)
    assert grad @ s < 0

    def model(z):
        return grad @ z + 0.5 * z @ absH @ z

    others = g.standard_normal((200, 5))
    others *= radius / np.linalg.norm(others, axis=1, keepdims=True)
    assert model(s) <= min(model(z) for z in others) + 1e-12


# ------------------------------------------------------------------------------------------------- the optimum
def test_newton_reaches_lbfgsb_optimum_in_far_fewer_evaluations(monkeypatch):
    """Seeded 3-D ridge (n = 60), 2 restarts, seed 0: the halving rounds are the same L-BFGS-B runs in both, so the
    polish starts from the same row. Newton's polish ends at or below L-BFGS-B's loss (seen: 6e-7 per point lower)
    in under a fifth of its evaluations (seen: 16 vs 189, Hessians counted as one each); the fitted metric agrees."""
    X, Y = _ridge()
    calls = _polish_calls(monkeypatch)
    newton = fit_map(_model(X, Y), num_restarts=2, seed=0)
    assert calls, "the float64 polish on 60 points should use the Newton polish"
    monkeypatch.setattr(fit_module, "NEWTON_POLISH", False)
    calls.clear()
    lbfgsb = fit_map(_model(X, Y), num_restarts=2, seed=0)
    assert not calls
    a, b = newton.fit_map_info_, lbfgsb.fit_map_info_
    assert [p.losses for p in a.phases if "round" in p.name] == [p.losses for p in b.phases if "round" in p.name]
    assert a.best_loss <= b.best_loss + 1e-9
    polish_a = sum(p.evaluations for p in a.phases if p.name == "polish")
    polish_b = sum(p.evaluations for p in b.phases if p.name == "polish")
    assert polish_a < polish_b / 5, (polish_a, polish_b)
    Ma = newton.covar_module.base_kernel.metric.detach()
    Mb = lbfgsb.covar_module.base_kernel.metric.detach()
    torch.testing.assert_close(Ma, Mb, rtol=1e-2, atol=1e-3)


def test_newton_polish_ends_at_a_stationary_point():
    """The polished parameters have a largest gradient entry below ``pgtol`` (1e-5 per point, L-BFGS-B's default) or
    end on the ``ftol`` test; either way the gradient is small: <= 1e-4 (seen: 1.5e-6, seeded 4-D ridge, n = 80)."""
    X, Y = _ridge(d=4, n=80)
    model = fit_map(_model(X, Y), num_restarts=2, seed=0)
    obj, row = _objective(model)
    _, grad = fit_module._PhaseClosure(obj, row)(row, [0])
    assert np.abs(grad).max() <= 1e-4


def test_maxiter_caps_the_newton_steps():
    """``optimizer_options={"maxiter": 3}``: each polish takes at most 3 steps (at most 3 proposals and 3 Hessians
    besides its first evaluation)."""
    X, Y = _ridge()
    info = fit_map(_model(X, Y), num_restarts=2, seed=0, optimizer_options={"maxiter": 3}).fit_map_info_
    polishes = [p for p in info.phases if p.name == "polish"]
    assert polishes and all(p.evaluations <= 1 + 3 + 3 for p in polishes)


def test_a_stalled_polish_stops(monkeypatch):
    """A seeded 6-D design (40 points of a noise-free oblique bump) fitted as ``fit_rotated_or_ard`` fits its rotated
    model in d >= 4 (no rotation prior, identity and gradient starts): rotations among the directions the data barely
    see form a valley that is flat but not exactly. With the stall test off (``NEWTON_STALL_NATS = 0``) the two
    polishes took 331 + 196 evaluations, the last ~200 for ~0.002 nats; with it (1e-3 nats per 10 accepted steps)
    177 + 68, ending 0.0016 nats higher. Asserts at most 2/3 of the evaluations and at most 0.01 nats lost."""
    g = torch.Generator().manual_seed(40)
    X = torch.rand(40, 6, generator=g, dtype=torch.float64)
    u = torch.tensor([1.0, 1, 0, 0, 0, 0], dtype=torch.float64)
    Y = torch.exp(-20 * ((X - 0.5) @ u) ** 2 - 0.5 * ((X - 0.5) ** 2).sum(-1)).unsqueeze(-1)

    def fit():
        covar = rotated_covar_module(6, rotation_prior=None)
        model = SingleTaskGP(X, Y, covar_module=covar, outcome_transform=Standardize(1))
        info = fit_map(model, num_restarts=4, seed=0, identity_start=True, gradient_start=True).fit_map_info_
        return info.best_loss * 40, sum(p.evaluations for p in info.phases if p.name == "polish")

    loss, evaluations = fit()
    monkeypatch.setattr(fit_module, "NEWTON_STALL_NATS", 0.0)
    loss_off, evaluations_off = fit()
    assert evaluations <= 2 * evaluations_off / 3, (evaluations, evaluations_off)
    assert loss_off - 1e-9 <= loss <= loss_off + 0.01


# --------------------------------------------------------------------------------------------- where it applies
def test_newton_polish_applies_to_float64_unbounded_and_small_only(monkeypatch):
    X, Y = _ridge()
    calls = _polish_calls(monkeypatch)
    fit_map(_model(X.float(), Y.float()), num_restarts=2, seed=0)
    assert not calls, "float32: L-BFGS-B (the forward differences need float64)"

    monkeypatch.setattr(fit_module, "NEWTON_MAX_POINTS", 59)
    fit_map(_model(X, Y), num_restarts=2, seed=0)
    assert not calls, "more points than NEWTON_MAX_POINTS: L-BFGS-B"
    monkeypatch.setattr(fit_module, "NEWTON_MAX_POINTS", 60)
    fit_map(_model(X, Y), num_restarts=2, seed=0)
    assert calls

    bounded = GaussianLikelihood(noise_constraint=Interval(1e-4, 1.0, transform=None))
    obj, _ = _objective(_model(X, Y, likelihood=bounded))
    assert obj.bounds is not None and not fit_module._newton_applicable(obj)
    obj, _ = _objective(_model(X, Y))
    assert obj.bounds is None and fit_module._newton_applicable(obj)


# ----------------------------------------------------------------------------------------------------- failures
def test_failing_hessian_hands_over_to_lbfgsb(monkeypatch):
    """A perturbed row that fails (non-PSD) makes the Newton polish hand the start to L-BFGS-B from where it is: the
    fit succeeds, no start is recorded as failed, and it ends at the Newton fit's optimum (1e-6 per point)."""
    X, Y = _ridge()
    reference = fit_map(_model(X, Y), num_restarts=2, seed=0).fit_map_info_.best_loss

    def broken(obj, x):
        raise NotPSDError("injected")

    monkeypatch.setattr(fit_module, "_newton_hessian", broken)
    info = fit_map(_model(X, Y), num_restarts=2, seed=0).fit_map_info_
    assert not info.failures
    assert info.best_loss == pytest.approx(reference, abs=1e-6)


def test_failing_proposals_are_rejected_and_the_polish_goes_on(monkeypatch):
    """Every third proposal of the Newton polish fails (NotPSDError inside the objective): each is rejected, the trust
    region shrinks, and the polish still ends at the unpoisoned optimum (1e-6 per point), with no start failed."""
    X, Y = _ridge()
    reference = fit_map(_model(X, Y), num_restarts=2, seed=0).fit_map_info_.best_loss
    real_polish, real_losses = fit_module._newton_polish, fit_module._BatchedObjective.losses
    state = {"active": False, "calls": 0, "poisoned": 0}

    def polish(*args, **kwargs):
        state["active"], state["calls"] = True, 0
        try:
            return real_polish(*args, **kwargs)
        finally:
            state["active"] = False

    def losses(self, x):
        if state["active"] and x.shape[0] == 1:
            state["calls"] += 1
            if state["calls"] > 1 and state["calls"] % 3 == 0:  # never the start's first evaluation
                state["poisoned"] += 1
                raise NotPSDError("injected")
        return real_losses(self, x)

    monkeypatch.setattr(fit_module, "_newton_polish", polish)
    monkeypatch.setattr(fit_module._BatchedObjective, "losses", losses)
    info = fit_map(_model(X, Y), num_restarts=2, seed=0).fit_map_info_
    assert state["poisoned"] >= 2
    assert not info.failures
    assert math.isfinite(info.best_loss) and info.best_loss == pytest.approx(reference, abs=1e-6)


def test_failing_first_evaluation_drops_the_start_with_a_warning(monkeypatch):
    """A start whose first polish evaluation fails is recorded and warned about, as in the L-BFGS-B polish; the fit
    goes on with the next start of the ranking."""
    from gpytorch_so3.exceptions import RestartFailedWarning

    X, Y = _ridge()
    failures = {}
    obj, row = _objective(_model(X, Y))
    real = fit_module._BatchedObjective.losses

    def broken(self, x):
        raise NotPSDError("injected")

    monkeypatch.setattr(fit_module._BatchedObjective, "losses", broken)
    with pytest.warns(RestartFailedWarning, match="start 5 failed in polish"):
        xs, losses = fit_module._newton_polish(obj, row, 5, {}, failures, "polish")
    monkeypatch.setattr(fit_module._BatchedObjective, "losses", real)
    assert losses == {} and "NotPSDError" in failures[5] and np.array_equal(xs, row)
