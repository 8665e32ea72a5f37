"""Build (and optionally execute) the example notebooks from the cell sources in ``notebooks/_cells/``.

The notebooks are generated, not hand-edited: each ``notebooks/_cells/NN_name.py`` holds the cells of
``notebooks/NN_name.ipynb`` as plain Python, separated by marker lines ``# %% [markdown]`` / ``# %%`` (the
"percent" format of Jupytext, VS Code and Spyder); markdown cells are written as ``# ``-prefixed comment lines.
Edit the cell file, then rebuild:

    python notebooks/_build.py                     # rebuild all .ipynb (no outputs)
    python notebooks/_build.py 01 02 --execute     # rebuild and execute in full mode, saving the outputs
    python notebooks/_build.py --sync              # take the cell sources, keep the outputs of unchanged cells
    SMOKE_TEST=1 python -m pytest --nbmake notebooks -q   # what CI runs: every notebook in smoke mode

``--execute`` runs each notebook with ``SMOKE_TEST`` removed from the environment (the full budget), so the
committed copies show the figures of a full run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
CELLS = HERE / "_cells"

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}

# Import-time chatter of third-party packages that says nothing about the notebook (pykeops without CUDA, tqdm
# without ipywidgets); removed from the saved stderr outputs of an execution. Nothing else is touched.
NOISE = (
    "[KeOps] Warning : CUDA libraries not found",
    "TqdmWarning: IProgress not found",
    "from .autonotebook import tqdm as notebook_tqdm",
)


def strip_noise(nb) -> None:
    """Remove the :data:`NOISE` lines from stderr outputs (and outputs left empty)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                lines = [ln for ln in out["text"].splitlines(keepends=True) if not any(n in ln for n in NOISE)]
                if not "".join(lines).strip():
                    continue
                out["text"] = "".join(lines)
            kept.append(out)
        cell.outputs = kept


def parse_cells(text: str) -> list[tuple[str, str]]:
    """Split a percent-format file into ``[(kind, source), ...]`` with kind ``"markdown"`` or ``"code"``."""
    cells: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("# %% [markdown]"):
            cells.append(("markdown", []))
        elif line.startswith("# %%"):
            cells.append(("code", []))
        elif cells:
            kind, lines = cells[-1]
            if kind == "markdown":
                if line.startswith("# "):
                    line = line[2:]
                elif line.strip() == "#":
                    line = ""
            lines.append(line)
    out = []
    for kind, lines in cells:
        while lines and not lines[-1].strip():
            lines.pop()
        while lines and not lines[0].strip():
            lines.pop(0)
        if lines:
            out.append((kind, "\n".join(lines)))
    return out


def build(name: str) -> Path:
    """Write ``notebooks/<name>.ipynb`` (no outputs) from ``_cells/<name>.py``; return its path."""
    cells = parse_cells((CELLS / f"{name}.py").read_text())
    nb = new_notebook(
        cells=[new_markdown_cell(src) if kind == "markdown" else new_code_cell(src) for kind, src in cells],
        metadata={"kernelspec": KERNELSPEC, "language_info": {"name": "python"}},
    )
    path = HERE / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def sync(name: str) -> tuple[Path, int]:
    """Rewrite ``notebooks/<name>.ipynb`` from ``_cells/<name>.py``, keeping the saved outputs of unchanged cells.

    A code cell keeps its outputs only if a cell with exactly the same source stood at the same position among the
    code cells of the saved notebook; every other code cell is written without outputs (so no figure or table is
    shown beside code that did not produce it). Returns the path and the number of code cells left without outputs.
    """
    path = HERE / f"{name}.ipynb"
    old = nbformat.read(path, as_version=4) if path.exists() else new_notebook()
    old_code = [c for c in old.cells if c.cell_type == "code"]
    cells, stale, i = [], 0, 0
    for kind, src in parse_cells((CELLS / f"{name}.py").read_text()):
        if kind == "markdown":
            cells.append(new_markdown_cell(src))
            continue
        cell = new_code_cell(src)
        if i < len(old_code) and old_code[i].source == src:
            cell.outputs, cell.execution_count = old_code[i].outputs, old_code[i].get("execution_count")
        else:
            stale += 1
        cells.append(cell)
        i += 1
    nb = new_notebook(cells=cells, metadata=old.get("metadata") or {"kernelspec": KERNELSPEC})
    nbformat.write(nb, path)
    return path, stale


def execute(path: Path, timeout: int) -> float:
    """Execute a notebook in full mode (``SMOKE_TEST`` unset) in place; return the wall time in seconds."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    env_smoke = os.environ.pop("SMOKE_TEST", None)
    try:
        t0 = time.perf_counter()
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}})
        client.execute()
        seconds = time.perf_counter() - t0
    finally:
        if env_smoke is not None:
            os.environ["SMOKE_TEST"] = env_smoke
    strip_noise(nb)
    nbformat.write(nb, path)
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Command line: see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebook prefixes, e.g. 01 02 (default: all)")
    parser.add_argument("--execute", action="store_true", help="execute in full mode and save the outputs")
    parser.add_argument("--timeout", type=int, default=3600, help="per-cell timeout in seconds")
    parser.add_argument("--sync", action="store_true", help="update sources, keep outputs of unchanged code cells")
    args = parser.parse_args(argv)
    names = sorted(p.stem for p in CELLS.glob("[0-9][0-9]_*.py"))
    if args.names:
        names = [n for n in names if any(n.startswith(p) for p in args.names)]
    for name in names:
        if args.sync:
            path, stale = sync(name)
            print(f"synced {path.name}: {stale} code cell(s) changed and left without outputs", flush=True)
            continue
        path = build(name)
        msg = f"built {path.name}"
        if args.execute:
            msg += f", executed in {execute(path, args.timeout):.0f} s"
        print(msg, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
