"""The gravity example (examples/gravity.py, examples/gravity_model.py): the network is equivariant, and
``main(["--quick", ...])`` runs end to end."""
import numpy as np
import pytest
import torch
from escnn.nn import GeometricTensor

from escnn_tensor import hyperoctahedral_gspace
from escnn_tensor.testing import assert_equivariant, random_input

import gravity_model as G  # examples/ is on sys.path (tests/examples/conftest.py)
from escnn_tensor.data import gravity as D


@pytest.fixture(scope="module")
def gspace():
    return hyperoctahedral_gspace(2)


def test_bad_kernel_sizes_are_rejected():
    with pytest.raises(ValueError, match="kernel_sizes"):
        G.GravityNet(kernel_sizes=(9, 4, 9))


def test_network_is_equivariant_in_float64(gspace):
    """GravityNet (GeometricConv + escnn R2Conv + NormNonLinearity) in float64 on a random, non-symmetric input.

    Tolerance 1e-5: escnn's R2Conv samples its steerable basis in float32, so its filters are only equivariant to
    about 1e-7 relative (measured ~2e-7 for this net); the GeometricConv layers are exact.
    """
    torch.manual_seed(5)
    net = G.GravityNet(gspace).double()
    net.set_scales(D.make_dataset(4, 16, generator=torch.Generator().manual_seed(5)))
    net.eval()
    x = random_input(net.in_type, spatial=16, batch=2, generator=torch.Generator().manual_seed(6))
    assert_equivariant(net, x, rtol=1e-5)


def test_double_does_not_leak_into_other_networks(gspace):
    """escnn caches R2Conv bases globally; GravityNet keeps its own, so .double() on one net leaves others float32."""
    a, b = G.GravityNet(gspace), G.GravityNet(gspace)
    a.double()
    x = torch.randn(1, 1, 12, 12)
    assert b(GeometricTensor(x, b.in_type)).tensor.dtype == torch.float32
    assert a(GeometricTensor(x.double(), a.in_type)).tensor.dtype == torch.float64


def test_main_quick_end_to_end(tmp_path, capsys):
    from gravity import main

    png = tmp_path / "sub" / "gravity.png"
    results = main(["--quick", "--no-progress", "--out", str(png), "--seed", "3"])
    out = capsys.readouterr().out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    for line in ("train", "test", "rotated/reflected", "equivariance error", "saved"):
        assert line in out
    eq, cnn = results["equivariant"], results["plain CNN"]
    for r in (eq, cnn):
        assert all(np.isfinite([r["train"], r["test"]])) and len(r["rotated"]) == 8
    # the equivariant model's error on every rotated/reflected test set is the unrotated one (up to float32)
    assert max(abs(e - eq["test"]) for e in eq["rotated"].values()) <= 1e-4 * eq["test"]
    assert eq["equivariance_float32"] < 1e-4 and eq["equivariance_float64"] < 1e-5
    assert cnn["equivariance_float32"] > 1e-3  # a plain CNN is not equivariant: the check can tell
