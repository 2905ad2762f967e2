r"""Gravity in a periodic box: the data and the model of the main example.

The task: from a scalar mass-density image :math:`\rho` predict the vector gravitational field :math:`g`.

Physics and conventions
-----------------------
* The box is periodic, ``size x size`` pixels, unit pixel spacing, in 2D.
* Units are chosen so that Poisson's equation reads :math:`\nabla^2 \phi = \rho - \bar\rho` (the mean is
  removed, as it must be in a periodic box) and the field is :math:`g = -\nabla \phi`; so Gauss's law is
  :math:`\nabla \cdot g = -(\rho - \bar\rho)` and :math:`g` is curl free.
* The derivatives are *spectral*: :math:`\partial_j \leftrightarrow i\,k_j` with
  :math:`k_j = 2\pi\,\mathrm{fftfreq}(size)`, **with the Nyquist wavenumber set to 0**. (For even ``size`` the
  Nyquist mode :math:`k = -\pi` is its own mirror image, so ``i k`` there cannot be odd under reflection;
  zeroing it makes the operators commute with every symmetry of the square grid. Taking the real part of the
  inverse FFT of a real field would drop that term too; zeroing it says so explicitly.) Poisson is solved with the
  same operators, :math:`\hat\phi = -\hat\rho / (k_x^2 + k_y^2)`, so divergence, curl and Laplacian are exactly
  consistent. The densities made here are band limited (their Nyquist modes are zero), so Gauss's law holds to
  round-off.
* Density: a few point masses on random pixels with random positive masses, smoothed by a periodic Gaussian
  of width ``smoothing`` pixels (applied in Fourier space), then projected off the Nyquist modes.

Array layouts
-------------
Two layouts appear (see :mod:`escnn_tensor.groups`):

* *grid layout* (the physics functions here): a density is ``(..., N, N)`` with array axis ``-2`` along
  **+x** and axis ``-1`` along **+y**; a vector field is ``(..., N, N, 2)`` with component 0 = :math:`g_x`,
  component 1 = :math:`g_y`.
* *escnn layout* (the network; :func:`make_dataset`): ``(B, C, N, N)`` with spatial axes ``(-y, x)``
  (row index grows downwards, column index to the right). The density is one channel (``C = 1``, the trivial
  representation); the field is a vector field, ``C = 2`` with channel 0 = :math:`g_x` and channel 1 =
  :math:`g_y`, which is ``tensor_rep(gspace, 1, +1)`` and transforms by ``group_matrix``.

Models and helpers
------------------
:class:`GravityNet` (GeometricConv, escnn NormNonLinearity and R2Conv; equivariant under D4),
:class:`CNNBaseline` (a plain torch CNN for comparison), :func:`train` / :func:`evaluate` /
:func:`transformed_errors` (the relative MSE, also on every rotated/reflected copy of a data set) and
:func:`plot_example` (density and fields as arrows, +x right, +y up). :mod:`escnn_tensor.examples.main` runs them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from escnn import nn
from escnn.gspaces import GSpace
from escnn.nn import FieldType, GeometricTensor

from ..conv import GeometricConv
from ..groups import escnn_to_grid, grid_to_escnn, group_elements, hyperoctahedral_gspace
from ..representations import tensor_type

__all__ = [
    "derivative_wavenumbers",
    "point_mass_density",
    "gravitational_field",
    "divergence",
    "curl",
    "GravityData",
    "make_dataset",
    "density_type",
    "field_type",
    "field_from_escnn_density",
    "GravityNet",
    "CNNBaseline",
    "num_parameters",
    "predict",
    "relative_mse",
    "train",
    "evaluate",
    "transform_data",
    "transformed_errors",
    "as_equivariant_function",
    "plot_example",
]


# ----------------------------------------------------------------------------------------------------------------
# physics (grid layout, float64)
# ----------------------------------------------------------------------------------------------------------------


def _check_image(x: torch.Tensor, n_trailing: int, name: str) -> int:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {x.dtype}")
    if x.dim() < 2 + n_trailing:
        raise ValueError(f"{name} must have at least {2 + n_trailing} axes, got shape {tuple(x.shape)}")
    n1, n2 = x.shape[x.dim() - n_trailing - 2 : x.dim() - n_trailing]
    if n1 != n2:
        raise ValueError(f"{name} must be a square image (N, N), got spatial shape ({n1}, {n2})")
    if n_trailing == 1 and x.shape[-1] != 2:
        raise ValueError(f"{name} must be a 2D vector field with a last axis of size 2, got shape {tuple(x.shape)}")
    return int(n1)


def derivative_wavenumbers(size: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The 1D wavenumbers of the spectral derivative, :math:`2\pi\,\mathrm{fftfreq}(size)`, Nyquist set to 0.

    Returns a tensor of shape ``(size,)`` in FFT order: :math:`\partial_x f = \mathrm{ifft}(i k\, \hat f)`.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
        raise ValueError(f"size must be an integer >= 2, got {size!r}")
    k = 2 * math.pi * torch.fft.fftfreq(int(size), dtype=dtype)
    if size % 2 == 0:
        k[size // 2] = 0.0
    return k


def _wavevectors(size: int, dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    k = derivative_wavenumbers(size, dtype)
    return k[:, None], k[None, :]  # kx along axis -2 (x), ky along axis -1 (y)


def _nyquist_free(size: int) -> torch.Tensor:
    """Boolean (size, size) mask of the Fourier modes without a Nyquist component (all modes for odd size)."""
    ok = torch.ones(size, dtype=torch.bool)
    if size % 2 == 0:
        ok[size // 2] = False
    return ok[:, None] & ok[None, :]


def point_mass_density(
    n_samples: int,
    size: int = 32,
    n_masses: Tuple[int, int] = (3, 8),
    mass_range: Tuple[float, float] = (0.5, 1.5),
    smoothing: Union[float, Tuple[float, float]] = 1.0,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    r"""Random smoothed point-mass densities, shape ``(n_samples, size, size)``, grid layout, float64.

    Each sample has between ``n_masses[0]`` and ``n_masses[1]`` (inclusive) point masses on random pixels
    (repeats add up), with masses uniform in ``mass_range``; the image is convolved with a periodic Gaussian of
    standard deviation ``smoothing`` pixels (``0`` for none; a pair ``(s_x, s_y)`` for an elongated Gaussian,
    which gives data with a preferred orientation) and its Nyquist modes are removed (so that it is in the range
    of the spectral operators, see the module docs). Total mass is conserved.
    """
    lo, hi = n_masses
    if not (isinstance(n_samples, int) and n_samples >= 1):
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if not (1 <= lo <= hi):
        raise ValueError(f"n_masses must be (min, max) with 1 <= min <= max, got {n_masses!r}")
    sx, sy = (smoothing, smoothing) if np.isscalar(smoothing) else tuple(smoothing)
    if not (sx >= 0 and sy >= 0):
        raise ValueError(f"smoothing must be >= 0 pixels (or a pair of them), got {smoothing!r}")
    counts = torch.randint(lo, hi + 1, (n_samples,), generator=generator)
    points = torch.zeros(n_samples, size * size, dtype=torch.float64)
    for b in range(n_samples):
        pix = torch.randint(0, size * size, (int(counts[b]),), generator=generator)
        m = mass_range[0] + (mass_range[1] - mass_range[0]) * torch.rand(
            int(counts[b]), dtype=torch.float64, generator=generator
        )
        points[b].index_add_(0, pix, m)
    rho_hat = torch.fft.fft2(points.reshape(n_samples, size, size))
    k2 = (2 * math.pi * torch.fft.fftfreq(size, dtype=torch.float64)) ** 2
    gauss = torch.exp(-0.5 * (sx**2 * k2[:, None] + sy**2 * k2[None, :]))  # grid layout: axis -2 is x
    rho_hat = rho_hat * gauss * _nyquist_free(size)
    return torch.fft.ifft2(rho_hat).real


def gravitational_field(density: torch.Tensor) -> torch.Tensor:
    r"""The field :math:`g = -\nabla\phi` with :math:`\nabla^2\phi = \rho - \bar\rho` in the periodic box.

    Args:
        density: ``(..., N, N)`` in grid layout (axis -2 = x, axis -1 = y), real floating point.

    Returns:
        ``(..., N, N, 2)`` in grid layout, last axis ``(g_x, g_y)``, same dtype. Spectral solve, see the
        module docs (modes that the derivative cannot see, i.e. the mean and the Nyquist modes, give no field).
    """
    size = _check_image(density, 0, "density")
    kx, ky = _wavevectors(size, density.dtype)
    k2 = kx**2 + ky**2
    rho_hat = torch.fft.fft2(density)
    phi_hat = torch.where(k2 > 0, -rho_hat / torch.where(k2 > 0, k2, 1.0), 0.0)
    gx = torch.fft.ifft2(-1j * kx * phi_hat).real
    gy = torch.fft.ifft2(-1j * ky * phi_hat).real
    return torch.stack([gx, gy], dim=-1)


def divergence(field: torch.Tensor) -> torch.Tensor:
    r""":math:`\partial_x g_x + \partial_y g_y` of a ``(..., N, N, 2)`` grid-layout field, spectrally."""
    size = _check_image(field, 1, "field")
    kx, ky = _wavevectors(size, field.dtype)
    f = torch.fft.fft2(field.movedim(-1, 0))
    return torch.fft.ifft2(1j * kx * f[0] + 1j * ky * f[1]).real


def curl(field: torch.Tensor) -> torch.Tensor:
    r""":math:`\partial_x g_y - \partial_y g_x` of a ``(..., N, N, 2)`` grid-layout field, spectrally."""
    size = _check_image(field, 1, "field")
    kx, ky = _wavevectors(size, field.dtype)
    f = torch.fft.fft2(field.movedim(-1, 0))
    return torch.fft.ifft2(1j * kx * f[1] - 1j * ky * f[0]).real


# ----------------------------------------------------------------------------------------------------------------
# data set in escnn layout
# ----------------------------------------------------------------------------------------------------------------


def density_type(gspace: GSpace) -> FieldType:
    """The input type: one scalar field (the trivial representation)."""
    return tensor_type(gspace, [(0, 1, 1)])


def field_type(gspace: GSpace) -> FieldType:
    """The output type: one vector field (``tensor_rep(gspace, 1, +1)``; channel 0 = x, channel 1 = y)."""
    return tensor_type(gspace, [(1, 1, 1)])


def field_from_escnn_density(density: torch.Tensor) -> torch.Tensor:
    """:func:`gravitational_field` on escnn layout: ``(B, 1, N, N)`` (axes -y, x) -> ``(B, 2, N, N)`` (gx, gy)."""
    if density.dim() != 4 or density.shape[1] != 1:
        raise ValueError(f"density must have shape (B, 1, N, N) in escnn layout, got {tuple(density.shape)}")
    rho = escnn_to_grid(density[:, 0], 2)
    g = gravitational_field(rho)  # (B, N, N, 2) grid layout
    return grid_to_escnn(g, 2, n_trailing=1).movedim(-1, 1).contiguous()


@dataclass
class GravityData:
    """A data set in escnn layout, float64.

    Attributes:
        density: ``(B, 1, N, N)``, axes ``(-y, x)``.
        field: ``(B, 2, N, N)``, channel 0 = :math:`g_x`, channel 1 = :math:`g_y`.
    """

    density: torch.Tensor
    field: torch.Tensor

    def __len__(self) -> int:
        return self.density.shape[0]


def make_dataset(n_samples: int, size: int = 32, generator: Optional[torch.Generator] = None, **density_kwargs) -> GravityData:
    """``n_samples`` densities (:func:`point_mass_density`) and their fields, in escnn layout, float64."""
    rho = point_mass_density(n_samples, size, generator=generator, **density_kwargs)
    density = grid_to_escnn(rho, 2)[:, None].contiguous()
    return GravityData(density=density, field=field_from_escnn_density(density))


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
