"""The CLI's model zoo (``gpytorch_so3.cli._models``): fair priors, ``condition_on`` / ``evaluate(iterative=True)``
(a subset fit conditioned on all data: the large-file CLI path) and the deprecated ``gpytorch_so3.compare`` shim."""

import math

import pytest
import torch

from gpytorch_so3.cli._models import (
    build_model,
    condition_on,
    evaluate,
    fit_model,
    spd_cholesky_diag_prior,
)
from gpytorch_so3.datasets import make_rotated_field
from gpytorch_so3.kernels.keops import KeOpsSO3AnisotropicKernel


@pytest.fixture(scope="module")
def field():
    return make_rotated_field(n_train=240, n_test=80, seed=3)


@pytest.mark.parametrize("kind", ["iso", "ard", "spd", "so3"])
def test_condition_on_same_data_reproduces_the_fitted_model(field, kind):
    # Every kind's metric re-expressed as an SO(3) kernel (ARD: rotation 0; SPD: eigen-decomposition), with the
    # same output scale, noise, mean and standardisation: on the fit's own data the posterior is the same.
    X, Y = field.train_X[:60], field.train_Y[:60]
    fm = fit_model(kind, X, Y, num_restarts=1)
    same = condition_on(fm, X, Y, use_keops=False)
    assert isinstance(same.covar_module.base_kernel, KeOpsSO3AnisotropicKernel)
    with torch.no_grad():
        p, q = fm.model.posterior(field.test_X), same.posterior(field.test_X)
        torch.testing.assert_close(q.mean, p.mean, rtol=0, atol=1e-9)
        torch.testing.assert_close(q.variance, p.variance, rtol=0, atol=1e-9)


def test_condition_on_other_data_keeps_the_fits_standardisation(field):
    """BoTorch's ``SingleTaskGP`` re-fits ``Standardize`` to the targets it is built with; ``condition_on`` must keep
    the fit's (its output scale, noise and mean are in those units). Targets ``2 y + 1`` on 4x the points: the
    posterior mean must equal the explicit GP formula with the fit's hyper-parameters in data units."""
    fm = fit_model("ard", field.train_X[:50], field.train_Y[:50], num_restarts=1)
    X, Y = field.train_X, 2 * field.train_Y + 1
    m = condition_on(fm, X, Y, use_keops=False)
    ot = fm.model.outcome_transform
    torch.testing.assert_close(m.outcome_transform.means, ot.means)
    torch.testing.assert_close(m.outcome_transform.stdvs, ot.stdvs)
    mu, sd = ot.means.reshape(()), ot.stdvs.reshape(())
    with torch.no_grad():
        k = m.covar_module  # the fitted kernel, standardised units
        K = k(X).to_dense() + m.likelihood.noise * torch.eye(len(X), dtype=X.dtype)
        c = m.mean_module.constant
        ref = mu + sd * (c + k(field.test_X, X).to_dense() @ torch.linalg.solve(K, (Y.squeeze(-1) - mu) / sd - c))
        torch.testing.assert_close(m.posterior(field.test_X).mean.squeeze(-1), ref, rtol=1e-8, atol=1e-8)


def test_conditioning_on_all_data_improves_and_iterative_matches_exact(field):
    fm = fit_model("so3", field.train_X[:60], field.train_Y[:60], num_restarts=2, seed=0)
    big = condition_on(fm, field.train_X, field.train_Y, use_keops=False)
    assert big.train_inputs[0].shape == (240, 3)
    sub, exact = evaluate(fm.model, field.test_X, field.test_Y), evaluate(big, field.test_X, field.test_Y)
    # CG to gpytorch's eval tolerance (0.01) and LOVE variances, in chunks, against Cholesky on the same model
    it = evaluate(big, field.test_X, field.test_Y, iterative=True, chunk_size=25)
    assert it["rmse"] == pytest.approx(exact["rmse"], rel=1e-3)
    assert it["nlpd"] == pytest.approx(exact["nlpd"], abs=2e-2)
    # Four times the data with the same hyper-parameters: a clearly better predictor on this seeded field
    # (measured: RMSE 0.44 -> 0.20, NLPD 0.46 -> -0.27 against noisy held-out observations; iterative NLPD -0.267).
    assert exact["rmse"] < 0.8 * sub["rmse"], (sub, exact)
    assert exact["nlpd"] < sub["nlpd"]


def test_full_spd_gets_the_same_length_scale_prior_as_ard_and_so3(field):
    """Issue 14.5: the baselines get the same priors. For M = L L^T with a diagonal L, L_ii = 1 / l_i, so the
    density of the diagonal prior at 1 / l times the Jacobian 1 / l^2 equals the length-scale prior's at l."""
    X, Y = field.train_X[:20], field.train_Y[:20]
    priors = {k: dict((n, p) for n, _, p, *_ in build_model(k, X, Y).named_priors()) for k in ("ard", "spd", "so3")}
    ls_prior = priors["so3"]["covar_module.base_kernel.lengthscale_prior"]
    assert "covar_module.base_kernel.lengthscale_prior" in priors["ard"]
    diag_prior = priors["spd"]["covar_module.base_kernel.cholesky_diag_prior"]
    assert isinstance(diag_prior, type(spd_cholesky_diag_prior()))
    ls = torch.tensor([0.01, 0.1, 0.3, 1.0, 5.0], dtype=torch.float64)
    lhs = diag_prior.log_prob(1 / ls) - 2 * ls.log()  # change of variables d(1/l)/dl = -1/l^2
    torch.testing.assert_close(lhs, ls_prior.log_prob(ls))
    # the other priors (output scale, noise) are the same objects' kinds for every model
    for k in ("ard", "spd"):
        others = {n for n in priors[k] if "base_kernel" not in n}
        assert others == {n for n in priors["so3"] if "base_kernel" not in n}
    # the ablation drops both the length-scale and the matching Cholesky prior
    assert not [n for n, *_ in build_model("spd", X, Y, lengthscale_prior=False).named_priors() if "base" in n]


def test_evaluate_reports_coverage(field):
    fm = fit_model("ard", field.train_X[:60], field.train_Y[:60])
    m = evaluate(fm.model, field.test_X, field.test_Y)
    assert set(m) == {"rmse", "nlpd", "r2", "coverage90"} and 0.0 <= m["coverage90"] <= 1.0
    assert all(math.isfinite(v) for v in m.values())


def test_deprecated_compare_module_still_works():
    import gpytorch_so3.compare as compare

    with pytest.warns(DeprecationWarning, match="gpytorch_so3.compare.fit_model is deprecated") as rec:
        from gpytorch_so3.compare import fit_model as old_fit_model
    assert rec[0].filename == __file__  # the warning points at the user's line, so Python's default filters show it
    assert old_fit_model is fit_model
    with pytest.warns(DeprecationWarning):
        assert compare.condition_on is condition_on
    with pytest.warns(DeprecationWarning):
        assert callable(compare.compare_models) and callable(compare.azimuth_dip)
    assert "fit_model" in compare.__all__


def test_deprecated_experiments_module_points_to_the_new_homes():
    import gpytorch_so3.experiments as experiments
    from gpytorch_so3.cli._demo import known_rotation

    with pytest.warns(DeprecationWarning, match="experiments.known_rotation is deprecated"):
        assert experiments.known_rotation is known_rotation
    with pytest.raises(AttributeError, match=r"benchmarks/_experiments\.py"):
        experiments.markdown_table  # noqa: B018


def test_library_modules_do_not_import_the_cli():
    """Issue 14.5: nothing in the library imports the CLI's support package (the deprecation shims aside)."""
    from pathlib import Path

    import gpytorch_so3

    pkg = Path(gpytorch_so3.__file__).parent
    shims = {"compare.py", "experiments.py"}
    offenders = [
        str(p.relative_to(pkg))
        for p in pkg.rglob("*.py")
        if "cli" not in p.relative_to(pkg).parts
        and p.name not in shims
        and "gpytorch_so3.cli" in p.read_text()
        and p.name != "__main__.py"
    ]
    assert offenders == []


def test_fit_model_max_iter_is_an_int(field):
    X, Y = field.train_X[:20], field.train_Y[:20]
    with pytest.raises(TypeError, match="fit_model: max_iter"):
        fit_model("ard", X, Y, max_iter=2.5)
    with pytest.raises(ValueError, match="fit_model: max_iter"):
        fit_model("ard", X, Y, max_iter=0)
