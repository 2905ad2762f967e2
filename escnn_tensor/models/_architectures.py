r"""ResNet, DilResNet and UNet for tensor fields, in three families (the architectures of ginjax's ``models``).

The block structure, depths and defaults follow ginjax (``ginjax.models``); what differs is said in each class.
Every convolution is a 'same' convolution of odd ``kernel_size`` (``padding = dilation (K - 1) / 2``), so all
three architectures keep the spatial size. In ginjax the encoder/decoder convolutions of the non-equivariant
models are 1x1; here every family uses ``kernel_size`` there too, because an equivariant 1x1 convolution cannot
change the tensor order of a field (it could not map the input scalars to vectors) and the three families should
have the same structure.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

import torch

from ._base import TensorFieldModel, _positive_int
from ._families import Chain, Family

__all__ = ["ResNet", "DilResNet", "UNet"]


def _seq(*layers: Optional[torch.nn.Module]) -> torch.nn.Sequential:
    """The layers that are not None, in order, as a :class:`Chain` (a ``Sequential`` fusing norm -> gate pairs)."""
    return Chain(*[m for m in layers if m is not None])


def _conv_block(fam: Family, a, b, kernel_size: int, dilation: int = 1) -> List:
    """Post-activation block ``conv -> [norm] -> act`` (ginjax's ConvBlock in its default order)."""
    return [fam.conv(a, b, kernel_size, dilation), fam.norm(b), fam.act(b)]


class ResNet(TensorFieldModel):
    r"""Residual network with pre-activation blocks (ginjax ``ResNet``; He et al. 2016's identity mappings).

    Structure (``H`` = hidden spec, ``K`` = ``kernel_size``)::

        encoder: conv(in -> H) -> act -> conv(H -> H) -> act
        num_blocks x:  x + [norm -> act -> conv(H -> H)] x num_conv      (pre-activation residual block)
        decoder: conv(H -> H) -> act -> conv(H -> out)

    Options: ``num_blocks=8``, ``num_conv=2`` (ginjax's defaults), ``norm='batch'`` (ginjax uses a layer/group norm;
    batch norm is the norm all three families have: TensorBatchNorm / escnn InnerBatchNorm / BatchNorm), and the
    common options of :class:`TensorFieldModel`.
    """

    OPTIONS = {"num_blocks": 8, "num_conv": 2, "norm": "batch", "activation": "elu"}

    @classmethod
    def _check_architecture_options(cls, o):
        o["num_blocks"] = _positive_int(o["num_blocks"], "num_blocks", 0)
        o["num_conv"] = _positive_int(o["num_conv"], "num_conv")

    def _build(self, fam: Family) -> None:
        K, H = self.options["kernel_size"], fam.hidden()
        self.encoder = _seq(*_conv_block(fam, fam.input(), H, K), *_conv_block(fam, H, H, K))
        self.blocks = torch.nn.ModuleList(
            _seq(*[m for _ in range(self.options["num_conv"]) for m in (fam.norm(H), fam.act(H), fam.conv(H, H, K))])
            for _ in range(self.options["num_blocks"])
        )
        self.decoder = _seq(*_conv_block(fam, H, H, K), fam.conv(H, fam.output(), K))

    def _forward(self, t):
        t = self.encoder(t)
        for block in self.blocks:
            t = t + block(t)
        return self.decoder(t)


class DilResNet(TensorFieldModel):
    r"""Dilated residual network (ginjax ``DilResNet``; Stachenfeld et al. 2022, "Learned coarse models").

    Structure::

        encoder: conv(in -> H) -> act -> conv(H -> H) -> act
        num_blocks x:  x + [conv_dilation(H -> H) -> [norm] -> act] for dilation in 1, 2, 4, 8, 4, 2, 1
        decoder: conv(H -> H) -> act -> conv(H -> out)

    Options: ``num_blocks=4``, ``dilations=(1, 2, 4, 8, 4, 2, 1)``, ``norm=None``, ``activation='relu'``
    (ginjax's defaults). With ``padding_mode='circular'`` a dilated kernel wraps around; the grid must be at least
    as large as the padding ``dilation (K - 1) / 2`` (torch's rule for circular padding).
    """

    OPTIONS = {"num_blocks": 4, "dilations": (1, 2, 4, 8, 4, 2, 1), "norm": None, "activation": "relu"}

    @classmethod
    def _check_architecture_options(cls, o):
        o["num_blocks"] = _positive_int(o["num_blocks"], "num_blocks", 0)
        dil = o["dilations"]
        if isinstance(dil, (str, bytes)) or not isinstance(dil, Sequence) or len(dil) == 0:
            raise TypeError(f"dilations must be a non-empty sequence of integers >= 1, got {dil!r}")
        o["dilations"] = tuple(_positive_int(x, "dilations") for x in dil)

    def _build(self, fam: Family) -> None:
        K, H = self.options["kernel_size"], fam.hidden()
        self.encoder = _seq(*_conv_block(fam, fam.input(), H, K), *_conv_block(fam, H, H, K))
        self.blocks = torch.nn.ModuleList(
            _seq(*[m for dil in self.options["dilations"] for m in _conv_block(fam, H, H, K, dil)])
            for _ in range(self.options["num_blocks"])
        )
        self.decoder = _seq(*_conv_block(fam, H, H, K), fam.conv(H, fam.output(), K))

    def _check_spatial(self, spatial):
        if self.options["padding_mode"] != "circular":
            return
        pad = max(self.options["dilations"]) * (self.options["kernel_size"] - 1) // 2
        if any(n < pad for n in spatial):
            raise ValueError(
                f"input size {spatial} is smaller than the circular padding {pad} of the largest dilation "
                f"{max(self.options['dilations'])} (kernel_size {self.options['kernel_size']}); use a larger grid "
                f"or smaller dilations"
            )

    def _forward(self, t):
        t = self.encoder(t)
        for block in self.blocks:
            t = t + block(t)
        return self.decoder(t)


class UNet(TensorFieldModel):
    r"""U-Net (Ronneberger et al. 2015) as in ginjax ``UNet``: pooling down, transposed convolutions up, skips.

    Structure (``H_l`` = hidden spec with every multiplicity times ``2^l``)::

        embedding: [conv -> [norm] -> act] x num_conv                              in -> H_0
        down, l = 1..L:  pool(2) -> [conv -> [norm] -> act] x num_conv            H_{l-1} -> H_l
        up, l = L-1..0:  upsample(H_{l+1} -> H_l), concatenate the skip (H_l + H_l),
                         [conv -> [norm] -> act] x num_conv                        -> H_l
        decode: conv(H_0 -> out)

    Pooling: NormMaxPool (geometric; the field value at the pixel of largest norm in each 2^d patch), escnn's
    PointwiseMaxPool (steerable), MaxPool (plain). Upsampling: GeometricConvTransposed with kernel 2 and stride 2
    (geometric), ConvTranspose with kernel 2 and stride 2 (plain), and for the steerable family escnn's nearest
    R2Upsampling/R3Upsampling followed by a kernel-3 convolution (escnn's R2ConvTransposed has no basis at kernel
    size 2). Options: ``num_downsamples=4`` (``L``), ``num_conv=2``, ``norm=None`` (ginjax's defaults). The grid
    side must be divisible by ``2^L``.
    """

    OPTIONS = {"num_downsamples": 4, "num_conv": 2, "norm": None, "activation": "elu"}

    @classmethod
    def _check_architecture_options(cls, o):
        o["num_downsamples"] = _positive_int(o["num_downsamples"], "num_downsamples", 0)
        o["num_conv"] = _positive_int(o["num_conv"], "num_conv")

    def _build(self, fam: Family) -> None:
        K, L, n = self.options["kernel_size"], self.options["num_downsamples"], self.options["num_conv"]
        H = [fam.hidden(2**level) for level in range(L + 1)]

        def convs(a, b):
            return [m for i in range(n) for m in _conv_block(fam, a if i == 0 else b, b, K)]

        self.embedding = _seq(*convs(fam.input(), H[0]))
        self.down = torch.nn.ModuleList(_seq(fam.pool(H[lv - 1]), *convs(H[lv - 1], H[lv])) for lv in range(1, L + 1))
        self.upsample = torch.nn.ModuleList(fam.upsample(H[lv + 1], H[lv]) for lv in reversed(range(L)))
        self.up = torch.nn.ModuleList(_seq(*convs(fam.cat(H[lv], H[lv]), H[lv])) for lv in reversed(range(L)))
        self.decode = fam.conv(H[0], fam.output(), K)

    def _max_scale(self) -> int:
        return 2 ** self.options["num_downsamples"]

    def _check_spatial(self, spatial):
        m = 2 ** self.options["num_downsamples"]
        if any(n % m for n in spatial):
            raise ValueError(
                f"UNet with num_downsamples={self.options['num_downsamples']} needs every side of the grid divisible "
                f"by {m} (it pools by 2 that many times), got input size {spatial}"
            )

    def _forward(self, t):
        t = self.embedding(t)
        skips = []
        for down in self.down:
            skips.append(t)
            t = down(t)
        for upsample, up in zip(self.upsample, self.up):
            t = up(torch.cat([upsample(t), skips.pop()], dim=1))
        return self.decode(t)
