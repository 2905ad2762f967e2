"""Plots of symmetric and symmetric traceless tensor images (issue 17): coordinates in the symmetric basis are drawn
as the full tensors they stand for (the 2-tensor glyphs, no rotation mark), coordinates written here by hand from the
definition of the basis; the glyphs move with every group element acting through the symmetric representation;
plot_images and MultiImage.plot (via from_geometric_tensor) take them; bad shapes are refused in one line."""
import itertools

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import escnn_tensor as et
from escnn_tensor import plotting
from escnn_tensor.groups import group_elements, group_matrices, hyperoctahedral_gspace
from escnn_tensor.image import from_geometric_tensor
from escnn_tensor.plotting import plot_image, plot_images
from escnn_tensor.testing import random_input
from tests.test_plotting import _assert_not_blank, _axes_region, _gid, _glyph_summary, _random, _save


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _symmetric_2d(N, seed):
    """Random symmetric 2D 2-tensors (N, N, 2, 2) and their coordinates (T_xx, sqrt2 T_xy, T_yy), by hand."""
    A = _random((N, N, 2, 2), seed=seed)
    T = (A + np.swapaxes(A, -1, -2)) / 2
    coords = np.stack([T[..., 0, 0], np.sqrt(2) * T[..., 0, 1], T[..., 1, 1]], axis=-1)
    return T, coords


def test_symmetric_coordinates_draw_the_glyphs_of_the_full_tensor(tmp_path):
    T, coords = _symmetric_2d(5, seed=1)
    ax = plot_image(coords, 1, 2, symmetry="symmetric")
    assert ax.get_title() == "symmetric order-2 tensor"
    ref = plot_image(T, 1, 2)
    assert _glyph_summary(ax) == _glyph_summary(ref)
    assert len(_gid(ax, plotting.GID_ROTATION).get_segments()) == 0  # symmetric: no rotation marks
    assert len(_gid(ax, plotting.GID_ELLIPSES).get_segments()) == 25
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), np.trace(T, axis1=-2, axis2=-1).T, atol=1e-14)
    img = _save(ax.figure, tmp_path / "sym.png")
    _assert_not_blank(img, _axes_region(img, ax.figure, ax))


def test_traceless_coordinates_draw_the_traceless_part():
    """2D traceless basis: ((T_xx - T_yy)/sqrt2, sqrt2 T_xy); the glyphs are those of T - (tr T / 2) I and the
    trace heatmap is zero."""
    T, _ = _symmetric_2d(4, seed=2)
    dev = T - np.trace(T, axis1=-2, axis2=-1)[..., None, None] * np.eye(2) / 2
    coords = np.stack([(T[..., 0, 0] - T[..., 1, 1]) / np.sqrt(2), np.sqrt(2) * T[..., 0, 1]], axis=-1)
    ax = plot_image(torch.from_numpy(coords), -1, 2, symmetry="symmetric_traceless")
    assert ax.get_title() == "symmetric traceless order-2 pseudotensor"
    assert _glyph_summary(ax) == _glyph_summary(plot_image(dev, -1, 2))
    assert np.abs(np.asarray(ax.images[0].get_array())).max() < 1e-14


def test_3d_symmetric_and_order_3():
    N = 3
    A = _random((N, N, N, 3, 3), seed=4)
    T = (A + np.swapaxes(A, -1, -2)) / 2
    i, j = np.triu_indices(3)  # the symmetric basis order xx, xy, xz, yy, yz, zz, off-diagonal times sqrt2
    coords = T[..., i, j] * np.where(i == j, 1.0, np.sqrt(2))
    ax = plot_image(coords, 1, 3, symmetry="symmetric", z_slices=[1], colorbar=False)
    assert ax.get_title() == "symmetric order-2 tensor (x-y slices)"
    assert _glyph_summary(ax) == _glyph_summary(plot_image(T, 1, 3, z_slices=[1], colorbar=False))
    # order 3: the Frobenius norm of the full tensor, which the orthonormal coordinates keep
    c3 = _random((N, N, N, 10), seed=5)
    ax = plot_image(c3, 1, 3, symmetry="symmetric", order=3, z_slices=[0], colorbar=False)
    assert "Frobenius" in ax.get_title()
    np.testing.assert_allclose(np.asarray(ax.images[0].get_array()), np.linalg.norm(c3[:, :, 0], axis=-1).T,
                               atol=1e-13)


def test_symmetric_glyphs_move_with_the_image_for_every_group_element():
    """Acting with g through the symmetric representation's own matrices (coordinates c -> R(g) c, pixels moved by
    M) moves every glyph by M, as for full tensors."""
    gs = hyperoctahedral_gspace(2)
    rep = et.tensor_rep(gs, 2, 1, "symmetric")
    N, c = 5, 2.0
    _, coords = _symmetric_2d(N, seed=6)
    before = plot_image(coords, 1, 2, symmetry="symmetric", colorbar=False)
    elements, mats = group_elements(gs), group_matrices(gs).astype(float)
    assert len(elements) == 8
    for g, M in zip(elements, mats):
        R = rep(g)
        moved = np.zeros_like(coords)
        for i, j in itertools.product(range(N), repeat=2):
            a = M @ np.array([i - c, j - c]) + c
            moved[int(round(a[0])), int(round(a[1]))] = R @ coords[i, j]
        after = plot_image(moved, 1, 2, symmetry="symmetric", colorbar=False)
        assert _glyph_summary(after) == _glyph_summary(before, M, c), M
        plt.close(after.figure)


def test_plot_images_and_multi_image_plot_take_symmetric_fields():
    T, coords = _symmetric_2d(4, seed=7)
    fig = plot_images([(_random((4, 4)), 1), (coords, 1, None, "symmetric"), (coords[..., :2], -1, "t", "symmetric_traceless")])
    titles = [a.get_title() for a in fig.axes if a.get_title()]
    assert titles == ["scalar", "symmetric order-2 tensor", "t"]
    assert _glyph_summary(fig.axes[1]) == _glyph_summary(plot_image(T, 1, 2))
    # a GeometricTensor with symmetric fields -> MultiImage of full tensors -> its plot: symmetric glyphs
    gs = hyperoctahedral_gspace(2)
    ft = et.tensor_type(gs, [(0, 1, 1), (2, 1, 1, "symmetric")])
    mi = from_geometric_tensor(random_input(ft, spatial=4, batch=1, generator=torch.Generator().manual_seed(8)))
    fig = mi.plot(batch=0)
    tensor_axes = [a for a in fig.axes if any(c.get_gid() == plotting.GID_ELLIPSES for c in a.collections)]
    assert len(tensor_axes) == 1
    assert len(_gid(tensor_axes[0], plotting.GID_ELLIPSES).get_segments()) == 16
    assert len(_gid(tensor_axes[0], plotting.GID_ROTATION).get_segments()) == 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(data=np.zeros((4, 4, 4)), symmetry="symmetric"), r"symmetric order-2 tensor image must have shape \(N,\)\*2 \+ \(3,\).*\(4, 4, 4\)"),
    (dict(data=np.zeros((4, 4, 3)), symmetry="skew"), r"symmetry must be one of"),
    (dict(data=np.zeros((4, 4, 3)), symmetry="symmetric", order=1), r"order must be >= 2"),
    (dict(data=np.zeros((4, 4, 3)), symmetry="symmetric", order=-1), r"order.*non-negative"),
])
def test_bad_symmetric_input(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        plot_image(parity=1, D=2, **kwargs)
    if "order" not in kwargs and kwargs["symmetry"] == "symmetric":
        with pytest.raises(ValueError, match=r"items\[1\].*must have shape"):
            plot_images([(np.zeros((4, 4)), 1), (kwargs["data"], 1, None, "symmetric")], D=2)
