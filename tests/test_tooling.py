"""The test-run configuration itself: thread pinning and the skipping of examples whose optional extra is missing."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import torch

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def test_threads_are_pinned():
    assert torch.get_num_threads() == int(os.environ.get("GPYTORCH_SO3_TEST_THREADS", "1"))


def _project(pytester, simulate_missing: tuple[str, ...]):
    """A tiny project with our root conftest and a module whose examples need gstools, matplotlib, or nothing."""
    missing = "".join(f"sys.modules[{m!r}] = None\n" for m in simulate_missing)
    source = ROOT_CONFTEST.read_text(encoding="utf-8").replace("from __future__ import annotations\n", "")
    pytester.makeconftest("import sys\n" + missing + source)
    pytester.makepyfile(
        extras_demo=textwrap.dedent(
            '''
            def needs_gstools():
                """Example.

                >>> import gstools
                >>> gstools.__name__
                'gstools'
                """


            def needs_gstools_through_a_call():
                """Example.

                >>> class C:
                ...     def to_gstools(self):
                ...         import gstools
                ...         return gstools.__name__
                >>> C().to_gstools()
                'gstools'
                """


            def needs_matplotlib():
                """Example.

                >>> from matplotlib import pyplot  # doctest: +SKIP
                >>> import matplotlib
                >>> matplotlib.__name__
                'matplotlib'
                """


            def plain():
                """Example.

                >>> 1 + 1
                2
                """
            '''
        )
    )
    return pytester.runpytest("--doctest-modules", "-p", "no:cacheprovider", "-rs")


def test_examples_needing_a_missing_extra_are_skipped(pytester):
    result = _project(pytester, simulate_missing=("gstools", "matplotlib"))
    result.assert_outcomes(passed=1, skipped=3)
    result.stdout.re_match_lines([r"SKIPPED \[2\] .*needs gstools \(pip install 'gpytorch-so3\[geo\]'\)"])
    result.stdout.re_match_lines([r"SKIPPED \[1\] .*needs matplotlib \(pip install 'gpytorch-so3\[plot\]'\)"])


def test_examples_run_when_the_extras_are_there(pytester):
    result = _project(pytester, simulate_missing=())
    result.assert_outcomes(passed=4)


def test_without_the_hook_a_missing_extra_fails(pytester):
    """The control: the same examples fail without the skip hook (so the skip above is the hook's doing)."""
    pytester.makeconftest("import sys\nsys.modules['gstools'] = None\n")
    pytester.makepyfile(extras_demo='def f():\n    """Example.\n\n    >>> import gstools\n    """\n')
    pytester.runpytest("--doctest-modules", "-p", "no:cacheprovider").assert_outcomes(failed=1)


def test_own_warnings_are_errors_in_the_tests():
    """The root conftest turns GPyTorchSO3Warning into an error (expected ones are caught with pytest.warns)."""
    import warnings

    from gpytorch_so3.exceptions import GPyTorchSO3Warning, RestartFailedWarning

    with pytest.raises(RestartFailedWarning):
        warnings.warn("a restart failed", RestartFailedWarning, stacklevel=1)
    with pytest.warns(GPyTorchSO3Warning):
        warnings.warn("expected", RestartFailedWarning, stacklevel=1)
