"""The gpytorch-so3 command line: demo and fit end to end on tiny inputs, every bad-input path (one line on
stderr, exit code 2, no traceback), no data loss (inputs and existing outputs are never written over, output files
appear whole or not at all), interrupts, progress output and ``python -m gpytorch_so3``."""

import csv
import errno
import io
import os
import re
import subprocess
import sys

import pytest
import torch

import gpytorch_so3.cli._io as cli_io
import gpytorch_so3.cli._models as cli_models
from gpytorch_so3.cli import main
from gpytorch_so3.cli._report import lower_end
from gpytorch_so3.geo import azimuth_dip

FAST = ["--restarts", "1", "--max-iter", "15"]


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def _rows(n=40, seed=0, scale=(100.0, 200.0, 10.0)):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 3, generator=g, dtype=torch.float64) * torch.tensor(scale, dtype=torch.float64)
    y = torch.sin(X[:, 0] / 30 + X[:, 2] / 3) + 0.05 * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y


@pytest.fixture
def data_csv(tmp_path):
    X, y = _rows()
    rows = [[*x.tolist(), v, "note"] for x, v in zip(X, y.tolist(), strict=True)]
    return _write_csv(tmp_path / "data.csv", ["east", "north", "elev", "grade", "comment"], rows)


@pytest.fixture
def grid_csv(tmp_path):
    return _write_csv(tmp_path / "grid.csv", ["east", "north", "elev"], [[10.0, 20.0, 1.0], [50.0, 100.0, 5.0]])


def _fit(data, *extra):
    return ["fit", data, "--coords", "east", "north", "elev", "--target", "grade", *FAST, "--quiet", *extra]


def _no_fit(monkeypatch):
    """Make any model fit fail the test: for checks that must happen before the (slow) fit."""

    def boom(*a, **k):
        raise AssertionError("the fit ran although the input was invalid")

    monkeypatch.setattr(cli_models, "fit_model", boom)


def _expect_error(capsys, argv, match, code=2):
    assert main(argv) == code
    cap = capsys.readouterr()
    err = cap.err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("gpytorch-so3"), err
    assert match in err, err
    return err


# --------------------------------------------------------------------------------------------- happy paths
def test_demo_runs_and_speaks_plainly(capsys):
    assert main(["demo", "--n", "40", *FAST, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "truth" in out and "SO(3)" in out and "ARD" in out and "held-out RMSE" in out
    assert "lower NLPD is better" in out and re.search(r"Best model: (SO\(3\)|ARD)", out)
    assert "tensor(" not in out and "grad_fn" not in out
    # One convention: every printed direction is the lower end (z <= 0) and its azimuth/dip are those printed.
    rows = re.findall(r"\(([+-]\d\.\d{3}), ([+-]\d\.\d{3}), ([+-]\d\.\d{3})\)\s+(\d+\.\d)\s+(\d+\.\d)", out)
    assert len(rows) == 9  # truth and two models, three axes each
    for x, y, z, az, dip in rows:
        u = torch.tensor([float(x), float(y), float(z)], dtype=torch.float64)
        assert float(u[2]) <= 0.0
        a, d = azimuth_dip(u)
        assert abs(float(d) - float(dip)) < 0.2
        if float(d) < 89.5:  # the azimuth of a vertical axis is undefined
            assert min(abs(float(a) - float(az)), 360 - abs(float(a) - float(az))) < 0.5


def test_lower_end_matches_azimuth_dip_convention():
    g = torch.Generator().manual_seed(0)
    U = torch.randn(200, 3, generator=g, dtype=torch.float64)
    U[:20, 2] = 0.0  # horizontal axes
    for u in U:
        v = lower_end(u)
        assert torch.equal(v, u) or torch.equal(v, -u)
        assert float(v[2]) <= 0
        a1, d1 = azimuth_dip(v)
        # the direction that (azimuth, dip) describe, computed independently
        az, dip = torch.deg2rad(a1), torch.deg2rad(d1)
        w = torch.stack([torch.sin(az) * torch.cos(dip), torch.cos(az) * torch.cos(dip), -torch.sin(dip)])
        torch.testing.assert_close(w, v / v.norm())


def test_fit_end_to_end_with_prediction(data_csv, grid_csv, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    code = main(_fit(data_csv, "--models", "ard,so3", "--predict", grid_csv, "--out", str(out), "--nu", "1.5"))
    assert code == 0
    text = capsys.readouterr().out
    assert "data units" in text and "azimuth" in text and "held-out RMSE" in text
    m = re.search(r"wrote 2 predictions .* of the (ARD|SO\(3\)) model \(lowest held-out NLPD\)", text)
    assert m, text
    assert "predictions use all 40 rows (32 training + 8 held-out)" in text
    assert "hyper-parameters fitted on all 32 training rows" in text
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 2 and set(rows[0]) == {"east", "north", "elev", "grade_mean", "grade_std"}
    assert all(float(r["grade_std"]) > 0 for r in rows)
    assert [float(r["east"]) for r in rows] == [10.0, 50.0]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary files left


def test_fit_writes_every_model_labelled(data_csv, grid_csv, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert main(_fit(data_csv, "--models", "ard,so3", "--predict", grid_csv, "--out", str(out), "--write", "all")) == 0
    text = capsys.readouterr().out
    assert "of every model (ARD, SO(3); columns suffixed by model)" in text
    header = next(csv.reader(open(out)))
    assert header == ["east", "north", "elev", "grade_mean_ard", "grade_std_ard", "grade_mean_so3", "grade_std_so3"]


def test_fit_without_held_out_rows_picks_by_evidence(data_csv, grid_csv, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    argv = _fit(data_csv, "--models", "iso,ard", "--test-fraction", "0", "--predict", grid_csv, "--out", str(out))
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "highest log marginal likelihood; no held-out rows to score" in text
    assert "predictions use all 40 rows (40 training + 0 held-out)" in text


def test_fit_large_file_fits_on_subset_and_conditions_on_all(tmp_path, capsys):
    """More training rows than --max-fit-points: MAP on a subset, then every prediction conditioned on all rows."""
    g = torch.Generator().manual_seed(1)
    X = torch.rand(200, 3, generator=g, dtype=torch.float64) * torch.tensor([100.0, 200.0, 10.0], dtype=torch.float64)
    y = torch.sin(X[:, 0] / 12 + X[:, 2] / 1.2) * torch.cos(X[:, 1] / 30)
    y = y + 0.02 * torch.randn(200, generator=g, dtype=torch.float64)
    rows = [[*x.tolist(), v] for x, v in zip(X, y.tolist(), strict=True)]
    data = _write_csv(tmp_path / "big.csv", ["east", "north", "elev", "grade"], rows)
    grid = _write_csv(tmp_path / "grid.csv", ["east", "north", "elev"], X.tolist())
    out = tmp_path / "pred.csv"
    argv = [
        "fit",
        data,
        "--coords",
        "east",
        "north",
        "elev",
        "--target",
        "grade",
        "--restarts",
        "1",
        "--models",
        "so3",
        "--quiet",
        "--test-fraction",
        "0.25",
        "--max-fit-points",
        "40",
        "--predict",
        grid,
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "150 training rows > --max-fit-points 40" in text and "conditioned on all 150 training rows" in text
    assert (
        "predictions use all 200 rows (150 training + 50 held-out), hyper-parameters fitted on 40 rows (a random"
        in text
    )
    pred = torch.tensor([[float(r["grade_mean"]), float(r["grade_std"])] for r in csv.DictReader(open(out))])
    assert pred.shape == (200, 2) and torch.isfinite(pred).all() and (pred[:, 1] > 0).all()
    # The grid is the data's own coordinates and the predictor is conditioned on all 200 rows, 160 of which the
    # hyper-parameter fit never saw: the posterior mean follows the targets (noise sd 0.02, signal sd 0.49).
    # Measured with this seed: mean absolute error 0.02; the 40-row subset model alone is off by ~0.35.
    err = (pred[:, 0] - y.float()).abs()
    assert float(err.mean()) < 0.08, float(err.mean())


def test_fit_accepts_bom_and_spaces_in_header_and_other_delimiters(tmp_path, capsys):
    X, y = _rows(30)
    body = "".join(f"{a}; {b} ;{c};{v}\n" for (a, b, c), v in zip(X.tolist(), y.tolist(), strict=True))
    path = tmp_path / "semi.csv"
    path.write_text("\ufeffeast ; north; elev ;grade\n" + body, encoding="utf-8")
    argv = [
        "fit",
        str(path),
        "--coords",
        "east",
        "north",
        "elev",
        "--target",
        "grade",
        "--models",
        "ard",
        *FAST,
        "--delimiter",
        ";",
        "--quiet",
    ]
    assert main(argv) == 0
    assert "30 rows" in capsys.readouterr().out
    # the same file with the default comma delimiter: the message says why the columns are missing
    argv = [*argv[: argv.index("--delimiter")], "--quiet"]
    _expect_error(capsys, argv, "is the file delimited by another character")


@pytest.mark.parametrize(
    ("shape", "words"),
    [("plane", "lie on one plane"), ("line", "lie on one line")],
)
def test_degenerate_geometry_is_flagged(tmp_path, capsys, shape, words):
    X, y = _rows(30)
    if shape == "plane":
        X[:, 2] = 5.0  # a flat survey: z constant
    else:
        X = torch.linspace(0, 1, 30, dtype=torch.float64)[:, None] * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    data = _write_csv(
        tmp_path / "d.csv",
        ["east", "north", "elev", "grade"],
        [[*x.tolist(), v] for x, v in zip(X, y.tolist(), strict=True)],
    )
    assert main(_fit(data, "--models", "ard")) == 0
    err = capsys.readouterr().err
    assert "warning: degenerate geometry" in err and words in err and "Traceback" not in err


def test_unbounded_length_scale_is_flagged(tmp_path, capsys):
    """A field that varies only along east: the fitted length-scales along north and elev run far past the data."""
    X, _ = _rows(40)
    y = torch.sin(X[:, 0] / 15)
    data = _write_csv(
        tmp_path / "d.csv",
        ["east", "north", "elev", "grade"],
        [[*x.tolist(), v] for x, v in zip(X, y.tolist(), strict=True)],
    )
    assert (
        main(["fit", data, "--coords", "east", "north", "elev", "--target", "grade", "--models", "ard", "--quiet"]) == 0
    )
    out = capsys.readouterr().out
    assert "effectively unbounded along this axis" in out


# --------------------------------------------------------------------------------------------- bad input
def _bad_files(tmp_path):
    X, y = _rows(20)
    good = [[*x.tolist(), v] for x, v in zip(X, y.tolist(), strict=True)]
    head = ["east", "north", "elev", "grade"]
    f = {}
    f["nonnum"] = _write_csv(tmp_path / "nonnum.csv", head, [[1, 2, 3, "abc"]] * 12)
    f["nan"] = _write_csv(tmp_path / "nan.csv", head, [*good[:5], [1, 2, 3, "nan"], *good[5:]])
    f["inf"] = _write_csv(tmp_path / "inf.csv", head, [*good[:5], [1, "inf", 3, 4], *good[5:]])
    f["few"] = _write_csv(tmp_path / "few.csv", head, good[:5])
    f["noheader"] = _write_csv(tmp_path / "noheader.csv", good[0], good[1:])
    f["const"] = _write_csv(tmp_path / "const.csv", head, [[*r[:3], 1.0] for r in good])
    f["huge300"] = _write_csv(tmp_path / "huge300.csv", head, [[*r[:3], r[3] * 1e300] for r in good])
    f["huge200"] = _write_csv(tmp_path / "huge200.csv", head, [[*r[:3], r[3] * 1e200] for r in good])
    f["tiny"] = _write_csv(tmp_path / "tiny.csv", head, [[*r[:3], r[3] * 1e-300] for r in good])
    f["same"] = _write_csv(tmp_path / "same.csv", head, [[1.0, 2.0, 3.0, r[3]] for r in good])
    f["flat"] = _write_csv(tmp_path / "flat.csv", head, [[1e6 + 1e-9 * r[0], 1e6, 1e6, r[3]] for r in good])
    f["offset"] = _write_csv(tmp_path / "offset.csv", head, [[*r[:3], 1e9 + 1e-5 * r[3]] for r in good])
    f["dup"] = _write_csv(tmp_path / "dup.csv", [*head, "grade"], [[*r, r[3]] for r in good])
    f["extra"] = _write_csv(tmp_path / "extra.csv", head, [*good[:7], [*good[7], 5.0], *good[8:]])
    f["missing_field"] = _write_csv(tmp_path / "missing_field.csv", head, [*good[:7], good[7][:3], *good[8:]])
    (tmp_path / "empty.csv").write_text("")
    f["empty"] = str(tmp_path / "empty.csv")
    f["header_only"] = _write_csv(tmp_path / "header_only.csv", head, [])
    (tmp_path / "latin1.csv").write_bytes("east,north,elev,gr\u00e4de\n1,2,3,4\n".encode("latin-1"))
    f["latin1"] = str(tmp_path / "latin1.csv")
    (tmp_path / "utf16.csv").write_text("east,north,elev,grade\n1,2,3,4\n", encoding="utf-16")
    f["utf16"] = str(tmp_path / "utf16.csv")
    (tmp_path / "binary.csv").write_bytes(b"east,north,elev,grade\n1,2,\x00,4\n")
    f["binary"] = str(tmp_path / "binary.csv")
    f["grid_missing"] = _write_csv(tmp_path / "grid_missing.csv", ["east", "north"], [[1, 2]])
    f["grid_nan"] = _write_csv(tmp_path / "grid_nan.csv", ["east", "north", "elev"], [[1, 2, "nan"]])
    f["good"] = _write_csv(tmp_path / "good.csv", head, good)
    f["grid"] = _write_csv(tmp_path / "grid.csv", ["east", "north", "elev"], [[1, 2, 3]])
    (tmp_path / "folder").mkdir()
    f["folder"] = str(tmp_path / "folder")
    return f


#: (case id, argv builder, expected words in the one-line message). The CLI behaviour table of the report.
BAD_INPUTS = [
    ("missing file", lambda f, t: _fit(str(t / "nope.csv")), "data file not found"),
    ("directory as input", lambda f, t: _fit(f["folder"]), "is a directory, not a CSV file"),
    ("empty file", lambda f, t: _fit(f["empty"]), "is empty"),
    ("header only", lambda f, t: _fit(f["header_only"]), "no data rows"),
    ("non-UTF-8 bytes", lambda f, t: _fit(f["latin1"]), "is not UTF-8 text (byte 0xe4"),
    ("UTF-16 file", lambda f, t: _fit(f["utf16"]), "is UTF-16 text; save it as UTF-8"),
    ("NUL bytes", lambda f, t: _fit(f["binary"]), "contains NUL bytes"),
    (
        "missing column",
        lambda f, t: ["fit", f["good"], "--coords", "east", "north", "z", "--target", "grade"],
        "missing column(s) 'z'",
    ),
    ("no header row", lambda f, t: _fit(f["noheader"]), "the file needs a header row"),
    ("two coords", lambda f, t: ["fit", f["good"], "--coords", "east", "north", "--target", "grade"], "exactly 3"),
    (
        "repeated coords",
        lambda f, t: ["fit", f["good"], "--coords", "east", "east", "north", "--target", "grade"],
        "names a column twice",
    ),
    (
        "target is a coord",
        lambda f, t: ["fit", f["good"], "--coords", "east", "north", "elev", "--target", "elev"],
        "is also one of --coords",
    ),
    ("duplicate header names", lambda f, t: _fit(f["dup"]), "duplicate column name 'grade' (columns 4 and 5)"),
    ("row with extra field", lambda f, t: _fit(f["extra"]), "line 9: 5 fields, but the header has 4"),
    ("row with missing field", lambda f, t: _fit(f["missing_field"]), "line 9: 3 fields, but the header has 4"),
    ("non-numeric value", lambda f, t: _fit(f["nonnum"]), "line 2: non-numeric value 'abc' in column 'grade'"),
    ("NaN value", lambda f, t: _fit(f["nan"]), "NaN or infinite value(s) in column 'grade' on line(s) 7"),
    ("inf value", lambda f, t: _fit(f["inf"]), "NaN or infinite value(s) in column 'north' on line(s) 7"),
    ("too few rows", lambda f, t: _fit(f["few"]), "has 5 data rows; at least 10 are needed"),
    ("constant target", lambda f, t: _fit(f["const"]), "is constant"),
    ("target ~1e300", lambda f, t: _fit(f["huge300"]), "values too large to fit"),
    ("target ~1e200", lambda f, t: _fit(f["huge200"]), "rescale it, e.g. divide by 1e"),
    ("target ~1e-300", lambda f, t: _fit(f["tiny"]), "values too small to fit"),
    ("all rows at one place", lambda f, t: _fit(f["same"]), "all 20 rows have the same coordinates"),
    ("coordinates below float64 resolution", lambda f, t: _fit(f["flat"]), "below float64 resolution"),
    ("target flat relative to its size", lambda f, t: _fit(f["offset"]), "subtract a constant first"),
    ("test fraction 1.5", lambda f, t: _fit(f["good"], "--test-fraction", "1.5"), "--test-fraction must be in"),
    ("test fraction nan", lambda f, t: _fit(f["good"], "--test-fraction", "nan"), "--test-fraction must be in"),
    ("too few training rows", lambda f, t: _fit(f["good"], "--test-fraction", "0.9"), "training rows after the split"),
    ("seed beyond 64 bits", lambda f, t: _fit(f["good"], "--seed", str(2**70)), "--seed must be an integer in"),
    ("negative seed", lambda f, t: _fit(f["good"], "--seed", "-1"), "--seed must be an integer in"),
    ("float seed", lambda f, t: _fit(f["good"], "--seed", "1.7"), "--seed must be an integer"),
    ("device meta", lambda f, t: _fit(f["good"], "--device", "meta"), "unsupported --device 'meta'"),
    ("unknown device", lambda f, t: _fit(f["good"], "--device", "gpu7"), "unknown --device 'gpu7'"),
    ("unknown method", lambda f, t: _fit(f["good"], "--method", "vnngp"), "invalid choice: 'vnngp'"),
    ("svgp zero seconds", lambda f, t: _fit(f["good"], "--method", "svgp", "--max-seconds", "0"), "--max-seconds must"),
    ("predict without out", lambda f, t: _fit(f["good"], "--predict", f["grid"]), "--predict needs --out"),
    ("out without predict", lambda f, t: _fit(f["good"], "--out", str(t / "o.csv")), "--out needs --predict"),
    (
        "grid missing column",
        lambda f, t: _fit(f["good"], "--predict", f["grid_missing"], "--out", str(t / "o.csv")),
        "missing column(s) 'elev'",
    ),
    ("grid NaN", lambda f, t: _fit(f["good"], "--predict", f["grid_nan"], "--out", str(t / "o.csv")), "'elev'"),
    (
        "out is the data file",
        lambda f, t: _fit(f["good"], "--predict", f["grid"], "--out", f["good"]),
        "refusing to write over an input file",
    ),
    (
        "out is the grid, even with --force",
        lambda f, t: _fit(f["good"], "--predict", f["grid"], "--out", f["grid"], "--force"),
        "refusing to write over an input file",
    ),
    (
        "out exists",
        lambda f, t: _fit(f["good"], "--predict", f["grid"], "--out", f["nan"]),
        "already exists; use --force",
    ),
    (
        "out is a directory",
        lambda f, t: _fit(f["good"], "--predict", f["grid"], "--out", f["folder"]),
        "is a directory",
    ),
    (
        "out in a missing folder",
        lambda f, t: _fit(f["good"], "--predict", f["grid"], "--out", str(t / "no" / "o.csv")),
        "does not exist",
    ),
    (
        "out is a device",
        lambda f, t: _fit(f["good"], "--predict", f["grid"], "--out", os.devnull, "--force"),
        "is not a regular file",
    ),
    (
        "out unwritable (/proc)",
        lambda f, t: _fit(f["good"], "--predict", f["grid"], "--out", "/proc/x/pred.csv"),
        "/proc/x",
    ),
    ("demo n too small", lambda f, t: ["demo", "--n", "3"], "--n must be an integer in [10,"),
    ("bad nu", lambda f, t: ["demo", "--nu", "3"], "nu must be rbf, 0.5, 1.5 or 2.5"),
    ("zero restarts", lambda f, t: ["demo", "--restarts", "0"], "--restarts must be an integer in [1,"),
    ("unknown model", lambda f, t: ["demo", "--models", "foo"], "models must be a comma list"),
    ("repeated model", lambda f, t: ["demo", "--models", "ard,ard"], "lists a kind twice"),
    ("fit without file", lambda f, t: ["fit"], "the following arguments are required"),
    ("no command", lambda f, t: [], "the following arguments are required"),
]


@pytest.mark.parametrize(("case", "argv", "words"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_one_line_exit_2(tmp_path, capsys, monkeypatch, case, argv, words):
    files = _bad_files(tmp_path)
    before = {p: open(p, "rb").read() for p in files.values() if os.path.isfile(p)}
    _no_fit(monkeypatch)  # every one of these is rejected before any fit
    _expect_error(capsys, argv(files, tmp_path), words)
    assert {p: open(p, "rb").read() for p in before} == before  # no input touched
    assert not (tmp_path / "o.csv").exists()


def test_cuda_unavailable(data_csv, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available")
    _expect_error(capsys, _fit(data_csv, "--device", "cuda"), "CUDA is not available")


def test_help_and_version_exit_0(capsys):
    assert main(["--help"]) == 0
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("gpytorch-so3 ")


# --------------------------------------------------------------------------------------------- no data loss
def test_refuses_links_to_input_files(data_csv, grid_csv, tmp_path, capsys, monkeypatch):
    _no_fit(monkeypatch)
    sym = tmp_path / "sym.csv"
    sym.symlink_to(data_csv)
    hard = tmp_path / "hard.csv"
    os.link(grid_csv, hard)
    for out in (sym, hard):
        _expect_error(
            capsys,
            _fit(data_csv, "--predict", grid_csv, "--out", str(out), "--force"),
            "refusing to write over an input file",
        )


def test_force_replaces_an_existing_output(data_csv, grid_csv, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    out.write_text("old\n")
    os.chmod(out, 0o640)
    assert main(_fit(data_csv, "--models", "ard", "--predict", grid_csv, "--out", str(out), "--force")) == 0
    assert out.read_text().startswith("east,north,elev,grade_mean,grade_std")
    assert os.stat(out).st_mode & 0o777 == 0o640  # the replaced file keeps its permissions


@pytest.mark.parametrize("failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_failed_write_leaves_no_partial_file_and_the_old_one_intact(
    data_csv, grid_csv, tmp_path, capsys, monkeypatch, failure
):
    """A full disk (ENOSPC) or Ctrl-C in the middle of writing: one line, no partial file, old file intact."""
    out = tmp_path / "pred.csv"
    out.write_text("precious\n")

    def failing_fsync(fd):
        assert os.fstat(fd).st_size > 0  # the data were half-way to disk
        raise failure

    monkeypatch.setattr(cli_io.os, "fsync", failing_fsync)
    code = 2 if isinstance(failure, OSError) else 130
    words = "No space left on device" if code == 2 else "interrupted; no output file was written"
    _expect_error(
        capsys, _fit(data_csv, "--models", "ard", "--predict", grid_csv, "--out", str(out), "--force"), words, code=code
    )
    assert out.read_text() == "precious\n"
    assert sorted(os.listdir(tmp_path)) == ["data.csv", "grid.csv", "pred.csv"]  # no temporary file left
    # and without an old file: nothing at all appears
    out.unlink()
    _expect_error(capsys, _fit(data_csv, "--models", "ard", "--predict", grid_csv, "--out", str(out)), words, code=code)
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["data.csv", "grid.csv"]


def test_keyboard_interrupt_during_the_fit(data_csv, grid_csv, tmp_path, capsys, monkeypatch):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_models, "fit_model", interrupted)
    out = tmp_path / "pred.csv"
    _expect_error(capsys, _fit(data_csv, "--predict", grid_csv, "--out", str(out)), "interrupted", code=130)
    assert not out.exists()


def test_write_error_after_the_fit_is_one_line(data_csv, grid_csv, tmp_path, capsys, monkeypatch):
    """The folder becomes unwritable between the check and the write (e.g. a disk unmounted): one line, rc 2."""
    real_mkstemp = cli_io.tempfile.mkstemp
    calls = []

    def mkstemp(*a, **k):
        calls.append(k.get("suffix"))
        if k.get("suffix") == ".tmp":
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_mkstemp(*a, **k)

    monkeypatch.setattr(cli_io.tempfile, "mkstemp", mkstemp)
    out = tmp_path / "pred.csv"
    _expect_error(
        capsys, _fit(data_csv, "--models", "ard", "--predict", grid_csv, "--out", str(out)), "could not write"
    )
    assert calls == [".probe", ".tmp"] and not out.exists()


def test_numerical_failure_is_one_line(data_csv, capsys, monkeypatch):
    from botorch.exceptions.errors import ModelFittingError

    def fails(kind, *a, **k):
        raise ModelFittingError("All attempts to fit the model have failed.")

    monkeypatch.setattr(cli_models, "fit_model", fails)
    _expect_error(capsys, _fit(data_csv), "the ard fit failed numerically (ModelFittingError")


# --------------------------------------------------------------------------------------------- progress
class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_only_on_a_terminal_and_never_when_quiet(data_csv, capsys, monkeypatch):
    argv = ["fit", data_csv, "--coords", "east", "north", "elev", "--target", "grade", "--models", "ard", *FAST]
    assert main(argv) == 0  # stderr captured by pytest: not a terminal
    assert capsys.readouterr().err == ""
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main(argv) == 0
    assert "fitting" in tty.getvalue() and "fitted ard" in tty.getvalue()
    tty = _TTY()
    monkeypatch.setattr(sys, "stderr", tty)
    assert main([*argv, "--quiet"]) == 0
    assert tty.getvalue() == ""


def test_predict_in_chunks_progress(capsys):
    import gpytorch

    from gpytorch_so3 import SO3AnisotropicKernel
    from gpytorch_so3.large import predict_in_chunks

    class GP(gpytorch.models.ExactGP):
        def __init__(self, x, y):
            super().__init__(x, y, gpytorch.likelihoods.GaussianLikelihood())
            self.covar_module = gpytorch.kernels.ScaleKernel(SO3AnisotropicKernel())

        def forward(self, x):
            return gpytorch.distributions.MultivariateNormal(torch.zeros_like(x[..., 0]), self.covar_module(x))

    g = torch.Generator().manual_seed(0)
    model = GP(torch.rand(30, 3, generator=g), torch.randn(30, generator=g))
    X = torch.rand(100, 3, generator=g)
    m0, v0 = predict_in_chunks(model, X, chunk_size=16)
    assert capsys.readouterr().err == ""
    m1, v1 = predict_in_chunks(model, X, chunk_size=16, progress=True)
    err = capsys.readouterr().err
    assert "predicting" in err and "/100 " in err  # a tqdm bar over the 100 points
    torch.testing.assert_close(m1, m0)
    torch.testing.assert_close(v1, v0)


# --------------------------------------------------------------------------------------------- entry points
@pytest.mark.parametrize("module", ["gpytorch_so3", "gpytorch_so3.cli"])
def test_python_dash_m_is_the_same_command_line(module, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, env=env)
    assert res.returncode == 0 and res.stdout.strip().splitlines()[-1].startswith("gpytorch-so3 ")
    res = subprocess.run(
        [sys.executable, "-m", module, "fit", str(tmp_path / "none.csv"), "--coords", "x", "y", "z", "--target", "v"],
        capture_output=True,
        text=True,
        env=env,
    )
    # pykeops (if installed) prints a CUDA notice at import, before our output (its lazy import is another change)
    err = [line for line in res.stderr.splitlines() if not line.startswith("[KeOps]")]
    assert res.returncode == 2 and err == [f"gpytorch-so3: error: data file not found: {tmp_path / 'none.csv'}"]


def test_library_warnings_are_one_line_whatever_the_callers_filters(data_csv, capsys, monkeypatch):
    """A warning raised during the run (here a RestartFailedWarning, an error under this test suite's filters) is
    printed as one line and the run goes on."""
    import warnings

    from gpytorch_so3.exceptions import RestartFailedWarning

    real = cli_models.fit_model

    def warns(*a, **k):
        warnings.warn("restart 2 failed: NotPSDError", RestartFailedWarning, stacklevel=1)
        return real(*a, **k)

    monkeypatch.setattr(cli_models, "fit_model", warns)
    assert main(_fit(data_csv, "--models", "ard")) == 0
    err = capsys.readouterr().err
    assert err == "gpytorch-so3: warning: RestartFailedWarning: restart 2 failed: NotPSDError\n"


def test_command_line_prints_no_keops_notice():
    """gpytorch imports pykeops (when installed), which prints a CUDA notice at import; the command line asks it to
    stay quiet (issue 15), so `--help` and `--version` print only their own text."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("PYKEOPS_VERBOSE", "KEOPS_VERBOSE")}
    for args in (["--help"], ["--version"]):
        out = subprocess.run(
            [sys.executable, "-m", "gpytorch_so3", *args], capture_output=True, text=True, env=env, timeout=120
        )
        assert out.returncode == 0, out.stderr
        assert "[KeOps]" not in out.stdout + out.stderr
