"""Training a GAN generator on crops of colour images (the shared images, the test set held out).

:class:`ImageCrops`: item ``i`` is a deterministic function of ``(seed, i)``: one of the images,
rescaled by a factor drawn from ``zoom`` (anti-aliased, so a crop shows a whole object at small
factors and texture at large ones; raised where the image would get smaller than a crop), a random
``size``² crop and a random horizontal flip.

:func:`train_gan`: the non-saturating GAN loss (binary cross-entropy on the discriminator's logits),
Adam with DCGAN's settings (lr 2e-4, betas 0.5 / 0.999), one discriminator and one generator step per
batch. Pruning masks attached to either network (:mod:`mbdlfast.prune.masking`) stay in force, so
the same loop fine-tunes a lottery ticket.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from mbdlfast._validation import check_int
from mbdlfast.data.sr_images import read_rgb

logger = logging.getLogger(__name__)

ZOOM = (0.15, 0.6)


class ImageCrops(torch.utils.data.Dataset):
    """``length`` random ``size``² crops of rescaled ``files`` (see the module docstring)."""

    def __init__(self, files, size: int = 64, length: int = 4096, zoom: tuple[float, float] = ZOOM, seed: int = 0):
        self.size, self.length, self.zoom, self.seed = check_int("size", size, minimum=4), length, zoom, seed
        if not files:
            raise ValueError("files: no images to crop")
        if not 0 < zoom[0] <= zoom[1]:
            raise ValueError(f"zoom: expected 0 < low <= high, got {zoom}")
        self.images = [read_rgb(path) for path in files]

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        image = self.images[int(rng.integers(len(self.images)))]
        factor = float(rng.uniform(*self.zoom))
        height, width = (max(self.size, int(round(side * factor))) for side in image.shape[-2:])
        scaled = F.interpolate(image[None], size=(height, width), mode="bilinear", antialias=True,
                               align_corners=False)[0]
        top, left = int(rng.integers(height - self.size + 1)), int(rng.integers(width - self.size + 1))
        crop = scaled[:, top:top + self.size, left:left + self.size]
        return (crop.flip(-1) if rng.uniform() < 0.5 else crop).clamp(0, 1).contiguous()


def train_gan(generator: nn.Module, discriminator: nn.Module, crops: torch.utils.data.Dataset, *, steps: int,
              batch_size: int = 64, lr: float = 2e-4, seed: int = 0, device="cpu", progress: bool = False,
              log_every: int = 100, checkpoint_every: int = 0, on_checkpoint=None) -> list[dict]:
    """Train ``generator`` and ``discriminator`` (in place) on ``crops`` for ``steps`` batches; returns the
    per-step losses. ``generator.latent_dim`` sizes the codes. ``on_checkpoint(history)`` is called
    every ``checkpoint_every`` steps (0: never), e.g. to save the networks of a long run."""
    check_int("steps", steps, minimum=1)
    check_int("batch_size", batch_size, minimum=1)
    generator.to(device).train()
    discriminator.to(device).train()
    optim_g = torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=lr, betas=(0.5, 0.999))
    optim_d = torch.optim.Adam([p for p in discriminator.parameters() if p.requires_grad], lr=lr, betas=(0.5, 0.999))
    sampler = torch.utils.data.RandomSampler(crops, replacement=True, num_samples=steps * batch_size,
                                             generator=torch.Generator().manual_seed(seed))
    loader = torch.utils.data.DataLoader(crops, batch_size=batch_size, sampler=sampler, drop_last=True)
    noise = torch.Generator().manual_seed(seed + 1)
    history = []
    for step, real in enumerate(tqdm(loader, total=steps, desc="GAN", disable=not progress), start=1):
        real = real.to(device)
        z = torch.randn(real.shape[0], generator.latent_dim, generator=noise).to(device)
        fake = generator(z)
        real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
        loss_d = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        optim_d.zero_grad(set_to_none=True)
        loss_d.backward()
        optim_d.step()
        fake_logits = discriminator(fake)
        loss_g = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
        optim_g.zero_grad(set_to_none=True)
        loss_g.backward()
        optim_g.step()
        history.append({"step": step, "loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach())})
        if step % log_every == 0 or step == steps:
            logger.info("GAN step %d/%d: discriminator %.4f, generator %.4f", step, steps, history[-1]["loss_d"],
                        history[-1]["loss_g"])
        if on_checkpoint is not None and checkpoint_every and step % checkpoint_every == 0 and step < steps:
            on_checkpoint(history)
            generator.train()
            discriminator.train()
    return history
