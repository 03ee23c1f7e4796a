"""Reconstruct k-space volumes with a trained mbdlfast checkpoint and write them in fastMRI layout.

Each slice is prepared the way :class:`mbdlfast.finetune.data.TrainingSlices` prepared training
slices, read from the checkpoint's training settings (defaults of
:class:`~mbdlfast.finetune.config.DataConfig` when it has none):

- fully sampled data are undersampled retrospectively with the training mask kind (``line_mask``),
  acceleration and centre fraction (the caller may override the last two); one mask per volume,
  drawn from ``seed``. Undersampled data keep their own sampling.
- ESPIRiT maps: from the fully sampled centre (``calib_width``, as in training) for fully sampled
  data, from the fully sampled centre band (ACS) for undersampled data.
- with ``normalise``, k-space is divided by max|Aᴴy| of the undersampled slice before the model
  call and the output multiplied back, so the output has the data's scale.

The network is called through its registry spec (:func:`mbdlfast.finetune.registry.model_spec`).
Outputs: ``<out>/<name>.h5`` with the magnitude ``reconstruction`` (S,h,w) float32 (centre-cropped to
the header's recon size when there is one), the ``mask`` used, and attrs; ``<out>/<name>.png``, the
middle slice. Both are written under temporary names and renamed into place together.

Under ``torchrun`` rank r reconstructs files r, r + world_size, ... of the sorted file list; every
volume is reconstructed independently, so the outputs equal a single-process run's.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from mbdlfast import __version__
from mbdlfast._validation import check_int
from mbdlfast.data.volumes import KspaceVolume, load_volume, volume_files
from mbdlfast.finetune.checkpoint import Checkpoint, load_checkpoint
from mbdlfast.finetune.config import DataConfig
from mbdlfast.finetune.data import line_mask
from mbdlfast.finetune.distributed import DistributedContext
from mbdlfast.finetune.registry import model_spec
from mbdlfast.physics import espirit
from mbdlfast.physics.masks import num_center_lines
from mbdlfast.physics.sense import SenseOperator

logger = logging.getLogger(__name__)

ESPIRIT_KERNEL_WIDTH = 6  # mbdlfast.physics.espirit's default kernel: the ACS band must be at least this wide
COPIED_ATTRS = ("acquisition", "patient_id")  # input attrs that describe the subject, kept in the output


@dataclass
class ReconSettings:
    """``acceleration`` / ``center_fraction``: for retrospective undersampling (None: the training
    values); ``seed``: of the mask offset; ``batch_size``: slices per model call."""

    acceleration: int | None = None
    center_fraction: float | None = None
    seed: int = 0
    batch_size: int = 1
    progress: bool = True

    def __post_init__(self):
        if self.acceleration is not None:
            self.acceleration = check_int("acceleration", self.acceleration, minimum=1)
        if self.center_fraction is not None and not 0 <= self.center_fraction < 1:
            raise ValueError(f"center_fraction: expected a fraction in [0, 1), got {self.center_fraction}")
        self.batch_size = check_int("batch_size", self.batch_size, minimum=1)


@dataclass
class ReconBatch:
    """The fields a registry spec's ``reconstruct`` reads (as in :class:`~mbdlfast.finetune.data.TrainingBatch`)."""

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor | None


@dataclass
class Sampling:
    """How a volume is (or is made) undersampled: the (W,) mask and its description."""

    mask: torch.Tensor
    acceleration: float
    center_fraction: float
    acs_lines: int
    retrospective: bool


def centre_lines(mask: torch.Tensor) -> int:
    """Length of the unbroken run of sampled columns through the k-space centre (index W // 2)."""
    centre = mask.shape[-1] // 2
    if not mask[centre]:
        return 0
    sampled = mask.tolist()
    right = next((i for i in range(centre, len(sampled)) if not sampled[i]), len(sampled))
    left = next((i for i in range(centre, -1, -1) if not sampled[i]), -1)
    return right - left - 1


class Reconstructor:
    """A loaded checkpoint with the data settings it was trained with; :meth:`reconstruct` one volume."""

    def __init__(self, checkpoint: Checkpoint, checkpoint_path, settings: ReconSettings, device=torch.device("cpu")):
        self.checkpoint, self.settings, self.device = checkpoint, settings, torch.device(device)
        self.checkpoint_path = str(Path(checkpoint_path).resolve())
        self.spec = model_spec(checkpoint.model_name)
        training = (checkpoint.train_config or {}).get("data") or {}
        known = DataConfig.__dataclass_fields__
        self.data = DataConfig(**{key: value for key, value in training.items() if key in known})
        self.acceleration = settings.acceleration if settings.acceleration is not None else self.data.acceleration
        self.center_fraction = (settings.center_fraction if settings.center_fraction is not None
                                else self.data.center_fraction)
        self.learned_maps = bool(checkpoint.model_kwargs.get("estimate_sens", False))
        self.model = checkpoint.model.to(self.device).eval()

    @classmethod
    def from_file(cls, path, settings: ReconSettings, device=torch.device("cpu")) -> "Reconstructor":
        checkpoint = load_checkpoint(path)
        if checkpoint.mbdlfast_version != __version__:
            logger.info("checkpoint %s was written by mbdlfast %s (this is %s)", path,
                        checkpoint.mbdlfast_version, __version__)
        return cls(checkpoint, path, settings, device)

    def sampling(self, volume: KspaceVolume) -> Sampling:
        """The volume's own sampling, or the retrospective training-style mask for fully sampled data."""
        width = volume.kspace.shape[-1]
        if not volume.fully_sampled:
            if self.settings.acceleration is not None or self.settings.center_fraction is not None:
                logger.warning("%s is undersampled: its own sampling is used, not --acceleration/--center-fraction",
                               volume.name)
            mask = volume.mask
            acs = centre_lines(mask)
            return Sampling(mask, width / int(mask.sum()), acs / width, acs, retrospective=False)
        if self.acceleration > width:
            raise ValueError(f"acceleration: R={self.acceleration} leaves no sampled lines outside the centre of "
                             f"the {width} phase-encode columns of {volume.name} (expected R <= {width})")
        mask = line_mask(self.data.mask, width, self.acceleration, self.center_fraction, seed=self.settings.seed)
        acs = num_center_lines(width, self.center_fraction)
        return Sampling(mask, float(self.acceleration), self.center_fraction, acs, retrospective=True)

    def estimate_maps(self, kspace: torch.Tensor, sampling: Sampling, name: str) -> torch.Tensor:
        """ESPIRiT maps of a (B,C,H,W) batch: fully sampled centre (training) or the ACS band.

        A slice whose maps come out all zero (calibration too small for ESPIRiT) is an error: its
        reconstruction would be undefined."""
        if sampling.retrospective:
            calib_width = self.data.calib_width
        elif sampling.acs_lines < ESPIRIT_KERNEL_WIDTH:
            raise ValueError(f"data: {name} has {sampling.acs_lines} fully sampled centre line(s); ESPIRiT maps "
                             f"need at least {ESPIRIT_KERNEL_WIDTH}")
        else:
            calib_width = min(self.data.calib_width, sampling.acs_lines)
        maps = espirit(kspace, calib_width=calib_width)
        if (maps.abs().flatten(1).amax(dim=1) == 0).any():
            raise ValueError(f"data: {name}: ESPIRiT found no coil sensitivities in a {calib_width}-wide calibration "
                             "region (too few fully sampled centre lines, or an empty slice)")
        return maps

    @torch.no_grad()
    def reconstruct(self, volume: KspaceVolume, progress: tqdm | None = None) -> tuple[np.ndarray, Sampling]:
        """The (S,H,W) float32 magnitude reconstruction of ``volume`` and the sampling used."""
        sampling = self.sampling(volume)
        mask = sampling.mask.to(self.device)
        slices = []
        for first in range(0, volume.num_slices, self.settings.batch_size):
            kspace = volume.kspace[first:first + self.settings.batch_size].to(self.device)
            needs_maps = self.data.normalise or not self.learned_maps
            maps = self.estimate_maps(kspace, sampling, volume.name) if needs_maps else None
            undersampled = kspace * mask
            batch_mask = mask.expand(kspace.shape[0], -1)
            scale = torch.ones(kspace.shape[0], device=self.device)
            if self.data.normalise:
                zero_filled = SenseOperator(maps, batch_mask).A_adjoint(undersampled)
                scale = zero_filled.abs().flatten(1).amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
                undersampled = undersampled / scale[:, None, None, None]
            image = self.spec.reconstruct(self.model, ReconBatch(undersampled, batch_mask, maps))
            slices.append((image.abs() * scale[:, None, None]).float().cpu())
            if progress is not None:
                progress.update(kspace.shape[0])
        return torch.cat(slices).numpy(), sampling

    def output_attrs(self, volume: KspaceVolume, sampling: Sampling, image: np.ndarray) -> dict:
        """The attrs of the output h5: how it was sampled and reconstructed, and fastMRI's max and norm."""
        attrs = {key: volume.attrs[key] for key in COPIED_ATTRS if key in volume.attrs}
        attrs.update(acceleration=sampling.acceleration, center_fraction=sampling.center_fraction,
                     num_low_frequencies=sampling.acs_lines,
                     sampling="retrospective" if sampling.retrospective else "acquired",
                     model=self.checkpoint.model_name, mbdlfast_version=__version__, checkpoint=self.checkpoint_path,
                     max=float(image.max()), norm=float(np.linalg.norm(image)))
        return attrs


def crop_to_recon_size(image: np.ndarray, attrs: dict) -> np.ndarray:
    """The (S,H,W) image centre-cropped to the fastMRI header's recon size, when it has one that fits."""
    recon_size = attrs.get("recon_size")
    height, width = image.shape[-2:]
    if recon_size is None or not (recon_size[0] <= height and recon_size[1] <= width):
        return image
    h, w = int(recon_size[0]), int(recon_size[1])
    top, left = (height - h) // 2, (width - w) // 2
    return np.ascontiguousarray(image[..., top:top + h, left:left + w])


def _write_h5(path: Path, image: np.ndarray, mask: torch.Tensor, attrs: dict) -> None:
    with h5py.File(path, "w") as hf:
        hf.create_dataset("reconstruction", data=image.astype(np.float32))
        hf.create_dataset("mask", data=mask.cpu().numpy().astype(bool))
        hf.attrs.update(attrs)


def _write_png(path: Path, image: np.ndarray, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    middle = image[image.shape[0] // 2]
    figure, axes = plt.subplots(figsize=(4, 4 * middle.shape[0] / middle.shape[1] + 0.4))
    axes.imshow(middle, cmap="gray", vmin=0, vmax=float(middle.max()) or 1.0)
    axes.set_title(title, fontsize=8)
    axes.axis("off")
    figure.savefig(path, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)


def write_outputs(out: Path, name: str, image: np.ndarray, mask: torch.Tensor, attrs: dict) -> tuple[Path, Path]:
    """``out/<name>.h5`` and ``out/<name>.png``, each written to a temporary name, then both renamed."""
    targets = (out / f"{name}.h5", out / f"{name}.png")
    temporaries = [target.with_name(f".{target.name}.tmp-{os.getpid()}") for target in targets]
    try:
        _write_h5(temporaries[0], image, mask, attrs)
        title = f"{name} slice {image.shape[0] // 2}: {attrs['model']}, R={attrs['acceleration']:.3g}"
        _write_png(temporaries[1], image, title)
        for temporary, target in zip(temporaries, targets):
            os.replace(temporary, target)
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)
    return targets


def reconstruct_files(checkpoint_path, data_path, out, settings: ReconSettings | None = None,
                      context: DistributedContext | None = None) -> list[Path]:
    """Reconstruct every volume at ``data_path`` (this rank's shard under torchrun) into ``out``;
    returns the h5 files this process wrote. Bad input raises ValueError naming the argument."""
    from mbdlfast.finetune.trainer import check_writable

    settings = settings or ReconSettings()
    context = context or DistributedContext()
    files = volume_files(data_path)
    reconstructor = Reconstructor.from_file(checkpoint_path, settings, context.device)
    out = check_writable(out)
    clobbered = [file for file in files if (out / f"{file.stem}.h5").resolve() == file.resolve()]
    if clobbered:
        raise ValueError(f"out: {out} holds the input {clobbered[0].name}; its reconstruction would replace it "
                         "(choose another output folder)")
    shard = files[context.rank::context.world_size]
    logger.info("reconstructing %d of %d volume(s) with %s (R=%s) into %s", len(shard), len(files),
                reconstructor.checkpoint.model_name, reconstructor.acceleration, out)
    written = []
    for file in shard:
        volume = load_volume(file)
        with tqdm(total=volume.num_slices, desc=volume.name, unit="slice",
                  disable=not (settings.progress and context.is_main)) as progress:
            image, sampling = reconstructor.reconstruct(volume, progress)
        image = crop_to_recon_size(image, volume.attrs)
        h5_path, _ = write_outputs(out, volume.name, image, sampling.mask,
                                   reconstructor.output_attrs(volume, sampling, image))
        logger.debug("wrote %s", h5_path)
        written.append(h5_path)
    context.barrier()
    return written
