"""Tests of gpytorch_so3.scalable: SVGP exactness and streaming, whitened Vecchia neighbours, the 2-process run."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import gpytorch
import numpy as np
import pytest
import torch
from _scalable_ddp_worker import fit_one

from gpytorch_so3 import functional as F
from gpytorch_so3.datasets import make_rotated_field
from gpytorch_so3.priors import so3_covar_module
from gpytorch_so3.scalable import (
    NearestNeighbourGP,
    SO3SVGPModel,
    fit_nngp,
    fit_svgp,
    optimal_variational_update,
    ordered_neighbours,
    read_csv,
)
from gpytorch_so3.scalable._data import Standardization

ROOT = Path(__file__).resolve().parents[1]
FAST = {"init_size": 60, "init_restarts": 1, "progress": False}


@pytest.fixture(scope="module")
def field():
    return make_rotated_field(
        n_train=60, n_test=25, lengthscale=(0.15, 0.4, 0.8), rotation=(0.5, -0.3, 0.8), noise_std=0.1, seed=2
    )


def _kernel_matrix(covar, x1, x2):
    """Independent reference: outputscale * base(|(x1 - x2) A|) from gpytorch_so3.functional."""
    base = covar.base_kernel
    return covar.outputscale.detach() * F.covariance(x1, x2, base.whitening_matrix.detach(), base.nu)


def _exact_posterior(covar, noise, const, xs, ys, xt):
    K = _kernel_matrix(covar, xs, xs) + noise * torch.eye(len(xs), dtype=xs.dtype)
    Ks = _kernel_matrix(covar, xt, xs)
    L = torch.linalg.cholesky(K)
    mean = const + Ks @ torch.cholesky_solve((ys - const).unsqueeze(-1), L).squeeze(-1)
    W = torch.linalg.solve_triangular(L, Ks.mT, upper=False)
    var = covar.outputscale.detach() - (W * W).sum(0)
    return mean, var


# ----------------------------------------------------------------------------------------------- SVGP
def test_svgp_with_inducing_points_at_the_data_is_the_exact_gp(field):
    # Z = all training points (num_inducing >= N, not learned), q(u) at its closed-form optimum, no minibatch
    # steps: the SVGP predictive equals the exact GP posterior with the same hyper-parameters (Titsias' bound is
    # tight at Z = X). The only difference is the variational Cholesky jitter on K_zz, set to 1e-10 here, which
    # perturbs the solution by ~jitter / noise ~ 1e-8 relative in float64: tolerance 1e-6.
    with gpytorch.settings.variational_cholesky_jitter(double_value=1e-10):
        res = fit_svgp(field.train_X, field.train_Y, num_inducing=100, learn_inducing_locations=False, epochs=0, **FAST)
        mean, var = res.predict(field.test_X)
    s = res.standardization
    assert res.model.variational_strategy.inducing_points.shape == (60, 3)
    covar, noise = res.model.covar_module, float(res.likelihood.noise.detach())
    const = float(res.model.mean_module.constant.detach())
    ref_mean, ref_var = _exact_posterior(
        covar, noise, const, s.x(field.train_X), s.y(field.train_Y.reshape(-1)), s.x(field.test_X)
    )
    torch.testing.assert_close(mean, s.y_back(ref_mean), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(var, ref_var * s.y_std**2, rtol=1e-6, atol=1e-6)
    # and it has learned something: better than predicting the field's mean (60 points only, so not much better)
    assert float(((mean - field.test_F.reshape(-1)) ** 2).mean().sqrt()) < float(field.test_F.std())


def test_closed_form_update_equals_one_full_batch_natural_gradient_step():
    # Two derivations of the same optimum: gpytorch's NGD with lr = 1 on the full-batch ELBO jumps to the optimal
    # q(u) of a Gaussian likelihood; optimal_variational_update computes it in closed form. float64: 1e-6.
    g = torch.Generator().manual_seed(0)
    X, y = torch.rand(50, 3, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    Z = X[:12].clone()
    kern = so3_covar_module(2.5).double()
    kern.base_kernel.rotation = torch.tensor([0.3, 0.2, -0.4])
    a = SO3SVGPModel(Z, kern, variational="natural", learn_inducing_locations=False).double()
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    lik.noise = 0.05
    b = SO3SVGPModel(Z, so3_covar_module(2.5).double(), variational="natural", learn_inducing_locations=False)
    b.load_state_dict(a.state_dict())
    b = b.double()
    optimal_variational_update(a, lik, [(X[:20], y[:20]), (X[20:], y[20:])])  # two chunks
    b.train()
    mll = gpytorch.mlls.VariationalELBO(lik, b, num_data=50)
    ngd = gpytorch.optim.NGD(b.variational_strategy._variational_distribution.parameters(), num_data=50, lr=1.0)
    ngd.zero_grad()
    (-mll(b(X), y)).backward()
    ngd.step()
    qa, qb = a.variational_strategy._variational_distribution, b.variational_strategy._variational_distribution
    torch.testing.assert_close(qa.natural_vec, qb.natural_vec.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(qa.natural_mat, qb.natural_mat.detach(), rtol=1e-6, atol=1e-6)


def test_training_reduces_the_loss_and_keeps_shapes(field):
    res = fit_svgp(field.train_X, field.train_Y, num_inducing=16, batch_size=20, epochs=4, lr=0.05, **FAST)
    losses = [h["loss"] for h in res.history]
    assert len(losses) == 4 and all(h["steps"] == 3 for h in res.history)
    assert losses[-1] < losses[0]
    assert res.model.variational_strategy.inducing_points.shape == (16, 3)
    assert not res.model.training and res.num_data == 60 and res.world_size == 1


def test_max_seconds_stops_after_the_current_step_and_ard_kernel(field):
    # max_seconds is checked after every step: a budget of 1 ns stops after the first one (no timing assertion)
    res = fit_svgp(field.train_X, field.train_Y, num_inducing=8, batch_size=20, max_seconds=1e-9, kernel="ard", **FAST)
    assert [h["steps"] for h in res.history] == [1]
    assert isinstance(res.model.covar_module.base_kernel, gpytorch.kernels.MaternKernel)
    mean, var = res.predict(field.test_X)
    assert mean.shape == var.shape == (25,) and bool(torch.isfinite(mean).all())


def test_predict_chunking_and_inputs(field):
    res = fit_svgp(field.train_X, field.train_Y, num_inducing=16, batch_size=30, epochs=1, **FAST)
    m1, v1 = res.predict(field.test_X, chunk_size=7)
    m2, v2 = res.predict(field.test_X.numpy(), chunk_size=1000)
    assert m1.shape == v1.shape == (25,)
    torch.testing.assert_close(m1, m2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(v1, v2, rtol=1e-10, atol=1e-10)
    m0, v0 = res.predict(torch.empty(0, 3, dtype=torch.float64))
    assert m0.shape == v0.shape == (0,)
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        res.predict(torch.rand(4, 2))
    with pytest.raises(ValueError, match="NaN"):
        res.predict(torch.tensor([[0.0, math.nan, 0.0]]))
    with pytest.raises(ValueError, match="chunk_size"):
        res.predict(field.test_X, chunk_size=0)


def test_svgp_seed_reproducible(field):
    kw = {"num_inducing": 12, "batch_size": 25, "epochs": 2, **FAST}
    a = fit_svgp(field.train_X, field.train_Y, seed=1, **kw)
    b = fit_svgp(field.train_X, field.train_Y, seed=1, **kw)
    c = fit_svgp(field.train_X, field.train_Y, seed=2, **kw)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["variational_strategy.inducing_points"], sc["variational_strategy.inducing_points"])


def test_memmap_and_csv_inputs_match_tensors(field, tmp_path):
    X = field.train_X.float().numpy()
    Y = field.train_Y.float().numpy()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    pairs = zip(X.tolist(), Y.tolist(), strict=True)
    rows = "\n".join(f"{i},{x[0]!r},{x[1]!r},{x[2]!r},{y[0]!r}" for i, (x, y) in enumerate(pairs))
    (tmp_path / "d.csv").write_text("id,x,y,z,value\n" + rows + "\n")
    kw = {"num_inducing": 12, "batch_size": 25, "epochs": 2, **FAST}
    ref = fit_svgp(torch.from_numpy(X), torch.from_numpy(Y), **kw).predict(field.test_X)
    mm = fit_svgp(np.load(tmp_path / "X.npy", mmap_mode="r"), np.load(tmp_path / "Y.npy", mmap_mode="r"), **kw)
    csv = fit_svgp(tmp_path / "d.csv", "value", coords=("x", "y", "z"), **kw)
    for other in (mm.predict(field.test_X), csv.predict(field.test_X)):
        assert other[0].dtype == torch.float32
        assert torch.equal(ref[0], other[0]) and torch.equal(ref[1], other[1])
    assert np.array_equal(read_csv(tmp_path / "d.csv", ["x", "y", "z"], chunk_rows=7), X)


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "match"),
    [
        ((torch.rand(10, 2), torch.rand(10)), {}, ValueError, r"\(N, 3\)"),
        ((torch.rand(10, 3), torch.rand(9)), {}, ValueError, "different numbers of rows"),
        ((torch.rand(10, 3), torch.rand(10, 2)), {}, ValueError, r"\(N,\) or \(N, 1\)"),
        ((torch.tensor([[0.0, 0.0, math.nan]] * 3), torch.rand(3)), {}, ValueError, "NaN"),
        ((torch.rand(10, 3), torch.full((10,), math.inf)), {}, ValueError, "NaN or inf"),
        ((torch.ones(10, 3, dtype=torch.long), torch.rand(10)), {}, TypeError, "floating"),
        (([[0.0, 0.0, 0.0]], [1.0]), {}, TypeError, "torch.Tensor"),
        ((torch.rand(10, 3), torch.rand(10)), {"epochs": -1}, ValueError, "epochs"),
        ((torch.rand(10, 3), torch.rand(10)), {"epochs": 1.5}, TypeError, "epochs"),
        ((torch.rand(10, 3), torch.rand(10)), {"max_seconds": 0}, ValueError, "max_seconds"),
        ((torch.rand(10, 3), torch.rand(10)), {"max_seconds": math.inf}, ValueError, "max_seconds"),
        ((torch.rand(10, 3), torch.rand(10)), {"batch_size": 0}, ValueError, "batch_size"),
        ((torch.rand(10, 3), torch.rand(10)), {"num_inducing": True}, TypeError, "num_inducing"),
        ((torch.rand(10, 3), torch.rand(10)), {"nu": 1.0}, ValueError, "nu"),
        ((torch.rand(10, 3), torch.rand(10)), {"kernel": "rbf"}, ValueError, "kernel"),
        ((torch.rand(10, 3), torch.rand(10)), {"variational": "diag"}, ValueError, "variational"),
        ((torch.rand(10, 3), torch.rand(10)), {"coords": ("x", "y", "z")}, TypeError, "coords"),
        (("missing.csv", torch.rand(10)), {}, TypeError, "column name"),
        (("missing.csv", "v"), {}, ValueError, "not found"),
    ],
)
def test_svgp_input_validation(args, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fit_svgp(*args, progress=False, **kwargs)


def test_nngp_input_validation():
    X, Y = torch.rand(10, 3), torch.rand(10)
    with pytest.raises(ValueError, match="neighbours"):
        fit_nngp(X, Y, neighbours="manhattan")
    with pytest.raises(ValueError, match="num_neighbours"):
        fit_nngp(X, Y, num_neighbours=0)
    with pytest.raises(ValueError, match="different numbers"):
        fit_nngp(X, Y[:5])


def test_csv_errors(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("x,y,z,v\n0,1,2,abc\n")
    with pytest.raises(ValueError, match="non-numeric"):
        read_csv(p, ["x", "v"])
    with pytest.raises(ValueError, match="not in the header"):
        read_csv(p, ["x", "w"])
    (tmp_path / "empty.csv").write_text("x,y,z,v\n")
    with pytest.raises(ValueError, match="no data rows"):
        read_csv(tmp_path / "empty.csv", ["x"])


# ----------------------------------------------------------------------------------------------- neighbours
def _brute_ordered(z, m):
    out = np.full((len(z), m), -1)
    for i in range(1, len(z)):
        d = np.linalg.norm(z[:i] - z[i], axis=1)
        nn = np.argsort(d, kind="stable")[:m]
        out[i, : len(nn)] = nn
    return out


@pytest.mark.parametrize(("n", "m", "block"), [(300, 5, 16), (257, 12, 64), (40, 50, 8), (100, 3, 1000)])
def test_ordered_neighbours_match_brute_force(n, m, block):
    z = np.random.default_rng(n).normal(size=(n, 3))
    np.testing.assert_array_equal(ordered_neighbours(z, m, block=block), _brute_ordered(z, m))


def _rotated_kernel(dtype=torch.float64):
    k = so3_covar_module(2.5).to(dtype)
    k.base_kernel.lengthscale = torch.tensor([[0.03, 0.3, 0.3]])
    k.base_kernel.rotation = torch.tensor([0.4, -0.7, 0.5])
    return k


def _std():
    return Standardization(torch.zeros(3, dtype=torch.float64), 1.0, 0.0, 1.0)


def test_nngp_neighbours_are_whitened_and_refresh_when_the_metric_moves():
    g = torch.Generator().manual_seed(1)
    X, y = torch.rand(200, 3, generator=g, dtype=torch.float64), torch.randn(200, generator=g, dtype=torch.float64)
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    kern = _rotated_kernel()
    gp = NearestNeighbourGP(X, y, kern, lik, _std(), num_neighbours=6, refresh_tol=0.05)
    z = (X @ kern.base_kernel.whitening_matrix.detach()).numpy()
    np.testing.assert_array_equal(gp.neighbours.numpy(), _brute_ordered(z, 6))
    raw = NearestNeighbourGP(X, y, _rotated_kernel(), lik, _std(), num_neighbours=6, neighbours="euclidean")
    np.testing.assert_array_equal(raw.neighbours.numpy(), _brute_ordered(X.numpy(), 6))
    assert (raw.neighbours != gp.neighbours).float().mean() > 0.5  # 10:1 anisotropy: mostly different sets
    before = gp.num_refreshes
    kern.base_kernel.lengthscale = kern.base_kernel.lengthscale.detach() * 1.01  # |dA| / |A| = 1%: no refresh
    assert not gp.maybe_refresh() and gp.num_refreshes == before
    kern.base_kernel.rotation = torch.tensor([0.4, -0.7, 0.5]) + 0.3  # a large move
    assert gp.maybe_refresh() and gp.num_refreshes == before + 1
    z = (X @ kern.base_kernel.whitening_matrix.detach()).numpy()
    np.testing.assert_array_equal(gp.neighbours.numpy(), _brute_ordered(z, 6))


def test_vecchia_with_all_earlier_points_is_the_exact_gp():
    # m >= N - 1: every term conditions on all earlier points, so the product of conditionals is the exact joint
    # density, and prediction conditioning on all N points is the exact posterior (float64; Cholesky jitter 1e-10).
    g = torch.Generator().manual_seed(2)
    X, y = torch.rand(30, 3, generator=g, dtype=torch.float64), torch.randn(30, generator=g, dtype=torch.float64)
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    lik.noise = 0.05
    kern = _rotated_kernel()
    gp = NearestNeighbourGP(X, y, kern, lik, _std(), num_neighbours=40, num_neighbours_predict=30)
    K = _kernel_matrix(kern, X, X) + 0.05 * torch.eye(30, dtype=torch.float64)
    exact = torch.distributions.MultivariateNormal(torch.zeros(30, dtype=torch.float64), K).log_prob(y)
    torch.testing.assert_close(gp.vecchia_log_likelihood().detach(), exact, rtol=1e-7, atol=1e-7)
    xt = torch.rand(9, 3, generator=g, dtype=torch.float64)
    mean, var = gp.predict(xt, chunk_size=4)
    ref_mean, ref_var = _exact_posterior(kern, 0.05, 0.0, X, y, xt)
    torch.testing.assert_close(mean, ref_mean, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(var, ref_var, rtol=1e-7, atol=1e-7)


def test_fit_nngp_seeded_and_runs(field):
    kw = {"num_neighbours": 6, "batch_size": 30, "epochs": 2, **FAST}
    a = fit_nngp(field.train_X, field.train_Y, seed=4, **kw)
    b = fit_nngp(field.train_X, field.train_Y, seed=4, **kw)
    ma, va = a.predict(field.test_X)
    mb, _ = b.predict(field.test_X, chunk_size=5)
    assert torch.equal(a.neighbours, b.neighbours)
    torch.testing.assert_close(ma, mb, rtol=1e-10, atol=1e-10)
    assert len(a.history) == 2 and bool((va >= 0).all())


# ----------------------------------------------------------------------------------------------- two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_processes(data_dir: Path, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
        str(ROOT / "tests" / "_scalable_ddp_worker.py"), str(data_dir), str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {r: torch.load(f"{out}.rank{r}") for r in range(2)}


def test_two_processes_give_the_one_process_model(tmp_path, monkeypatch):
    # torchrun, 2 CPU processes (gloo), same data (memmapped .npy), seeds and settings as one process (run here,
    # in the test process, by the same worker function). Each step of the 2-process run processes half of the same
    # global minibatch on each rank and sums the gradients, so it is the 1-process step up to the order of
    # floating-point sums (float64: ~1e-16 relative per step); 3 epochs x 4 steps of Adam (and NGD) amplify that
    # by a modest factor: tolerance 1e-7 relative. Without the gradient all-reduce the ranks would train on
    # different halves and differ at the 1e-2 level.
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    f = make_rotated_field(n_train=360, n_test=20, lengthscale=(0.15, 0.4, 0.8), noise_std=0.1, seed=5)
    np.save(tmp_path / "X.npy", f.train_X.numpy())
    np.save(tmp_path / "Y.npy", f.train_Y.numpy())
    np.save(tmp_path / "Xt.npy", f.test_X.numpy())
    two = _run_two_processes(tmp_path, tmp_path / "two")
    for variational in ("cholesky", "natural"):
        one = fit_one(str(tmp_path), variational)
        assert one["world_size"] == 1 and two[0][variational]["world_size"] == 2
        for r in (0, 1):  # every rank ends with the same model as the single process
            got = two[r][variational]
            for k, v in one["state"].items():
                torch.testing.assert_close(got["state"][k], v, rtol=1e-7, atol=1e-9, msg=lambda m, k=k: f"{k}: {m}")
            torch.testing.assert_close(got["mean"], one["mean"], rtol=1e-7, atol=1e-9)
            torch.testing.assert_close(got["var"], one["var"], rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(two[0][variational]["losses"], one["losses"], rtol=1e-7)
