r"""Matplotlib figures for rotated anisotropy: ellipsoids, stereonets, posteriors, traces, predictions, slices.

Optional extra ``plot`` (``pip install 'gpytorch-so3[plot]'``): matplotlib is imported when a function is
called, so ``import gpytorch_so3.plot`` works without it and the first call raises an ``ImportError`` that
says what to install. Trace and rank plots are ArviZ's (the ``plot`` extra installs it).

Every function draws on the axes you pass (``ax=`` or ``axes=``) or, if you pass none, on a new figure made
with ``matplotlib.pyplot`` (so it shows inline in notebooks); it returns ``(figure, axes)`` and never calls
``plt.show()``, changes ``rcParams`` or draws on "the current axes".

Conventions (as in the rest of the package): coordinates are ``(x, y, z) = (East, North, Up)``; principal
length-scales and directions are shown *canonically* (:func:`gpytorch_so3.so3.canonicalize`: ascending
length-scales, so axis 0 is the **short** (fast-varying) direction and axis 2 the **long** one), one colour
per canonical axis throughout (:data:`AXIS_COLORS`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gpytorch_so3 import functional as F
from gpytorch_so3 import so3
from gpytorch_so3._validation import check_int
from gpytorch_so3.large import predict_in_chunks

__all__ = [
    "AXIS_COLORS",
    "AXIS_NAMES",
    "equal_area_projection",
    "plot_ellipsoid",
    "plot_field_slice",
    "plot_lengthscale_posterior",
    "plot_predictions",
    "plot_stereonet",
    "plot_traces",
]

#: Names of the canonical principal axes, in ascending order of length-scale.
AXIS_NAMES = ("short", "middle", "long")
#: One colour per canonical axis (Okabe-Ito palette, readable with colour-vision deficiencies).
AXIS_COLORS = ("#D55E00", "#009E73", "#0072B2")
#: Colour of the true ellipsoid / true directions.
TRUTH_COLOR = "black"

_INSTALL_HINT = "pip install 'gpytorch-so3[plot]'"  # matplotlib and arviz


# --------------------------------------------------------------------------------------------------- helpers
def _pyplot():
    """``matplotlib.pyplot``, or an ``ImportError`` naming the extra to install."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(f"gpytorch_so3.plot needs matplotlib: {_INSTALL_HINT}") from e
    return plt


def _numpy(x: Any, name: str) -> np.ndarray:
    """A float64 numpy copy of a tensor / array / sequence."""
    if torch.is_tensor(x):
        return x.detach().cpu().double().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a tensor or array of numbers, got {type(x).__name__}") from e


def _tensor(x: Any, name: str) -> Tensor:
    """A float64 CPU tensor (detached)."""
    if torch.is_tensor(x):
        return x.detach().cpu().double()
    return torch.as_tensor(_numpy(x, name))


def _squeeze_batch(ls: Tensor, R: Tensor, what: str) -> tuple[Tensor, Tensor]:
    """Drop singleton batch dimensions of ``(... x 3, ... x 3 x 3)``; a real batch is an error."""
    if ls.numel() != 3 or R.numel() != 9:
        raise ValueError(
            f"{what} describes a batch of {ls.numel() // 3} anisotropies; plot one at a time "
            "(e.g. pass kernel[i], or (lengthscale[i], R[i]))"
        )
    return ls.reshape(3), R.reshape(3, 3)


def _principal(obj: Any, what: str) -> tuple[Tensor, Tensor]:
    """Canonical ``(lengthscale (3,), axes (3, 3))`` of a kernel, model, field or ``(lengthscale, R)`` pair.

    Accepted: a ``(lengthscale, R)`` pair (``lengthscale`` of 3 entries, ``R`` a rotation whose columns are the
    principal directions); anything with a ``3 x 3`` ``metric`` attribute (our kernels,
    :class:`~gpytorch_so3.datasets.SyntheticField`, :class:`~gpytorch_so3.geo.AnisotropicCovariance`); a gpytorch
    kernel with a 3-entry (ARD) or 1-entry (isotropic) ``lengthscale`` (axis-aligned); a ``ScaleKernel`` around
    such a kernel; a model with a ``covar_module``.
    """
    if isinstance(obj, tuple | list):
        if len(obj) != 2:
            raise ValueError(f"{what}: expected a (lengthscale, R) pair, got a sequence of length {len(obj)}")
        ls, R = _tensor(obj[0], f"{what} lengthscale"), _tensor(obj[1], f"{what} R")
        if ls.shape[-1:] != (3,) or R.shape[-2:] != (3, 3):
            raise ValueError(
                f"{what}: lengthscale must have shape (3,) and R (3, 3), got {tuple(ls.shape)} and {tuple(R.shape)}"
            )
        ls, R = _squeeze_batch(ls, R, what)
        if not bool((ls > 0).all()):
            raise ValueError(f"{what}: length-scales must be positive, got {ls.tolist()}")
        return so3.canonicalize(ls, R)
    seen = 0
    while seen < 8:  # unwrap model -> covar_module -> ScaleKernel -> base_kernel
        seen += 1
        if hasattr(obj, "covar_module") and not hasattr(obj, "metric"):
            obj = obj.covar_module
        elif hasattr(obj, "base_kernel") and not hasattr(obj, "metric"):
            obj = obj.base_kernel
        else:
            break
    M = getattr(obj, "metric", None)
    ard = getattr(obj, "lengthscale", None)
    if not torch.is_tensor(M) and torch.is_tensor(ard) and ard.numel() in (1, 3):
        # gpytorch's isotropic / ARD kernels (RBFKernel, MaternKernel): an axis-aligned ellipsoid
        ls = ard.detach().cpu().double().reshape(-1).expand(3)
        return so3.canonicalize(ls, torch.eye(3, dtype=torch.float64))
    if not torch.is_tensor(M) or M.shape[-2:] != (3, 3):
        raise TypeError(
            f"{what}: expected an SO3AnisotropicKernel / FullSPDKernel or a gpytorch ARD kernel on 3 inputs (or a "
            "ScaleKernel or model containing one), an object with a 3 x 3 `metric`, or a (lengthscale, R) pair; "
            f"got {type(obj).__name__}"
        )
    with torch.no_grad():
        ls, R = F.metric_to_canonical(M.detach().cpu().double())
    return _squeeze_batch(ls, R, what)


def _new_axes(ax, projection: str | None = None, figsize=(5.0, 4.5)):
    """``(fig, ax)``: the given axes and its figure, or a new figure with one axes."""
    if ax is not None:
        if projection == "3d" and getattr(ax, "name", None) != "3d":
            raise ValueError("this plot needs a 3-D axes: create it with fig.add_subplot(projection='3d')")
        return ax.figure, ax
    plt = _pyplot()
    fig = plt.figure(figsize=figsize, layout="constrained")
    ax = fig.add_subplot(projection=projection) if projection else fig.add_subplot()
    return fig, ax


def _axis_colors(colors: Sequence[str] | None) -> tuple[str, ...]:
    colors = AXIS_COLORS if colors is None else tuple(colors)
    if len(colors) != 3:
        raise ValueError(f"colors must give one colour per canonical axis (3), got {len(colors)}")
    return colors


# --------------------------------------------------------------------------------------------------- ellipsoid
def _ellipsoid_mesh(ls: Tensor, R: Tensor, center: np.ndarray, resolution: int) -> np.ndarray:
    """``3 x (resolution + 1) x (2 resolution + 1)`` points of ``{center + R diag(l) s : |s| = 1}``."""
    u = np.linspace(0.0, 2.0 * math.pi, 2 * resolution + 1)
    v = np.linspace(0.0, math.pi, resolution + 1)
    sphere = np.stack(
        [np.outer(np.sin(v), np.cos(u)), np.outer(np.sin(v), np.sin(u)), np.outer(np.cos(v), np.ones_like(u))]
    )
    A = (R * ls).numpy()  # R diag(l) maps the unit sphere onto the ellipsoid x^T R diag(l)^-2 R^T x = 1
    return np.einsum("ij,jab->iab", A, sphere) + center[:, None, None]


def plot_ellipsoid(
    kernel: Any,
    ax=None,
    truth: Any = None,
    *,
    center: Sequence[float] = (0.0, 0.0, 0.0),
    resolution: int = 24,
    color: str = "0.6",
    alpha: float = 0.35,
    colors: Sequence[str] | None = None,
    label: str | None = None,
    truth_label: str = "truth",
    legend: bool = True,
):
    r"""The anisotropy ellipsoid ``{x : x^T M x = 1}`` with its principal axes, optionally beside the truth.

    The ellipsoid's semi-axes are the principal length-scales along the principal directions (the columns of
    ``R``), so it is the shape of the correlation: a point on its surface is "one length-scale away" from the
    centre. Its three principal semi-axes are drawn as coloured segments (short, middle, long, see
    :data:`AXIS_COLORS`); the true ellipsoid, if given, as a black wireframe with dashed black semi-axes.

    Artists: a surface (1 collection) and 3 lines; with ``truth`` one more collection (the wireframe) and 3 more
    lines.

    Args:
        kernel: what to draw: an :class:`~gpytorch_so3.SO3AnisotropicKernel` / :class:`~gpytorch_so3.FullSPDKernel`
            or a gpytorch ARD kernel on 3 inputs (unbatched, or a ``ScaleKernel``/model containing one), anything
            with a ``3 x 3`` ``metric`` attribute (e.g. a :class:`~gpytorch_so3.datasets.SyntheticField`), or a
            ``(lengthscale (3,), R (3, 3))`` pair.
        ax: a 3-D matplotlib axes (``fig.add_subplot(projection="3d")``); default a new figure.
        truth: the true anisotropy, in any form accepted for ``kernel``.
        center: centre of the ellipsoid.
        resolution: number of mesh lines in each angle (>= 4).
        color: face colour of the surface.
        alpha: transparency of the surface.
        colors: three colours of the canonical axes (default :data:`AXIS_COLORS`).
        label: legend label of the surface (default none).
        truth_label: legend label of the true wireframe.
        legend: draw a legend (the length-scale of each axis).

    Returns:
        ``(fig, ax)``.

    Raises:
        ValueError: ``ax`` is not 3-D, a batched kernel, bad shapes or ``resolution < 4``.
        TypeError: ``kernel`` or ``truth`` of an unsupported type, or ``resolution`` not an int.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> fig, ax = plot_ellipsoid((torch.tensor([0.2, 0.5, 1.0]), so3.exp_map(torch.tensor([0.3, 0.0, 0.5]))))
        >>> len(ax.lines), len(ax.collections)
        (3, 1)
    """
    resolution = check_int("resolution", resolution, 4)
    colors = _axis_colors(colors)
    ls, R = _principal(kernel, "kernel")
    truth_lr = None if truth is None else _principal(truth, "truth")
    c = _numpy(center, "center").reshape(-1)
    if c.shape != (3,):
        raise ValueError(f"center must have 3 entries, got {c.shape}")
    fig, ax = _new_axes(ax, projection="3d", figsize=(5.5, 5.0))

    xyz = _ellipsoid_mesh(ls, R, c, resolution)
    ax.plot_surface(*xyz, color=color, alpha=alpha, linewidth=0.0, shade=True, label=label)
    extent = float(ls.max())
    for i in range(3):
        d = (R[:, i] * ls[i]).numpy()
        seg = np.stack([c - d, c + d], axis=1)
        ax.plot(*seg, color=colors[i], lw=2.5, label=f"{AXIS_NAMES[i]} axis (l = {float(ls[i]):.3g})")
    if truth_lr is not None:
        txyz = _ellipsoid_mesh(*truth_lr, c, resolution)
        stride = max(1, resolution // 8)
        ax.plot_wireframe(
            *txyz, color=TRUTH_COLOR, lw=0.5, alpha=0.6, rstride=stride, cstride=stride, label=truth_label
        )
        for i in range(3):
            d = (truth_lr[1][:, i] * truth_lr[0][i]).numpy()
            seg = np.stack([c - d, c + d], axis=1)
            ax.plot(*seg, color=TRUTH_COLOR, lw=1.2, ls="--")
        extent = max(extent, float(truth_lr[0].max()))
    extent *= 1.05
    for setter, ci in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), c, strict=True):
        setter(ci - extent, ci + extent)
    if legend:
        ax.legend(loc="upper left", fontsize=7, framealpha=0.8)
    ax.set_box_aspect((1.0, 1.0, 1.0))
    ax.set_xlabel("x (East)")
    ax.set_ylabel("y (North)")
    ax.set_zlabel("z (Up)")
    return fig, ax


# --------------------------------------------------------------------------------------------------- stereonet
def equal_area_projection(u: Any) -> Tensor:
    r"""Lower-hemisphere equal-area (Schmidt) projection of axes onto the unit disc.

    An axis ``u`` (``u`` and ``-u`` are the same line) is first turned to point downward (``u -> -u`` if
    ``u_z > 0``). With plunge ``p`` (angle below the horizontal) and azimuth ``az`` (clockwise from North, +y),
    the point lies at radius ``r = sqrt(2) sin((90 deg - p) / 2)`` (``= sqrt(1 - |u_z|)`` for unit ``u``: 0 for a
    vertical axis, 1 on the primitive circle for a horizontal one) in the direction of ``az``:
    ``(X, Y) = (r sin(az), r cos(az))``, so North is up and East to the right on the plot. A horizontal axis is
    plotted at its own azimuth (its antipode on the primitive is the same line).

    Equal-area: equal solid angles of directions cover equal areas of the disc, so the density of points is
    the density of directions (the Schmidt net used in structural geology, not the angle-preserving Wulff net).

    Args:
        u: ``(..., 3)`` axis vectors in (East, North, Up) coordinates (need not be unit length).

    Returns:
        ``(..., 2)`` plot coordinates ``(X, Y)`` inside the unit disc (float64 tensor for non-tensor input,
        otherwise the dtype of ``u``).

    Raises:
        ValueError: last dimension not 3, zero or non-finite vectors.

    Example:
        >>> equal_area_projection(torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]))
        tensor([[ 0.,  0.],
                [ 1.,  0.],
                [ 0., -1.]])
    """
    t = u if torch.is_tensor(u) else torch.as_tensor(_numpy(u, "u"))
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    if t.dim() < 1 or t.shape[-1] != 3:
        raise ValueError(f"equal_area_projection expects vectors of shape (..., 3), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("equal_area_projection: vectors must be finite")
    norm = t.norm(dim=-1, keepdim=True)
    if bool((norm == 0).any()):
        raise ValueError("equal_area_projection: a zero vector has no direction")
    t = t / norm
    t = torch.where(t[..., 2:3] > 0, -t, t)  # lower hemisphere
    h = torch.hypot(t[..., 0], t[..., 1])  # cos(plunge)
    r = (1.0 - t[..., 2].abs()).clamp_min(0.0).sqrt()  # sqrt(2) sin((90 deg - plunge) / 2)
    # (sin az, cos az) = (u_x, u_y) / h; a vertical axis (h = 0) goes to the centre whatever its "azimuth".
    safe_h = torch.where(h > 0, h, torch.ones_like(h))
    scale = torch.where(h > 0, r / safe_h, torch.zeros_like(h))
    return torch.stack((scale * t[..., 0], scale * t[..., 1]), dim=-1) + 0.0


def _canonical_pair(obj: Any) -> tuple[Tensor, Tensor] | None:
    """``obj.canonical()`` (the package's one name for canonical ``(lengthscale, axes)``), else None.

    ``canonical_samples()`` is accepted too: the fully Bayesian model's name for it before the renaming.
    """
    for name in ("canonical", "canonical_samples"):
        method = getattr(obj, name, None)
        if callable(method) and not torch.is_tensor(obj):
            return method()
    return None


def _axes_samples(samples: Any) -> Tensor:
    """``S x 3 x 3`` canonical axes (columns) from a summary, a fitted fully Bayesian model or a tensor."""
    axes = getattr(samples, "axes", None)
    if torch.is_tensor(axes):  # PosteriorSummary
        t = axes
    elif (pair := _canonical_pair(samples)) is not None:  # a fitted SO3FullyBayesianGP (or a batched kernel)
        t = pair[1]
    else:
        t = samples
    t = _tensor(t, "axes_samples")
    if t.shape == (3, 3):
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.shape[-2:] != (3, 3):
        raise ValueError(f"axes_samples must have shape (S, 3, 3) (directions as columns), got {tuple(t.shape)}")
    return t


def _truth_axes(truth: Any) -> Tensor:
    """``3 x 3`` true canonical axes (columns) from a ``3 x 3`` tensor or anything :func:`_principal` accepts."""
    if torch.is_tensor(truth) or isinstance(truth, np.ndarray):
        t = _tensor(truth, "truth")
        if t.shape != (3, 3):
            raise ValueError(f"truth as an array must be the 3 x 3 matrix of canonical axes, got {tuple(t.shape)}")
        return t
    return _principal(truth, "truth")[1]


def _stereonet_frame(ax, *, ticks: bool = True) -> None:
    """Primitive circle (1 patch), centre cross and N/E/S/W marks (1 line), 'N' label; equal aspect, no frame."""
    from matplotlib.patches import Circle

    ax.add_patch(Circle((0.0, 0.0), 1.0, fill=False, lw=1.2, color="black"))
    if ticks:
        nan = np.nan
        xs = [-0.04, 0.04, nan, 0, 0, nan, 0, 0, nan, 1.0, 1.04, nan, 0, 0, nan, -1.0, -1.04]
        ys = [0, 0, nan, -0.04, 0.04, nan, 1.0, 1.04, nan, 0, 0, nan, -1.0, -1.04, nan, 0, 0]
        ax.plot(xs, ys, color="black", lw=0.8)
        ax.text(0.0, 1.07, "N", ha="center", va="bottom", fontsize=10)
    ax.set_xlim(-1.12, 1.12)
    ax.set_ylim(-1.12, 1.18)
    ax.set_aspect("equal")
    ax.set_axis_off()


def plot_stereonet(
    axes_samples: Any,
    ax=None,
    truth: Any = None,
    *,
    which: Sequence[int] = (0, 1, 2),
    colors: Sequence[str] | None = None,
    markersize: float = 8.0,
    alpha: float = 0.5,
    truth_size: float = 150.0,
    legend: bool = True,
):
    r"""Canonical principal axes on a lower-hemisphere equal-area (Schmidt) stereonet, one colour per axis.

    Each posterior draw (or each fitted model) contributes one point per canonical axis (short, middle, long;
    :data:`AXIS_COLORS`), projected by :func:`equal_area_projection`: North up, East right, vertical axes at the
    centre, horizontal ones on the primitive circle. A tight cloud means a well-determined direction; a cloud
    smeared along a great circle means the direction is only known to lie in a plane (two close length-scales,
    see :func:`gpytorch_so3.summarize_posterior`). True axes are drawn as large stars with a black edge.

    Artists: the primitive circle (1 patch), the centre/N-E-S-W tick marks (1 line), one scatter collection per
    axis in ``which`` and, with ``truth``, one more per axis.

    Args:
        axes_samples: a :class:`~gpytorch_so3.summary.PosteriorSummary` (its ``axes``), a fitted
            ``SO3FullyBayesianGP`` (its canonical samples), or a tensor/array ``(S, 3, 3)`` (or ``(3, 3)``) of
            canonical directions as columns (column ``i`` goes with the ``i``-th shortest length-scale).
        ax: matplotlib axes (2-D); default a new figure.
        truth: true axes: a ``3 x 3`` tensor/array of canonical directions (columns), or anything
            :func:`plot_ellipsoid` accepts (a kernel, a ``SyntheticField``, a ``(lengthscale, R)`` pair).
        which: canonical axes to draw (subset of ``(0, 1, 2)``).
        colors: three colours of the canonical axes.
        markersize: marker area of the samples (points^2, as ``scatter``'s ``s``).
        alpha: transparency of the sample markers.
        truth_size: marker area of the true axes' stars (drawn beneath the samples).
        legend: draw a legend.

    Returns:
        ``(fig, ax)``.

    Raises:
        ValueError: bad shapes or ``which``.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> fig, ax = plot_stereonet(so3.random_rotation(50, dtype=torch.float64))
        >>> len(ax.collections), len(ax.patches)
        (3, 1)
    """
    which = tuple(which)
    if not which or any(i not in (0, 1, 2) for i in which) or len(set(which)) != len(which):
        raise ValueError(f"which must be distinct canonical axis indices in (0, 1, 2), got {which}")
    colors = _axis_colors(colors)
    A = _axes_samples(axes_samples)
    T = None if truth is None else _truth_axes(truth)
    fig, ax = _new_axes(ax, figsize=(4.8, 4.8))
    _stereonet_frame(ax)
    for i in which:
        xy = equal_area_projection(A[:, :, i]).numpy()
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=markersize,
            color=colors[i],
            alpha=alpha,
            lw=0,
            zorder=3,
            label=f"{AXIS_NAMES[i]} axis",
        )
    if T is not None:
        for i in which:
            xy = equal_area_projection(T[:, i]).numpy()
            ax.scatter(
                [xy[0]],
                [xy[1]],
                s=truth_size,
                marker="*",
                color=colors[i],
                edgecolors="black",
                linewidths=1.0,
                zorder=2,
                label="truth (stars)" if i == which[0] else None,
            )
    if legend:
        leg = ax.legend(
            loc="upper center",
            bbox_to_anchor=(0.5, 0.03),
            ncol=4,
            fontsize=8,
            frameon=False,
            handletextpad=0.1,
            columnspacing=0.8,
        )
        for handle in leg.legend_handles:  # one readable marker size in the legend, whatever the plot sizes
            if hasattr(handle, "set_sizes"):
                handle.set_sizes([40.0])
            if hasattr(handle, "set_alpha"):
                handle.set_alpha(1.0)
    return fig, ax


# --------------------------------------------------------------------------------------------------- length-scales
def _lengthscale_samples(samples: Any) -> Tensor:
    ls = getattr(samples, "lengthscale", None)
    if torch.is_tensor(ls) and ls.dim() == 2:  # PosteriorSummary
        t = ls
    elif (pair := _canonical_pair(samples)) is not None:
        t = pair[0]
    else:
        t = samples
    t = _tensor(t, "samples")
    if t.dim() != 2 or t.shape[-1] != 3:
        raise ValueError(f"length-scale samples must have shape (S, 3), got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or not bool((t > 0).all()):
        raise ValueError("length-scale samples must be positive and finite")
    return t.sort(dim=-1).values  # canonical order (a no-op for a PosteriorSummary)


def plot_lengthscale_posterior(
    samples: Any,
    ax=None,
    truth: Any = None,
    *,
    bins: int = 30,
    kde: bool = True,
    colors: Sequence[str] | None = None,
):
    r"""Posterior of the three canonical (ascending) length-scales: histograms, a KDE curve, the truth.

    The x axis is logarithmic (length-scales are positive and their posteriors roughly log-normal); the y axis
    is the posterior density per unit of ``ln l``, so the areas of the three histograms are equal. Each
    posterior sample is sorted first, so "short" is the shortest length-scale of each draw.

    Artists: 3 filled histogram patches, 3 KDE lines (``kde=True``, for axes whose draws are not all equal) and
    3 vertical truth lines (with ``truth``).

    Args:
        samples: a :class:`~gpytorch_so3.summary.PosteriorSummary` (its ``lengthscale``), a fitted
            ``SO3FullyBayesianGP``, or a tensor/array ``(S, 3)`` of length-scales.
        ax: matplotlib axes; default a new figure.
        truth: the true length-scales (3 numbers, any order), or anything :func:`plot_ellipsoid` accepts.
        bins: number of (log-spaced) histogram bins.
        kde: overlay a Gaussian kernel density estimate (``scipy.stats.gaussian_kde`` on ``ln l``).
        colors: three colours.

    Returns:
        ``(fig, ax)``.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> s = torch.exp(torch.randn(200, 3) * 0.1) * torch.tensor([0.2, 0.5, 1.0])
        >>> fig, ax = plot_lengthscale_posterior(s, truth=[0.2, 0.5, 1.0])
        >>> len(ax.patches), len(ax.lines)
        (3, 6)
    """
    bins = check_int("bins", bins, 1)
    colors = _axis_colors(colors)
    L = _lengthscale_samples(samples).log().numpy()
    truth_ls = None
    if truth is not None:
        as_numbers = isinstance(truth, tuple | list) and len(truth) == 3
        if as_numbers or torch.is_tensor(truth) or isinstance(truth, np.ndarray):
            truth_ls = np.sort(_numpy(truth, "truth").reshape(-1))
            if truth_ls.shape != (3,) or not (truth_ls > 0).all():
                raise ValueError(f"truth must be 3 positive length-scales, got {truth_ls}")
        else:
            truth_ls = _principal(truth, "truth")[0].numpy()
    fig, ax = _new_axes(ax, figsize=(6.0, 3.6))
    lo, hi = float(L.min()), float(L.max())
    if truth_ls is not None:
        lo, hi = min(lo, float(np.log(truth_ls).min())), max(hi, float(np.log(truth_ls).max()))
    pad = 0.05 * (hi - lo) if hi > lo else 0.1
    edges = np.linspace(lo - pad, hi + pad, bins + 1)
    width = edges[1] - edges[0]
    grid = np.linspace(edges[0], edges[-1], 256)
    for i in range(3):
        x = L[:, i]
        ax.hist(
            np.exp(x),
            bins=np.exp(edges),
            weights=np.full(x.shape, 1.0 / (x.size * width)),
            histtype="stepfilled",
            color=colors[i],
            alpha=0.35,
            label=f"{AXIS_NAMES[i]} (median {math.exp(float(np.median(x))):.3g})",
        )
        if kde and x.size > 1 and float(np.ptp(x)) > 0:
            from scipy.stats import gaussian_kde

            ax.plot(np.exp(grid), gaussian_kde(x)(grid), color=colors[i], lw=1.5)
    if truth_ls is not None:
        for i in range(3):
            ax.axvline(float(truth_ls[i]), color=colors[i], ls="--", lw=1.5, label="truth" if i == 0 else None)
    ax.set_xscale("log")
    ax.set_xlabel("canonical length-scale l")
    ax.set_ylabel("posterior density of ln l")
    ax.legend(fontsize=8)
    return fig, ax


# --------------------------------------------------------------------------------------------------- traces
def _trace_variables(summary: Any, var_names: Sequence[str] | None) -> list[tuple[str, np.ndarray]]:
    """``[(label, chains x draws array), ...]`` for the canonical scalar quantities of a summary."""
    if not (hasattr(summary, "lengthscale") and hasattr(summary, "num_chains")):
        raise TypeError(
            f"plot_traces expects a PosteriorSummary (gpytorch_so3.summarize_posterior), got {type(summary).__name__}"
        )
    C = int(summary.num_chains)
    available = {"lengthscale": summary.lengthscale, "outputscale": summary.outputscale, "mean": summary.mean}
    if getattr(summary, "noise", None) is not None:
        available["noise"] = summary.noise
    if var_names is None:
        var_names = [n for n in ("lengthscale", "outputscale", "noise") if n in available]
    out = []
    for name in var_names:
        if name not in available:
            raise ValueError(f"unknown or missing variable {name!r}; available: {sorted(available)}")
        x = _numpy(available[name], name)
        x = x.reshape(C, -1, *x.shape[1:])
        if name == "lengthscale":
            out += [(f"lengthscale[{AXIS_NAMES[i]}]", x[..., i]) for i in range(3)]
        else:
            out.append((name, x))
    return out


def plot_traces(
    summary: Any,
    var_names: Sequence[str] | None = None,
    *,
    kind: str = "trace",
    axes=None,
    use_arviz: bool | None = None,
    bins: int | None = None,
):
    r"""MCMC diagnostics per chain: trace plots or rank plots of the canonical length-scales, output-scale, noise.

    Canonical quantities are what converge: raw length-scales and rotations wander between the 24 equivalent
    labellings of the axes. A good trace looks like stationary noise with all chains overlapping; a good rank
    plot has flat histograms (every chain visits all parts of the pooled posterior equally often).

    Drawn by ArviZ (extra ``plot``, which includes it): ``arviz.plot_trace`` (``kind="trace"``: marginal density
    left, trace right, one row per scalar) or ``arviz.plot_rank`` (``kind="rank"``) on ``summary.to_arviz()``.

    Args:
        summary: a :class:`~gpytorch_so3.summary.PosteriorSummary` from :func:`gpytorch_so3.summarize_posterior`.
        var_names: subset of ``"lengthscale"`` (gives three rows: short, middle, long), ``"outputscale"``,
            ``"noise"``, ``"mean"``; default lengthscale, outputscale and noise (if sampled).
        kind: ``"trace"`` or ``"rank"``.
        axes: matplotlib axes to draw on: shape ``(rows, 2)`` for ``"trace"`` and ``(rows,)`` for ``"rank"``
            (``rows`` = number of scalar quantities); default a new figure.
        use_arviz: deprecated and ignored (ArviZ is always used; its hand-written matplotlib fallback was removed).
        bins: deprecated and ignored (ArviZ chooses the rank-plot bins).

    Returns:
        ``(fig, axes)`` with ``axes`` a numpy array of matplotlib axes.

    Raises:
        ValueError: unknown ``kind`` or variable, wrongly shaped ``axes``.
        TypeError: ``summary`` is not a posterior summary.
        ImportError: ArviZ or matplotlib is not installed (``pip install 'gpytorch-so3[plot]'``).

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> from gpytorch_so3.summary import summarize_samples
        >>> draws = {"lengthscale": torch.rand(2, 40, 3) + 0.1, "rotation": torch.randn(2, 40, 3),
        ...          "outputscale": torch.rand(2, 40) + 0.5, "mean": torch.zeros(2, 40)}
        >>> fig, axes = plot_traces(summarize_samples(draws))
        >>> axes.shape
        (4, 2)
    """
    if use_arviz is not None or bins is not None:
        warnings.warn(
            "plot_traces: `use_arviz` and `bins` are deprecated and ignored; ArviZ draws the plots",
            DeprecationWarning,
            stacklevel=2,
        )
    if kind not in ("trace", "rank"):
        raise ValueError(f"kind must be 'trace' or 'rank', got {kind!r}")
    rows = _trace_variables(summary, var_names)
    n = len(rows)
    want = (n, 2) if kind == "trace" else (n,)
    if axes is not None:
        axes = np.asarray(axes, dtype=object)
        if kind == "rank":
            axes = axes.reshape(-1)
        if axes.shape != want:
            raise ValueError(f"axes must have shape {want} for kind={kind!r} with these variables, got {axes.shape}")
    _pyplot()  # a clear ImportError first if matplotlib is missing
    try:
        import arviz as az
    except ImportError as e:
        raise ImportError(f"plot_traces needs arviz: {_INSTALL_HINT}") from e
    idata = summary.to_arviz()
    names = list(dict.fromkeys(r[0].split("[")[0] for r in rows))
    # Without axes: a figure tall enough for ArviZ's two-line titles, laid out without overlaps.
    layout = {} if axes is not None else {"backend_kwargs": {"layout": "constrained"}}
    if kind == "trace":
        size = {} if axes is not None else {"figsize": (10.0, 2.1 * n)}
        out = az.plot_trace(idata, var_names=names, compact=False, axes=axes, show=False, **size, **layout)
    else:
        size = {} if axes is not None else {"figsize": (11.0, 2.6 * math.ceil(n / 3))}
        out = az.plot_rank(idata, var_names=names, ax=axes, show=False, **size, **layout)
    out = np.asarray(out, dtype=object)
    return out.flat[0].figure, out


# --------------------------------------------------------------------------------------------------- predictions
def plot_predictions(
    y_true: Any,
    y_pred: Any,
    y_std: Any = None,
    ax=None,
    *,
    z: float = 1.6448536269514722,
    label: str | None = None,
    color: str = "C0",
    title: str | None = None,
):
    r"""Held-out predictions against the truth, with ``z``-sigma error bars (default: 90% intervals).

    Points on the dashed diagonal are perfect predictions; error bars that cross the diagonal cover the truth.
    The corner text gives the RMSE, ``R^2 = 1 - SSE / SST`` and, with ``y_std``, the empirical coverage of the
    intervals (about 90% for a calibrated model with the default ``z``; ``y_std`` should then include the
    observation noise if ``y_true`` is noisy).

    Artists: the diagonal (1 line); without ``y_std`` one scatter collection; with it an ``errorbar``
    (1 line for the markers and 1 collection for the bars).

    Args:
        y_true: ``n`` (or ``n x 1``) true values.
        y_pred: ``n`` predicted means.
        y_std: ``n`` predictive standard deviations (optional).
        ax: matplotlib axes; default a new figure.
        z: half-width of the error bars in standard deviations (1.645: 90%).
        label: legend label.
        color: colour of the points.
        title: axes title.

    Returns:
        ``(fig, ax)``.

    Raises:
        ValueError: mismatched lengths, non-finite values, negative ``y_std`` or ``z``.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> fig, ax = plot_predictions(torch.arange(5.0), torch.arange(5.0) + 0.1, 0.2 * torch.ones(5))
        >>> len(ax.lines), len(ax.collections)
        (2, 1)
    """
    t = _numpy(y_true, "y_true").reshape(-1)
    p = _numpy(y_pred, "y_pred").reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same number of values, got {t.size} and {p.size}")
    if t.size == 0 or not (np.isfinite(t).all() and np.isfinite(p).all()):
        raise ValueError("y_true and y_pred must be non-empty and finite")
    s = None
    if y_std is not None:
        s = _numpy(y_std, "y_std").reshape(-1)
        if s.shape != t.shape:
            raise ValueError(f"y_std must have {t.size} values, got {s.size}")
        if not (np.isfinite(s).all() and (s >= 0).all()):
            raise ValueError("y_std must be finite and non-negative")
    if not (math.isfinite(z) and z >= 0):
        raise ValueError(f"z must be finite and non-negative, got {z}")
    fig, ax = _new_axes(ax, figsize=(4.6, 4.4))
    if s is None:
        ax.scatter(t, p, s=12, color=color, alpha=0.7, label=label)
    else:
        ax.errorbar(t, p, yerr=z * s, fmt="o", ms=3, color=color, ecolor=color, elinewidth=0.8, alpha=0.6, label=label)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.axline((lo, lo), (hi if hi > lo else lo + 1.0, hi if hi > lo else lo + 1.0), color="0.3", ls="--", lw=1.0)
    rmse = float(np.sqrt(np.mean((p - t) ** 2)))
    sst = float(np.sum((t - t.mean()) ** 2))
    text = f"RMSE {rmse:.3g}"
    if sst > 0:
        text += f"\n$R^2$ {1.0 - float(np.sum((p - t) ** 2)) / sst:.3f}"
    if s is not None:
        text += f"\ncoverage {100.0 * float(np.mean(np.abs(p - t) <= z * s)):.0f}%"
    ax.text(
        0.03,
        0.97,
        text,
        transform=ax.transAxes,
        va="top",
        ha="left",
        fontsize=9,
        bbox={"boxstyle": "round", "facecolor": "white", "alpha": 0.8, "edgecolor": "0.8"},
    )
    ax.set_xlabel("held-out truth")
    ax.set_ylabel("prediction")
    if title is not None:
        ax.set_title(title)
    if label is not None:
        ax.legend(loc="lower right", fontsize=8)
    return fig, ax


# --------------------------------------------------------------------------------------------------- field slice
def _model_dtype(model: Any) -> torch.dtype:
    for p in getattr(model, "parameters", lambda: iter(()))():
        if p.is_floating_point():
            return p.dtype
    return torch.float64


def _model_device(model: Any) -> torch.device:
    for p in getattr(model, "parameters", lambda: iter(()))():
        return p.device
    return torch.device("cpu")


def _predict_mean_sd(model: Any, X: Tensor, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Latent predictive mean and sd at ``X`` (``n x 3``) by :func:`gpytorch_so3.large.predict_in_chunks`.

    For a fully Bayesian model (``_is_fully_bayesian``; posterior batch over MCMC samples at dimension -3, BoTorch's
    ``MCMC_DIM``) the mixture moments are returned: the mean of the sample means and, by the law of total variance,
    the mean of the sample variances plus the variance of the sample means.
    """
    mean, var = predict_in_chunks(model, X, chunk_size=chunk)
    if getattr(model, "_is_fully_bayesian", False) and mean.dim() >= 3:
        mixture_mean = mean.mean(dim=-3)
        var = var.mean(dim=-3) + (mean - mixture_mean.unsqueeze(-3)).pow(2).mean(dim=-3)
        mean = mixture_mean
    if mean.dim() == 1:  # a single-output gpytorch model: n
        mean, var = mean.unsqueeze(-1), var.unsqueeze(-1)
    if mean.dim() != 2 or mean.shape[-1] != 1:
        raise ValueError(
            f"plot_field_slice needs a single-output, unbatched model; its predictions have shape {tuple(mean.shape)}"
        )
    return mean[:, 0].double().cpu().numpy(), var[:, 0].clamp_min(0.0).sqrt().double().cpu().numpy()


def plot_field_slice(
    model: Any,
    z: float = 0.5,
    bounds: Sequence[Sequence[float]] = ((0.0, 1.0), (0.0, 1.0)),
    resolution: int = 60,
    truth_fn: Callable[[Tensor], Any] | None = None,
    *,
    axes=None,
    transform: Callable[[Tensor], Tensor] | None = None,
    points: Any = None,
    points_tol: float | None = None,
    cmap: str = "viridis",
    sd_cmap: str = "magma",
    chunk: int = 4096,
):
    r"""A horizontal slice ``z = const`` of the predicted field: posterior mean, its sd and (optionally) the truth.

    The model is evaluated on a ``resolution x resolution`` grid over ``bounds`` at height ``z`` with
    :func:`gpytorch_so3.large.predict_in_chunks` (bounded memory). For a BoTorch model the latent posterior (no
    observation noise) is used, with the mixture mean and variance for a fully Bayesian model; a plain gpytorch
    ``ExactGP`` is called in eval mode. Mean and truth share one colour scale, so the panels can be compared
    directly; the sd panel shows where the model is unsure (far from data, and across the fast direction of the
    anisotropy).

    Artists: one image per panel (mean, sd, truth), a colour bar per panel, and with ``points`` one scatter
    collection of the data points within ``points_tol`` of the slice, on the mean panel.

    Args:
        model: a fitted BoTorch model (``posterior``) or gpytorch ``ExactGP`` on 3 inputs.
        z: height of the slice (in the coordinates of ``bounds``).
        bounds: ``((x_min, x_max), (y_min, y_max))`` of the slice.
        resolution: grid points per side (>= 2).
        truth_fn: optional function mapping an ``m x 3`` tensor of points to ``m`` (or ``m x 1``) true values.
        axes: 2 (or 3 with ``truth_fn``) matplotlib axes; default a new figure with a row of panels.
        transform: optional map applied to the grid points before the model sees them (e.g. the
            :class:`~gpytorch_so3.compare.IsotropicScaling` used for training), so the plot is in data units.
        points: optional ``n x 3`` data points (e.g. the training inputs, in the coordinates of ``bounds``).
        points_tol: show ``points`` with ``|z_i - z| <= points_tol`` (default 5% of the larger side of the slice).
        cmap: colour map of the mean and the truth.
        sd_cmap: colour map of the sd.
        chunk: grid points per model call (``chunk_size`` of ``predict_in_chunks``).

    Returns:
        ``(fig, axes)`` with ``axes`` a numpy array (mean, sd[, truth]).

    Raises:
        TypeError: ``resolution`` or ``chunk`` is not an int (numpy integers are accepted).
        ValueError: bad bounds/resolution, wrong number of axes, a multi-output model.

    Example:
        >>> import matplotlib; matplotlib.use("Agg")
        >>> from botorch.models import SingleTaskGP
        >>> X = torch.rand(20, 3, dtype=torch.float64); Y = X.sum(-1, keepdim=True)
        >>> fig, axes = plot_field_slice(SingleTaskGP(X, Y), z=0.5, resolution=10)
        >>> [len(a.images) for a in axes]
        [1, 1]
    """
    b = _numpy(bounds, "bounds")
    if b.shape != (2, 2) or not np.isfinite(b).all() or not (b[:, 0] < b[:, 1]).all():
        raise ValueError(f"bounds must be ((x_min, x_max), (y_min, y_max)) with min < max, got {bounds!r}")
    resolution = check_int("resolution", resolution, 2)
    chunk = check_int("chunk", chunk, 1)
    z = float(z)
    npanels = 3 if truth_fn is not None else 2
    if axes is not None:
        axes = np.asarray(axes, dtype=object).reshape(-1)
        if axes.shape != (npanels,):
            names = "mean, sd, truth" if truth_fn is not None else "mean, sd"
            raise ValueError(f"axes must hold {npanels} axes ({names}), got {axes.size}")
        fig = axes[0].figure
    else:
        plt = _pyplot()
        fig, axes = plt.subplots(1, npanels, figsize=(4.3 * npanels, 3.7), layout="constrained")
        axes = np.asarray(axes, dtype=object).reshape(-1)

    dtype, device = _model_dtype(model), _model_device(model)
    xs = torch.linspace(float(b[0, 0]), float(b[0, 1]), resolution, dtype=torch.float64)
    ys = torch.linspace(float(b[1, 0]), float(b[1, 1]), resolution, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")  # resolution (y) x resolution (x)
    P = torch.stack(
        (gx.reshape(-1), gy.reshape(-1), torch.full((resolution * resolution,), z, dtype=torch.float64)), -1
    )
    Xm = P.to(dtype=dtype, device=device)
    if transform is not None:
        Xm = transform(Xm)
    mean, sd = _predict_mean_sd(model, Xm, chunk)
    grids = [mean.reshape(resolution, resolution), sd.reshape(resolution, resolution)]
    if truth_fn is not None:
        tv = _numpy(truth_fn(P.to(dtype)), "truth_fn(points)").reshape(-1)
        if tv.size != P.shape[0]:
            raise ValueError(f"truth_fn must return one value per point ({P.shape[0]}), got {tv.size}")
        grids.append(tv.reshape(resolution, resolution))
    vmin = min(float(np.nanmin(g)) for i, g in enumerate(grids) if i != 1)
    vmax = max(float(np.nanmax(g)) for i, g in enumerate(grids) if i != 1)
    extent = (float(b[0, 0]), float(b[0, 1]), float(b[1, 0]), float(b[1, 1]))
    titles = [f"posterior mean (z = {z:.3g})", "posterior sd", "truth"]
    for i, (a, g) in enumerate(zip(axes, grids, strict=True)):
        kw = {"cmap": sd_cmap} if i == 1 else {"cmap": cmap, "vmin": vmin, "vmax": vmax}
        im = a.imshow(g, origin="lower", extent=extent, interpolation="nearest", **kw)
        fig.colorbar(im, ax=a, shrink=0.85)
        a.set_title(titles[i], fontsize=10)
        a.set_xlabel("x (East)")
        a.set_ylabel("y (North)")
    if points is not None:
        pts = _numpy(points, "points")
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"points must have shape (n, 3), got {pts.shape}")
        tol = 0.05 * float((b[:, 1] - b[:, 0]).max()) if points_tol is None else float(points_tol)
        near = np.abs(pts[:, 2] - z) <= tol
        axes[0].scatter(
            pts[near, 0],
            pts[near, 1],
            s=6,
            color="white",
            edgecolors="black",
            linewidths=0.4,
            label=f"data within {tol:.2g} of the slice",
        )
    return fig, axes
