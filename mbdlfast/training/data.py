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

Undersampled acquisitions (a file or folder whose volumes are all undersampled, e.g. a test-time
scan) give :class:`AcquiredSlices` instead, for fine-tuning without ground truth (school and
self-supervised, as the seed prescribes for test-time tuning): every slice keeps its volume's own
sampling, 1D lines or a 2D pattern, and is never re-undersampled; its maps come from the calibration
square that sampling keeps; there is no target. :func:`training_slices` picks the class.

Batches are :class:`TrainingBatch`: kspace (B,C,H,W) masked, mask (B,W) or (B,H,W) bool, maps
(B,C,H,W) and target (B,H,W) or None, all complex64 except the mask.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, fields

import numpy as np
import torch

from mbdlfast.data.noise import add_measurement_noise
from mbdlfast.data.synthetic import SyntheticMulticoilDataset
from mbdlfast.data.volumes import VolumeSlices, h5_is_fully_sampled, load_volume, volume_files
from mbdlfast.evaluation import calibration_maps
from mbdlfast.metrics import psnr_batch, ssim_batch
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
    target: torch.Tensor | None = None

    def _map(self, function) -> "TrainingBatch":
        return TrainingBatch(**{f.name: None if getattr(self, f.name) is None else function(getattr(self, f.name))
                                for f in fields(self)})

    def to(self, device) -> "TrainingBatch":
        return self._map(lambda tensor: tensor.to(device, non_blocking=True))

    def pin_memory(self) -> "TrainingBatch":
        """Called by DataLoader(pin_memory=True), for asynchronous host-to-GPU copies."""
        return self._map(torch.Tensor.pin_memory)

    def __len__(self) -> int:
        return self.kspace.shape[0]

    @property
    def sampled(self) -> torch.Tensor:
        """The mask broadcast against the (B,C,H,W) k-space: (B,1,1,W) lines or (B,1,H,W) 2D."""
        return self.mask[:, None, None, :] if self.mask.dim() == 2 else self.mask[:, None]

    def physics(self) -> SenseOperator:
        """The batch's SENSE operator (validated here: build it once per batch)."""
        return SenseOperator(self.maps, self.mask, mask_is_2d=self.mask.dim() == 3)

    def quality(self, prediction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-slice (PSNR, SSIM) of the magnitude of ``prediction`` against the target's (fastMRI's
        conventions, :mod:`mbdlfast.metrics`)."""
        gt, pred = self.target.abs().float(), prediction.abs().float()
        return psnr_batch(gt, pred), ssim_batch(gt, pred)


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


def collate_batch(items: list[dict[str, torch.Tensor]]) -> TrainingBatch:
    """Stack items into a :class:`TrainingBatch`; line masks become 2D when others in the batch are.
    ValueError when the slices differ in shape."""
    shapes = sorted({tuple(item["kspace"].shape) for item in items})
    if len(shapes) > 1:
        raise ValueError(f"data: one batch holds slices of shapes {shapes}; use train.batch_size=1 or volumes of "
                         "one size")
    if any(item["mask"].dim() == 2 for item in items):
        height = shapes[0][-2]
        items = [{**item, "mask": item["mask"].expand(height, -1) if item["mask"].dim() == 1 else item["mask"]}
                 for item in items]
    return TrainingBatch(**{name: torch.stack([item[name] for item in items]) for name in items[0]})


class TrainingSlices(torch.utils.data.Dataset):
    """Supervised training items from ``data.source`` (see :class:`mbdlfast.training.config.DataConfig`).

    ``groups[i]`` is the split unit of item ``i``: its volume for folders with several volumes, the
    slice itself otherwise. ``espirit_calls`` counts map estimations (one per slice).
    """

    has_reference = True
    collate = staticmethod(collate_batch)

    def __init__(self, data: DataConfig, seed: int = 0, loaded: dict | None = None):
        self.data, self.seed = data, seed
        self.espirit_calls = 0
        self._maps_cache: dict[int, torch.Tensor] = {}
        if data.source == "synthetic":
            self.source = SyntheticMulticoilDataset(data.num_slices, data.image_size, data.image_size, data.num_coils,
                                                    snr_db=data.snr_db, seed=seed, family=data.family)
            self.groups = list(range(len(self.source)))
        else:
            self.source = VolumeSlices(data.source, loaded)
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


class AcquiredSlices(torch.utils.data.Dataset):
    """Items from undersampled acquisitions at ``data.source`` (see the module docstring): kspace as
    acquired (plus ``noise_snr_db`` noise on the measured samples), the volume's own mask, ESPIRiT
    maps from the calibration square it keeps (estimated once per slice), no target. ``normalise``
    divides by max|Aᴴy|, as for :class:`TrainingSlices`. The slices keep their acquired size (a crop
    would change their sampling); the retrospective settings (acceleration, mask, center_fraction)
    do not apply. ``groups``: as for :class:`TrainingSlices`; ``loaded``: volumes already read, by file."""

    has_reference = False
    collate = staticmethod(collate_batch)

    def __init__(self, data: DataConfig, seed: int = 0, loaded: dict | None = None):
        self.data, self.seed = data, seed
        self.espirit_calls = 0
        self._maps_cache: dict[int, torch.Tensor] = {}
        loaded = loaded or {}
        self.volumes = [loaded.get(file) or load_volume(file) for file in volume_files(data.source)]
        self.samples = [(v, s) for v, volume in enumerate(self.volumes) for s in range(volume.num_slices)]
        self.groups = ([v for v, _ in self.samples] if len(self.volumes) > 1 else list(range(len(self.samples))))
        logger.info("%s: %d undersampled slice(s) (%s) used with their own sampling at their acquired size; "
                    "data.acceleration, data.mask, data.center_fraction and data.image_size do not apply",
                    data.source, len(self.samples), ", ".join(sorted({v.sampling for v in self.volumes})))

    def __len__(self) -> int:
        return len(self.samples)

    def _maps(self, index: int, kspace: torch.Tensor, mask: torch.Tensor, name: str) -> torch.Tensor:
        if index not in self._maps_cache:
            maps, _ = calibration_maps(kspace[None], mask, calib_width=self.data.calib_width, name=name)
            self._maps_cache[index] = maps[0]
            self.espirit_calls += 1
        return self._maps_cache[index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        volume_index, slice_index = self.samples[index]
        volume = self.volumes[volume_index]
        kspace, mask = volume.kspace[slice_index], volume.mask
        if self.data.noise_snr_db is not None:
            kspace = add_measurement_noise(kspace, self.data.noise_snr_db, seed=(self.seed, index, NOISE_STREAM))
        maps = self._maps(index, kspace, mask, f"{volume.name} slice {slice_index}")
        if self.data.normalise:
            zero_filled = SenseOperator(maps, mask, mask_is_2d=mask.dim() == 2).A_adjoint(kspace.unsqueeze(0))
            kspace = kspace / zero_filled.abs().max().clamp_min(torch.finfo(torch.float32).tiny)
        return {"kspace": kspace, "mask": mask, "maps": maps}


def training_slices(data: DataConfig, seed: int = 0) -> TrainingSlices | AcquiredSlices:
    """The dataset of ``data.source``: :class:`AcquiredSlices` when its volumes are undersampled,
    else :class:`TrainingSlices`. ValueError naming ``data.source`` for a mix of the two. cfl / npy
    volumes are read once, here, and handed on; h5 files are judged by their first slice."""
    if data.source == "synthetic":
        return TrainingSlices(data, seed)
    files = volume_files(data.source)
    loaded: dict = {file: load_volume(file) for file in files if file.suffix != ".h5"}
    undersampled = [file.name for file in files
                    if not (loaded[file].fully_sampled if file in loaded else h5_is_fully_sampled(file))]
    if not undersampled:
        return TrainingSlices(data, seed, loaded)
    if len(undersampled) < len(files):
        raise ValueError(f"data.source: {data.source} mixes undersampled volumes ({', '.join(undersampled)}) with "
                         "fully sampled ones; train on one kind")
    return AcquiredSlices(data, seed, loaded)


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
