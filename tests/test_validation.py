"""The shared argument check (``gpytorch_so3._validation.check_int``) and the public entry points that use it.

Every integer option of the package goes through one helper, so the same bad value gets the same kind of error
everywhere: ``TypeError`` for a value that is not an integer (``bool`` included), ``ValueError`` for one out of
range, both naming the argument (and the function, where the caller says so).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpytorch_so3._validation import check_int


def test_accepts_integers_of_any_integral_type():
    assert check_int("n", 3, 1) == 3
    out = check_int("n", np.int64(7), 1)
    assert out == 7 and type(out) is int  # numpy integers are returned as Python ints
    assert check_int("n", 5, 0, 5) == 5  # the maximum is inclusive
    assert check_int("n", None, 1, allow_none=True) is None


@pytest.mark.parametrize("value", [2.5, 3.0, "3", True, False, None, torch.tensor(3)])
def test_non_integers_raise_type_error_naming_the_argument(value):
    with pytest.raises(TypeError, match=r"^f: n must be an int >= 1, got "):
        check_int("n", value, 1, where="f: ")


@pytest.mark.parametrize("value, bound", [(0, ">= 1"), (-4, ">= 1")])
def test_out_of_range_raises_value_error(value, bound):
    with pytest.raises(ValueError, match=rf"^n must be an int {bound}, got {value}$"):
        check_int("n", value, 1)
    with pytest.raises(ValueError, match=r"^n must be an int in \[1, 3\], got 4$"):
        check_int("n", 4, 1, 3)


def test_entry_points_share_the_check():
    """One bad count per module that used to carry its own copy of the check: same error classes everywhere."""
    from gpytorch_so3.bo import PrequentialSelector
    from gpytorch_so3.datasets import make_rotated_field
    from gpytorch_so3.fully_bayesian import SO3FullyBayesianGP
    from gpytorch_so3.nuts import fit_nuts
    from gpytorch_so3.pathwise import simulate
    from gpytorch_so3.priors import so3_covar_module
    from gpytorch_so3.scalable.nngp import ordered_neighbours

    X = torch.rand(4, 3, dtype=torch.float64)
    cases = [
        (lambda v: make_rotated_field(n_train=v), "n_train"),
        (lambda v: simulate(so3_covar_module(None), X, v), "simulate: num_samples"),
        (lambda v: PrequentialSelector(window=v), "PrequentialSelector: window"),
        (lambda v: fit_nuts(SO3FullyBayesianGP(X, X[:, :1]), thinning=v), "fit_nuts: thinning"),
        (lambda v: ordered_neighbours(X, v), "m"),
    ]
    for call, name in cases:
        with pytest.raises(TypeError, match=name):
            call(1.5)
        with pytest.raises(ValueError, match=name):
            call(-1)
