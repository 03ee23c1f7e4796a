"""Untrained image priors: the deep-image-prior hourglass ("skip" network) and the deep decoder.

Both map a fixed random code to an image and are fitted to one measurement (:mod:`mbdlfast.dip`).
:func:`noise_code` draws the code a network expects for a given output size.

* :class:`SkipHourglass` follows the structure of Ulyanov et al.'s ``skip`` network: per level a
  stride-2 3x3 convolution and a 3x3 convolution down, a 1x1 skip branch, bilinear upsampling,
  concatenation, a 3x3 and a 1x1 convolution up; reflection padding, BatchNorm and LeakyReLU(0.2)
  everywhere, a 1x1 output convolution and a sigmoid. At input depth 32, 5 levels of 128 channels,
  skip 4 and 3 output channels it has 2,217,831 parameters (the "2.2 M" prior of the DIP and LIP
  papers). Height and width must be multiples of ``2**levels``.
* :class:`DeepDecoder` follows Heckel and Hand: 1x1 convolutions, bilinear x2 upsampling, ReLU and
  channel normalisation (BatchNorm over the spatial positions of a batch of one), a 1x1 output
  convolution and a sigmoid. Six layers of 128 channels give 100,224 parameters (the "0.1 M" prior).

In both, every layer but the output activation sits in ``layers`` (``layers.body``, ``layers.head``):
data-free pruning scores such as SynFlow run on the lowest module holding all convolutions, and must
see the pre-activation output (a saturated sigmoid has zero gradient and would tie every score).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from mbdlfast._validation import check_int

__all__ = ["DeepDecoder", "SkipHourglass", "noise_code"]


def _conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """A convolution with reflection padding that keeps (stride 1) or halves (stride 2) the size."""
    pad = (kernel_size - 1) // 2
    layers = [nn.ReflectionPad2d(pad)] if pad else []
    layers.append(nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride))
    return nn.Sequential(*layers)


def _conv_bn_act(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(_conv(in_channels, out_channels, kernel_size, stride), nn.BatchNorm2d(out_channels),
                         nn.LeakyReLU(0.2, inplace=True))


class _HourglassLevel(nn.Module):
    """One level: skip branch and down path, the deeper levels, upsampling, concatenation and the up path."""

    def __init__(self, in_channels: int, down: int, up: int, skip: int, deeper: nn.Module | None, deeper_out: int):
        super().__init__()
        self.skip = _conv_bn_act(in_channels, skip, 1) if skip else None
        self.down = nn.Sequential(_conv_bn_act(in_channels, down, 3, stride=2), _conv_bn_act(down, down, 3))
        self.deeper = deeper
        self.upsample = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        merged = skip + (deeper_out if deeper is not None else down)
        self.merge_norm = nn.BatchNorm2d(merged)
        self.up = nn.Sequential(_conv_bn_act(merged, up, 3), _conv_bn_act(up, up, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = self.down(x)
        if self.deeper is not None:
            deep = self.deeper(deep)
        deep = self.upsample(deep)
        merged = torch.cat([self.skip(x), deep], dim=1) if self.skip is not None else deep
        return self.up(self.merge_norm(merged))


class SkipHourglass(nn.Module):
    """The DIP encoder-decoder with skip connections; input (B, input_depth, H, W), output (B, out_channels, H, W).

    ``channels`` and ``skip_channels`` may be one int for every level or one value per level.
    ``sigmoid=False`` leaves the output unbounded (e.g. for signed real/imaginary parts).
    """

    def __init__(self, input_depth: int = 32, out_channels: int = 3, *, levels: int = 5,
                 channels: int | list[int] = 128, skip_channels: int | list[int] = 4, sigmoid: bool = True):
        super().__init__()
        self.input_depth = check_int("input_depth", input_depth, minimum=1)
        levels = check_int("levels", levels, minimum=1)
        down = _per_level("channels", channels, levels, minimum=1)
        skip = _per_level("skip_channels", skip_channels, levels, minimum=0)
        self.levels = levels
        level, level_out = None, 0
        for index in reversed(range(levels)):
            in_channels = input_depth if index == 0 else down[index - 1]
            level = _HourglassLevel(in_channels, down[index], down[index], skip[index], level, level_out)
            level_out = down[index]
        head = nn.Conv2d(down[0], check_int("out_channels", out_channels, minimum=1), 1)
        self.layers = nn.Sequential(OrderedDict(body=level, head=head))
        self.output = nn.Sigmoid() if sigmoid else nn.Identity()

    def code_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """The (C, H, W) of the input code for an output of ``height`` x ``width``."""
        factor = 2 ** self.levels
        for name, size in (("height", height), ("width", width)):
            if check_int(name, size, minimum=1) % factor:
                raise ValueError(f"{name}: expected a multiple of 2**levels = {factor}, got {size}")
        if height * width < 2 * factor**2:
            raise ValueError(f"height, width: {height}x{width} leaves a 1x1 bottleneck after {self.levels} levels, "
                             "where BatchNorm has a single value per channel; use a larger image or fewer levels")
        return self.input_depth, height, width

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.output(self.layers(code))


class DeepDecoder(nn.Module):
    """Heckel and Hand's deep decoder: ``layers`` 1x1 convolutions, ``layers - 1`` of them followed by x2 upsampling.

    Input (B, channels, H / 2**(layers-1), W / 2**(layers-1)), output (B, out_channels, H, W).
    """

    def __init__(self, out_channels: int = 3, *, channels: int = 128, layers: int = 6, sigmoid: bool = True):
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.upsamplings = check_int("layers", layers, minimum=2) - 1
        blocks = []
        for index in range(layers):
            block = [nn.Conv2d(channels, channels, 1, bias=False)]
            if index < self.upsamplings:
                block.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            block += [nn.ReLU(inplace=True), nn.BatchNorm2d(channels)]
            blocks.append(nn.Sequential(*block))
        head = nn.Conv2d(channels, check_int("out_channels", out_channels, minimum=1), 1, bias=False)
        self.layers = nn.Sequential(OrderedDict(body=nn.Sequential(*blocks), head=head))
        self.output = nn.Sigmoid() if sigmoid else nn.Identity()

    def code_shape(self, height: int, width: int) -> tuple[int, int, int]:
        factor = 2 ** self.upsamplings
        for name, size in (("height", height), ("width", width)):
            if check_int(name, size, minimum=1) % factor:
                raise ValueError(f"{name}: expected a multiple of 2**(layers-1) = {factor}, got {size}")
        return self.channels, height // factor, width // factor

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.output(self.layers(code))


def noise_code(net: nn.Module, height: int, width: int, *, batch: int = 1, scale: float = 0.1,
               seed: int = 0) -> torch.Tensor:
    """The fixed random input of an untrained prior: uniform in [0, ``scale``) (DIP's default), shaped
    for an output of ``height`` x ``width``; on the device of ``net``'s parameters, reproducible by ``seed``."""
    if not hasattr(net, "code_shape"):
        raise TypeError(f"net: expected a SkipHourglass or DeepDecoder (with code_shape), got {type(net).__name__}")
    shape = (check_int("batch", batch, minimum=1), *net.code_shape(height, width))
    generator = torch.Generator().manual_seed(seed)
    code = torch.rand(shape, generator=generator) * scale
    return code.to(next(net.parameters()).device)


def _per_level(name: str, value, levels: int, *, minimum: int) -> list[int]:
    values = [value] * levels if isinstance(value, int) else list(value)
    if len(values) != levels:
        raise ValueError(f"{name}: expected one int or {levels} values (one per level), got {value!r}")
    return [check_int(f"{name}[{i}]", v, minimum=minimum) for i, v in enumerate(values)]
