"""Property-based test of the command line (issue 15): hypothesis-generated CSV files with random headers
(duplicates, byte-order marks, spaces, empty names), encodings, delimiters, line endings, ragged rows,
NaN/inf/huge/tiny/non-numeric values and few rows, with random arguments (repeated coordinates, a prediction grid,
an output path that may be an input file). Every run must exit with 0 or 2, never print a traceback, answer an
error with one line, and never modify an input file.

Runs ``main(argv)`` in-process with tiny fit budgets (1 restart, 5 optimiser iterations). The default profile
tries 25 examples (a few seconds; most generated files are rejected before any fit); ``-m slow`` runs 300.
"""

import hashlib
import os

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from gpytorch_so3.cli import main

NAMES = ["x", "y", "z", "v", "w", " x", "y ", "\ufeffx", "", "X", "v"]
DELIMITERS = [",", ";", "\t", "|"]
ENCODINGS = ["utf-8", "utf-8-sig", "latin-1", "utf-16"]
SPECIAL = ["nan", "inf", "-inf", "1e300", "-1e200", "1e-300", "0", "abc", "", " 1.5 ", "1e999", "\u00e9"]

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False)
field = st.one_of(finite.map(repr), finite.map(repr), st.sampled_from(SPECIAL))


@st.composite
def csv_files(draw):
    """``(bytes, delimiter)``; half of the files are nearly clean (so that many runs reach and finish the fit)."""
    clean = draw(st.booleans())
    if clean:
        header = draw(st.sampled_from([["x", "y", "z", "v"], ["\ufeffx", " y", "z ", "v"], ["v", "z", "y", "x", "w"]]))
        n_rows = draw(st.integers(min_value=13, max_value=30))
        ragged = False
        cell = finite.map(repr)
        encoding = draw(st.sampled_from(["utf-8", "utf-8-sig"]))
    else:
        header = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=6))
        n_rows = draw(st.integers(min_value=0, max_value=24))
        ragged = draw(st.booleans())
        cell = field
        encoding = draw(st.sampled_from(ENCODINGS))
    rows = []
    for _ in range(n_rows):
        width = len(header) + (draw(st.integers(-1, 1)) if ragged else 0)
        rows.append([draw(cell) for _ in range(max(width, 0))])
    if clean and draw(st.integers(0, 2)) == 0:  # a third of the clean files get one special value
        row = rows[draw(st.integers(0, len(rows) - 1))]
        row[draw(st.integers(0, len(row) - 1))] = draw(st.sampled_from(SPECIAL))
    delimiter = draw(st.sampled_from(DELIMITERS))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text = newline.join(delimiter.join(r) for r in [header, *rows]) + newline
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    return data, delimiter


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _argv(tmp_dir, data, grid, args):
    (tmp_dir / "data.csv").write_bytes(data)
    inputs = [str(tmp_dir / "data.csv")]
    argv = [
        "fit",
        inputs[0],
        "--coords",
        *args["coords"],
        "--target",
        args["target"],
        "--restarts",
        "1",
        "--max-iter",
        "5",
        "--models",
        args["models"],
        "--quiet",
        "--test-fraction",
        args["test_fraction"],
    ]
    if args["delimiter"] != ",":
        argv += ["--delimiter", args["delimiter"]]
    if grid is not None:
        (tmp_dir / "grid.csv").write_bytes(grid)
        inputs.append(str(tmp_dir / "grid.csv"))
        out = {"new": tmp_dir / "pred.csv", "data": inputs[0], "grid": inputs[1]}[args["out"]]
        argv += ["--predict", inputs[1], "--out", str(out)]
        if args["force"]:
            argv.append("--force")
    return argv, inputs


@pytest.fixture
def run_cli(capsys, tmp_path_factory):
    def run(data, grid, args):
        tmp_dir = tmp_path_factory.mktemp("cli")
        argv, inputs = _argv(tmp_dir, data, grid, args)
        before = {p: _sha(p) for p in inputs}
        code = main(argv)
        if currently_in_test_context():
            event(f"exit {code}")  # see the share of runs that fit: pytest --hypothesis-show-statistics
        cap = capsys.readouterr()
        assert code in (0, 2), (code, argv, cap.err)
        assert "Traceback" not in cap.err and "Traceback" not in cap.out, cap.err
        if code == 2:
            errors = [line for line in cap.err.splitlines() if line.startswith("gpytorch-so3") and "error" in line]
            assert len(errors) == 1 and cap.err.strip().splitlines()[-1] == errors[0], cap.err
        assert {p: _sha(p) for p in inputs} == before, "an input file was modified"
        leftovers = [p for p in os.listdir(tmp_dir) if p.startswith(".")]
        assert leftovers == [], leftovers  # no temporary files
        return code

    return run


cli_args = st.fixed_dictionaries(
    {
        "coords": st.one_of(
            st.just(["x", "y", "z"]),
            st.just(["x", "y", "z"]),
            st.lists(st.sampled_from(["x", "y", "z", "w", "X"]), min_size=1, max_size=4),
        ),
        "target": st.sampled_from(["v", "v", "v", "w", "x"]),
        "models": st.sampled_from(["ard,so3", "ard", "iso,spd"]),
        "test_fraction": st.sampled_from(["0", "0.2", "0.5"]),
        "match_delimiter": st.sampled_from([True, True, True, False]),
        "out": st.sampled_from(["new", "new", "data", "grid"]),
        "force": st.booleans(),
    }
)


def _grid_text(rows):
    return ("x,y,z\n" + "".join(",".join(r) + "\n" for r in rows)).encode()


grids = st.one_of(
    st.none(),
    csv_files().map(lambda f: f[0]),
    st.lists(st.lists(finite.map(repr), min_size=3, max_size=3), min_size=1, max_size=5).map(_grid_text),
)

_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@st.composite
def cases(draw):
    """``(data, grid, args)``: in about half of the cases the arguments match the file (coordinates x y z, target
    v, its delimiter, a new output path), so that runs get past the argument checks into reading and fitting."""
    data, delimiter = draw(csv_files())
    grid, args = draw(grids), draw(cli_args)
    if draw(st.booleans()):
        args = {**args, "coords": ["x", "y", "z"], "target": "v", "out": "new", "match_delimiter": True}
        args["test_fraction"] = draw(st.sampled_from(["0", "0.2"]))
    return data, grid, {**args, "delimiter": delimiter if args["match_delimiter"] else ","}


@settings(max_examples=30, **_SETTINGS)
@given(case=cases())
def test_cli_never_crashes_or_modifies_inputs(run_cli, case):
    run_cli(*case)


@pytest.mark.slow
@settings(max_examples=300, **_SETTINGS)
@given(case=cases())
def test_cli_never_crashes_or_modifies_inputs_many(run_cli, case):
    run_cli(*case)


def test_generated_files_reach_the_fit(run_cli):
    """The strategy is not all rejections: a clean generated-style file fits (exit 0)."""
    rows = [[repr(float(i % 7)), repr(float(i % 5)), repr(float(i % 3)), repr(float(i % 4))] for i in range(20)]
    data = ("\ufeffx, y ,z,v\r\n" + "".join(",".join(r) + "\r\n" for r in rows)).encode()
    args = {
        "coords": ["x", "y", "z"],
        "target": "v",
        "models": "ard,so3",
        "test_fraction": "0.2",
        "delimiter": ",",
        "out": "new",
        "force": False,
    }
    assert run_cli(data, b"x,y,z\n1,2,3\n", args) == 0
