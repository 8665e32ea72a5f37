"""Fully Bayesian runtime behaviour: scoped Pyro handler, BoTorch base class, parallel chains, bad input, interrupts.

Issues 13.3 (parallel chains), 14.2/14.3/14.8 (scoped exception handler, BoTorch's fully Bayesian base class,
ArviZ diagnostics) and 15 (interrupted refits keep their samples, clear errors). MCMC budgets are toy budgets:
these tests check behaviour, not statistics.
"""

from __future__ import annotations

import math
import pickle
import sys

import pytest
import torch
from botorch.models import fully_bayesian as botorch_fb
from botorch.models.fully_bayesian import AbstractFullyBayesianSingleTaskGP
from linear_operator.utils.errors import NotPSDError
from pyro.ops import integrator
from scipy.spatial.transform import Rotation

import gpytorch_so3.nuts as nuts_mod
from gpytorch_so3.exceptions import NotFittedError
from gpytorch_so3.fully_bayesian import NotFittedError as OldNotFittedError
from gpytorch_so3.fully_bayesian import SO3FullyBayesianGP, SO3PyroModel
from gpytorch_so3.nuts import EXCEPTION_HANDLER_NAME, divergence_advice, fit_nuts
from gpytorch_so3.summary import diagnostics, summarize_posterior, summarize_samples

TOY = {
    "warmup_steps": 6,
    "num_samples": 6,
    "thinning": 2,
    "max_tree_depth": 3,
    "disable_progbar": True,
    "num_workers": 1,
}


def _data(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 3, generator=g, dtype=torch.float64)
    y = torch.sin(4 * X[:, 0]) + torch.cos(3 * X[:, 2]) + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
    return X, ((y - y.mean()) / y.std()).unsqueeze(-1)


# ------------------------------------------------------------------------------------------ scoped Pyro handler
def test_no_handler_of_ours_after_import_or_fit():
    before = dict(integrator._EXCEPTION_HANDLERS)
    assert EXCEPTION_HANDLER_NAME not in before  # importing gpytorch_so3 registered nothing
    X, Y = _data(10)
    fit_nuts(SO3FullyBayesianGP(X, Y), **TOY)
    assert integrator._EXCEPTION_HANDLERS == before


def test_handler_present_during_fit_and_removed_after_failure(monkeypatch):
    seen = []
    orig = SO3PyroModel.make_potential_fn

    def spying(self, transforms):
        seen.append(EXCEPTION_HANDLER_NAME in integrator._EXCEPTION_HANDLERS)
        return orig(self, transforms)

    monkeypatch.setattr(SO3PyroModel, "make_potential_fn", spying)
    X, Y = _data(10)
    before = dict(integrator._EXCEPTION_HANDLERS)
    fit_nuts(SO3FullyBayesianGP(X, Y), **TOY)
    assert seen == [True]

    def broken(self, transforms):
        raise KeyError("a bug, not a numerical failure")

    monkeypatch.setattr(SO3PyroModel, "make_potential_fn", broken)
    with pytest.raises(KeyError):
        fit_nuts(SO3FullyBayesianGP(X, Y), **TOY)
    assert integrator._EXCEPTION_HANDLERS == before


def test_handler_restores_a_previous_entry_of_the_same_name():
    sentinel = lambda e: False
    integrator._EXCEPTION_HANDLERS[EXCEPTION_HANDLER_NAME] = sentinel
    try:
        with nuts_mod.rejecting_numerical_failures():
            assert integrator._EXCEPTION_HANDLERS[EXCEPTION_HANDLER_NAME] is nuts_mod.is_numerical_failure
        assert integrator._EXCEPTION_HANDLERS[EXCEPTION_HANDLER_NAME] is sentinel
    finally:
        integrator._EXCEPTION_HANDLERS.pop(EXCEPTION_HANDLER_NAME, None)


def test_not_psd_step_is_rejected_but_message_lookalike_is_raised(monkeypatch):
    """A NotPSDError mid-run is a rejected step (NUTS survives); a RuntimeError mentioning 'nan' is a real error."""
    X, Y = _data(12)
    state = {"n": 0, "exc": NotPSDError("Matrix not positive definite after repeatedly adding jitter")}
    orig = SO3PyroModel.make_potential_fn

    def flaky_factory(self, transforms):
        pe = orig(self, transforms)

        def flaky(z):
            state["n"] += 1
            if state["n"] > 15 and state["n"] % 4 == 0:  # after Pyro's set-up and initial step-size search
                raise state["exc"]
            return pe(z)

        return flaky

    monkeypatch.setattr(SO3PyroModel, "make_potential_fn", flaky_factory)
    model = fit_nuts(SO3FullyBayesianGP(X, Y), **{**TOY, "warmup_steps": 10, "num_samples": 10})
    assert model.fit_nuts_info_.num_rejected[0] > 0
    assert bool(torch.isfinite(model.kernel.lengthscale).all())
    state.update(n=0, exc=RuntimeError("found nan in the input"))
    with pytest.raises(RuntimeError, match="found nan"):
        fit_nuts(SO3FullyBayesianGP(X, Y), **{**TOY, "warmup_steps": 10, "num_samples": 10})


# ------------------------------------------------------------------------------------------ BoTorch base class
def test_subclasses_botorch_base_without_jax():
    X, Y = _data(10)
    model = SO3FullyBayesianGP(X, Y)
    assert isinstance(model, AbstractFullyBayesianSingleTaskGP)
    if not botorch_fb._HAS_JAX:  # the base's __init__ would raise ImportError here
        with pytest.raises(ImportError, match="JAX"):
            botorch_fb._check_jax_available()
    # Only what differs is overridden; the rest is BoTorch's.
    for name in ("condition_on_observations", "forward", "num_mcmc_samples", "batch_shape", "_aug_batch_shape"):
        assert name not in SO3FullyBayesianGP.__dict__, name
    assert model._is_fully_bayesian and model._is_ensemble


def test_notfittederror_location_and_messages():
    assert OldNotFittedError is NotFittedError and issubclass(NotFittedError, RuntimeError)
    X, Y = _data(10)
    model = SO3FullyBayesianGP(X, Y)
    for call in (lambda: model(X), lambda: model.posterior(X), lambda: model.median_lengthscale):
        with pytest.raises(NotFittedError, match=r"not fitted: call fit_nuts\(model\) first"):
            call()
    model.eval()
    with pytest.raises(NotFittedError, match="not fitted"):
        model(X)


def test_median_lengthscale_is_per_input_dimension():
    """BoTorch's meaning: per input axis; here the effective ARD length-scale 1 / sqrt(M_jj), median over samples."""
    X, Y = _data(10)
    model = SO3FullyBayesianGP(X, Y)
    draws = model.pyro_model.get_dummy_mcmc_samples(3, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    draws["lengthscale"] = 0.2 + torch.rand(3, 3, generator=g, dtype=torch.float64)
    draws["rotation"] = torch.randn(3, 3, generator=g, dtype=torch.float64)
    model.load_mcmc_samples(draws)
    R = torch.as_tensor(Rotation.from_rotvec(draws["rotation"].numpy()).as_matrix())
    M = R @ torch.diag_embed(draws["lengthscale"] ** -2) @ R.transpose(-1, -2)
    ref = M.diagonal(dim1=-2, dim2=-1).rsqrt().median(dim=0).values
    torch.testing.assert_close(model.median_lengthscale, ref)
    # At rotation 0 it is the median ARD length-scale of each axis.
    draws["rotation"] = torch.zeros(3, 3, dtype=torch.float64)
    model.load_mcmc_samples(draws)
    torch.testing.assert_close(model.median_lengthscale, draws["lengthscale"].median(dim=0).values)


def test_fitted_model_pickles():
    X, Y = _data(10)
    model = fit_nuts(SO3FullyBayesianGP(X, Y), **TOY)
    clone = pickle.loads(pickle.dumps(model))
    Xt = torch.rand(4, 3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(clone.posterior(Xt).mixture_mean, model.posterior(Xt).mixture_mean)


# ------------------------------------------------------------------------------------------ parallel chains
def test_parallel_chains_equal_sequential_chains(capfd):
    """Chain c's draws from 2 worker processes equal chain c's draws run in this process (same seeds): bitwise.

    Bitwise, not approximately: each chain runs the same code on the same pickled inputs with the same seed and
    initial values, in one torch thread in both cases (this suite runs with OMP_NUM_THREADS=1; the workers set
    one thread), so every floating-point operation is the same. With different thread counts reductions could
    differ in the last bits and NUTS decisions could then diverge.
    """
    X, Y = _data(14)
    kw = {**TOY, "num_chains": 2, "seed": 5, "warmup_steps": 8, "num_samples": 6}
    seq = fit_nuts(SO3FullyBayesianGP(X, Y), **{**kw, "num_workers": 1}).fit_nuts_info_
    capfd.readouterr()
    par = fit_nuts(SO3FullyBayesianGP(X, Y), **{**kw, "num_workers": 2}).fit_nuts_info_
    err = capfd.readouterr().err
    assert seq.num_workers == 1 and par.num_workers == 2
    assert seq.chain_seeds == par.chain_seeds and seq.chain_seeds[0] != seq.chain_seeds[1]
    for k in seq.samples:
        assert torch.equal(seq.samples[k], par.samples[k]), k
    assert seq.divergences == par.divergences and seq.num_evaluations == par.num_evaluations
    torch.testing.assert_close(seq.initial_rotation, par.initial_rotation, rtol=0, atol=0)
    # disable_progbar=True: no progress bars or chain lines (workers may print import-time notes of other libraries)
    assert "chain 0" not in err and "fit_nuts:" not in err


def test_progress_output_one_bar_per_chain(capfd):
    X, Y = _data(10)
    fit_nuts(SO3FullyBayesianGP(X, Y), **{**TOY, "num_chains": 2, "disable_progbar": False})
    err = capfd.readouterr().err
    assert "chain 0" in err and "chain 1" in err
    assert "fit_nuts: chain 1:" in err  # the final line per chain (step size, divergences, rejected)


def test_unpicklable_pyro_model_with_explicit_workers_is_a_clear_error():
    class LocalModel(SO3PyroModel):  # defined in a function: worker processes cannot import it
        pass

    X, Y = _data(10)
    model = SO3FullyBayesianGP(X, Y, pyro_model=LocalModel(nu=2.5))
    with pytest.raises(TypeError, match="pickle"):
        fit_nuts(model, **{**TOY, "num_chains": 2, "num_workers": 2})
    # Automatic choice: falls back to this process.
    fit_nuts(model, **{**TOY, "num_chains": 2, "num_workers": None})
    assert model.fit_nuts_info_.num_workers == 1


# ------------------------------------------------------------------------------------------ issue 15
def test_interrupted_refit_keeps_old_samples(monkeypatch):
    X, Y = _data(12)
    model = fit_nuts(SO3FullyBayesianGP(X, Y), **TOY)
    old_info = model.fit_nuts_info_
    old_ls = model.kernel.lengthscale.detach().clone()
    old_dtype = model.pyro_model.dtype
    Xt = torch.rand(3, 3, dtype=torch.float64)
    with torch.no_grad():
        old_mean = model.posterior(Xt).mixture_mean
    orig = SO3PyroModel.make_potential_fn
    calls = {"n": 0}

    def interrupted_factory(self, transforms):
        pe = orig(self, transforms)

        def pe_interrupt(z):
            calls["n"] += 1
            if calls["n"] == 25:  # mid-run, as from a signal
                raise KeyboardInterrupt
            return pe(z)

        return pe_interrupt

    monkeypatch.setattr(SO3PyroModel, "make_potential_fn", interrupted_factory)
    with pytest.raises(KeyboardInterrupt):
        fit_nuts(model, **{**TOY, "warmup_steps": 30, "seed": 1, "dtype": torch.float32})
    assert calls["n"] == 25
    assert model.is_fitted and model.fit_nuts_info_ is old_info and not model.training
    assert torch.equal(model.kernel.lengthscale, old_ls)
    assert model.pyro_model.dtype == old_dtype
    assert EXCEPTION_HANDLER_NAME not in integrator._EXCEPTION_HANDLERS
    with torch.no_grad():
        torch.testing.assert_close(model.posterior(Xt).mixture_mean, old_mean)


def test_too_few_points():
    with pytest.raises(ValueError, match="no training points"):
        SO3FullyBayesianGP(torch.empty(0, 3, dtype=torch.float64), torch.empty(0, 1, dtype=torch.float64))
    model = SO3FullyBayesianGP(torch.rand(1, 3, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="at least 2"):
        fit_nuts(model, **TOY)


def test_load_state_dict_names_missing_keys():
    X, Y = _data(10)
    model = SO3FullyBayesianGP(X, Y)
    with pytest.raises(ValueError, match=r"mean_module\.raw_constant") as err:
        model.load_state_dict({})
    assert "covar_module.base_kernel.raw_rotation" in str(err.value)
    assert not model.is_fitted  # a failed load leaves the model as it was
    fitted = fit_nuts(SO3FullyBayesianGP(X, Y), **TOY)
    sd = fitted.state_dict()
    partial = {k: v for k, v in sd.items() if "raw_rotation" not in k}
    with pytest.raises(ValueError, match="raw_rotation"):
        model.load_state_dict(partial)
    model.load_state_dict(sd)
    assert model.num_mcmc_samples == fitted.num_mcmc_samples


def test_divergence_advice_in_summary():
    g = torch.Generator().manual_seed(0)
    draws = {
        "lengthscale": 0.2 + torch.rand(2, 20, 3, generator=g),
        "rotation": 0.1 * torch.randn(2, 20, 3, generator=g),
        "outputscale": torch.ones(2, 20),
        "mean": torch.zeros(2, 20),
    }
    text = str(summarize_samples(draws, divergences=[3, 0]))
    assert "3 of 40 post-warm-up transitions" in text
    for remedy in ("target_accept_prob", "warmup_steps", "rescale"):
        assert remedy in text
    assert "diverged" not in str(summarize_samples(draws, divergences=[0, 0]))
    assert divergence_advice(0, 10) == ""


# ------------------------------------------------------------------------------------------ R-hat / ESS backends
def _series(C=2, N=300, K=3, seed=0):
    """AR(1) chains (phi = 0.5) so that ESS is clearly below C N; seeded."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(C, N, K, generator=g, dtype=torch.float64)
    x = torch.zeros_like(e)
    for t in range(N):
        x[:, t] = e[:, t] + (0.5 * x[:, t - 1] if t else 0.0)
    return x


def test_diagnostics_use_arviz_when_installed():
    az = pytest.importorskip("arviz")
    x = _series()
    rhat, ess = diagnostics(x)
    for k in range(3):
        assert float(rhat[k]) == pytest.approx(float(az.rhat(x[:, :, k].numpy(), method="rank")), rel=1e-12)
        assert float(ess[k]) == pytest.approx(float(az.ess(x[:, :, k].numpy(), method="bulk")), rel=1e-12)


def test_diagnostics_fall_back_to_pyro_without_arviz(monkeypatch):
    x = _series()
    with_az = diagnostics(x)
    monkeypatch.setitem(sys.modules, "arviz", None)  # `import arviz` now raises ImportError
    rhat, ess = diagnostics(x)
    ref_rhat, ref_ess = diagnostics(x, use_arviz=False)
    assert torch.equal(rhat, ref_rhat) and torch.equal(ess, ref_ess)
    with pytest.raises(ImportError):
        diagnostics(x, use_arviz=True)
    # Different estimators (rank-normalised vs classic split R-hat; bulk vs Geyer ESS) on the same AR(1) chains
    # (true ESS = C N (1 - phi) / (1 + phi) = 200): they agree within 0.02 and 25%.
    torch.testing.assert_close(rhat, with_az[0], rtol=0, atol=0.02)
    torch.testing.assert_close(ess, with_az[1], rtol=0.25, atol=0)
    # The whole summary works without ArviZ.
    draws = {
        "lengthscale": 0.5 + 0.1 * x.abs(),
        "rotation": 0.1 * x,
        "outputscale": 1 + 0.1 * x[..., 0],
        "mean": x[..., 1],
    }
    s = summarize_samples(draws)
    assert bool(torch.isfinite(s.rhat["lengthscale"]).all())


@pytest.mark.parametrize("use_arviz", [False, True])
def test_diagnostics_validity_rules_on_both_paths(use_arviz):
    if use_arviz:
        pytest.importorskip("arviz")
    x = _series(N=40)
    rhat, ess = diagnostics(x[:, :3], use_arviz=use_arviz)  # 3 draws per chain: NaN
    assert bool(rhat.isnan().all()) and bool(ess.isnan().all())
    y = x.clone()
    y[1, 5, 1] = math.nan
    y[:, :, 2] = 2.0
    rhat, ess = diagnostics(y, use_arviz=use_arviz)
    ref = diagnostics(x, use_arviz=use_arviz)
    assert float(rhat[0]) == float(ref[0][0]) and float(ess[0]) == float(ref[1][0])  # others unaffected
    assert math.isnan(float(rhat[1])) and math.isnan(float(ess[1]))
    assert math.isnan(float(rhat[2])) and float(ess[2]) == 80.0
    # One chain: R-hat from its halves, finite.
    rhat1, ess1 = diagnostics(x[:1], use_arviz=use_arviz)
    assert bool(torch.isfinite(rhat1).all()) and bool((ess1 > 0).all())


def test_summarize_posterior_without_arviz(monkeypatch):
    monkeypatch.setitem(sys.modules, "arviz", None)
    X, Y = _data(10)
    model = fit_nuts(SO3FullyBayesianGP(X, Y), **TOY)
    s = summarize_posterior(model)
    assert s.rhat["lengthscale"].shape == (3,)
    with pytest.raises(ImportError, match="arviz"):
        s.to_arviz()


@pytest.mark.slow
def test_jit_compile_uses_torch_compile():
    """jit_compile=True compiles the analytic potential with torch.compile (13-65 s to compile: slow marker)."""
    X, Y = _data(12)
    model = fit_nuts(SO3FullyBayesianGP(X, Y), **{**TOY, "jit_compile": True})
    assert model.fit_nuts_info_.potential == "analytic_compiled"
    assert bool(torch.isfinite(model.kernel.lengthscale).all())


_UNGUARDED_SCRIPT = """
import torch
from gpytorch_so3 import SO3FullyBayesianGP, fit_nuts

g = torch.Generator().manual_seed(0)
X = torch.rand(12, 3, generator=g, dtype=torch.float64)
Y = torch.sin(4 * X.sum(-1, keepdim=True))
fb = SO3FullyBayesianGP(X, Y)
fit_nuts(fb, num_chains=2, num_workers=2, warmup_steps=4, num_samples=4, thinning=1, max_tree_depth=2,
         disable_progbar=True, seed=0)
print("chains", fb.fit_nuts_info_.num_chains, "workers", fb.fit_nuts_info_.num_workers, "draws", fb.num_mcmc_samples)
"""


def test_parallel_chains_from_an_unguarded_script(tmp_path):
    """The README snippet pasted into a file has no ``if __name__ == "__main__":`` guard. Spawn workers must not
    re-run it (they would call fit_nuts while bootstrapping, die, and Pool would respawn them: a hang). Seed 0, a
    4 + 4 budget; the only claim is that the script finishes with 2 worker processes and 8 draws."""
    import subprocess
    import sys

    script = tmp_path / "snippet.py"
    script.write_text(_UNGUARDED_SCRIPT)
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "chains 2 workers 2 draws 8" in out.stdout
    assert "bootstrapping phase" not in out.stderr


def test_payloads_referring_to_main_are_detected():
    """The check that keeps payloads referring to ``__main__`` (which spawn workers cannot unpickle) in-process."""
    from gpytorch_so3 import nuts

    assert nuts._references_main(b"\x8c\x08__main__\x94")
    assert not nuts._references_main(__import__("pickle").dumps(torch.zeros(2)))
