"""Shared fixtures: the gspaces the tests run over (full groups and escnn subgroups of B_d)."""
import os

import numpy as np
import pytest
import torch
from escnn import gspaces

os.environ.setdefault("MPLBACKEND", "Agg")

# name -> factory; every one is a subgroup of B_d acting by signed permutation matrices
SUBGROUP_GSPACES_2D = {
    "C4": lambda: gspaces.rot2dOnR2(N=4),
    "C2": lambda: gspaces.rot2dOnR2(N=2),
    "flip_x": lambda: gspaces.flip2dOnR2(axis=0.0),
    "flip_y": lambda: gspaces.flip2dOnR2(axis=np.pi / 2),
    "flip_diag": lambda: gspaces.flip2dOnR2(axis=np.pi / 4),
    "D2": lambda: gspaces.flipRot2dOnR2(N=2),
    "trivial2": lambda: gspaces.trivialOnR2(),
}
SUBGROUP_GSPACES_3D = {
    "O": lambda: gspaces.octaOnR3(),
    "C4z": lambda: gspaces.rot2dOnR3(n=4),
    "D4z": lambda: gspaces.dihedralOnR3(n=4),
    "C4v": lambda: gspaces.conicalOnR3(n=4),
    "D4h": lambda: gspaces.fullCylindricalOnR3(n=4),
    "mirror": lambda: gspaces.mirOnR3(),
    "inversion": lambda: gspaces.invOnR3(),
    "trivial3": lambda: gspaces.trivialOnR3(),
}


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """One intra-op thread for the whole suite (restored after).

    The tests run many tiny convolutions and einsums; on a 2-core machine OpenMP's thread hand-off costs far more
    than it saves there (measured: tiny conv3d calls ~40x slower with 2 threads when the machine is busy).
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
