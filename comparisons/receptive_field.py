"""Receptive field of the harness's geometric ResNets on gravity: the support of d output(centre pixel) / d input.

The default profile (32x32 grids, 20,000 parameters, 4 residual blocks) against the longer run (16x16, 6,000
parameters, 2 blocks); the gravitational field is a non-local map of the density, so a model that does not see the
whole periodic box cannot represent it exactly (docs/head_to_head.md, the default profile). Usage (seconds)::

    python comparisons/receptive_field.py
"""
import torch
from escnn.nn import GeometricTensor

import escnn_tensor as et
from escnn_tensor.data import get_task
from escnn_tensor.models import ResNet


def receptive_field(model, in_type, size: int):
    """Extent (pixels per axis) of the input pixels that the output at the centre pixel depends on."""
    x = torch.randn(1, in_type.size, size, size, dtype=torch.float64, requires_grad=True)
    y = model(GeometricTensor(x, in_type)).tensor
    y[0, :, size // 2, size // 2].sum().backward()
    nz = (x.grad.abs().sum(dim=(0, 1)) > 0).nonzero()
    return (nz.max(0).values - nz.min(0).values + 1).tolist()


def main() -> None:
    torch.set_num_threads(1)
    task = get_task("gravity")
    gs = et.hyperoctahedral_gspace(2)
    for size, params, blocks in ((32, 20000, 4), (16, 6000, 2)):
        torch.manual_seed(0)
        model = ResNet(task.in_type(gs), task.out_type(gs), "geometric", params=params, num_blocks=blocks)
        model = model.double().eval()
        convs = [m for m in model.modules() if "Conv" in type(m).__name__ and hasattr(m, "kernel_size")]
        ext = receptive_field(model, task.in_type(gs), size)
        print(f"{size}x{size}, {blocks} blocks, {sum(p.numel() for p in model.parameters())} parameters, "
              f"{len(convs)} convolutions of kernel size {sorted({str(m.kernel_size) for m in convs})}: "
              f"receptive field {ext[0]}x{ext[1]} pixels of the {size}x{size} box")


if __name__ == "__main__":
    main()
