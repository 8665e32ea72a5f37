"""Layering of the package: every import points down one stack (AST scan, no import of the package needed).

Each module of ``gpytorch_so3`` has a rank in :data:`LAYERS`; a module may import modules of its own rank or below,
never above, at module level or inside a function (a function-local import hides a cycle, it does not remove it).
Third-party packages have ranks too (:data:`EXTERNAL`): BoTorch enters at the BoTorch layer and Pyro at the fully
Bayesian layer, so the light core (``so3``, ``functional``, ``kernels``, ``priors``, ``datasets``, ``exceptions``)
stays importable by plain gpytorch users. Optional heavy extras (matplotlib, gstools, pykrige, arviz, pykeops) may
only be imported inside functions. Private names (``_x``) are not imported across modules.

Adding a module: give it a line in :data:`LAYERS` (an unknown module fails with "add it to the layer table").
Known violations in modules being rewritten on other branches are listed in :data:`KNOWN_VIOLATIONS` (as xfail
entries, strict: a listed edge that disappears makes the test fail until its line is deleted).
"""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "gpytorch_so3"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# ---------------------------------------------------------------------------------------------------- the table
#: Rank of every module (dotted name without the package prefix; a subpackage's modules may be ranked as a whole
#: by its name, e.g. "scalable"). Lower ranks are lower in the stack; equal ranks may import each other.
LAYERS: dict[str, int] = {
    # 0: no package imports at all
    "exceptions": 0,
    "_validation": 0,  # argument checks shared by every layer (no package imports)
    "so3": 0,
    "sod": 0,  # SO(d) maths: torch and so3 only
    # 10: parameter-free covariance maths
    "functional": 10,
    # 15: synthetic and bundled data (torch/numpy only; must stay BoTorch/Pyro-free)
    "datasets": 15,
    "_oilsands": 15,
    # 20: gpytorch kernels
    "kernels": 20,
    "kernels.base": 20,
    "kernels.so3_kernel": 20,
    "kernels.full_spd_kernel": 20,
    "kernels.rotated_kernel": 20,
    "kernels.keops": 21,
    # 30: priors and default kernel factories
    "priors": 30,
    # 40: BoTorch layer: covariance factories, IsotropicNormalize, check_input_scaling, physical units
    "botorch_utils": 40,
    # pathwise registers the kernels with BoTorch's pathwise samplers; the BoTorch-facing modules import it
    "pathwise": 40,
    # 50: MAP fit
    "fit": 50,
    "bo": 50,  # BoTorch surrogate factories choosing rotated vs ARD by evidence (issue 17)
    # 60: fully Bayesian
    "fully_bayesian": 60,
    "nuts": 60,
    "summary": 60,
    # 70: pathwise sampling, scalable approximations
    "scalable": 70,
    # 80: reporting and large-data helpers
    "geo": 80,
    "plot": 80,
    "large": 80,
    # deprecated shims of names that moved into the command line's private package (issue 14.5)
    "compare": 90,
    "experiments": 90,
    # 90: front ends
    "cli": 90,
    "__main__": 90,
}
#: The package's __init__ imports only the core eagerly (every other name lazily, by string), so it ranks with the
#: priors: modules from the priors up may import names from the package root, the core below may not.
LAYERS["__init__"] = LAYERS["priors"]

#: Lowest rank allowed to import a third-party package (at module level or in a function). Unlisted packages
#: (the standard library, torch, gpytorch, linear_operator, numpy, scipy) are allowed everywhere.
EXTERNAL: dict[str, int] = {
    "botorch": 40,
    "pyro": 60,
    "numpyro": 60,
    "jax": 60,
}

#: Modules that may import package modules inside functions (front ends loading the library on demand, so that
#: ``--help`` stays fast). Everywhere else a function-local import of a package module hides a cycle or a layer
#: problem: import it at module level (it is below, by the rank rule) or move the shared helper down.
LOCAL_INTERNAL_IMPORTS_ALLOWED = frozenset({"cli", "__main__"})

#: Optional extras: allowed only inside functions (so that importing a module never needs them).
OPTIONAL_EXTRAS = frozenset({"matplotlib", "gstools", "pykrige", "arviz", "pykeops", "keopscore", "IPython"})

#: Edges in modules owned by other branches (rewritten right now) that break the rules; the integrator removes a
#: line when its edge is gone. Format: (importing module, imported module or package, kind of violation).
KNOWN_VIOLATIONS: set[tuple[str, str, str]] = set()  # none left after the second-wave merges


# ---------------------------------------------------------------------------------------------------- the scan
@dataclass(frozen=True)
class Edge:
    """One import statement: ``source`` imports ``target`` (a package module or a top-level third-party name)."""

    source: str
    target: str
    line: int
    local: bool  # inside a function (or method), not at module level
    internal: bool  # target is a module of this package
    private_names: tuple[str, ...] = ()  # private names imported or accessed through the target


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _absolute(path: Path, node: ast.ImportFrom) -> str | None:
    """Absolute dotted module of a ``from ... import`` statement in ``path`` (relative imports resolved)."""
    if not node.level:
        return node.module
    package = [PACKAGE, *path.parent.relative_to(ROOT).parts]  # the package containing the file
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def scan(path: Path) -> list[Edge]:
    source = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    # Names bound to package modules (`from gpytorch_so3 import so3`, `import gpytorch_so3.so3 as so3`), to catch
    # private attribute access such as `so3._sinc(...)`.
    aliases: dict[str, str] = {}
    edges: list[Edge] = []

    def add(target: str, node: ast.AST, local: bool, private: tuple[str, ...] = ()) -> None:
        internal = target == PACKAGE or target.startswith(PACKAGE + ".")
        if internal:
            target = target[len(PACKAGE) + 1 :] or "__init__"
        else:
            target = target.split(".")[0]
        edges.append(Edge(source, target, node.lineno, local, internal, private))

    def visit(node: ast.AST, local: bool) -> None:
        for child in ast.iter_child_nodes(node):
            child_local = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # imports for static type checkers only
            if isinstance(child, ast.Import):
                for a in child.names:
                    add(a.name, child, local)
                    if a.name.startswith(PACKAGE + ".") and a.asname:
                        aliases[a.asname] = a.name[len(PACKAGE) + 1 :]
            elif isinstance(child, ast.ImportFrom):
                mod = _absolute(path, child)
                if mod is None:
                    continue
                inner = mod[len(PACKAGE) + 1 :] if mod.startswith(PACKAGE + ".") else ""
                if mod == PACKAGE or (mod.startswith(PACKAGE + ".") and (ROOT / inner.replace(".", "/")).is_dir()):
                    # `from gpytorch_so3 import so3` imports a submodule; other names come from the package's __init__
                    for a in child.names:
                        sub = f"{inner}.{a.name}" if inner else a.name
                        if _is_module(sub):
                            add(f"{PACKAGE}.{sub}", child, local)
                            aliases[a.asname or a.name] = sub
                        else:
                            add(mod, child, local, (a.name,) if _private(a.name) else ())
                else:
                    add(mod, child, local, tuple(a.name for a in child.names if _private(a.name)))
            visit(child, child_local)

    visit(tree, False)
    for node in ast.walk(tree):  # `alias._private` attribute access on a package module
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and _private(node.attr)
        ):
            edges.append(Edge(source, aliases[node.value.id], node.lineno, False, True, (node.attr,)))
    return edges


def all_modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


def rank(module: str) -> int | None:
    """Rank of a module: its own entry, else that of the closest ranked parent package (``scalable.x``)."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        key = ".".join(parts[:k])
        if key in LAYERS:
            return LAYERS[key]
    return None


def violations() -> dict[tuple[str, str, str], list[str]]:
    """All rule violations: ``(source, target, kind) -> [readable lines]`` (scanned once per package root)."""
    return _violations(ROOT)


@functools.cache
def _violations(root: Path) -> dict[tuple[str, str, str], list[str]]:
    found: dict[tuple[str, str, str], list[str]] = {}

    def note(key: tuple[str, str, str], text: str) -> None:
        found.setdefault(key, []).append(text)

    for path in all_modules():
        for e in scan(path):
            where = f"{PACKAGE}/{path.relative_to(ROOT)}:{e.line}"
            src_rank = rank(e.source)
            if e.internal:
                if e.source == e.target:
                    continue
                tgt_rank = rank(e.target)
                if tgt_rank is not None and src_rank is not None and tgt_rank > src_rank:
                    note(
                        (e.source, e.target, "upward"),
                        f"{where}: {e.source} (rank {src_rank}) imports "
                        f"{e.target} (rank {tgt_rank}){' inside a function' if e.local else ''}",
                    )
                if e.local and e.source not in LOCAL_INTERNAL_IMPORTS_ALLOWED:
                    note(
                        (e.source, e.target, "local"),
                        f"{where}: {e.source} imports {e.target} inside a function; import it at module level",
                    )
                for name in e.private_names:
                    if e.target.split(".")[0] != e.source.split(".")[0] or e.target == "__init__":
                        note(
                            (e.source, f"{e.target}.{name}", "private"),
                            f"{where}: {e.source} uses the private name {e.target}.{name}; make it public",
                        )
            else:
                top = e.target
                if top in OPTIONAL_EXTRAS and not e.local:
                    note(
                        (e.source, top, "extra-at-import"),
                        f"{where}: {e.source} imports the optional extra {top} at module level",
                    )
                need = EXTERNAL.get(top)
                if need is not None and src_rank is not None and src_rank < need:
                    note(
                        (e.source, top, "upward"),
                        f"{where}: {e.source} (rank {src_rank}) imports {top} "
                        f"(allowed from rank {need}){' inside a function' if e.local else ''}",
                    )
    return found


# ---------------------------------------------------------------------------------------------------- the tests
def test_every_module_has_a_layer():
    missing = [module_name(p) for p in all_modules() if rank(module_name(p)) is None]
    assert not missing, (
        f"modules without a layer rank: {missing}; add it to the layer table LAYERS in tests/test_architecture.py"
    )


def test_no_import_points_up_the_stack():
    found = violations()
    new = {k: v for k, v in found.items() if k not in KNOWN_VIOLATIONS}
    assert not new, "imports against the layer order:\n" + "\n".join(line for v in new.values() for line in v)


@pytest.mark.parametrize("known", sorted(KNOWN_VIOLATIONS), ids=lambda k: "->".join(k[:2]))
@pytest.mark.xfail(strict=True, reason="known violation in a module rewritten on another branch")
def test_known_violations_are_still_there(known):
    """Fails (as expected) while the edge exists; XPASS (a failure under strict) once fixed: delete its line."""
    assert known not in violations()


def test_no_import_cycles():
    """Module-level and function-local imports between package modules form no cycle."""
    graph: dict[str, set[str]] = {}
    for path in all_modules():
        for e in scan(path):
            if e.internal and e.source != e.target and e.source != "__init__":
                graph.setdefault(e.source, set()).add(e.target)
    # a package's __init__ importing its own modules is not a cycle with them
    for pkg in [m for m in graph if _is_module(m) and (ROOT / m.replace(".", "/")).is_dir()]:
        graph[pkg] = {t for t in graph[pkg] if not t.startswith(pkg + ".")}
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return [*stack[stack.index(v) :], v]
            if v not in state and (cycle := dfs(v)):
                return cycle
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state and (cycle := dfs(u)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


# ---------------------------------------------------------------------------------------------------- the scanner
def test_scanner_catches_upward_private_local_and_extra_imports(tmp_path, monkeypatch):
    """The rules fire on a synthetic package (so the tests above cannot pass by scanning nothing)."""
    pkg = tmp_path / PACKAGE
    (pkg / "kernels").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "kernels" / "__init__.py").write_text("")
    (pkg / "so3.py").write_text("def f():\n    from gpytorch_so3 import functional\n")
    (pkg / "functional.py").write_text("from gpytorch_so3 import so3\nx = so3._sinc\n")
    (pkg / "priors.py").write_text("import botorch\nimport matplotlib.pyplot\n")
    (pkg / "kernels" / "base.py").write_text("from ..priors import DEFAULT\nfrom gpytorch_so3.so3 import _safe_norm\n")
    (pkg / "newthing.py").write_text("import torch\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    found = violations()
    assert ("so3", "functional", "upward") in found
    assert any("inside a function" in line for line in found[("so3", "functional", "upward")])
    assert ("functional", "so3._sinc", "private") in found
    assert ("priors", "botorch", "upward") in found
    assert ("priors", "matplotlib", "extra-at-import") in found
    assert ("kernels.base", "priors", "upward") in found  # relative import resolved
    assert ("kernels.base", "so3._safe_norm", "private") in found
    with pytest.raises(AssertionError, match="add it to the layer table"):
        test_every_module_has_a_layer()
    with pytest.raises(pytest.fail.Exception, match="import cycle: functional -> so3 -> functional"):
        test_no_import_cycles()


# ---------------------------------------------------------------------------------------------------- at runtime
# `import gpytorch_so3` imports all of the core (so3, functional, kernels, priors, datasets, exceptions): what it
# leaves unchanged, each of them leaves unchanged; kernels and datasets are also probed on their own.
_CORE = ["gpytorch_so3.kernels", "gpytorch_so3.kernels.keops", "gpytorch_so3.datasets", "gpytorch_so3"]

_PROBE = textwrap.dedent(
    """
    import importlib, json, sys
    import gpytorch, linear_operator
    def settings():
        return {
            "max_cholesky_size": linear_operator.settings.max_cholesky_size.value(),
            "fast_computations": [gpytorch.settings.fast_computations.log_prob.on(),
                                  gpytorch.settings.fast_computations.covar_root_decomposition.on(),
                                  gpytorch.settings.fast_computations.solves.on()],
            "cholesky_jitter": [linear_operator.settings.cholesky_jitter.value(torch.float32),
                                linear_operator.settings.cholesky_jitter.value(torch.float64)],
        }
    import torch
    before, mods = settings(), set(sys.modules)
    threads, filters = torch.get_num_threads(), list(__import__("warnings").filters)
    importlib.import_module(sys.argv[1])
    new = sorted(m for m in set(sys.modules) - mods if m.split(".")[0] in ("botorch", "pyro", "numpyro", "jax"))
    print(json.dumps({"before": before, "after": settings(), "new": new,
                      "threads": [threads, torch.get_num_threads()],
                      "filters_changed": filters != list(__import__("warnings").filters)}))
    """
)


@pytest.mark.parametrize("module", _CORE)
def test_core_import_has_no_side_effects(module):
    """In a fresh interpreter (after ``import gpytorch``, which itself loads parts of Pyro when installed), importing
    the core changes no gpytorch/linear_operator setting, thread count or warnings filter and loads no BoTorch/Pyro
    module."""
    import json

    res = subprocess.run([sys.executable, "-c", _PROBE, module], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["after"] == out["before"]
    assert out["new"] == [], f"import {module} loaded {out['new']}"
    assert out["threads"][0] == out["threads"][1]
    assert not out["filters_changed"]


def test_core_imports_without_botorch_and_pyro():
    """With BoTorch and Pyro unimportable, the core and the package still import; lazy names then fail clearly."""
    code = textwrap.dedent(
        """
        import sys
        for name in ("botorch", "pyro"):
            sys.modules[name] = None
        import gpytorch_so3
        from gpytorch_so3 import SO3AnisotropicKernel, FullSPDKernel, so3, functional, priors, datasets, kernels
        from gpytorch_so3.priors import so3_covar_module
        import torch
        k = so3_covar_module()
        x = torch.rand(5, 3)
        assert k(x).to_dense().shape == (5, 5)
        try:
            gpytorch_so3.fit_map
        except ImportError as e:
            print("lazy:", type(e).__name__)
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "lazy: ModuleNotFoundError" in res.stdout


def test_lazy_names_resolve_and_are_listed():
    import gpytorch_so3

    spec_names = [
        "SO3AnisotropicKernel",
        "FullSPDKernel",
        "so3",
        "fit_map",
        "SO3FullyBayesianGP",
        "fit_nuts",
        "summarize_posterior",
        "plot",
        "datasets",
        "IsotropicNormalize",
        "check_input_scaling",
        "to_physical_units",
        "PosteriorSummary",
        "SO3PyroModel",
        "botorch_utils",
        "geo",
        "functional",
        "priors",
        "__version__",
    ]
    for name in spec_names:
        assert name in gpytorch_so3.__all__, name
        assert name in dir(gpytorch_so3), name
        assert getattr(gpytorch_so3, name) is not None, name
    from gpytorch_so3.fit import fit_map
    from gpytorch_so3.summary import summarize_posterior

    assert gpytorch_so3.fit_map is fit_map
    assert gpytorch_so3.summarize_posterior is summarize_posterior
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        gpytorch_so3.no_such_name  # noqa: B018
    for name in gpytorch_so3.__all__:  # `from gpytorch_so3 import *` works
        getattr(gpytorch_so3, name)


def test_lazy_name_of_a_missing_module_is_a_clean_attribute_error(monkeypatch):
    """A name registered ahead of its module (second-wave names) raises AttributeError, not an import traceback."""
    import gpytorch_so3

    monkeypatch.setitem(gpytorch_so3._LAZY, "not_yet", ("gpytorch_so3.not_yet_written", "thing"))
    with pytest.raises(AttributeError, match=r"gpytorch_so3\.not_yet is not available .*not_yet_written is missing"):
        gpytorch_so3.not_yet  # noqa: B018
    assert not hasattr(gpytorch_so3, "not_yet")
