"""Plots of scalar, vector and tensor images: every case renders a non-blank PNG, the orientation convention
(+x right, +y up) holds in the pixels, and the drawn glyphs are the geometry of the data."""
import importlib
import itertools
import os
import subprocess
import sys

import matplotlib
import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.quiver import Quiver

from escnn_tensor import plotting
from escnn_tensor.groups import group_matrices, hyperoctahedral_gspace
from escnn_tensor.plotting import plot_image, plot_images

DPI = 60


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _random(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape)


def _save(fig, path):
    fig.savefig(path, dpi=DPI)
    assert path.exists() and path.stat().st_size > 0
    return mpimg.imread(str(path))[..., :3]


def _axes_region(img, fig, ax):
    """The pixels of the PNG that lie inside ``ax`` (PNG row 0 is the top); call after savefig (layout done)."""
    box = ax.get_window_extent().transformed(fig.dpi_scale_trans.inverted())  # inches
    H, W = img.shape[:2]
    s = H / fig.get_figheight()
    r0, r1 = int(np.ceil(H - box.y1 * s)) + 1, int(np.floor(H - box.y0 * s)) - 1
    c0, c1 = int(np.ceil(box.x0 * s)) + 1, int(np.floor(box.x1 * s)) - 1
    return img[r0:r1, c0:c1]


def _assert_not_blank(img, region):
    assert img.std() > 0.05, "the PNG is (nearly) one colour"
    colours = np.unique((region.reshape(-1, 3) * 255).round().astype(np.int64), axis=0)
    assert len(colours) > 10, f"only {len(colours)} colours inside the axes"


def _gid(ax, gid):
    found = [c for c in ax.collections if c.get_gid() == gid]
    assert len(found) == 1, gid
    return found[0]


def _quiver(ax):
    q = [c for c in ax.collections if isinstance(c, Quiver)]
    assert len(q) == 1
    return q[0]


# ---- every case renders --------------------------------------------------------------------------------------
CASES = [(D, k, p, N) for D in (2, 3) for k in (0, 1, 2, 3) for p, N in ((1, 5 if D == 2 else 3), (-1, 4))]


@pytest.mark.parametrize("D,k,parity,N", CASES, ids=[f"D{D}-k{k}-p{p:+d}-N{N}" for D, k, p, N in CASES])
def test_every_case_renders_a_png_with_content(D, k, parity, N, tmp_path):
    data = _random((N,) * D + (D,) * k, seed=10 * k + N)
    ax = plot_image(torch.tensor(data), parity, D)
    img = _save(ax.figure, tmp_path / "case.png")
    _assert_not_blank(img, _axes_region(img, ax.figure, ax))

    title = ax.get_title()
    assert ("pseudo" in title) == (parity == -1)
    assert title.startswith(["scalar", "vector", "order-2", "order-3"][k] if parity == 1 else
                            ["pseudoscalar", "pseudovector", "order-2", "order-3"][k])
    zs = sorted({0, (N - 1) // 2 if N == 3 else 2, N - 1}) if D == 3 else [None]  # first, middle, last
    assert len(ax.images) == len(zs)
    shown = [data if z is None else data[:, :, z] for z in zs]
    if k == 0:
        m = np.abs(data).max()
        for im, s in zip(ax.images, shown):
            assert im.get_clim() == pytest.approx((-m, m))  # symmetric colour limits about 0
            np.testing.assert_allclose(np.asarray(im.get_array()), s.T)  # row = y, column = x
    if k == 1:
        q = _quiver(ax)
        np.testing.assert_allclose(q.U, np.concatenate([s[..., 0].ravel() for s in shown]))
        np.testing.assert_allclose(q.V, np.concatenate([s[..., 1].ravel() for s in shown]))
    if k == 2:
        assert len(_gid(ax, plotting.GID_ELLIPSES).get_segments()) == N * N * len(zs)
    if k == 3:
        assert "norm" in title
        for im, s in zip(ax.images, shown):
            np.testing.assert_allclose(np.asarray(im.get_array()), np.sqrt((s**2).sum(axis=(-3, -2, -1))).T)
    if D == 3:
        assert [t.get_text() for t in ax.get_xticklabels()] == [f"z = {z}" for z in zs]


# ---- orientation: +x right, +y up ----------------------------------------------------------------------------
@pytest.mark.parametrize("D", [2, 3])
@pytest.mark.parametrize("axis", [0, 1])
def test_scalar_heatmap_orientation_in_the_png(D, axis, tmp_path):
    """f = coordinate along x (or y): the red (positive) end must be on the right (or at the top) of the PNG."""
    N = 7
    f = np.moveaxis(np.broadcast_to(np.arange(N) - 3.0, (N,) * D), -1, axis)  # f[i, j(, z)] = i - 3 or j - 3
    fig, ax = plt.subplots(figsize=(4, 4))
    plot_image(f, 1, D, ax=ax, colorbar=False, z_slices=[3] if D == 3 else None)
    region = _axes_region(_save(fig, tmp_path / "f.png"), fig, ax)
    red = region[..., 0] - region[..., 2]  # RdBu_r: > 0 red (positive), < 0 blue (negative)
    profile = red.mean(axis=0) if axis == 0 else red.mean(axis=1)[::-1]  # along +x / along +y (PNG rows go down)
    q = len(profile) // 4
    assert profile[:q].mean() < -0.3 and profile[-q:].mean() > 0.3, profile


@pytest.mark.parametrize("direction", [(1, 0), (0, 1), (-1, 0), (0, -1)])
def test_arrow_points_the_right_way_in_the_png(direction, tmp_path):
    """A single arrow: the arrowhead (most dark pixels) lies on the side the vector points to."""
    N = 3
    v = np.zeros((N, N, 2))
    v[1, 1] = direction
    fig, ax = plt.subplots(figsize=(4, 4))
    plot_image(v, 1, 2, ax=ax, colorbar=False)
    region = _axes_region(_save(fig, tmp_path / "v.png"), fig, ax)
    rows, cols = np.nonzero(region.max(axis=-1) < 0.15)  # black arrow pixels
    assert len(rows) > 20
    centre_r, centre_c = (region.shape[0] - 1) / 2, (region.shape[1] - 1) / 2
    dx, dy = cols.mean() - centre_c, -(rows.mean() - centre_r)  # PNG rows grow downwards
    assert np.sign(np.round([dx, dy], 0)).tolist() == list(direction), (dx, dy)


def test_vector_arrows_sit_on_their_pixels():
    """Quiver positions are the pixel coordinates (x, y) = array index (i, j); components are (v_x, v_y)."""
    v = np.zeros((4, 4, 2))
    v[1, 3] = (0.0, 2.0)  # pixel x=1, y=3 points +y
    v[2, 0] = (-1.0, 0.0)  # pixel x=2, y=0 points -x
    q = _quiver(plot_image(v, 1, 2))
    nonzero = {(float(x), float(y)): (float(u), float(w))
               for x, y, u, w in zip(q.X, q.Y, q.U, q.V) if (u, w) != (0, 0)}
    assert nonzero == {(1.0, 3.0): (0.0, 2.0), (2.0, 0.0): (-1.0, 0.0)}
    ax = q.axes
    assert ax.get_xlim()[0] < ax.get_xlim()[1] and ax.get_ylim()[0] < ax.get_ylim()[1]


def test_vectors_are_subsampled_on_large_images():
    N = 50
    v = np.zeros((N, N, 2))
    v[..., 0] = 1.0
    q = _quiver(plot_image(v, 1, 2, max_glyphs=10))  # stride 5: sites 2, 7, ..., 47
    assert len(q.U) == 100 and set(np.asarray(q.X).tolist()) == set(range(2, N, 5))
    np.testing.assert_array_equal(q.U, 1.0)
    np.testing.assert_array_equal(q.V, 0.0)


@pytest.mark.parametrize("sign,gid", [(1, plotting.GID_Z_UP), (-1, plotting.GID_Z_DOWN)])
def test_3d_out_of_plane_component(sign, gid):
    """v = +z (-z) everywhere: no in-plane arrow length, a dot (cross) and a circle on every shown pixel."""
    N = 3
    v = np.zeros((N, N, N, 3))
    v[..., 2] = sign * 1.5
    ax = plot_image(v, 1, 3, z_slices=1)
    q = _quiver(ax)
    np.testing.assert_array_equal(q.U, 0.0)
    np.testing.assert_array_equal(q.V, 0.0)
    circles = _gid(ax, plotting.GID_Z_CIRCLES).get_segments()
    centres = sorted(tuple(np.round(c.mean(axis=0), 9)) for c in (s[:-1] for s in circles))
    assert centres == sorted((float(i), float(j)) for i in range(N) for j in range(N))
    other = plotting.GID_Z_DOWN if sign > 0 else plotting.GID_Z_UP
    assert len(_gid(ax, gid).get_paths()) > 0 and len(_gid(ax, other).get_paths()) == 0


# ---- tensor glyphs -------------------------------------------------------------------------------------------
def _one_tensor(T, N=3, at=(1, 1)):
    data = np.zeros((N, N, 2, 2))
    data[at] = T
    return plot_image(data, 1, 2)


def _directions(ax, gid):
    return [(s[1] - s[0]) / np.linalg.norm(s[1] - s[0]) for s in _gid(ax, gid).get_segments()]


def _eig_case(angle, l_pos, l_neg):
    e = np.array([np.cos(angle), np.sin(angle)])
    f = np.array([-e[1], e[0]])
    return l_pos * np.outer(e, e) + l_neg * np.outer(f, f), e, f


@pytest.mark.parametrize("angle,l_pos,l_neg", [(np.pi / 4, 1.0, -1.0), (0.0, 2.0, -1.0), (np.pi / 6, 1.0, -0.5),
                                               (2.0, 0.3, -1.2)])
def test_glyph_axes_follow_eigenvectors_and_signs(angle, l_pos, l_neg):
    """S = l_pos e e^T + l_neg f f^T (e at ``angle`` from +x, f = e turned by 90 degrees): a dark-red bar of
    half-length 0.45 l_pos / max|l| along e and a dark-blue one along f, both centred on the pixel."""
    T, e, f = _eig_case(angle, l_pos, l_neg)
    ax = _one_tensor(T)
    (pos,), (neg,) = _gid(ax, plotting.GID_AXES_POS).get_segments(), _gid(ax, plotting.GID_AXES_NEG).get_segments()
    m = max(abs(l_pos), abs(l_neg))
    for seg, direction, lam in ((pos, e, l_pos), (neg, f, l_neg)):
        half = (seg[1] - seg[0]) / 2
        assert abs(half @ direction) == pytest.approx(0.45 * abs(lam) / m)
        assert half @ np.array([-direction[1], direction[0]]) == pytest.approx(0, abs=1e-12)
        np.testing.assert_allclose(seg.mean(axis=0), [1, 1], atol=1e-12)  # centred on pixel (1, 1)
    assert len(_gid(ax, plotting.GID_ROTATION).get_segments()) == 0  # symmetric: no rotation mark


def test_glyph_ellipse_axes_are_the_eigenvalues():
    """T = diag(2, 0.5): ellipse 4x wider (x) than tall (y); the largest eigenvalue is 0.45 pixel."""
    ax = _one_tensor(np.diag([2.0, 0.5]), at=(2, 0))
    (ell,) = _gid(ax, plotting.GID_ELLIPSES).get_segments()
    (w, h) = ell.max(axis=0) - ell.min(axis=0)
    assert w == pytest.approx(2 * 0.45) and h == pytest.approx(2 * 0.45 / 4)
    np.testing.assert_allclose((ell.max(axis=0) + ell.min(axis=0)) / 2, [2, 0], atol=1e-12)


def _orientation(polyline, centre):
    """Sign of the winding of ``polyline`` about ``centre``: +1 counter-clockwise."""
    a, b = polyline[:-1] - centre, polyline[1:] - centre
    return np.sign((a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum())


@pytest.mark.parametrize("w", [1.0, -1.0])
def test_rotation_mark_winds_with_the_antisymmetric_part(w):
    """T = w [[0, -1], [1, 0]] generates a rotation counter-clockwise for w > 0: the arc winds that way and its
    arrowhead points along the direction of travel."""
    ax = _one_tensor(w * np.array([[0.0, -1.0], [1.0, 0.0]]))
    (arc,) = _gid(ax, plotting.GID_ROTATION).get_segments()
    assert _orientation(arc, np.array([1.0, 1.0])) == np.sign(w)
    (head,) = [p.vertices[:3] for p in _gid(ax, plotting.GID_ROTATION_HEADS).get_paths()]
    travel = arc[-1] - arc[-2]
    assert (head.mean(axis=0) - arc[-1]) @ travel > 0
    assert len(_gid(ax, plotting.GID_AXES_POS).get_segments()) == 0  # no symmetric part: no bars


def _circumcentre(a, b, c):
    A = 2 * np.array([b - a, c - a])
    return np.linalg.solve(A, [b @ b - a @ a, c @ c - a @ a])


def _glyph_summary(ax, M=None, c=0.0):
    """The glyphs as geometric objects, optionally moved by x -> M (x - c) + c: bars as unordered endpoint
    pairs, ellipses as (centre, second-moment matrix), arcs as (centre, radius, winding)."""
    M = np.eye(2) if M is None else M
    move = lambda p: (p - c) @ M.T + c  # noqa: E731
    out = {}
    for gid in (plotting.GID_AXES_POS, plotting.GID_AXES_NEG):
        out[gid] = sorted(tuple(np.round(sorted(map(tuple, move(s))), 8).ravel()) for s in _gid(ax, gid).get_segments())
    ells = []
    for e in _gid(ax, plotting.GID_ELLIPSES).get_segments():
        p = move(e[:-1])
        q = p - p.mean(axis=0)
        ells.append(tuple(np.round(np.concatenate([p.mean(axis=0), (q.T @ q).ravel() / len(q)]), 8)))
    out["ellipses"] = sorted(ells)
    arcs = []
    for a in _gid(ax, plotting.GID_ROTATION).get_segments():
        p = move(a)
        ctr = _circumcentre(p[0], p[len(p) // 2], p[-1])
        arcs.append(tuple(np.round([*ctr, np.linalg.norm(p[0] - ctr), _orientation(p, ctr)], 8)))
    out["arcs"] = sorted(arcs)
    return out


def test_tensor_glyphs_move_with_the_image_for_every_group_element():
    """For a true 2-tensor image T, acting with g (T'(M a) = M T(a) M^T, about the grid centre) must move every
    drawn glyph by M: rotations rotate them, reflections mirror them (and reverse the rotation arrows)."""
    N, c = 5, 2.0
    T = _random((N, N, 2, 2), seed=3)
    before = plot_image(T, 1, 2, colorbar=False)
    for M in group_matrices(hyperoctahedral_gspace(2)).astype(float):
        moved = np.zeros_like(T)
        for i, j in itertools.product(range(N), repeat=2):
            a = M @ np.array([i - c, j - c]) + c
            moved[int(round(a[0])), int(round(a[1]))] = M @ T[i, j] @ M.T
        after = plot_image(moved, 1, 2, colorbar=False)
        assert _glyph_summary(after) == _glyph_summary(before, M, c), M
        plt.close(after.figure)


def test_3d_tensor_shows_in_plane_block_and_full_trace():
    """3D 2-tensors: heatmap = full trace; glyphs = those of the 2D plot of the in-plane block T[:2, :2]."""
    N = 3
    T = _random((N, N, N, 3, 3), seed=5)
    T[0, 0, 2, 0, 0] = 100.0  # the largest glyph of the whole image lies in the shown slice: same glyph scale
    ax = plot_image(T, -1, 3, z_slices=[2], colorbar=False)
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), np.trace(T[:, :, 2], axis1=-2, axis2=-1).T)
    ref = plot_image(np.ascontiguousarray(T[:, :, 2, :2, :2]), -1, 2, colorbar=False)
    assert _glyph_summary(ax) == _glyph_summary(ref)
    assert len(_glyph_summary(ax)["arcs"]) == N * N


# ---- 3D slices and keywords ----------------------------------------------------------------------------------
def test_3d_slices_show_the_chosen_z():
    N = 4
    f = np.broadcast_to(np.arange(N, dtype=float), (N, N, N))  # f[i, j, z] = z
    ax = plot_image(f, 1, 3, z_slices=[3, -4, 1])
    for im, z in zip(ax.images, [3, 0, 1]):
        np.testing.assert_array_equal(np.asarray(im.get_array()), z)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["z = 3", "z = 0", "z = 1"]
    assert ax.get_title() == "scalar (x-y slices)"


def test_vmax_cmap_title_and_torch_input():
    f = torch.tensor(_random((5, 5)), dtype=torch.float32, requires_grad=True)
    ax = plot_image(f, -1, 2, title="mine", vmax=2.5, cmap="PuOr")
    (im,) = ax.images
    assert im.get_clim() == (-2.5, 2.5) and im.get_cmap().name == "PuOr" and ax.get_title() == "mine"
    np.testing.assert_allclose(np.asarray(im.get_array()), f.detach().numpy().T, rtol=1e-7)


def test_zero_image_still_plots():
    ax = plot_image(np.zeros((4, 4, 2, 2)), 1, 2)
    assert ax.images[0].get_clim() == (-1.0, 1.0)
    assert len(_gid(ax, plotting.GID_ELLIPSES).get_segments()) == 0


def test_non_finite_pixels_get_no_glyph_and_do_not_set_the_colour_limits():
    T = _random((4, 4, 2, 2), seed=7)
    T[1, 2, 0, 1] = np.nan
    T[3, 3, 0, 0] = np.inf
    ax = plot_image(T, 1, 2)
    assert len(_gid(ax, plotting.GID_ELLIPSES).get_segments()) == 16 - 2
    finite = np.trace(T, axis1=-2, axis2=-1)
    m = np.abs(finite[np.isfinite(finite)]).max()
    assert ax.images[0].get_clim() == pytest.approx((-m, m))


# ---- plot_images ---------------------------------------------------------------------------------------------
def test_plot_images_grid(tmp_path):
    items = [(_random((6, 6)), 1, "a"), (_random((6, 6, 2)), -1, "b"), (_random((6, 6, 2, 2)), 1),
             (torch.randn(6, 6, 2, 2, 2), -1, None), (_random((6, 6, 2)), 1, "e")]
    fig = plot_images(items, ncols=3)
    used = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in used] == ["a", "b", "order-2 tensor", "order-3 pseudotensor: |T| (Frobenius "
                                               "norm) shown", "e"]
    assert sum(not ax.axison for ax in fig.axes) == 1  # 2 x 3 grid, one Axes switched off
    img = _save(fig, tmp_path / "grid.png")
    assert img.std() > 0.05


def test_plot_images_infers_or_takes_D():
    fig = plot_images([(_random((3, 3, 3)), 1, None)])  # only D=3 fits (D=2 needs a trailing axis of 2)
    assert "x-y slices" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="pass D=2 or D=3"):
        plot_images([(_random((2, 2, 2)), 1)])  # a 2D vector image or a 3D scalar image
    fig = plot_images([(_random((2, 2, 2)), 1)], D=2)
    assert fig.axes[0].get_title() == "vector"
    with pytest.raises(ValueError, match="pass D=2 or D=3"):
        plot_images([(_random((4, 4)), 1), (_random((4, 4, 4)), 1)])  # mixed D


def test_geometric_image_and_multi_image_plot_use_these_functions():
    """Integration with escnn_tensor.images: GeometricImage.plot -> plot_image, MultiImage.plot -> plot_images."""
    from escnn_tensor.image import GeometricImage, MultiImage

    v = torch.randn(5, 5, 2, dtype=torch.float64)
    ax = GeometricImage(v, -1, 2).plot()
    assert ax.get_title() == "pseudovector"
    np.testing.assert_array_equal(_quiver(ax).U, v[..., 0].numpy().ravel())
    mi = MultiImage({(0, 1): torch.randn(2, 2, 5, 5, dtype=torch.float64),
                     (1, -1): torch.randn(2, 1, 5, 5, 2, dtype=torch.float64)}, D=2)
    fig = mi.plot(batch=1)
    used = [a for a in fig.axes if a.get_title()]
    assert len(used) == 3
    np.testing.assert_array_equal(np.asarray(used[1].images[0].get_array()), mi[(0, 1)][1, 1].numpy().T)


# ---- bad input -----------------------------------------------------------------------------------------------
BAD = [
    (dict(data=np.zeros((4, 4, 3)), parity=1, D=2), ValueError, r"length D=2.*\(4, 4, 3\)"),
    (dict(data=np.zeros((4, 5)), parity=1, D=2), ValueError, r"shape \(N,\)\*D.*\(4, 5\)"),
    (dict(data=np.zeros((4, 4)), parity=1, D=3), ValueError, r"D=3"),
    (dict(data=np.zeros((0, 0)), parity=1, D=2), ValueError, r"N >= 1"),
    (dict(data=np.zeros((4, 4)), parity=0, D=2), ValueError, r"parity.*ginjax"),
    (dict(data=np.zeros((4, 4)), parity=True, D=2), TypeError, r"parity"),
    (dict(data=np.zeros((4, 4)), parity=1, D=4), ValueError, r"D must be 2 or 3"),
    (dict(data=np.zeros((4, 4)), parity=1, D=2.0), TypeError, r"D must be"),
    (dict(data=[[0.0]], parity=1, D=2), TypeError, r"data must be a torch.Tensor or numpy.ndarray"),
    (dict(data=np.zeros((4, 4), complex), parity=1, D=2), TypeError, r"real"),
    (dict(data=torch.zeros(4, 4, dtype=torch.complex64), parity=1, D=2), TypeError, r"real"),
    (dict(data=np.zeros((4, 4)), parity=1, D=2, vmax=-1), ValueError, r"vmax"),
    (dict(data=np.zeros((4, 4)), parity=1, D=2, z_slices=0), ValueError, r"z_slices.*D=2"),
    (dict(data=np.zeros((4, 4, 4)), parity=1, D=3, z_slices=[4]), ValueError, r"z_slices"),
    (dict(data=np.zeros((4, 4)), parity=1, D=2, max_glyphs=0), ValueError, r"max_glyphs"),
    (dict(data=np.zeros((4, 4)), parity=1, D=2, ax="axes"), TypeError, r"ax must be"),
]


@pytest.mark.parametrize("kwargs,exc,match", BAD, ids=[m for _, _, m in BAD])
def test_bad_input_raises_clearly(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        plot_image(**kwargs)


@pytest.mark.parametrize("items,match", [([], "non-empty"), ([np.zeros((3, 3))], r"items\[0\]"),
                                         ([(np.zeros((3, 3)), 1, "t", 4)], r"items\[0\]")])
def test_plot_images_bad_items(items, match):
    with pytest.raises(ValueError, match=match):
        plot_images(items)


# ---- backends ------------------------------------------------------------------------------------------------
def test_import_and_plot_keep_the_chosen_backend():
    """The module never selects a backend: with 'pdf' chosen, importing it and plotting leaves 'pdf'."""
    before = matplotlib.get_backend()
    try:
        plt.switch_backend("pdf")
        importlib.reload(plotting)
        plotting.plot_image(np.ones((3, 3)), 1, 2)
        assert matplotlib.get_backend().lower() == "pdf"
    finally:
        plt.switch_backend(before)
        importlib.reload(plotting)


def test_works_headless_without_a_chosen_backend(tmp_path):
    """In a fresh process with no display and no MPLBACKEND, plotting works (matplotlib falls back to Agg)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "MPLBACKEND")}
    script = (
        "import numpy as np, matplotlib\n"
        "from escnn_tensor.plotting import plot_image\n"
        "ax = plot_image(np.random.default_rng(0).normal(size=(5, 5, 2)), -1, 2)\n"
        f"ax.figure.savefig({str(tmp_path / 'h.png')!r})\n"
        "print(matplotlib.get_backend())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().lower() == "agg"
    assert mpimg.imread(str(tmp_path / "h.png")).std() > 0.05
