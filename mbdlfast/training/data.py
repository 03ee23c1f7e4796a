"""Training batches for supervised reconstruction: undersampled k-space, mask, coil maps and target.

A :class:`TrainingSlices` item is built from one fully sampled slice, either from the synthetic
generator (which knows the true image and maps) or from real volumes in any format ``recon`` reads,
fastMRI h5, BART cfl or npy (:class:`mbdlfast.data.volumes.VolumeSlices`; maps estimated once per
slice with ESPIRiT and cached in memory; the target is the coil combination Sᴴ·ifft2c(k) of the
fully sampled data). Each slice gets its own 1D line mask (at an R drawn from ``accelerations`` when
given) and, with ``noise_snr_db``, its own added measurement noise: deterministic functions of
``(seed, slice index)``, so a run is reproducible and every rank sees the same slice alike.
With ``normalise`` both k-space and target are divided by max|Aᴴy| of the *undersampled* data, a
scale available at test time too.

Batches are :class:`TrainingBatch`: kspace (B,C,H,W) masked, mask (B,W) bool, maps (B,C,H,W) and
target (B,H,W), all complex64 except the mask.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import numpy as np
import torch

from mbdlfast.data.noise import add_measurement_noise
from mbdlfast.data.synthetic import SyntheticMulticoilDataset
from mbdlfast.data.volumes import VolumeSlices
from mbdlfast.training.config import DataConfig
from mbdlfast.physics import masks
from mbdlfast.physics import espirit
from mbdlfast.ops.fft import fft2c, ifft2c
from mbdlfast.physics.sense import SenseOperator

logger = logging.getLogger(__name__)

NOISE_STREAM, ACCELERATION_STREAM = 1, 2  # seed-sequence tags: the added noise and the R draw are independent


@dataclass
class TrainingBatch:
    """One supervised batch; see the module docstring for the layouts."""

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor
    target: torch.Tensor

    def to(self, device) -> "TrainingBatch":
        return TrainingBatch(**{f.name: getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)})

    def pin_memory(self) -> "TrainingBatch":
        """Called by DataLoader(pin_memory=True), for asynchronous host-to-GPU copies."""
        return TrainingBatch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})

    def __len__(self) -> int:
        return self.kspace.shape[0]

    def physics(self) -> SenseOperator:
        """The batch's SENSE operator (validated here: build it once per batch)."""
        return SenseOperator(self.maps, self.mask, mask_is_2d=False)


def line_mask(kind: str, num_cols: int, acceleration: int, center_fraction: float, seed) -> torch.Tensor:
    """A (num_cols,) bool phase-encode mask of ``kind`` (see :data:`mbdlfast.training.config.MASK_KINDS`)."""
    if kind == "equispaced":
        return masks.equispaced(num_cols, acceleration, center_fraction, seed=seed)
    if kind == "equispaced_fraction":
        return masks.equispaced_fraction(num_cols, acceleration, center_fraction, seed=seed)
    if kind == "random":
        return masks.random(num_cols, acceleration, center_fraction, seed=seed)
    if kind == "mbdl":
        return masks.mbdl_equispaced(num_cols, acceleration, masks.num_center_lines(num_cols, center_fraction))
    raise ValueError(f"mask: unknown kind {kind!r}")


def crop_coil_images(kspace: torch.Tensor, size: int | None) -> torch.Tensor:
    """Centred k-space (C,H,W) of the coil images centre-cropped to at most ``size`` x ``size``."""
    height, width = kspace.shape[-2:]
    if size is None or (height <= size and width <= size):
        return kspace
    new_h, new_w = min(size, height), min(size, width)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    return fft2c(ifft2c(kspace)[..., top:top + new_h, left:left + new_w].contiguous())


class TrainingSlices(torch.utils.data.Dataset):
    """Supervised training items from ``data.source`` (see :class:`mbdlfast.training.config.DataConfig`).

    ``groups[i]`` is the split unit of item ``i``: its volume for folders with several volumes, the
    slice itself otherwise. ``espirit_calls`` counts map estimations (one per slice).
    """

    def __init__(self, data: DataConfig, seed: int = 0):
        self.data, self.seed = data, seed
        self.espirit_calls = 0
        self._maps_cache: dict[int, torch.Tensor] = {}
        if data.source == "synthetic":
            self.source = SyntheticMulticoilDataset(data.num_slices, data.image_size, data.image_size, data.num_coils,
                                                    snr_db=data.snr_db, seed=seed, family=data.family)
            self.groups = list(range(len(self.source)))
        else:
            self.source = VolumeSlices(data.source)
            volumes = [volume for volume, _ in self.source.samples]
            self.groups = volumes if len(set(volumes)) > 1 else list(range(len(volumes)))

    def __len__(self) -> int:
        return len(self.source)

    def _estimated_maps(self, index: int, kspace: torch.Tensor) -> torch.Tensor:
        if index not in self._maps_cache:
            self._maps_cache[index] = espirit(kspace, calib_width=self.data.calib_width)
            self.espirit_calls += 1
        return self._maps_cache[index]

    def acceleration(self, index: int) -> int:
        """Slice ``index``'s R: ``data.acceleration``, or drawn from ``data.accelerations``."""
        choices = self.data.accelerations
        if not choices:
            return self.data.acceleration
        return int(choices[np.random.default_rng([self.seed, index, ACCELERATION_STREAM]).integers(len(choices))])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sample = self.source[index]
        if self.data.source == "synthetic":
            kspace, maps, target = sample["kspace"], sample["maps"], sample["target"]
        else:
            kspace = crop_coil_images(sample["kspace"], self.data.image_size)
            maps = self._estimated_maps(index, kspace)
            target = (maps.conj() * ifft2c(kspace)).sum(dim=0)
        mask = line_mask(self.data.mask, kspace.shape[-1], self.acceleration(index), self.data.center_fraction,
                         seed=(self.seed, index))
        undersampled = kspace * mask
        if self.data.noise_snr_db is not None:
            undersampled = add_measurement_noise(undersampled, self.data.noise_snr_db,
                                                 seed=(self.seed, index, NOISE_STREAM))
        if self.data.normalise:
            zero_filled = SenseOperator(maps, mask).A_adjoint(undersampled.unsqueeze(0))
            scale = zero_filled.abs().max().clamp_min(torch.finfo(torch.float32).tiny)
            undersampled, target = undersampled / scale, target / scale
        return {"kspace": undersampled, "mask": mask, "maps": maps, "target": target}


def collate_batch(items: list[dict[str, torch.Tensor]]) -> TrainingBatch:
    """Stack items into a :class:`TrainingBatch`."""
    return TrainingBatch(**{name: torch.stack([item[name] for item in items]) for name in items[0]})


def split_train_val(dataset: TrainingSlices, val_fraction: float, seed: int):
    """(train, validation) :class:`torch.utils.data.Subset`s of ``dataset``, split by its groups with a
    permutation drawn from ``seed``; validation is None when ``val_fraction`` is 0."""
    unique = sorted(set(dataset.groups))
    num_val = round(len(unique) * val_fraction)
    if val_fraction > 0:
        num_val = min(max(num_val, 1), len(unique) - 1)
        if num_val < 1:
            raise ValueError(f"data.val_fraction: {len(unique)} slice(s) cannot be split into training and validation")
    order = torch.randperm(len(unique), generator=torch.Generator().manual_seed(seed)).tolist()
    val_groups = {unique[i] for i in order[:num_val]}
    train = [i for i, g in enumerate(dataset.groups) if g not in val_groups]
    val = [i for i, g in enumerate(dataset.groups) if g in val_groups]
    logger.info("split %d slices into %d for training and %d for validation", len(dataset), len(train), len(val))
    return torch.utils.data.Subset(dataset, train), (torch.utils.data.Subset(dataset, val) if val else None)
