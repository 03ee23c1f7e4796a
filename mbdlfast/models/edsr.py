"""EDSR without upsampling: the CNN prior of the published MRI DEQ (Lim et al., 2017, body only).

Structure: conv head (in→F), ``n_resblocks`` residual blocks conv-ReLU-conv scaled by
``res_scale``, a body-end conv with a long skip from the head, and a conv tail (F→in). With the
defaults (13 blocks, 64 features, 2 channels) it has 999,426 parameters. It works on real 2-channel
images; wrap it in :class:`mbdlfast.models.ComplexAdapter` for complex (B,H,W) images.
"""
from __future__ import annotations

import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias)


class ResBlock(nn.Module):
    """x + res_scale · conv(relu(conv(x))); bias-free convolutions with ``bias=False`` (USRNet's prior)."""

    def __init__(self, n_feats: int, res_scale: float = 1.0, bias: bool = True):
        super().__init__()
        self.body = nn.Sequential(conv3x3(n_feats, n_feats, bias), nn.ReLU(inplace=True),
                                  conv3x3(n_feats, n_feats, bias))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


class EDSR(nn.Module):
    """EDSR body on (B, in_channels, H, W) real images, same size out.

    Args:
        n_resblocks: number of residual blocks (13 in the published DEQ prior).
        n_feats: feature channels (64).
        in_channels: image channels in and out (2: real and imaginary part).
        res_scale: residual scaling in each block; 1.0 is EDSR-baseline's value for 64 features
            (the 0.1 of the wide EDSR only matters for much wider, deeper nets).
    """

    def __init__(self, n_resblocks: int = 13, n_feats: int = 64, in_channels: int = 2, res_scale: float = 1.0):
        super().__init__()
        if n_resblocks < 0 or n_feats < 1 or in_channels < 1:
            raise ValueError(f"EDSR: expected n_resblocks >= 0, n_feats >= 1, in_channels >= 1, "
                             f"got {n_resblocks}, {n_feats}, {in_channels}")
        self.head = conv3x3(in_channels, n_feats)
        blocks = [ResBlock(n_feats, res_scale) for _ in range(n_resblocks)]
        self.body = nn.Sequential(*blocks, conv3x3(n_feats, n_feats))
        self.tail = conv3x3(n_feats, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        return self.tail(features + self.body(features))
