r"""Two-stage evaluation of ``GeometricConv``: fixed invariant filters per input field, then a pointwise mixing.

Math
----
The kernel from input field ``a`` (type ``t_in``, ``d^{k_in}`` components) to output field ``b`` (type ``t_out``) is
:math:`\kappa_{ba}(s) = \sum_n w_{ban} B_n(s)` with the fixed invariant filters :math:`B_n` (``d^{k_out} x d^{k_in}``
per pixel ``s``) of the type pair. Hence

.. math::

    y_b(x) = \sum_a \sum_n w_{ban}\, z_{an}(x), \qquad z_{an}(x) = \sum_s B_n(s)\, f_a(x + s),

so the layer is (1) a convolution of every input field *separately* with the fixed filters of its type pairs (all
fields of one type form one batch of a small convolution ``d^{k_in} -> n d^{k_out}`` channels), then (2) for each
output component ``o`` the same matrix ``w`` of shape ``(m_out, m_in n)`` applied pointwise (one batched matmul).

Cost per output pixel, in multiply-adds, for ``m_in`` fields of dimension ``D_in`` and ``m_out`` of ``D_out``::

    dense:     m_out D_out  m_in D_in K^d
    stage 1:   m_in  n D_out D_in K^d        (dense taps)
    stage 2:   m_out D_out  m_in n

i.e. a fraction ``n / m_out + n / (D_in K^d)`` of the dense cost (summed over type pairs). The rule that picks the
two-stage path (:func:`prefer_two_stage`, measured in docs/speed.md) asks for 3D and a fraction at most
:data:`TWO_STAGE_MAX_FRACTION`: torch's CPU convolution is much less efficient per multiply-add on the few input
channels of stage 1 than on a dense layer, so the fraction must be small to win (in 2D it did not win at any size
measured with a K=3 kernel). The batch and the fields matter too (torch's Conv3d gains more from a larger batch
than the two-stage path does), which a per-layer rule cannot see; 0.25 separates the 3D layers measured (after the
mixing became one ``bmm`` per type pair): 64 vector fields at 16^3 (fraction 0.22) won at batches 1 and 2, 48
vector fields at batch 2 (0.27) lost by 8%, 32 scalars + 32 vectors at batch 1 (0.28) won by 7% (docs/speed.md).
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ._field_ops import mix_fields

__all__ = ["TWO_STAGE_MAX_FRACTION", "two_stage_fraction", "prefer_two_stage", "build_two_stage", "two_stage_conv"]

TWO_STAGE_MAX_FRACTION: float = 0.25
"""``method='auto'`` uses the two-stage path for 3D layers whose two-stage multiply-adds are at most this fraction of
the dense convolution's (see docs/speed.md for the measurements behind it)."""

METHODS = ("auto", "dense", "two_stage")


def two_stage_fraction(pairs: Sequence[Sequence[tuple]], dim_in: Sequence[int], dim_out: Sequence[int], S: int) -> float:
    """Multiply-adds of the two-stage path over those of the dense convolution, per output pixel.

    ``pairs[to][ti] = (has filters, offset, m_out, m_in, n)`` (the plan of ``KernelExpansionModule``), ``dim_in`` /
    ``dim_out`` the component counts ``d**k`` per type, ``S = K**d``. Stage 1 is counted once per input type (its
    filters for every output type in one convolution).
    """
    dense = stage1 = stage2 = 0
    for to, row in enumerate(pairs):
        for ti, (has, _, m_out, m_in, n) in enumerate(row):
            dense += m_out * dim_out[to] * m_in * dim_in[ti] * S
            if has:
                stage1 += m_in * n * dim_out[to] * dim_in[ti] * S
                stage2 += m_out * dim_out[to] * m_in * n
    return (stage1 + stage2) / max(dense, 1)


def prefer_two_stage(d: int, fraction: float) -> bool:
    """The measured rule: 3D and ``fraction <= TWO_STAGE_MAX_FRACTION``."""
    return d == 3 and fraction <= TWO_STAGE_MAX_FRACTION


def build_two_stage(
    pair_indices: Sequence[Sequence[tuple]], pairs: Sequence[Sequence[tuple]], K: int, d: int
) -> List[torch.Tensor]:
    """The fixed stage-1 filters per input type, float64 ``(sum_to n_{to,ti} D_out[to], D_in[ti], K, .., K)``.

    ``pair_indices[to][ti] = (n, filt, vals)`` from :func:`escnn_tensor.nn._kernel.pair_index` (``filt``/``vals``
    ``(D_out, D_in, K**d)``, escnn's pixel layout). Output channel ``(to, n, o)`` row-major: for each output type in
    turn, the ``n`` filters, each with its ``D_out`` components. Types without filters contribute no channels.
    """
    n_out = len(pair_indices)
    n_in = len(pair_indices[0]) if n_out else 0
    out = []
    for ti in range(n_in):
        blocks = []
        for to in range(n_out):
            n, filt, vals = pair_indices[to][ti]
            if n == 0:
                continue
            Do, Di, S = filt.shape
            w = np.zeros((n, Do, Di, S))
            o, i, s = np.nonzero(filt >= 0)
            w[filt[o, i, s], o, i, s] = vals[o, i, s]
            blocks.append(w.reshape(n * Do, Di, *(K,) * d))
        out.append(torch.from_numpy(np.concatenate(blocks)) if blocks else None)
    return out


def two_stage_conv(
    x: torch.Tensor,
    weights: torch.Tensor,
    stage1: Sequence[torch.Tensor],
    pairs: Sequence[Sequence[tuple]],
    in_channels: Sequence[torch.Tensor],
    dim_in: Sequence[int],
    dim_out: Sequence[int],
    out_order: torch.Tensor,
    stride: int,
    padding: int,
    dilation: int,
) -> torch.Tensor:
    """The layer's convolution (no bias) evaluated in two stages; ``x`` ``(B, C_in, N..)`` already padded if needed.

    ``in_channels[ti]`` lists the input channels of type ``ti`` (fields in order, components in order; ``None``: all
    channels, in order);
    ``out_order`` (or ``None`` if identity) reorders the type-ordered output channels into the out_type's order.
    Returns ``(B, C_out, M..)``.
    """
    d = x.dim() - 2
    conv = F.conv2d if d == 2 else F.conv3d
    B = x.shape[0]
    z_of = []  # per in type: (B, m_in, channels of stage 1, P) or None
    spatial = None
    for ti, chans in enumerate(in_channels):
        w1 = stage1[ti]
        if w1 is None:
            z_of.append(None)
            continue
        m_in = pairs[0][ti][3]
        xi = x if chans is None else x.index_select(1, chans)
        z = conv(xi.reshape((B * m_in, dim_in[ti]) + xi.shape[2:]), w1, None, stride, padding, dilation)
        spatial = z.shape[2:]
        z_of.append(z.reshape(B, m_in, w1.shape[0], -1))
    P = int(np.prod(spatial))
    outs = []
    starts = [0] * len(in_channels)
    for to, row in enumerate(pairs):
        Do = dim_out[to]
        y = None
        m_out = row[0][2]
        for ti, (has, off, _, m_in, n) in enumerate(row):
            if not has:
                continue
            c0 = starts[ti]
            starts[ti] = c0 + n * Do
            z = z_of[ti][:, :, c0 : c0 + n * Do].reshape(B, m_in * n, Do * P)
            w = weights[off : off + m_out * m_in * n].view(m_out, m_in * n)
            term = mix_fields(w, z)  # (B, m_out, Do P)
            y = term if y is None else y + term
        if y is None:
            y = x.new_zeros(B, m_out, Do * P)
        outs.append(y.reshape(B, m_out * Do, P))
    y = torch.cat(outs, 1) if len(outs) > 1 else outs[0]
    if out_order is not None:
        y = y.index_select(1, out_order)
    return y.reshape((B, y.shape[1]) + tuple(spatial))
