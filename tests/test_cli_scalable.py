"""The command line's scalable methods and simulation: ``fit --method svgp|nngp|auto``, ``--grid``, ``--simulate``,
``.npz`` output, the streaming CSV reader, a 2-process torchrun run, and their bad-input paths (one line, rc 2).

Budgets are tiny (a 160-row smooth field, 2 epochs, <= 32 inducing points): these tests check wiring, shapes,
output safety and reproducibility; the statistical quality of the models is tested in ``tests/test_scalable.py``
and ``tests/test_pathwise.py``.
"""

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gpytorch_so3.cli as cli
import gpytorch_so3.cli._io as cli_io
import gpytorch_so3.cli._models as cli_models
import gpytorch_so3.cli._scalable as cli_scalable
from gpytorch_so3.cli import main
from gpytorch_so3.pathwise import regular_grid

ROOT = Path(__file__).resolve().parents[1]
SCALABLE_FAST = ["--epochs", "2", "--num-inducing", "32", "--batch-size", "64", "--init-restarts", "1", "--quiet"]
EXACT_FAST = ["--models", "so3", "--restarts", "1", "--max-iter", "15", "--quiet"]


def _write(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


@pytest.fixture
def data_csv(tmp_path):
    # A smooth field (length scales ~30-60 data units on a 100 x 100 x 20 box) plus noise sd 0.05: 160 rows.
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (160, 3)) * [100.0, 100.0, 20.0]
    v = np.sin(X[:, 0] / 30 + X[:, 1] / 60) + 0.3 * np.cos(X[:, 2] / 8) + 0.05 * rng.standard_normal(160)
    return _write(tmp_path / "data.csv", ["x", "y", "z", "v"], np.column_stack([X, v]).tolist())


def _fit(data, *extra):
    return ["fit", data, "--coords", "x", "y", "z", "--target", "v", *extra]


def _read(path):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], np.array(rows[1:], dtype=float)


def _one_line_error(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err
    return err


def _no_fit(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a model was fitted although the input was invalid")

    monkeypatch.setattr(cli_models, "fit_model", boom)
    monkeypatch.setattr(cli_scalable, "fit_scalable", boom)


# ------------------------------------------------------------------------------------------ svgp / nngp end to end
@pytest.mark.parametrize("method", ["svgp", "nngp"])
def test_scalable_method_end_to_end(method, data_csv, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert main(_fit(data_csv, "--method", method, *SCALABLE_FAST, "--grid", "3", "2", "2", "--out", str(out))) == 0
    text = capsys.readouterr().out
    assert f"method {method}" in text and f"SO(3) {method.upper()}" in text
    assert "Held-out skill" in text and "length-scale [data units]" in text and "fitted noise sd" in text
    # The smooth field is easy: even 2 epochs explain most of the held-out variance (R^2 well above 0.5; the
    # subset MAP fit that initialises both methods already does). Parse the R^2 cell of the skill table.
    lines = text.splitlines()
    row = lines[lines.index("Held-out skill") + 3]
    assert float(row.split()[4]) > 0.5, row
    header, vals = _read(out)
    assert header == ["x", "y", "z", "v_mean", "v_std"]
    assert vals.shape == (12, 5) and np.isfinite(vals).all() and (vals[:, 4] > 0).all()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary files left


def test_scalable_predict_npz_matches_csv(data_csv, tmp_path, capsys):
    grid = _write(tmp_path / "g.csv", ["x", "y", "z"], [[10, 20, 1], [50, 60, 5], [90, 10, 19]])
    a, b = tmp_path / "a.csv", tmp_path / "b.npz"
    for out in (a, b):
        assert main(_fit(data_csv, "--method", "nngp", *SCALABLE_FAST, "--predict", grid, "--out", str(out))) == 0
    capsys.readouterr()
    _, vals = _read(a)
    z = np.load(b)
    assert z["points"].shape == (3, 3) and list(z["coords"]) == ["x", "y", "z"]
    np.testing.assert_allclose(z["v_mean"], vals[:, 3], rtol=1e-12)  # same seed, same model
    np.testing.assert_allclose(z["v_std"], vals[:, 4], rtol=1e-12)


def test_auto_picks_exact_below_the_threshold(data_csv, monkeypatch, capsys):
    def boom(*a, **k):
        raise AssertionError("auto picked a scalable method on 128 training rows")

    monkeypatch.setattr(cli_scalable, "fit_scalable", boom)
    assert main(_fit(data_csv, *EXACT_FAST)) == 0
    assert "hyper-parameters fitted on all 128 training rows (exact)" in capsys.readouterr().out


def test_auto_picks_svgp_above_the_threshold(data_csv, monkeypatch, capsys):
    monkeypatch.setattr(cli, "AUTO_EXACT_MAX_ROWS", 100)  # 128 training rows > 100

    def boom(*a, **k):
        raise AssertionError("auto fitted an exact model above the threshold")

    monkeypatch.setattr(cli_models, "fit_model", boom)
    assert main(_fit(data_csv, *SCALABLE_FAST)) == 0
    out = capsys.readouterr().out
    assert "--method auto: 128 training rows > 100: sparse variational GP" in out and "SO(3) SVGP" in out


def test_auto_with_simulate_above_the_threshold_is_refused(data_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "AUTO_EXACT_MAX_ROWS", 100)
    _no_fit(monkeypatch)
    argv = _fit(data_csv, "--grid", "2", "2", "2", "--simulate", "2", "--out", str(tmp_path / "s.csv"))
    _one_line_error(capsys, argv, "--simulate needs an exact GP, but --method auto picks svgp for 128")


# ------------------------------------------------------------------------------------------------- simulation
def test_simulate_grid_csv_and_npz(data_csv, tmp_path, capsys):
    K, shape = 3, (4, 3, 2)
    a, b, c = tmp_path / "a.csv", tmp_path / "b.npz", tmp_path / "c.csv"
    grid = ["--grid", *map(str, shape)]
    assert main(_fit(data_csv, *EXACT_FAST, *grid, "--simulate", str(K), "--seed", "7", "--out", str(a))) == 0
    assert main(_fit(data_csv, *EXACT_FAST, *grid, "--simulate", str(K), "--seed", "7", "--out", str(b))) == 0
    assert main(_fit(data_csv, *EXACT_FAST, *grid, "--simulate", str(K), "--seed", "8", "--out", str(c))) == 0
    assert "conditional realisations" in capsys.readouterr().out
    header, vals = _read(a)
    assert header == ["x", "y", "z", "sim_0", "sim_1", "sim_2"] and vals.shape == (24, 3 + K)
    # The grid spans the data's bounding box, C order (last coordinate fastest), as regular_grid makes it.
    data = np.loadtxt(data_csv, delimiter=",", skiprows=1)
    bounds = torch.tensor(np.stack([data[:, :3].min(0), data[:, :3].max(0)]))
    np.testing.assert_allclose(vals[:, :3], regular_grid(bounds, shape).numpy(), rtol=1e-12)
    z = np.load(b)
    assert z["sims"].shape == (K, 24) and tuple(z["grid_shape"]) == shape
    # Same seed: the same draws in both formats (CSV stores repr(float): exact); another seed: other draws.
    np.testing.assert_array_equal(z["sims"], vals[:, 3:].T)
    np.testing.assert_array_equal(z["points"], vals[:, :3])
    _, other = _read(c)
    assert np.abs(other[:, 3:] - vals[:, 3:]).max() > 1e-3
    # The draws vary between realisations (not K copies of the mean).
    assert vals[:, 3:].std(axis=1).mean() > 1e-3


def test_simulate_refuses_to_overwrite(data_csv, tmp_path, monkeypatch, capsys):
    out = tmp_path / "s.csv"
    out.write_text("keep me\n")
    _no_fit(monkeypatch)
    argv = _fit(data_csv, *EXACT_FAST, "--grid", "2", "2", "2", "--simulate", "2", "--out", str(out))
    _one_line_error(capsys, argv, "already exists; use --force")
    assert out.read_text() == "keep me\n"
    _one_line_error(capsys, [*argv[:-2], "--out", data_csv, "--force"], "refusing to write over an input file")


def test_simulate_force_replaces(data_csv, tmp_path, capsys):
    out = tmp_path / "s.npz"
    out.write_text("old\n")
    argv = _fit(data_csv, *EXACT_FAST, "--grid", "2", "2", "1", "--simulate", "2", "--out", str(out), "--force")
    assert main(argv) == 0
    assert np.load(out)["sims"].shape == (2, 4)


def test_large_simulation_needs_npz(data_csv, tmp_path, monkeypatch, capsys):
    _no_fit(monkeypatch)
    argv = _fit(data_csv, "--grid", "100", "100", "51", "--simulate", "2", "--out", str(tmp_path / "s.csv"))
    _one_line_error(capsys, argv, "too many for CSV (at most 1000000); give an --out file ending in .npz")


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--grid", "0", "3", "3", "--out", "p.csv"], "--grid sizes must be an integer in [1,"),
        (["--grid", "4", "-1", "3", "--out", "p.csv"], "--grid sizes must be an integer in [1,"),
        (["--grid", "4", "3", "--out", "p.csv"], "expected 3 arguments"),
        (["--grid", "2", "2", "2", "--simulate", "0", "--out", "s.csv"], "--simulate must be an integer in [1,"),
        (["--grid", "2", "2", "2", "--simulate", "2"], "--simulate needs --out SIMS.csv or SIMS.npz"),
        (["--simulate", "2", "--out", "s.csv"], "--simulate needs the points: --grid NX NY NZ"),
        (["--grid", "2", "2", "2"], "--grid needs --out PRED.csv"),
        (["--grid", "2", "2", "2", "--predict", "g.csv", "--out", "p.csv"], "are alternatives; give one of them"),
        (
            ["--method", "svgp", "--grid", "2", "2", "2", "--simulate", "2", "--out", "s.csv"],
            "--simulate works only with --method exact",
        ),
        (["--method", "nngp", "--max-seconds", "0"], "--max-seconds must be a positive number"),
        (["--method", "svgp", "--max-seconds", "nan"], "--max-seconds must be a positive number"),
        (["--num-features", "3", "--grid", "1", "1", "1", "--simulate", "1", "--out", "s.csv"], "must be even"),
        (["--grid", "10000", "10000", "10000", "--out", "p.npz"], "points; at most"),
    ],
)
def test_bad_inputs_one_line(extra, needle, data_csv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _no_fit(monkeypatch)
    _one_line_error(capsys, _fit(data_csv, *extra), needle)
    assert not list(tmp_path.glob("[ps].*"))


def test_nngp_refused_under_several_processes(data_csv, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    _no_fit(monkeypatch)
    _one_line_error(capsys, _fit(data_csv, "--method", "nngp"), "use --method svgp")


# ------------------------------------------------------------------------------------------ streaming reader
def test_streaming_reader_matches_csv_module(tmp_path, monkeypatch):
    # Several buffer growths (capacity 4), a BOM, padded names, blank lines, quoted fields and an extra column.
    monkeypatch.setattr(cli_io, "_CHUNK_ROWS", 4)
    rng = np.random.default_rng(1)
    vals = rng.standard_normal((23, 3)).tolist()
    lines = ["\ufeff x ,note, v ,y"]
    for i, (a, b, c) in enumerate(vals):
        lines.append(f'{a!r},"a, ""b""",{b!r},{c!r}')
        if i % 5 == 0:
            lines.append("")
    p = tmp_path / "d.csv"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    t = cli_io.read_table(str(p), ["y", "x", "v"], "data")
    np.testing.assert_array_equal(t.values.numpy(), np.array(vals)[:, [2, 0, 1]])
    assert t.values.dtype == torch.float64 and t.lines[0] == 2 and len(t.lines) == 23
    assert t.lines[-1] == len(lines)  # line numbers count the blank lines


def test_streaming_reader_names_the_first_bad_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli_io, "_CHUNK_ROWS", 2)
    rows = [[i, i, i, i] for i in range(9)]
    rows[6][3] = "nan"
    rows[7][1] = "inf"
    p = _write(tmp_path / "d.csv", ["x", "y", "z", "v"], rows)
    with pytest.raises(cli_io.CLIError, match=r"NaN or infinite value.s. in column 'v' on line.s. 8$"):
        cli_io.read_table(p, ["x", "y", "z", "v"], "data")


# ------------------------------------------------------------------------------------------------ two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_svgp_run_writes_once(data_csv, tmp_path, monkeypatch):
    # torchrun, 2 CPU processes (gloo) running ``python -m gpytorch_so3 fit --method svgp``: rank 0 alone prints
    # and writes, and the predictions equal a 1-process run's (the data-parallel step is the 1-process step on
    # the same global minibatch, up to float64 summation order: tests/test_scalable.py; 2 epochs here, 1e-6).
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = _fit(data_csv, "--method", "svgp", *SCALABLE_FAST, "--grid", "2", "2", "2")
    two = tmp_path / "two.csv"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--nnodes=1",
        "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "-m", "gpytorch_so3",
        *args, "--out", str(two),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("gpytorch-so3 fit:") == 1 and proc.stdout.count("wrote 8 predictions") == 1
    assert "(2 processes)" in proc.stdout and "Held-out skill" in proc.stdout
    one = tmp_path / "one.csv"
    one_proc = subprocess.run(
        [sys.executable, "-m", "gpytorch_so3", *args, "--out", str(one)],
        env=env, capture_output=True, text=True, timeout=240, cwd=ROOT,
    )  # fmt: skip
    assert one_proc.returncode == 0, one_proc.stderr[-3000:]
    _, a = _read(two)
    _, b = _read(one)
    assert a.shape == (8, 5)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)
    assert sorted(os.listdir(tmp_path)) == ["data.csv", "one.csv", "two.csv"]
