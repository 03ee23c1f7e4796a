"""Inverse problems with a GAN prior: optimise the generator's input so that its image explains the
measurements (CSGM, Bora et al. 2017).

Observations: :class:`GaussianMeasurements` (compressed sensing, y = A·vec(x) with a seeded Gaussian A
of N(0, 1/m) entries, as in the lottery-image-prior paper's 1,000 measurements) and :class:`PixelMask`
(inpainting: the pixels a 0/1 mask keeps). :func:`corrupt_measurements` replaces some of them by gross
outliers. The objective is the mean squared misfit or the median-of-means of Jalal et al. (2020):
the measurements are split at random (afresh every iteration) into ``groups`` groups, and the
median of the groups' mean squared misfits is minimised, which a few corrupted measurements cannot
move much. :func:`invert_generator` runs Adam on z from ``restarts`` seeded starts and keeps, per
image, the start whose final objective is lowest. :func:`per_pixel_error` is the papers' figure of
merit, the mean squared error per pixel and channel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from mbdlfast._validation import check_int

OBJECTIVES = ("mse", "mom")


class GaussianMeasurements:
    """``count`` Gaussian measurements of a (C,H,W) image: ``forward(images (B,C,H,W)) -> (B, count)``."""

    def __init__(self, count: int, shape: tuple[int, int, int], *, seed: int = 0, device="cpu"):
        size = math.prod(shape)
        check_int("measurements", count, minimum=1)
        if count > size:
            raise ValueError(f"measurements: {count} measurements of a {'x'.join(map(str, shape))} image (n = {size}); "
                             "expected at most n")
        self.shape = tuple(shape)
        self.matrix = (torch.randn(count, size, generator=torch.Generator().manual_seed(seed)) / math.sqrt(count)).to(device)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[1:]) != self.shape:
            raise ValueError(f"images: expected (B, {', '.join(map(str, self.shape))}), got {tuple(images.shape)}")
        return images.flatten(1) @ self.matrix.T


class PixelMask:
    """Inpainting's observation: the pixels of a (H,W) 0/1 ``mask`` that are kept, all channels,
    as a (B, C·kept) vector."""

    def __init__(self, mask: torch.Tensor):
        if mask.dim() != 2 or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"mask: expected a (H,W) mask of zeros and ones, got shape {tuple(mask.shape)}")
        if not bool(mask.any()):
            raise ValueError("mask: keeps no pixel")
        self.mask = mask
        self.index = mask.flatten().nonzero()[:, 0]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if tuple(images.shape[-2:]) != tuple(self.mask.shape):
            raise ValueError(f"images: expected {tuple(self.mask.shape)} pixels, got {tuple(images.shape[-2:])}")
        return images.flatten(2)[..., self.index.to(images.device)].flatten(1)


def corrupt_measurements(y: torch.Tensor, count: int, *, seed: int = 0, scale: float = 10.0):
    """(``y`` with ``count`` measurements per image replaced by outliers of ±``scale``·max|y|, the
    corrupted indices (B, count)). ValueError unless 0 <= count < the number of measurements."""
    measurements = y.shape[-1]
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count < measurements:
        raise ValueError(f"corrupted: expected 0 <= corrupted < the {measurements} measurements, got {count!r}")
    generator = torch.Generator().manual_seed(seed)
    indices = torch.stack([torch.randperm(measurements, generator=generator)[:count] for _ in range(y.shape[0])])
    signs = torch.randint(0, 2, indices.shape, generator=generator).to(y) * 2 - 1
    corrupted = y.clone()
    outliers = scale * y.abs().amax(dim=1, keepdim=True) * signs
    corrupted.scatter_(1, indices.to(y.device), outliers)
    return corrupted, indices


def median_of_means(residual: torch.Tensor, groups: int, generator: torch.Generator) -> torch.Tensor:
    """Per row of (B, m) ``residual``: the median over ``groups`` random groups of the mean square."""
    measurements = residual.shape[-1]
    if not 1 <= groups <= measurements:
        raise ValueError(f"groups: expected 1..{measurements} (the measurements), got {groups}")
    order = torch.randperm(measurements, generator=generator).to(residual.device)
    means = torch.stack([part.square().mean(dim=-1) for part in torch.tensor_split(residual[:, order], groups, dim=-1)],
                        dim=-1)
    return means.median(dim=-1).values


@dataclass
class Inversion:
    """What :func:`invert_generator` returns: the chosen codes (B, latent), their images, the final
    objective per image, and the objective per iteration (mean over images and starts)."""

    z: torch.Tensor
    image: torch.Tensor
    objective: torch.Tensor
    history: list[float] = field(default_factory=list, repr=False)


def invert_generator(generator: nn.Module, forward, y: torch.Tensor, *, iters: int = 1500, lr: float = 0.05,
                     objective: str = "mse", groups: int = 10, latent_weight: float = 0.0, restarts: int = 1,
                     seed: int = 0, progress: bool = False) -> Inversion:
    """argmin_z objective(forward(G(z)) − y) + latent_weight·‖z‖² for each row of ``y`` (B, m).

    The generator runs in eval mode and is not changed (its parameters get no gradient).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: expected one of {OBJECTIVES}, got {objective!r}")
    check_int("iters", iters, minimum=1)
    check_int("restarts", restarts, minimum=1)
    generator.eval()
    parameters = list(generator.parameters())
    needed = [p.requires_grad for p in parameters]
    for p in parameters:
        p.requires_grad_(False)
    batch, device = y.shape[0], y.device
    starts = torch.Generator().manual_seed(seed)
    z = torch.randn(restarts * batch, generator.latent_dim, generator=starts).to(device).requires_grad_()
    targets = y.repeat(restarts, 1)
    optimizer = torch.optim.Adam([z], lr=lr)
    partition = torch.Generator().manual_seed(seed + 1)
    history = []

    def loss_per_row() -> torch.Tensor:
        residual = forward(generator(z)) - targets
        misfit = residual.square().mean(dim=-1) if objective == "mse" else median_of_means(residual, groups, partition)
        return misfit + latent_weight * z.square().sum(dim=-1)

    try:
        for _ in tqdm(range(iters), desc="CSGM", disable=not progress, leave=False):
            losses = loss_per_row()
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            history.append(float(losses.detach().mean()))
        with torch.no_grad():
            final = loss_per_row().view(restarts, batch)
            best = final.argmin(dim=0)
            chosen = z.detach().view(restarts, batch, -1)[best, torch.arange(batch)]
            return Inversion(chosen, generator(chosen), final[best, torch.arange(batch)], history)
    finally:
        for p, flag in zip(parameters, needed):
            p.requires_grad_(flag)


def per_pixel_error(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Mean squared error per pixel and channel of each (C,H,W) image of the batch -> (B,)."""
    if estimate.shape != truth.shape:
        raise ValueError(f"estimate: shape {tuple(estimate.shape)} differs from the truth's {tuple(truth.shape)}")
    return (estimate - truth).square().flatten(1).mean(dim=1)
