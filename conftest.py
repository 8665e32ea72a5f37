"""Test-run configuration for the whole repository (``tests/`` and the docstring examples in ``gpytorch_so3/``).

Fixtures live in ``tests/conftest.py``; markers and the warning policy in ``pyproject.toml``. This file is at the
repository root so that it also applies when only docstring examples are run (``pytest gpytorch_so3/geo.py``).

**Threads.** The test run pins torch's intra-op thread count to ``GPYTORCH_SO3_TEST_THREADS`` (default 1) and
restores it at the end. Unpinned, torch starts one thread per core; on a shared machine the threads of several
processes then compete, and small-matrix tests (a single MAP fit) took minutes instead of seconds. One thread also
makes timings and floating-point reductions reproducible across machines. Set ``GPYTORCH_SO3_TEST_THREADS=2`` (or
more) on a machine of your own.

**Optional extras in docstring examples.** An example that needs an optional extra which is not installed is
reported as skipped with the ``pip`` extra to install, instead of failing with ``ModuleNotFoundError``. It needs an
extra when its source imports it (``import gstools``, ``from matplotlib import ...``) or calls a function that does
(:data:`EXTRA_CALLS`); every example of :mod:`gpytorch_so3.plot` needs matplotlib.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import warnings

import pytest
import torch

# linear_operator decorates functions with `torch.jit.script` at import, which torch 2.13 deprecates. Import it here,
# with that one warning silenced, so that it does not reach the test report.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=DeprecationWarning)
    import linear_operator  # noqa: F401

#: Our own warnings are errors in the tests (each expected one is caught with ``pytest.warns``). Added here rather
#: than in pyproject's ``filterwarnings``: resolving the class there makes pytest import ``gpytorch_so3`` (and with
#: it linear_operator's deprecation warnings) while parsing its configuration, before any filter or conftest applies.
OWN_WARNINGS_ARE_ERRORS = "error::gpytorch_so3.exceptions.GPyTorchSO3Warning"

pytest_plugins = ["pytester"]  # tests of the test tooling run pytest on small generated projects

#: Thread count of the test run (see the module docstring).
TEST_THREADS = int(os.environ.get("GPYTORCH_SO3_TEST_THREADS", "1"))
_threads_before: list[int] = []


def pytest_configure(config) -> None:
    """Pin torch's intra-op thread count for the run; make our own warnings errors."""
    config.addinivalue_line("filterwarnings", OWN_WARNINGS_ARE_ERRORS)
    _threads_before.append(torch.get_num_threads())
    torch.set_num_threads(TEST_THREADS)


def pytest_unconfigure(config) -> None:
    """Restore the thread count (matters when pytest runs inside another process, e.g. ``pytest.main``)."""
    if _threads_before:
        torch.set_num_threads(_threads_before.pop())


#: Optional extras -> the ``pip install 'gpytorch-so3[...]'`` extra that provides them.
EXTRAS = {"matplotlib": "plot", "gstools": "geo", "pykrige": "geo", "arviz": "arviz", "pykeops": "keops"}

#: Calls in examples that import an extra inside the library.
EXTRA_CALLS = {"to_gstools(": "gstools", "from_gstools(": "gstools", "to_arviz(": "arviz"}

#: Modules whose every example needs an extra.
EXTRA_MODULES = {"gpytorch_so3.plot": "matplotlib"}

_IMPORT = re.compile(r"^\s*(?:import|from)\s+(" + "|".join(map(re.escape, EXTRAS)) + r")\b", re.MULTILINE)


def available(module: str) -> bool:
    """Whether ``module`` can be imported (``sys.modules[module] = None`` simulates a missing one)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def missing_extras(source: str, name: str = "") -> list[str]:
    """Extras that an example (its source, its dotted name) needs and that are not available, sorted."""
    needed = set(_IMPORT.findall(source)) | {mod for call, mod in EXTRA_CALLS.items() if call in source}
    needed |= {extra for mod, extra in EXTRA_MODULES.items() if name == mod or name.startswith(mod + ".")}
    return sorted(m for m in needed if not available(m))


def pytest_collection_modifyitems(config, items) -> None:
    """Mark doctests that need a missing extra as skipped."""
    for item in items:
        dtest = getattr(item, "dtest", None)
        if dtest is None:
            continue
        missing = missing_extras("\n".join(example.source for example in dtest.examples), dtest.name)
        if missing:
            extras = sorted({EXTRAS[m] for m in missing})
            item.add_marker(
                pytest.mark.skip(reason=f"needs {', '.join(missing)} (pip install 'gpytorch-so3[{','.join(extras)}]')")
            )
