"""The held-out-by-hole protocol behind ``gpytorch-so3 demo --data oilsands`` and ``benchmarks/oilsands_eval.py``
(tiny budgets; one slow run)."""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from benchmarks._experiments import coverage, markdown_table, summarize
from gpytorch_so3.cli._demo import known_rotation, oilsands_fold, rotate_about, run_oilsands_demo, split_fold
from gpytorch_so3.datasets import hole_folds, load_oilsands


def test_known_rotation_is_40_about_vertical_then_30_about_east():
    Q = known_rotation()
    # scipy, lower-case = extrinsic: first z by 40 deg, then x by 30 deg -> Rx(30) Rz(40).
    ref = torch.as_tensor(Rotation.from_euler("zx", [40.0, 30.0], degrees=True).as_matrix())
    torch.testing.assert_close(Q, ref)
    s, c = math.sin(math.radians(30)), math.cos(math.radians(30))
    torch.testing.assert_close(
        Q @ torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64), torch.tensor([0.0, -s, c], dtype=torch.float64)
    )


def test_rotate_about_preserves_distances(generator):
    X = torch.randn(30, 3, generator=generator, dtype=torch.float64) * 100
    c = torch.tensor([5.0, -3.0, 2.0], dtype=torch.float64)
    Q = known_rotation()
    Y = rotate_about(X, Q, c)
    exact = dict(compute_mode="donot_use_mm_for_euclid_dist")  # the matmul shortcut loses ~1e-6 at this scale
    torch.testing.assert_close(torch.cdist(Y, Y, **exact), torch.cdist(X, X, **exact))
    torch.testing.assert_close(rotate_about(c[None], Q, c), c[None])
    torch.testing.assert_close(Y[1] - Y[0], Q @ (X[1] - X[0]))


def test_coverage():
    mean, std = torch.zeros(4), torch.ones(4)
    assert coverage(mean, std, torch.tensor([0.0, 1.6, -1.7, 3.0])) == 0.5  # |y| <= 1.645 for two of four
    assert coverage(mean, 2 * std, torch.tensor([0.0, 1.6, -1.7, 3.0])) == 1.0


def test_split_fold_holds_out_whole_holes():
    data = load_oilsands()
    folds = hole_folds(data.hole_ids, 5, seed=0)
    train, test = split_fold(folds, 2, max_train=300, seed=0)
    assert len(train) == 300 and torch.equal(test, (folds == 2).nonzero().squeeze(-1))
    assert not set(data.hole_ids[train].tolist()) & set(data.hole_ids[test].tolist())
    assert bool((folds[train] != 2).all())
    assert torch.equal(train, split_fold(folds, 2, max_train=300, seed=0)[0])  # deterministic
    full, _ = split_fold(folds, 2)
    assert len(full) + len(test) == len(data)
    with pytest.raises(ValueError, match="empty"):
        split_fold(folds, 7)
    with pytest.raises(ValueError, match="max_train"):
        split_fold(folds, 0, max_train=0)
    with pytest.raises(TypeError, match="max_train"):
        split_fold(folds, 0, max_train=300.0)
    with pytest.raises(TypeError, match="fold"):
        split_fold(folds, 1.0)
    assert torch.equal(split_fold(folds, np.int64(2), max_train=np.int64(300))[0], train)  # numpy integers are ints


def test_summarize_and_table():
    recs = [
        {
            "target": "Bitumen",
            "rotated": False,
            "kind": "ard",
            "r2": r2,
            "rmse": 1.0,
            "nlpd": 2.0,
            "coverage90": 0.9,
            "fit_seconds": 3.0,
            "vertical_angle_deg": 0.0,
            "lengthscale_m": [10.0, 500.0, 800.0],
        }
        for r2 in (0.5, 0.7)
    ] + [
        {
            "target": "Bitumen",
            "rotated": False,
            "kind": "iso",
            "r2": 0.1,
            "rmse": 1.0,
            "nlpd": 2.0,
            "coverage90": 0.9,
            "fit_seconds": 3.0,
            "vertical_angle_deg": None,
            "lengthscale_m": [300.0] * 3,
        }
    ]
    summary = summarize(recs)
    ard = next(r for r in summary if r["kind"] == "ard")
    assert ard["n_folds"] == 2 and ard["r2_mean"] == pytest.approx(0.6) and ard["r2_sd"] == pytest.approx(0.1414, 1e-3)
    iso = next(r for r in summary if r["kind"] == "iso")
    assert iso["vertical_angle_deg_mean"] is None
    table = markdown_table(summary)
    assert "| Bitumen | original | ARD | 2 | 0.600 ± 0.141 |" in table and "| – |" in table


def test_demo_tiny_budget():
    """Mechanics of the demo: 40 samples for the fit, then every model conditioned on all training samples."""
    report = run_oilsands_demo(max_fit=40, max_train=300, quiet=True, num_restarts=1, kinds=("ard", "so3"), max_iter=30)
    n_train = 300
    for needle in (
        "56 whole drill holes",
        f"fitted on 40 random training samples, predictions conditioned on all {n_train}",
        "Held-out skill on the original coordinates",
        "SO(3) principal directions",
        "Rotated coordinates",
        "SO(3) recovers the rotated vertical",
        "R^2 original -> rotated: ARD",
        "lower NLPD is better",
    ):
        assert needle in report
    with pytest.raises(ValueError, match="max_fit"):
        run_oilsands_demo(max_fit=5, quiet=True)
    with pytest.raises(TypeError, match="max_fit"):
        run_oilsands_demo(max_fit=50.0, quiet=True)


def test_fit_on_a_subset_then_condition_on_all_training_samples():
    """The same 40-sample fit scores better on the held-out holes once conditioned on 400 training samples."""
    from gpytorch_so3.cli._demo import fit_and_score
    from gpytorch_so3.cli._models import IsotropicScaling

    data = load_oilsands()
    train, test = split_fold(hole_folds(data.hole_ids, 5, seed=0), 0, max_train=400, seed=0)
    scaling = IsotropicScaling.from_data(data.coordinates[train])
    X, T, Y, Yt = (
        scaling(data.coordinates[train]),
        scaling(data.coordinates[test]),
        data.targets[train],
        data.targets[test],
    )
    idx = torch.randperm(400, generator=torch.Generator().manual_seed(0))[:40]
    common = dict(num_restarts=1, seed=0)
    sub = fit_and_score("ard", X, Y, T, Yt, fit_idx=idx, **common)
    alone = fit_and_score("ard", X[idx], Y[idx], T, Yt, **common)
    assert sub["n_fit"] == alone["n_fit"] == 40
    assert sub["lengthscale"] == pytest.approx(alone["lengthscale"])  # same rows, same fit
    # Ten times the conditioning data with the same (poor, 40-sample) hyper-parameters, seed 0: a better predictor
    # of whole held-out holes. Measured: R^2 -0.22 -> -0.02, NLPD 3.24 -> 3.13, RMSE 5.74 -> 5.25.
    assert sub["r2"] > alone["r2"] + 0.05, (alone["r2"], sub["r2"])
    assert sub["nlpd"] < alone["nlpd"]


def test_fold_records_tiny_budget():
    data = load_oilsands(target="Fines")
    folds = hole_folds(data.hole_ids, 5, seed=0)
    (rec,) = oilsands_fold(data, folds, 1, kinds=("so3",), max_train=40, num_restarts=1, rotation=known_rotation())
    assert rec["n_train"] == 40 and rec["n_test"] == int((folds == 1).sum()) and rec["rotated"]
    assert rec["target"] == "Fines" and 0.0 <= rec["coverage90"] <= 1.0 and 0.0 <= rec["vertical_angle_deg"] <= 90.0
    assert all(math.isfinite(rec[k]) for k in ("r2", "rmse", "nlpd"))
    assert rec["lengthscale_m"] == pytest.approx([v * rec["scale"] for v in rec["lengthscale"]])
    assert sorted(rec["lengthscale"]) == rec["lengthscale"]  # canonical: ascending, minor axis first


@pytest.mark.slow
def test_rotated_coordinates_so3_keeps_skill_and_finds_the_vertical():
    """Issue-8 acceptance on one fold (seed 0; 500 training samples; 3 restarts; Bitumen; ~3 min on 2 cores).

    Measured with these settings: SO(3) R^2 0.570 (original) / 0.569 (rotated), its minor axis 0.10 deg from
    the rotated vertical; ARD 0.566 -> 0.042. Thresholds leave wide margins: the layers are ~15 m thick against
    ~700-1200 m horizontal ranges, so a tilt of the minor axis by even 1 degree costs much likelihood (a 500 m
    horizontal lag would move ~9 m vertically), while ARD cannot tilt at all.
    """
    data = load_oilsands()
    folds = hole_folds(data.hole_ids, 5, seed=0)
    common = dict(kinds=("ard", "so3"), max_train=500, num_restarts=3, seed=0)
    orig = {r["kind"]: r for r in oilsands_fold(data, folds, 0, **common)}
    rot = {r["kind"]: r for r in oilsands_fold(data, folds, 0, rotation=known_rotation(), **common)}
    assert rot["so3"]["vertical_angle_deg"] < 2.0
    assert rot["so3"]["r2"] > orig["so3"]["r2"] - 0.05
    assert rot["so3"]["r2"] > rot["ard"]["r2"] + 0.3
    assert orig["so3"]["r2"] > orig["ard"]["r2"] - 0.05  # the rotation parameters cost no skill


def test_kriging_baseline_tiny():
    """Ordinary kriging (GSTools) on 300 training samples of fold 0: a valid record, and a variogram that sees the
    layering (vertical length-scale far below the horizontal ones). Measured (seed 0): Exponential, 20 m vertical
    vs 1.9 km East and 2.3 km North, R^2 0.49, NLPD 2.92, 90% coverage 0.76."""
    pytest.importorskip("gstools")
    from benchmarks._experiments import kriging_fold

    data = load_oilsands()
    folds = hole_folds(data.hole_ids, 5, seed=0)
    rec = kriging_fold(data, folds, 0, max_train=300, seed=0)
    assert rec["kind"] == "okrige" and rec["n_train"] == 300 and rec["n_test"] == int((folds == 0).sum())
    assert all(math.isfinite(rec[k]) for k in ("r2", "rmse", "nlpd")) and 0.0 <= rec["coverage90"] <= 1.0
    v = rec["variogram"]
    assert v["family"] in ("Exponential", "Spherical", "Gaussian") and v["nugget"] >= 0 and v["var"] > 0
    assert 10 * v["len_vertical"] < min(v["len_east"], v["len_north"]), v
    assert rec["r2"] > 0.2  # kriging on 300 samples predicts whole held-out holes clearly better than the mean


def test_dense_condition_equals_gpytorch_exact_posterior():
    """The benchmarks' in-place dense conditioning (used for exact GPs on all 2x10^4 points) against gpytorch's own
    exact posterior on a small problem: same latent mean and variance to rounding."""
    import gpytorch

    from benchmarks._experiments import dense_condition
    from gpytorch_so3 import SO3AnisotropicKernel

    g = torch.Generator().manual_seed(0)
    X, Xt = torch.rand(60, 3, generator=g, dtype=torch.float64), torch.rand(7, 3, generator=g, dtype=torch.float64)
    y = torch.sin(6 * X[:, 0]) + 0.1 * torch.randn(60, generator=g, dtype=torch.float64)
    kernel = gpytorch.kernels.ScaleKernel(SO3AnisotropicKernel(nu=2.5)).double()
    kernel.base_kernel.rotation = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    lik = gpytorch.likelihoods.GaussianLikelihood().double()
    lik.noise = 0.05

    class GP(gpytorch.models.ExactGP):
        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(torch.zeros_like(x[:, 0]), kernel(x))

    gp = GP(X, y, lik).eval()
    with torch.no_grad(), gpytorch.settings.max_cholesky_size(10_000):
        post = gp(Xt)
    mean, var = dense_condition(kernel, 0.05, X, y, Xt, variance=True, block=16)  # several row blocks
    torch.testing.assert_close(mean, post.mean, rtol=1e-8, atol=1e-9)
    torch.testing.assert_close(var, post.variance, rtol=1e-7, atol=1e-9)
