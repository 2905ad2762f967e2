r"""Models, training and plotting of the gravity example (run by ``examples/gravity.py``).

The data (point-mass densities and their fields) come from :mod:`escnn_tensor.data.gravity`. Here:
:class:`GravityNet` (GeometricConv, escnn NormNonLinearity and R2Conv; equivariant under D4),
:class:`CNNBaseline` (a plain torch CNN for comparison), :func:`train` / :func:`evaluate` /
:func:`transformed_errors` (the relative MSE, also on every rotated/reflected copy of a data set) and
:func:`plot_example` (density and fields as arrows, +x right, +y up).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from escnn import nn
from escnn.gspaces import GSpace
from escnn.nn import FieldType, GeometricTensor

from escnn_tensor import GeometricConv, hyperoctahedral_gspace, tensor_type
from escnn_tensor.groups import group_elements
from escnn_tensor.data.gravity import GravityData, density_type, field_type


# ----------------------------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------------------------


def _hidden_type(gspace: GSpace, scalars: int, vectors: int) -> FieldType:
    return tensor_type(gspace, [(0, 1, scalars), (1, 1, vectors)])


def _nonlinearity(gspace: GSpace, scalars: int, vectors: int, bias: float = 0.05) -> nn.EquivariantModule:
    """escnn's norm-ReLU on every field: ``f -> relu(|f| - b) f / |f|`` (a scalar keeps its sign).

    The learnable thresholds ``b > 0`` start at ``bias`` (escnn's default is 1, which on unit-size features
    switches most of them off at the start; a small threshold starts the network close to linear, like the
    target map, and trains much faster here).
    """
    module = nn.NormNonLinearity(_hidden_type(gspace, scalars, vectors), "n_relu")
    with torch.no_grad():
        module.log_bias.fill_(math.log(bias))  # escnn parametrises b = exp(log_bias)
    return module


class GravityNet(nn.EquivariantModule):
    r"""Density (one scalar field) -> gravitational field (one vector field): GeometricConv and escnn layers.

    Layers (all convolutions with ``'circular'`` padding, as the box is periodic, and "same" output size)::

        x -> (x - spatial mean(x)) / density_scale                         # fixed, equivariant
          -> GeometricConv(scalar -> S scalars + V vectors, k1)           # escnn_tensor
          -> escnn NormNonLinearity (norm-ReLU on every field, thresholds start at 0.05)
          -> escnn R2Conv(S scalars + V vectors -> S scalars + V vectors, k2)
          -> the same nonlinearity
          -> GeometricConv(S scalars + V vectors -> 1 vector, k3)          # escnn_tensor
          -> * field_scale                                                # fixed

    Every layer is equivariant under ``gspace``'s group, so the whole network is: ``net(g.x) = g.net(x)``.
    The GeometricConv layers are exactly equivariant; escnn's R2Conv samples its steerable basis on the grid in
    float32, good to about 1e-7 relative. (escnn's GatedNonLinearity1 would be the natural gate, but it writes
    its output in float32 whatever the input dtype, so a float64 copy of the network would fail; so would escnn's
    MultipleModule / MergeModule. NormNonLinearity keeps the dtype.) ``density_scale`` and ``field_scale`` are
    buffers (set them with :meth:`set_scales`) so that the trainable part sees numbers of order one.

    Args:
        gspace: default ``hyperoctahedral_gspace(2)`` (D4); any accepted 2D gspace works.
        scalars, vectors: the hidden fields ``S`` and ``V``.
        kernel_sizes: ``(k1, k2, k3)``, odd (so that "same" padding ``k // 2`` keeps the grid centred).

    Input ``GeometricTensor`` of type :attr:`in_type`, shape ``(B, 1, N, N)``; output of type
    :attr:`out_type`, ``(B, 2, N, N)`` (channel 0 = x, 1 = y; escnn layout).
    """

    def __init__(
        self,
        gspace: Optional[GSpace] = None,
        scalars: int = 8,
        vectors: int = 8,
        kernel_sizes: Sequence[int] = (9, 5, 9),
    ):
        super().__init__()
        gspace = hyperoctahedral_gspace(2) if gspace is None else gspace
        if gspace.dimensionality != 2:
            raise ValueError(f"gspace must act on R^2 (the example is 2D), got {gspace.name}")
        kernel_sizes = tuple(kernel_sizes)
        if len(kernel_sizes) != 3 or not all(isinstance(k, int) and k >= 1 and k % 2 == 1 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes must be three odd positive integers, got {kernel_sizes!r}")
        for name, m in (("scalars", scalars), ("vectors", vectors)):
            if not (isinstance(m, int) and m >= 1):
                raise ValueError(f"{name} must be a positive integer, got {m!r}")
        k1, k2, k3 = kernel_sizes
        self.in_type = density_type(gspace)
        self.out_type = field_type(gspace)
        hidden = _hidden_type(gspace, scalars, vectors)
        self.body = nn.SequentialModule(
            GeometricConv(self.in_type, hidden, k1, padding=k1 // 2, padding_mode="circular"),
            _nonlinearity(gspace, scalars, vectors),
            # recompute=True: escnn otherwise shares one cached basis module between all R2Convs of the same
            # types, so .double() on one network would turn every other network's R2Conv basis to float64
            nn.R2Conv(hidden, hidden, k2, padding=k2 // 2, padding_mode="circular", recompute=True),
            _nonlinearity(gspace, scalars, vectors),
            GeometricConv(hidden, self.out_type, k3, padding=k3 // 2, padding_mode="circular"),
        )
        self.register_buffer("density_scale", torch.tensor(1.0))
        self.register_buffer("field_scale", torch.tensor(1.0))

    def set_scales(self, data: GravityData) -> None:
        """Set the fixed input/output scales to the RMS of the (mean-free) densities and of the fields of ``data``."""
        rho = data.density - data.density.mean(dim=(-2, -1), keepdim=True)
        self.density_scale.fill_(rho.pow(2).mean().sqrt().item())
        self.field_scale.fill_(data.field.pow(2).mean().sqrt().item())

    def forward(self, x: GeometricTensor) -> GeometricTensor:
        if x.type != self.in_type:
            raise ValueError(f"GravityNet expects a GeometricTensor of type {self.in_type}, got {x.type}")
        t = (x.tensor - x.tensor.mean(dim=(-2, -1), keepdim=True)) / self.density_scale
        y = self.body(GeometricTensor(t, self.in_type))
        return GeometricTensor(y.tensor * self.field_scale, self.out_type)

    def evaluate_output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return (input_shape[0], self.out_type.size) + tuple(input_shape[2:])


class CNNBaseline(torch.nn.Module):
    """A plain (not equivariant) torch CNN with the same layout as :class:`GravityNet`, for comparison.

    ``Conv2d(1 -> C, k1) -> ELU -> Conv2d(C -> C, k2) -> ELU -> Conv2d(C -> 2, k3)``, circular padding, with the
    same fixed input/output scaling. Maps ``(B, 1, N, N)`` to ``(B, 2, N, N)`` tensors (escnn layout).
    """

    def __init__(self, channels: int = 6, kernel_sizes: Sequence[int] = (9, 5, 9)):
        super().__init__()
        k1, k2, k3 = kernel_sizes
        conv = lambda a, b, k: torch.nn.Conv2d(a, b, k, padding=k // 2, padding_mode="circular")  # noqa: E731
        self.body = torch.nn.Sequential(
            conv(1, channels, k1), torch.nn.ELU(), conv(channels, channels, k2), torch.nn.ELU(), conv(channels, 2, k3)
        )
        self.register_buffer("density_scale", torch.tensor(1.0))
        self.register_buffer("field_scale", torch.tensor(1.0))

    set_scales = GravityNet.set_scales

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = (x - x.mean(dim=(-2, -1), keepdim=True)) / self.density_scale
        return self.body(t) * self.field_scale


def num_parameters(model: torch.nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------------------------
# training and evaluation (both kinds of model, on escnn-layout tensors)
# ----------------------------------------------------------------------------------------------------------------


def predict(model: torch.nn.Module, density: torch.Tensor) -> torch.Tensor:
    """``(B, 1, N, N)`` density -> ``(B, 2, N, N)`` field tensor, for a :class:`GravityNet` or a plain module."""
    if isinstance(model, nn.EquivariantModule):
        return model(GeometricTensor(density, model.in_type)).tensor
    return model(density)


def relative_mse(prediction: torch.Tensor, target: torch.Tensor) -> float:
    r"""Relative squared error over a whole set: :math:`\sum |p - t|^2 / \sum |t|^2`."""
    return ((prediction - target).pow(2).sum() / target.pow(2).sum()).item()


def train(
    model: torch.nn.Module,
    data: GravityData,
    epochs: int,
    batch_size: int = 16,
    lr: float = 1e-2,
    generator: Optional[torch.Generator] = None,
    progress: Optional[Callable] = None,
    desc: str = "train",
) -> list:
    """Train ``model`` with Adam on the relative MSE of each batch; returns the mean loss of every epoch.

    The data are cast to the model's dtype. ``progress`` is a tqdm-like factory (``progress(iterable,
    desc=..., ...)``) or ``None`` for no progress bar. The learning rate decays by cosine to 0.
    """
    dtype = next(model.parameters()).dtype
    x, y = data.density.to(dtype), data.field.to(dtype)
    n = len(data)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = epochs * math.ceil(n / batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    epoch_iter = range(epochs) if progress is None else progress(range(epochs), desc=desc, unit="epoch")
    history = []
    model.train()
    for _ in epoch_iter:
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = ((predict(model, x[idx]) - y[idx]).pow(2).sum() / y[idx].pow(2).sum())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        history.append(total / n)
        if hasattr(epoch_iter, "set_postfix"):
            epoch_iter.set_postfix(loss=f"{history[-1]:.4f}")
    model.eval()
    return history


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: GravityData) -> float:
    """Relative MSE of ``model`` on ``data`` (eval mode, no gradients)."""
    model.eval()
    dtype = next(model.parameters()).dtype
    return relative_mse(predict(model, data.density.to(dtype)), data.field.to(dtype))


def transform_data(data: GravityData, g, gspace: GSpace) -> GravityData:
    """The data set moved by the group element ``g``: density as a scalar field, field as a vector field."""
    rho = GeometricTensor(data.density, density_type(gspace)).transform(g).tensor
    field = GeometricTensor(data.field, field_type(gspace)).transform(g).tensor
    return GravityData(density=rho, field=field)


@torch.no_grad()
def transformed_errors(model: torch.nn.Module, data: GravityData, gspace: GSpace) -> dict:
    """``{g: relative MSE of model(g.x) against g.target}`` for every element ``g`` of the group."""
    return {g: evaluate(model, transform_data(data, g, gspace)) for g in group_elements(gspace)}


def as_equivariant_function(model: torch.nn.Module, gspace: GSpace) -> Callable[[GeometricTensor], GeometricTensor]:
    """``model`` as a map of GeometricTensors (density type -> field type), for escnn_tensor.testing."""
    out_type = field_type(gspace)

    @torch.no_grad()
    def f(x: GeometricTensor) -> GeometricTensor:
        return GeometricTensor(predict(model, x.tensor), out_type)

    return f


# ----------------------------------------------------------------------------------------------------------------
# plotting
# ----------------------------------------------------------------------------------------------------------------


def plot_example(
    density: torch.Tensor,
    target: torch.Tensor,
    predictions: dict,
    path: Optional[str] = None,
    stride: int = 2,
    density_title: str = "input: mass density",
):
    """Plot one sample: density, target field and predicted fields (arrows), +x right, +y up.

    Args:
        density: ``(1, N, N)`` or ``(N, N)``, escnn layout (rows along -y, columns along +x).
        target: ``(2, N, N)``, escnn layout, channel 0 = x, 1 = y.
        predictions: ``{title: (2, N, N) tensor}``.
        path: where to save the PNG (directories are created); ``None`` to only return the figure.
        stride: draw an arrow every ``stride`` pixels.
        density_title: title of the first panel.

    Returns:
        the matplotlib ``Figure``.
    """
    import matplotlib.pyplot as plt  # without a display, matplotlib falls back to the Agg backend by itself

    rho = density.reshape(density.shape[-2:]).detach().cpu().double().numpy()
    n = rho.shape[-1]
    panels = [("target field", target)] + list(predictions.items())
    fig, axes = plt.subplots(1, 1 + len(panels), figsize=(4.2 * (1 + len(panels)), 4.4))
    extent = (-0.5, n - 0.5, -0.5, n - 0.5)  # row 0 of escnn layout is the top (largest y)
    axes[0].imshow(rho, extent=extent, origin="upper", cmap="magma")
    axes[0].set_title(density_title)
    cols, rows = np.meshgrid(np.arange(n), np.arange(n))
    xs, ys = cols, n - 1 - rows  # pixel (row r, col c) sits at x = c, y = n-1-r
    sel = (slice(stride // 2, None, stride), slice(stride // 2, None, stride))
    vmax = float(target.pow(2).sum(0).sqrt().max())
    scale = vmax / (1.5 * stride) if vmax > 0 else None  # the longest target arrow spans 1.5 strides
    for ax, (title, field) in zip(axes[1:], panels):
        f = field.detach().cpu().double().numpy()
        ax.imshow(rho, extent=extent, origin="upper", cmap="Greys", alpha=0.35)
        ax.quiver(xs[sel], ys[sel], f[0][sel], f[1][sel], color="tab:blue", angles="xy", scale_units="xy",
                  scale=scale, width=0.006)
        ax.set_title(title)
    for ax in axes:
        ax.set_xlim(-0.5, n - 0.5)
        ax.set_ylim(-0.5, n - 0.5)
        ax.set_aspect("equal")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    fig.tight_layout()
    if path is not None:
        import os

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig
