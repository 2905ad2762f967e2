"""DistributedDataParallel (gloo, 2 processes on this machine) trains exactly as one process does on the whole batch
(float64): a network of GeometricConv, escnn R2Conv and nonlinearities, and a model of the geometric and of the
steerable family of escnn_tensor.models.

The steerable model is built without batch norm: escnn's InnerBatchNorm takes its statistics over the batch *of each
process* under DDP (as torch's BatchNorm does without SyncBatchNorm), so with it two processes on half batches do not
compute the same function as one process on the whole batch. TensorBatchNorm synchronises its statistics across the
processes (as SyncBatchNorm does): the geometric ResNet with batch norm trains as one process does, running
statistics included (to 1e-9)."""
import copy
import io
import os
import queue
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from escnn import nn as enn

import escnn_tensor as et
from escnn_tensor.models import ResNet
from escnn_tensor.nn import GeometricConv
from escnn_tensor.nn._isolate import isolate
from escnn_tensor.testing import random_input

STEPS = 3
WORLD = 2
BATCH = 4  # global batch, split in WORLD equal parts
LR = 0.05
TIMEOUT = 300  # seconds without a result before the test fails

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")


def build_model(family, seed=0, norm=None):
    gs = et.hyperoctahedral_gspace(2)
    t_in = et.tensor_type(gs, [(0, 1, 1), (1, 1, 1)])
    t_out = et.tensor_type(gs, [(1, 1, 1), (0, -1, 1)])
    torch.manual_seed(seed)
    if norm is None:
        norm = "layer" if family == "geometric" else None
    model = ResNet(t_in, t_out, family, width=1, num_blocks=1, norm=norm).double()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-zero biases and shifts, so that every parameter takes part
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return model


NETWORKS = {
    "escnn and escnn_tensor layers": lambda: build_network(),
    "geometric ResNet": lambda: build_model("geometric"),
    "geometric ResNet, synchronised TensorBatchNorm": lambda: build_model("geometric", norm="batch"),
    "steerable ResNet": lambda: build_model("steerable"),
}


def build_network(seed=0):
    gs = et.hyperoctahedral_gspace(2)
    t_in = et.tensor_type(gs, [(0, 1, 1), (1, 1, 1)])
    t_mid = et.tensor_type(gs, [(0, 1, 2), (1, 1, 1), (2, -1, 1)])
    reg = enn.FieldType(gs, [gs.regular_repr])
    torch.manual_seed(seed)
    net = enn.SequentialModule(
        GeometricConv(t_in, t_mid, 3, padding=1),
        enn.NormNonLinearity(t_mid),
        enn.R2Conv(t_mid, reg, 3, padding=1),
        enn.ReLU(reg),
        enn.R2Conv(reg, t_mid, 3, padding=1),
        GeometricConv(t_mid, t_in, 3, padding=1),
    )
    return isolate(net).double()


def batches(net):
    gen = torch.Generator().manual_seed(1)
    return [
        (
            random_input(net.in_type, 7, BATCH, torch.float64, gen).tensor,
            random_input(net.out_type, 7, BATCH, torch.float64, gen).tensor,
        )
        for _ in range(STEPS)
    ]


def train(model, data, rank=0, world=1):
    """STEPS SGD steps on the mean squared error; each rank takes its contiguous share of every global batch."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    share = BATCH // world
    for x, target in data:
        x, target = x[rank * share : (rank + 1) * share], target[rank * share : (rank + 1) * share]
        opt.zero_grad()
        out = model(enn.GeometricTensor(x, model.module.in_type if world > 1 else model.in_type))
        loss = ((out.tensor - target) ** 2).mean()
        loss.backward()
        opt.step()


def _worker(rank, port, net, data, results):
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(net)
        train(ddp, data, rank, WORLD)
        buf = io.BytesIO()
        torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, buf)
        results.put((rank, buf.getvalue()))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", list(NETWORKS))
def test_ddp_two_processes_equals_one_process(name):
    net = NETWORKS[name]()
    data = batches(net)
    reference = copy.deepcopy(net)
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    train(reference, data)

    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, copy.deepcopy(net), data, results)) for r in range(WORLD)]
    for p in procs:
        p.start()
    got = {}
    try:  # poll: a worker that dies (e.g. an import error in the fresh interpreter) fails the test, never hangs it
        waited, dead_polls = 0.0, 0
        while len(got) < WORLD:
            try:
                rank, state = results.get(timeout=1.0)
            except queue.Empty:
                waited += 1.0
                dead = [r for r, p in enumerate(procs) if r not in got and not p.is_alive()]
                dead_polls = dead_polls + 1 if dead else 0  # (a result put just before exiting arrives meanwhile)
                if dead_polls >= 3 or waited > TIMEOUT:
                    codes = [p.exitcode for p in procs]
                    pytest.fail(f"DDP workers {dead or 'all'} gave no result (exit codes {codes})")
                continue
            got[rank] = torch.load(io.BytesIO(state), weights_only=True)
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
                p.join()
    assert all(p.exitcode == 0 for p in procs)

    expected = reference.state_dict()
    changed = 0
    for k, v in expected.items():
        for rank in range(WORLD):
            tol = dict(rtol=1e-9, atol=1e-12) if "batch norm" in name or "BatchNorm" in name else dict(rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(got[rank][k], v, **tol, msg=f"rank {rank}: {k}")
        changed += not torch.equal(v, initial[k])
    n_params = len(dict(net.named_parameters()))
    assert changed >= max(3, n_params // 2), (changed, n_params)  # most parameters moved (the convolutions' at least)
