"""Shared fixtures (the reference constructions and subgroup gspaces are in tests/reference.py)."""
import os

import pytest
import torch


os.environ.setdefault("MPLBACKEND", "Agg")

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
