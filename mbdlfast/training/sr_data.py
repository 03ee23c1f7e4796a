"""Training batches for super-resolution (USRNet): high-resolution patches, their blur kernels, noise
levels and low-resolution observations.

:class:`SRPatches` cuts ``data.sr.patches_per_image`` patches of ``data.image_size`` from each
training image of ``data.source`` (the test images, :mod:`mbdlfast.data.sr_images`, never appear).
Item ``i`` is a deterministic function of ``(seed, i)``: image ``i mod n``, a random position, one of
the eight flips / quarter turns, a random kernel and a noise level. Its ``collate`` draws one scale
per batch (from the batch's first index, so again a pure function of the batch) and degrades the
patches: USRNet trains every scale with one network, and a batch has one shape. ``groups`` are the
images' scenes (:func:`mbdlfast.data.sr_images.scene_name`), so a validation split holds out whole
images and every version of them.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from mbdlfast.data.sr_images import degrade, read_rgb, scene_name, split_images
from mbdlfast.physics.blur import BlurDownsample
from mbdlfast.physics.blur_kernels import random_kernel
from mbdlfast.sr_metrics import sr_quality
from mbdlfast.training.config import DataConfig

PATCH_STREAM, SCALE_STREAM, NOISE_STREAM = 1, 2, 3  # independent seed-sequence tags


@dataclass
class SRBatch:
    """``measurement`` (B,C,h,w), ``kernel`` (B,k,k), ``noise_level`` (B,), ``target`` (B,C,h·s,w·s),
    all float32, and the batch's ``scale``."""

    measurement: torch.Tensor
    kernel: torch.Tensor
    noise_level: torch.Tensor
    target: torch.Tensor
    scale: int

    def _map(self, function) -> "SRBatch":
        return SRBatch(**{f.name: function(getattr(self, f.name)) if f.name != "scale" else self.scale
                          for f in fields(self)})

    def to(self, device) -> "SRBatch":
        return self._map(lambda tensor: tensor.to(device, non_blocking=True))

    def pin_memory(self) -> "SRBatch":
        return self._map(torch.Tensor.pin_memory)

    def __len__(self) -> int:
        return self.measurement.shape[0]

    def physics(self) -> BlurDownsample:
        return BlurDownsample(self.kernel, self.scale, self.noise_level)

    def quality(self, prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample (PSNR, SSIM) of ``prediction`` against the target, a border of ``scale`` left out
        (:func:`mbdlfast.sr_metrics.sr_quality`)."""
        return sr_quality(self.target, prediction, border=self.scale)


def _dihedral(patch: torch.Tensor, element: int) -> torch.Tensor:
    """One of the eight flips / quarter turns of a (C,H,W) square patch."""
    patch = torch.rot90(patch, element % 4, dims=(-2, -1))
    return patch.flip(-1) if element >= 4 else patch


class SRPatches(torch.utils.data.Dataset):
    """Super-resolution training patches from ``data`` (see the module docstring)."""

    has_reference = True

    def __init__(self, data: DataConfig, seed: int = 0):
        self.data, self.seed, self.size = data, seed, data.image_size
        self.files, _ = split_images(data.source, data.sr.test_folders)
        if not self.files:
            raise ValueError(f"data.source: {data.source} holds only test images (in {list(data.sr.test_folders)}); "
                             "nothing to train on")
        self.images = [read_rgb(path) for path in self.files]
        small = [f"{path.name} ({image.shape[-2]}x{image.shape[-1]})" for path, image in zip(self.files, self.images)
                 if min(image.shape[-2:]) < self.size]
        if small:
            raise ValueError(f"data.image_size: patches of {self.size} do not fit into {', '.join(small)}")
        scenes = sorted({scene_name(path) for path in self.files})
        self.groups = [scenes.index(scene_name(self.files[index % len(self.files)])) for index in range(len(self))]

    def __len__(self) -> int:
        return len(self.images) * self.data.sr.patches_per_image

    def __getitem__(self, index: int) -> dict:
        image = self.images[index % len(self.images)]
        rng = np.random.default_rng([self.seed, index, PATCH_STREAM])
        top = int(rng.integers(image.shape[-2] - self.size + 1))
        left = int(rng.integers(image.shape[-1] - self.size + 1))
        patch = _dihedral(image[:, top:top + self.size, left:left + self.size], int(rng.integers(8)))
        kernel = random_kernel(rng, motion_fraction=self.data.sr.motion_fraction).float()
        noise_level = float(rng.uniform(0.0, self.data.sr.max_noise_level))
        return {"index": index, "target": patch.contiguous(), "kernel": kernel, "noise_level": noise_level}

    def collate(self, items: list[dict]) -> SRBatch:
        """Stack ``items`` and degrade them at one scale drawn for the batch."""
        scales = self.data.sr.scales
        first = items[0]["index"]
        scale = int(scales[np.random.default_rng([self.seed, first, SCALE_STREAM]).integers(len(scales))])
        target = torch.stack([item["target"] for item in items])
        kernel = torch.stack([item["kernel"] for item in items])
        noise_level = torch.tensor([item["noise_level"] for item in items], dtype=torch.float32)
        generator = torch.Generator().manual_seed(int(np.random.default_rng([self.seed, first, NOISE_STREAM])
                                                      .integers(2**63)))
        measurement = degrade(target, kernel, scale, noise_level, generator)
        return SRBatch(measurement=measurement, kernel=kernel, noise_level=noise_level, target=target, scale=scale)
