"""ResUNet: USRNet's prior, a bias-free residual U-Net that denoises at the level it is told.

Four levels of ``features`` channels (64, 128, 256, 512 in USRNet), ``blocks`` residual blocks per
level, 2×2 strided convolutions down and 2×2 transposed convolutions up, and additive skips (not
concatenation). Inputs are padded by edge replication to a multiple of 8 and cropped back, so any
size works. Module names follow the official layout without its ``m_`` prefix (head, down1-3, body,
up3-1, tail; a block's convolutions in ``body`` where the official ones are in ``res``), which is
what :meth:`mbdlfast.models.USRNet.from_official` translates.
"""
from __future__ import annotations

import torch
from torch import nn

from mbdlfast.models.edsr import ResBlock, conv3x3


def _blocks(channels: int, count: int) -> list[nn.Module]:
    return [ResBlock(channels, bias=False) for _ in range(count)]


class ResUNet(nn.Module):
    """(B, in_channels, H, W) -> (B, out_channels, H, W).

    Args:
        in_channels: image channels plus the noise-level map (4 for colour in USRNet).
        out_channels: image channels (3).
        features: channels of the four levels.
        blocks: residual blocks per level (2).
    """

    def __init__(self, in_channels: int = 4, out_channels: int = 3, features: tuple[int, ...] = (64, 128, 256, 512),
                 blocks: int = 2):
        super().__init__()
        features = tuple(features)
        if len(features) != 4 or min(features) < 1 or blocks < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError(f"ResUNet: expected four feature counts >= 1 and blocks, in_channels, out_channels >= 1, "
                             f"got features={features}, blocks={blocks}, in_channels={in_channels}, "
                             f"out_channels={out_channels}")
        f0, f1, f2, f3 = features
        self.head = conv3x3(in_channels, f0, bias=False)
        self.down1 = nn.Sequential(*_blocks(f0, blocks), nn.Conv2d(f0, f1, 2, stride=2, bias=False))
        self.down2 = nn.Sequential(*_blocks(f1, blocks), nn.Conv2d(f1, f2, 2, stride=2, bias=False))
        self.down3 = nn.Sequential(*_blocks(f2, blocks), nn.Conv2d(f2, f3, 2, stride=2, bias=False))
        self.body = nn.Sequential(*_blocks(f3, blocks))
        self.up3 = nn.Sequential(nn.ConvTranspose2d(f3, f2, 2, stride=2, bias=False), *_blocks(f2, blocks))
        self.up2 = nn.Sequential(nn.ConvTranspose2d(f2, f1, 2, stride=2, bias=False), *_blocks(f1, blocks))
        self.up1 = nn.Sequential(nn.ConvTranspose2d(f1, f0, 2, stride=2, bias=False), *_blocks(f0, blocks))
        self.tail = conv3x3(f0, out_channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        x = nn.functional.pad(x, (0, -width % 8, 0, -height % 8), mode="replicate")
        x1 = self.head(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.up3(self.body(x4) + x4)
        x = self.up2(x + x3)
        x = self.up1(x + x2)
        return self.tail(x + x1)[..., :height, :width]
