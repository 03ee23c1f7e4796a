"""A DCGAN (Radford et al. 2016): the small generator the GAN-prior experiments ship, and its critic.

:class:`DCGANGenerator` maps a latent code z (B, latent_dim) to an image (B, channels, S, S) in
[0, 1] with S = 4·2^k: a transposed convolution to 4×4, then k stride-2 transposed convolutions
halving the width each time, batch norm and ReLU between them and a sigmoid at the end.
:class:`DCGANDiscriminator` mirrors it with stride-2 convolutions, batch norm and leaky ReLUs down to
4×4 and a 4×4 convolution to one logit per image. Any ``nn.Module`` z -> image serves as a generator
in :mod:`mbdlfast.gan`; these are the ones trained here.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mbdlfast._validation import check_int


def _stages(image_size: int) -> int:
    """k with image_size = 4·2^k (k >= 1)."""
    check_int("image_size", image_size, minimum=8)
    stages = int(round(math.log2(image_size / 4)))
    if 4 * 2**stages != image_size:
        raise ValueError(f"image_size: expected 4·2^k (8, 16, 32, 64, ...), got {image_size}")
    return stages


class DCGANGenerator(nn.Module):
    """z (B, latent_dim) -> images (B, channels, image_size, image_size) in [0, 1].

    ``features`` is the width of the last hidden layer; the first has features·2^(k-1).
    """

    def __init__(self, latent_dim: int = 100, channels: int = 3, features: int = 32, image_size: int = 64):
        super().__init__()
        self.latent_dim = check_int("latent_dim", latent_dim, minimum=1)
        self.image_size = image_size
        stages = _stages(image_size)
        width = check_int("features", features, minimum=1) * 2 ** (stages - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, width, 4, 1, 0, bias=False), nn.BatchNorm2d(width),
                                   nn.ReLU(inplace=True)]
        for _ in range(stages - 1):
            layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2),
                       nn.ReLU(inplace=True)]
            width //= 2
        layers += [nn.ConvTranspose2d(width, check_int("channels", channels, minimum=1), 4, 2, 1, bias=False),
                   nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z: expected (B, {self.latent_dim}) latent codes, got shape {tuple(z.shape)}")
        return self.net(z[..., None, None])


class DCGANDiscriminator(nn.Module):
    """Images (B, channels, image_size, image_size) in [0, 1] -> (B,) logits (real > 0)."""

    def __init__(self, channels: int = 3, features: int = 32, image_size: int = 64):
        super().__init__()
        stages = _stages(image_size)
        width = check_int("features", features, minimum=1)
        layers: list[nn.Module] = [nn.Conv2d(check_int("channels", channels, minimum=1), width, 4, 2, 1, bias=False),
                                   nn.LeakyReLU(0.2, inplace=True)]
        for _ in range(stages - 1):
            layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2),
                       nn.LeakyReLU(0.2, inplace=True)]
            width *= 2
        layers.append(nn.Conv2d(width, 1, 4, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(2 * images - 1).flatten()


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN's initialisation: convolutions N(0, 0.02), batch-norm scales N(1, 0.02) and shifts 0."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(layer.weight, 0.0, 0.02)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, 0.02)
            nn.init.zeros_(layer.bias)
