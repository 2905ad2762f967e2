r"""Plots of scalar, vector and tensor images (matplotlib; works without a display).

Every function takes one image in *grid layout* (ginjax's layout, and :class:`escnn_tensor.GeometricImage`'s):
an array of shape ``(N,)*D + (D,)*k`` whose array axis ``i`` runs along ``+x_i`` and whose last ``k`` axes hold
the tensor components over ``(x, y[, z])``. The pixel with array index ``(i, j)`` is drawn at ``(x, y) = (i, j)``:
**+x to the right and +y up**. Scalars are heatmaps, vectors arrows, 2-tensors glyphs (ellipse of the symmetric
part, principal axes coloured by sign, circular arrow for the antisymmetric part), higher orders the norm; 3D
images are drawn as x-y slices. Symmetric and symmetric traceless tensors given by their coordinates in
:func:`escnn_tensor.representations.symmetric_basis` (``symmetry=``) are made full and drawn the same way. What exactly
is drawn, with colours, scales and 3D conventions, is in ``docs/plotting.md``. The module never selects a matplotlib
backend.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .groups import check_dimension, is_integer
from .representations import check_order, check_parity, check_symmetry, symmetric_size, to_full_tensor

__all__ = ["plot_image", "plot_images", "field_name"]

ArrayLike = Union[torch.Tensor, np.ndarray]

POSITIVE_COLOR = "#8b0000"  # principal axis with a positive eigenvalue
NEGATIVE_COLOR = "#00008b"  # ... negative eigenvalue
ROTATION_COLOR = "#006400"  # circular arrow of the antisymmetric part
OUTLINE_COLOR = "#404040"  # ellipse outline
ARROW_COLOR = "black"

# gids of the artists, so tests and users can find them in ``ax.collections``
GID_ELLIPSES = "escnn_tensor.ellipses"
GID_AXES_POS = "escnn_tensor.axes_positive"
GID_AXES_NEG = "escnn_tensor.axes_negative"
GID_ROTATION = "escnn_tensor.rotation"
GID_ROTATION_HEADS = "escnn_tensor.rotation_heads"
GID_Z_CIRCLES = "escnn_tensor.z_circles"
GID_Z_UP = "escnn_tensor.z_dots"
GID_Z_DOWN = "escnn_tensor.z_crosses"

_TINY = 1e-12


# ---- input checks --------------------------------------------------------------------------------------------
def _as_array(data: ArrayLike) -> np.ndarray:
    """A float64 numpy copy of a real torch tensor or numpy array."""
    if isinstance(data, torch.Tensor):
        if data.is_complex():
            raise TypeError(f"data must be real, got a complex tensor of dtype {data.dtype}")
        return data.detach().to("cpu", torch.float64).numpy()
    if isinstance(data, np.ndarray):
        if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)
                or data.dtype == bool):
            raise TypeError(f"data must be a real numeric array, got dtype {data.dtype}")
        return data.astype(np.float64)
    raise TypeError(f"data must be a torch.Tensor or numpy.ndarray, got {type(data).__name__}")


def _image_order(shape: Tuple[int, ...], D: int) -> Tuple[int, int]:
    """``(N, k)`` of an image of shape ``(N,)*D + (D,)*k``; ValueError naming the shape otherwise."""
    expected = f"(N,)*D + (D,)*k = (N,)*{D} + ({D},)*k in grid layout (array axis i along +x_i)"
    if len(shape) < D or len(set(shape[:D])) != 1 or shape[0] == 0:
        raise ValueError(f"data must have shape {expected} with N >= 1, got shape {tuple(shape)} for D={D}")
    if any(s != D for s in shape[D:]):
        raise ValueError(
            f"data must have shape {expected}: its tensor axes after the {D} spatial axes must all have length "
            f"D={D}, got shape {tuple(shape)}"
        )
    return shape[0], len(shape) - D


def field_name(k: int, parity: int) -> str:
    """``'scalar'``, ``'pseudoscalar'``, ``'vector'``, ``'pseudovector'``, ``'order-k tensor'`` or ``'order-k
    pseudotensor'``."""
    if k == 0:
        return "scalar" if parity == 1 else "pseudoscalar"
    if k == 1:
        return "vector" if parity == 1 else "pseudovector"
    return f"order-{k} " + ("tensor" if parity == 1 else "pseudotensor")


def _full_from_symmetric(arr: np.ndarray, D: int, order: int, symmetry: str) -> np.ndarray:
    """Coordinates ``(N,)*D + (n,)`` of symmetric (traceless) order-``order`` tensors -> full tensors
    ``(N,)*D + (D,)*order`` (:func:`escnn_tensor.representations.to_full_tensor`); ValueError naming the shape."""
    n = symmetric_size(D, order, symmetry)
    if arr.ndim != D + 1 or len(set(arr.shape[:D])) != 1 or arr.shape[0] == 0 or arr.shape[-1] != n:
        raise ValueError(
            f"data of a {symmetry} order-{order} tensor image must have shape (N,)*{D} + ({n},) (its {n} coordinates "
            f"in escnn_tensor.representations.symmetric_basis({D}, {order}, {symmetry!r}) on the last axis), got "
            f"shape {tuple(arr.shape)}"
        )
    return to_full_tensor(arr, D, order, symmetry, dim=-1).reshape(arr.shape[:D] + (D,) * order)


def _symmetric_title(symmetry: str, order: int, parity: int) -> str:
    return symmetry.replace("_", " ") + " " + field_name(order, parity)


def _sym_limit(values: np.ndarray, vmax: Optional[float]) -> float:
    """The colour limit ``m`` of ``[-m, m]``: ``vmax`` if given, else the largest finite ``|value|`` (1 if 0)."""
    if vmax is not None:
        if not (isinstance(vmax, (int, float, np.floating, np.integer)) and math.isfinite(vmax) and vmax > 0):
            raise ValueError(f"vmax must be a positive finite number, got {vmax!r}")
        return float(vmax)
    finite = np.abs(values[np.isfinite(values)])
    m = float(finite.max()) if finite.size else 0.0
    return m if m > 0 else 1.0


def _z_slices(N: int, z_slices) -> List[int]:
    if z_slices is None:
        return sorted({int(round(z)) for z in np.linspace(0, N - 1, min(N, 3))})
    if isinstance(z_slices, (int, np.integer)) and not isinstance(z_slices, bool):
        z_slices = [z_slices]
    out = []
    for z in z_slices:
        if not is_integer(z) or not -N <= z < N:
            raise ValueError(f"z_slices must hold integers in [-{N}, {N}) (slice indices along z), got {z!r}")
        out.append(int(z) % N)
    if not out:
        raise ValueError("z_slices must name at least one slice")
    return out


def _zero_non_finite(f: np.ndarray, n_pixel_axes: int) -> np.ndarray:
    """``f`` with every pixel (the first ``n_pixel_axes`` axes) that has a non-finite component set to 0."""
    bad = ~np.isfinite(f.reshape(f.shape[:n_pixel_axes] + (-1,))).all(-1)
    out = f.copy()
    out[bad] = 0.0
    return out


# ---- the pieces ----------------------------------------------------------------------------------------------
class _Layout:
    """Where the panels go: panel ``p`` shows the x-y slice ``z = zs[p]`` (or the 2D image) shifted by ``p*(N+1)``
    along x; glyphs sit on every ``stride``-th pixel."""

    def __init__(self, arr: np.ndarray, D: int, N: int, z_slices, max_glyphs: int):
        self.N = N
        self.zs = [None] if D == 2 else _z_slices(N, z_slices)
        self.slices = [arr if z is None else arr[:, :, z] for z in self.zs]
        self.offsets = [p * (N + 1) for p in range(len(self.zs))]
        if not is_integer(max_glyphs) or max_glyphs < 1:
            raise ValueError(f"max_glyphs must be a positive integer, got {max_glyphs!r}")
        self.stride = max(1, math.ceil(N / max_glyphs))
        self.sites = np.arange(self.stride // 2, N, self.stride)

    def sampled(self, field: np.ndarray) -> np.ndarray:
        """The glyph pixels of one slice: ``(n, n, ...)``; pixels with a non-finite component become 0 (no glyph)."""
        return _zero_non_finite(field[np.ix_(self.sites, self.sites)], 2)

    def centres(self, offset: int) -> Tuple[np.ndarray, np.ndarray]:
        """x, y coordinates ``(n, n)`` of the glyph pixels of the panel at ``offset`` (index ``[i, j]`` = pixel)."""
        X, Y = np.meshgrid(self.sites, self.sites, indexing="ij")
        return X + offset, Y.astype(np.float64)


def _heatmap(ax: Axes, layout: _Layout, fields: Sequence[np.ndarray], cmap: str, vmin: float, vmax: float,
             alpha: float = 1.0):
    im = None
    N = layout.N
    for f, ox in zip(fields, layout.offsets):
        im = ax.imshow(
            f.T, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, alpha=alpha, interpolation="nearest",
            extent=(ox - 0.5, ox + N - 0.5, -0.5, N - 0.5),
        )
    return im


def _arrows(ax: Axes, layout: _Layout, scale: float) -> None:
    """Quiver of the in-plane components; ``scale`` = data value per pixel of arrow length."""
    xs, ys, vs = [], [], []
    for f, ox in zip(layout.slices, layout.offsets):
        x, y = layout.centres(ox)
        xs.append(x.ravel())
        ys.append(y.ravel())
        vs.append(layout.sampled(f)[..., :2].reshape(-1, 2))
    X, Y, (U, V) = np.concatenate(xs), np.concatenate(ys), np.concatenate(vs).T
    w = 0.07 * layout.stride
    ax.quiver(X, Y, U, V, angles="xy", scale_units="xy", scale=scale, pivot="mid", units="xy", width=w,
              headwidth=3.5, headlength=4, headaxislength=3.5, minlength=0, color=ARROW_COLOR, zorder=3)


def _circle(n: int = 33) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n)
    return np.stack([np.cos(t), np.sin(t)], axis=-1)


def _z_marks(ax: Axes, layout: _Layout, scale: float) -> None:
    """Out-of-plane component: circle of radius ``|v_z|/scale``, a dot (``v_z > 0``) or a cross (``v_z < 0``)."""
    circles, dots, crosses = [], [], []
    for f, ox in zip(layout.slices, layout.offsets):
        x, y = layout.centres(ox)
        vz = layout.sampled(f)[..., 2]
        for cx, cy, v in zip(x.ravel(), y.ravel(), vz.ravel()):
            r = abs(v) / scale
            if not r > _TINY:
                continue
            c = np.array([cx, cy])
            circles.append(c + r * _circle())
            if v > 0:
                dots.append(c + 0.25 * r * _circle(13))
            else:
                h = r / math.sqrt(2)
                crosses += [[c + (-h, -h), c + (h, h)], [c + (-h, h), c + (h, -h)]]
    lw = 1.2
    ax.add_collection(LineCollection(circles, colors=ARROW_COLOR, linewidths=lw, gid=GID_Z_CIRCLES, zorder=3))
    ax.add_collection(PolyCollection(dots, facecolors=ARROW_COLOR, edgecolors="none", gid=GID_Z_UP, zorder=3))
    ax.add_collection(LineCollection(crosses, colors=ARROW_COLOR, linewidths=lw, gid=GID_Z_DOWN, zorder=3))


def _tensor_glyphs(ax: Axes, layout: _Layout, blocks: Sequence[np.ndarray], scale: float) -> None:
    """Ellipse, signed principal axes and rotation arrow of every sampled ``2 x 2`` block; lengths ``/ scale``."""
    ellipses, pos, neg, arcs, heads = [], [], [], [], []
    for B, ox in zip(blocks, layout.offsets):
        x, y = layout.centres(ox)
        B = layout.sampled(B).reshape(-1, 2, 2)
        lam, vec = np.linalg.eigh((B + B.transpose(0, 2, 1)) / 2)  # vec[:, :, i] = unit eigenvector i
        w = (B[:, 1, 0] - B[:, 0, 1]) / 2
        for c, l, e, wi in zip(np.stack([x.ravel(), y.ravel()], -1), lam / scale, vec, w / scale):
            if np.abs(l).max() > _TINY:
                ellipses.append(c + _circle() @ (np.abs(l)[:, None] * e.T))
                for li, ei in zip(l, e.T):
                    if abs(li) > _TINY:
                        (pos if li > 0 else neg).append([c - li * ei, c + li * ei])
            if abs(wi) > _TINY:
                arc, head = _rotation_arrow(c, abs(wi), np.sign(wi))
                arcs.append(arc)
                heads.append(head)
    lw = 1.8 if layout.stride == 1 and layout.N <= 12 else 1.2
    ax.add_collection(LineCollection(ellipses, colors=OUTLINE_COLOR, linewidths=0.8, gid=GID_ELLIPSES, zorder=3))
    ax.add_collection(LineCollection(pos, colors=POSITIVE_COLOR, linewidths=lw, gid=GID_AXES_POS, zorder=4))
    ax.add_collection(LineCollection(neg, colors=NEGATIVE_COLOR, linewidths=lw, gid=GID_AXES_NEG, zorder=4))
    ax.add_collection(LineCollection(arcs, colors=ROTATION_COLOR, linewidths=lw, gid=GID_ROTATION, zorder=5))
    ax.add_collection(PolyCollection(heads, facecolors=ROTATION_COLOR, edgecolors="none", gid=GID_ROTATION_HEADS,
                                     zorder=5))


def _rotation_arrow(c: np.ndarray, r: float, sense: float) -> Tuple[np.ndarray, np.ndarray]:
    """A 270-degree arc of radius ``r`` about ``c`` traversed counter-clockwise (``sense > 0``) or clockwise, and
    a triangular arrowhead at its end pointing along the direction of travel."""
    t = np.pi / 2 + sense * np.linspace(0, 1.5 * np.pi, 28)
    arc = c + r * np.stack([np.cos(t), np.sin(t)], -1)
    end = arc[-1]
    tangent = sense * np.array([-np.sin(t[-1]), np.cos(t[-1])])
    normal = np.array([-tangent[1], tangent[0]])
    h = 0.55 * r
    head = np.array([end + h * tangent, end - 0.2 * h * tangent + 0.5 * h * normal,
                     end - 0.2 * h * tangent - 0.5 * h * normal])
    return arc, head


def _colorbar(ax: Axes, im, label: str) -> None:
    cb = ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cb.set_label(label)


def _frame(ax: Axes, layout: _Layout) -> None:
    N = layout.N
    ax.set_xlim(-0.5, layout.offsets[-1] + N - 0.5)
    ax.set_ylim(-0.5, N - 0.5)
    ax.set_aspect("equal")
    ax.set_ylabel("y")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if layout.zs[0] is None:
        ax.set_xlabel("x")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.set_xticks([ox + (N - 1) / 2 for ox in layout.offsets], [f"z = {z}" for z in layout.zs])
        ax.set_xlabel("x (each panel: the x-y slice at the z shown)")


# ---- public API ----------------------------------------------------------------------------------------------
def plot_image(
    data: ArrayLike,
    parity: int,
    D: int,
    ax: Optional[Axes] = None,
    title: Optional[str] = None,
    *,
    cmap: Optional[str] = None,
    vmax: Optional[float] = None,
    colorbar: bool = True,
    z_slices: Union[None, int, Sequence[int]] = None,
    max_glyphs: int = 24,
    symmetry: Optional[str] = None,
    order: int = 2,
) -> Axes:
    r"""Plot one scalar, vector or tensor image (see the module docs for what each order looks like).

    Args:
        data: torch tensor or numpy array of shape ``(N,)*D + (D,)*k`` in grid layout (array axis ``i`` runs
            along ``+x_i``; the trailing ``k`` axes are tensor indices over ``x, y[, z]``). Drawn with ``+x`` to
            the right and ``+y`` up; pixel ``(i, j)`` at the point ``(i, j)``.
        parity: +1 (tensor) or -1 (pseudotensor); only changes the default title.
        D: dimension of space, 2 or 3 (3: ``x-y`` slices side by side).
        ax: Axes to draw into; a new figure is made with the active matplotlib backend if ``None``.
        title: Axes title; default the kind of field (e.g. ``"pseudovector"``), and for ``k >= 3`` a note that
            the norm is shown.
        cmap: colormap of the heatmap (default ``RdBu_r`` for values and traces, ``Purples`` for norms).
        vmax: colour limit; diverging heatmaps use ``[-vmax, vmax]``, norms ``[0, vmax]``. Default: the largest
            ``|value|`` of the whole image (all slices).
        colorbar: add a colour bar.
        z_slices: ``D = 3`` only: the ``z`` index (or indices) of the slices to show; default up to three,
            evenly spaced from the first to the last.
        max_glyphs: at most this many arrows / glyphs along each axis (``stride = ceil(N / max_glyphs)``).
        symmetry: ``None`` (``data`` holds full tensors), or ``'symmetric'`` / ``'symmetric_traceless'``: ``data``
            has shape ``(N,)*D + (n,)``, the ``n`` coordinates of a symmetric (traceless) tensor of order ``order``
            in :func:`escnn_tensor.representations.symmetric_basis` (a field of ``tensor_rep(gs, order, parity,
            symmetry)`` in grid layout; 2D order 2: ``(T_xx, sqrt2 T_xy, T_yy)``), drawn as the full tensor (for
            order 2 the glyphs of a 2-tensor, without a rotation mark: the antisymmetric part is zero); default
            title e.g. ``"symmetric order-2 tensor"``.
        order: the tensor order of such coordinates (default 2; ignored without ``symmetry``).

    Returns:
        The Axes. Artists: heatmaps in ``ax.images``; arrows are a ``Quiver`` in ``ax.collections`` (its ``U, V``
        are ``v_x, v_y``); glyph collections carry the ``gid`` constants of this module.

    Raises:
        TypeError / ValueError: ``data`` is not a real tensor/array of shape ``(N,)*D + (D,)*k``, ``parity``
        is not +1/-1, ``D`` is not 2 or 3, or a keyword is out of range; the message names the argument.
    """
    D = check_dimension(D, "D")
    parity = check_parity(parity)
    symmetry = check_symmetry(symmetry)
    arr = _as_array(data)
    if symmetry is not None:
        order = check_order(order, "order")
        if order < 2:
            raise ValueError(f"order must be >= 2 with symmetry={symmetry!r} (orders 0 and 1 are symmetric), got {order}")
        arr = _full_from_symmetric(arr, D, order, symmetry)
        if title is None:
            title = _symmetric_title(symmetry, order, parity) + (" (x-y slices)" if D == 3 else "")
            if order >= 3:
                title += ": |T| (Frobenius norm) shown"
    N, k = _image_order(arr.shape, D)
    if D == 2 and z_slices is not None:
        raise ValueError(f"z_slices selects slices of 3D images; got z_slices={z_slices!r} for D=2")
    if ax is None:
        import matplotlib.pyplot as plt

        n_panels = 1 if D == 2 else len(_z_slices(N, z_slices))
        _, ax = plt.subplots(figsize=(1.5 + 3.3 * n_panels, 3.8))
    elif not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None, got {type(ax).__name__}")
    layout = _Layout(arr, D, N, z_slices, max_glyphs)
    name = field_name(k, parity)
    if k == 0:
        m = _sym_limit(arr, vmax)
        im = _heatmap(ax, layout, layout.slices, cmap or "RdBu_r", -m, m)
        label = "value"
    elif k == 1:
        norm = np.linalg.norm(arr, axis=-1)
        m = _sym_limit(norm, vmax)
        im = _heatmap(ax, layout, [np.linalg.norm(s, axis=-1) for s in layout.slices], cmap or "Purples", 0, m,
                      alpha=0.65)
        longest = _sym_limit(norm, None)
        _arrows(ax, layout, scale=longest / (0.9 * layout.stride))
        if D == 3:
            _z_marks(ax, layout, scale=longest / (0.4 * layout.stride))
        label = "|v|"
    elif k == 2:
        trace = np.trace(arr, axis1=-2, axis2=-1)
        m = _sym_limit(trace, vmax)
        im = _heatmap(ax, layout, [np.trace(s, axis1=-2, axis2=-1) for s in layout.slices], cmap or "RdBu_r",
                      -m, m, alpha=0.55)
        blocks = [s[..., :2, :2] for s in layout.slices]
        _tensor_glyphs(ax, layout, blocks, scale=_glyph_scale(arr[..., :2, :2]) / (0.45 * layout.stride))
        label = "trace"
    else:
        norm = np.sqrt((arr.reshape(arr.shape[:D] + (-1,)) ** 2).sum(-1))
        m = _sym_limit(norm, vmax)
        im = _heatmap(ax, layout, [np.sqrt((s.reshape(N, N, -1) ** 2).sum(-1)) for s in layout.slices],
                      cmap or "Purples", 0, m)
        name += ": |T| (Frobenius norm) shown"
        label = "|T|"
    if colorbar:
        _colorbar(ax, im, label)
    _frame(ax, layout)
    if D == 3 and title is None:
        name += " (x-y slices)"
    ax.set_title(name if title is None else title)
    return ax


def _glyph_scale(blocks: np.ndarray) -> float:
    """The largest ``|eigenvalue of the symmetric part|`` or ``|w|`` over all ``2 x 2`` blocks (1 if 0)."""
    B = _zero_non_finite(blocks.reshape(-1, 2, 2), 1)
    lam = np.linalg.eigvalsh((B + B.transpose(0, 2, 1)) / 2)
    w = (B[:, 1, 0] - B[:, 0, 1]) / 2
    return _sym_limit(np.concatenate([lam.ravel(), w]), None)


def _infer_D(shapes: List[Tuple[int, ...]]) -> int:
    fits = []
    for D in (2, 3):
        try:
            for s in shapes:
                _image_order(s, D)
            fits.append(D)
        except ValueError:
            pass
    if len(fits) != 1:
        why = "none fits" if not fits else "both D=2 and D=3 fit"
        raise ValueError(
            f"plot_images: cannot tell D from the shapes {shapes} ({why}); every image must have shape "
            f"(N,)*D + (D,)*k with one D for all; pass D=2 or D=3"
        )
    return fits[0]


def plot_images(
    items: Sequence[Tuple],
    ncols: Optional[int] = None,
    *,
    D: Optional[int] = None,
    figsize: Optional[Tuple[float, float]] = None,
    **kwargs,
) -> Figure:
    """Plot several images in a grid of Axes, one per item, with :func:`plot_image`.

    Args:
        items: a non-empty sequence of ``(data, parity)``, ``(data, parity, title)`` (``title`` may be
            ``None`` for the default) or ``(data, parity, title, symmetry)``, every ``data`` in grid layout
            ``(N,)*D + (D,)*k`` with the same ``D`` (``N`` and ``k`` may differ), or, with ``symmetry``
            ``'symmetric'`` / ``'symmetric_traceless'``, the coordinates ``(N,)*D + (n,)`` of symmetric (traceless)
            2-tensors (or of order ``order``, a keyword passed on) as :func:`plot_image` takes them.
        ncols: Axes per row; default ``min(len(items), 4)`` in 2D and ``min(len(items), 2)`` in 3D.
        D: 2 or 3; default: inferred from the shapes (an error if they fit both or neither).
        figsize: default 5 x 3.8 inches per 2D Axes.
        **kwargs: passed to :func:`plot_image` (``cmap``, ``vmax``, ``colorbar``, ``z_slices``, ``max_glyphs``).

    Returns:
        The Figure (made with the active backend); Axes beyond ``len(items)`` are switched off.
    """
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or len(items) == 0:
        raise ValueError(f"items must be a non-empty sequence of (data, parity, title) tuples, got {items!r:.80}")
    order = kwargs.pop("order", 2)
    arrays, titles = [], []
    for i, it in enumerate(items):
        if not isinstance(it, (tuple, list)) or len(it) not in (2, 3, 4):
            raise ValueError(f"items[{i}] must be a (data, parity), (data, parity, title) or (data, parity, title, "
                             f"symmetry) tuple, got {it!r:.80}")
        arr = _as_array(it[0])
        title = it[2] if len(it) >= 3 else None
        if len(it) == 4 and it[3] is not None:  # symmetric coordinates: made full here, so D is inferred as usual
            try:
                symmetry = check_symmetry(it[3])
                order = check_order(order, "order")
                arr = _full_from_symmetric(arr, arr.ndim - 1 if D is None else check_dimension(D, "D"), order, symmetry)
            except (TypeError, ValueError) as err:
                raise ValueError(f"items[{i}]: {err}") from None
            if title is None:
                title = (_symmetric_title(symmetry, order, check_parity(it[1])),)  # completed once D is known
        arrays.append(arr)
        titles.append(title)
    D = _infer_D([a.shape for a in arrays]) if D is None else check_dimension(D, "D")
    suffix = (" (x-y slices)" if D == 3 else "") + (": |T| (Frobenius norm) shown" if order >= 3 else "")
    titles = [t[0] + suffix if isinstance(t, tuple) else t for t in titles]
    if ncols is None:
        ncols = min(len(items), 4 if D == 2 else 2)
    if not is_integer(ncols) or ncols < 1:
        raise ValueError(f"ncols must be a positive integer, got {ncols!r}")
    nrows = math.ceil(len(items) / ncols)
    n_panels = 1 if D == 2 else max(len(_z_slices(a.shape[0], kwargs.get("z_slices"))) for a in arrays)
    if figsize is None:
        figsize = (ncols * (1.9 + 3.1 * n_panels), nrows * 3.8)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=figsize, squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.ravel()):
        if i >= len(items):
            ax.set_axis_off()
            continue
        plot_image(arrays[i], items[i][1], D, ax=ax, title=titles[i], **kwargs)
    return fig
