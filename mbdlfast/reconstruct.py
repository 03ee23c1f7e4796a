"""Reconstruct k-space volumes with a trained mbdlfast checkpoint and write them in fastMRI layout.

Each volume goes through the evaluation protocol of :mod:`mbdlfast.evaluation`:

- sampling: fully sampled data are undersampled retrospectively with the training mask kind
  (``line_mask``), acceleration and centre fraction (the caller may override the last two); one mask
  per volume, drawn from ``seed``. Undersampled data keep their own sampling, 1D lines or a 2D
  pattern (Poisson disc), and are never re-undersampled.
- ESPIRiT maps from the calibration square the mask keeps, nothing else; no such square (e.g.
  ``center_fraction=0``) is an error.
- with the checkpoint's ``normalise``, k-space is divided by max|Aᴴy| before the model call and the
  output multiplied back, so the output has the data's scale.
- beside the network, the classical baselines: zero-filled and CG-SENSE, its λ chosen on
  validation slices with the volume's sampling (``validation``: a fully sampled volume of the same
  size; default: synthetic slices of the checkpoint's training family), never on the volume itself.
  With a fully sampled reference (retrospective undersampling) every method gets PSNR / SSIM.
- every reconstruction reports its solver's convergence (status, iterations, residual).

The network is called through its registry spec (:func:`mbdlfast.training.registry.model_spec`).
Outputs per volume, each written atomically: ``<out>/<name>.h5`` with the magnitude
``reconstruction`` (S,h,w) float32 (centre-cropped to the header's recon size when there is one),
the ``mask`` used and attrs (sampling, solver, metrics); ``<out>/<name>.json``, the quality and
convergence report; ``<out>/<name>.png``, the middle slice beside the reference and the baselines.
The h5 is renamed into place last, so an existing h5 means a complete volume (``skip_existing``).

In a folder, a volume that cannot be reconstructed (corrupt, no calibration data, ...) is reported
and skipped; the others go on. Under ``torchrun`` rank r reconstructs files r, r + world_size, ...
of the sorted file list; every volume is reconstructed independently, so the outputs equal a
single-process run's.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from mbdlfast import __version__
from mbdlfast._validation import check_int
from mbdlfast.data.noise import check_snr_db
from mbdlfast.data.synthetic import SyntheticMulticoil, check_family
from mbdlfast.data.volumes import KspaceVolume, load_volume, volume_files
from mbdlfast.evaluation import (
    ESPIRIT_KERNEL_WIDTH,
    EvaluationSlices,
    MethodResult,
    SolverReport,
    choose_lambdas,
    classical_baselines,
    evaluate,
    format_table,
    prepare_slices,
    solver_report,
)
from mbdlfast.figures import comparison_figure
from mbdlfast.training.checkpoint import Checkpoint
from mbdlfast.training.config import DataConfig, load_settings
from mbdlfast.training.data import line_mask
from mbdlfast.training.distributed import DistributedContext
from mbdlfast.training.registry import model_spec
from mbdlfast.info import versions
from mbdlfast.outputs import atomic_path, output_folder, write_json
from mbdlfast.physics.espirit_maps import calibration_width
from mbdlfast.pretrained import load_checkpoint_or_default

logger = logging.getLogger(__name__)

COPIED_ATTRS = ("acquisition", "patient_id")  # input attrs that describe the subject, kept in the output
VALIDATION_SEED = 31_337  # synthetic validation slices: a seed no training or test run uses
VALIDATION_SLICES = 2
VALIDATION_CANDIDATES = 8


@dataclass
class ReconSettings:
    """``acceleration`` / ``center_fraction``: for retrospective undersampling (None: the training
    values); ``seed``: of the mask offset; ``batch_size``: slices per model call; ``validation``: a
    fully sampled volume (same H x W as the data) on which the classical baselines' λs are chosen
    (None: synthetic slices); ``baselines``: reconstruct zero-filled, CG-SENSE and ℓ1-wavelet too;
    ``skip_existing``: leave volumes whose output h5 exists (to resume a batch); ``noise_snr_db``:
    noise added to the measured samples at that input SNR before anything is reconstructed (the
    seed's robustness setting, :mod:`mbdlfast.data.noise`), to the data and the validation slices alike."""

    acceleration: int | None = None
    center_fraction: float | None = None
    seed: int = 0
    batch_size: int = 1
    progress: bool = True
    validation: str | None = None
    baselines: bool = True
    skip_existing: bool = False
    noise_snr_db: float | None = None

    def __post_init__(self):
        self.noise_snr_db = check_snr_db("noise_snr_db", self.noise_snr_db)
        if self.acceleration is not None:
            self.acceleration = check_int("acceleration", self.acceleration, minimum=1)
        if self.center_fraction is not None and not 0 <= self.center_fraction < 1:
            raise ValueError(f"center_fraction: expected a fraction in [0, 1), got {self.center_fraction}")
        self.batch_size = check_int("batch_size", self.batch_size, minimum=1)


@dataclass
class Sampling:
    """How a volume is (or is made) undersampled: the (W,) or (H,W) mask and its description;
    ``calibration``: the side of the fully sampled centre square the coil maps come from."""

    mask: torch.Tensor
    acceleration: float
    center_fraction: float | None
    calibration: int
    retrospective: bool

    @property
    def kind(self) -> str:
        return "1D lines" if self.mask.dim() == 1 else "2D pattern"


@dataclass
class VolumeResult:
    """A reconstructed volume: the network's (S,H,W) float32 magnitude, the sampling, every method's
    per-slice quality and solver report, the middle slice's images for the figure, and the protocol."""

    image: np.ndarray
    sampling: Sampling
    methods: list[MethodResult]
    middle: dict[str, torch.Tensor] = field(default_factory=dict)
    middle_reference: torch.Tensor | None = None
    protocol: dict = field(default_factory=dict)

    @property
    def network(self) -> MethodResult:
        return self.methods[-1]


def centre_lines(mask: torch.Tensor) -> int:
    """Length of the unbroken run of sampled columns through the k-space centre (index W // 2)."""
    centre = mask.shape[-1] // 2
    if not mask[centre]:
        return 0
    sampled = mask.tolist()
    right = next((i for i in range(centre, len(sampled)) if not sampled[i]), len(sampled))
    left = next((i for i in range(centre, -1, -1) if not sampled[i]), -1)
    return right - left - 1


def _merge(parts: list[list[MethodResult]]) -> list[MethodResult]:
    """The per-batch results of each method joined into one result per method (slices in order)."""
    merged = []
    for results in zip(*parts):
        first = results[0]
        metrics = {key: [v for r in results for v in r.metrics[key]] for key in first.metrics}
        solver = SolverReport(first.solver.solver, [s for r in results for s in r.solver.status],
                              [i for r in results for i in r.solver.iterations],
                              [v for r in results for v in r.solver.residual], first.solver.tol)
        merged.append(MethodResult(first.name, None, solver, metrics))  # the images stay per batch
    return merged


class Reconstructor:
    """A loaded checkpoint with the data settings it was trained with; :meth:`reconstruct` one volume."""

    def __init__(self, checkpoint: Checkpoint, checkpoint_path, settings: ReconSettings, device=torch.device("cpu")):
        self.checkpoint, self.settings, self.device = checkpoint, settings, torch.device(device)
        self.checkpoint_path = str(checkpoint_path)
        self.spec = model_spec(checkpoint.model_name)
        if self.spec.task != "mri":
            raise ValueError(f"model: {checkpoint_path} holds a {checkpoint.model_name!r} model, not an MRI "
                             "reconstruction network; super-resolve images with 'mbdlfast sr'")
        self.data = load_settings(DataConfig, base=(checkpoint.train_config or {}).get("data") or {})
        self.acceleration = settings.acceleration if settings.acceleration is not None else self.data.acceleration
        self.center_fraction = (settings.center_fraction if settings.center_fraction is not None
                                else self.data.center_fraction)
        self.model = checkpoint.model.to(self.device).eval()

    @classmethod
    def from_name_or_file(cls, model: str, settings: ReconSettings, device=torch.device("cpu")) -> "Reconstructor":
        """``model``: a checkpoint file or the name of shipped weights (see
        :func:`mbdlfast.pretrained.load_checkpoint_or_default`)."""
        checkpoint, source = load_checkpoint_or_default(model)
        if checkpoint.mbdlfast_version != __version__:
            logger.info("checkpoint %s was written by mbdlfast %s (this is %s)", source,
                        checkpoint.mbdlfast_version, __version__)
        return cls(checkpoint, source, settings, device)

    def sampling(self, volume: KspaceVolume) -> Sampling:
        """The volume's own sampling, or the retrospective training-style mask for fully sampled data.
        ValueError when the mask keeps no calibration square for the coil maps."""
        height, width = volume.kspace.shape[-2:]
        if not volume.fully_sampled:
            if self.settings.acceleration is not None or self.settings.center_fraction is not None:
                logger.warning("%s is undersampled (%s): its own sampling is used, not --acceleration/"
                               "--center-fraction", volume.name, volume.sampling)
            mask = volume.mask
            sampled = int(mask.sum()) * (height if mask.dim() == 1 else 1)
            fraction = centre_lines(mask) / width if mask.dim() == 1 else None
            sampling = Sampling(mask, height * width / sampled, fraction, 0, retrospective=False)
        else:
            if self.acceleration > width:
                raise ValueError(f"acceleration: R={self.acceleration} leaves no sampled lines outside the centre of "
                                 f"the {width} phase-encode columns of {volume.name} (expected R <= {width})")
            mask = line_mask(self.data.mask, width, self.acceleration, self.center_fraction, seed=self.settings.seed)
            sampling = Sampling(mask, float(self.acceleration), self.center_fraction, 0, retrospective=True)
        sampling.calibration = calibration_width(mask, (height, width), upto=max(height, width))
        if sampling.calibration < ESPIRIT_KERNEL_WIDTH:
            where = (f"center_fraction: {self.center_fraction} keeps" if sampling.retrospective
                     else f"data: the acquired sampling of {volume.name} keeps")
            raise ValueError(f"{where} a fully sampled centre of only {sampling.calibration}x{sampling.calibration}; "
                             f"the coil maps come only from samples the mask keeps and need at least "
                             f"{ESPIRIT_KERNEL_WIDTH}x{ESPIRIT_KERNEL_WIDTH}"
                             + (" (raise center_fraction)" if sampling.retrospective else ""))
        return sampling

    def _prepare(self, kspace: torch.Tensor, mask: torch.Tensor, fully_sampled: bool, name: str,
                 first: int = 0) -> EvaluationSlices:
        """The protocol's slices of ``kspace`` (slices ``first``, ... of its volume; the added noise, if
        any, is drawn per volume position and seed)."""
        return prepare_slices(kspace.to(self.device), mask, fully_sampled=fully_sampled,
                              normalise=self.data.normalise, calib_width=self.data.calib_width, name=name,
                              noise_snr_db=self.settings.noise_snr_db, noise_seed=(self.settings.seed, first))

    def validation_slices(self, volume: KspaceVolume, sampling: Sampling) -> EvaluationSlices | None:
        """Fully sampled slices with ``volume``'s size and sampling, for choosing the classical baselines'
        λs: from ``settings.validation`` (ValueError if unusable), else synthetic slices of the training
        family (None, with a warning, where they are unusable: then zero-filled is the only baseline)."""
        coils, height, width = volume.kspace.shape[-3:]
        if self.settings.validation is not None:
            validation = load_volume(self.settings.validation)
            if not validation.fully_sampled or validation.kspace.shape[-2:] != (height, width):
                raise ValueError(f"validation: {self.settings.validation} must be fully sampled k-space of "
                                 f"{height}x{width} (the data's size); it is {validation.sampling} "
                                 f"{tuple(validation.kspace.shape[-2:])}")
            first = max(0, validation.num_slices // 2 - VALIDATION_SLICES // 2)
            return self._prepare(validation.kspace[first:first + VALIDATION_SLICES], sampling.mask, True,
                                 f"validation {validation.name}", first=first)
        family = self.data.family
        try:
            check_family(family)
        except (ValueError, FileNotFoundError):
            family = "brain"  # the training images are not on this machine
        generator, usable, errors = SyntheticMulticoil(height, width, coils, seed=VALIDATION_SEED, family=family), [], []
        for index in range(VALIDATION_CANDIDATES):  # a phantom whose maps ESPIRiT cannot find is passed over
            try:
                usable.append(self._prepare(generator.batch([index])["kspace"], sampling.mask, True,
                                            f"synthetic {family} slices (seed {VALIDATION_SEED})", first=index))
            except ValueError as err:
                errors.append(" ".join(str(err).split()))
            if len(usable) == VALIDATION_SLICES:
                return EvaluationSlices.concatenate(usable)
        logger.warning("%s: no CG-SENSE or l1-wavelet baseline: too few usable synthetic validation slices (%s); "
                       "give --validation", volume.name, errors[-1])
        return None

    @torch.no_grad()
    def reconstruct(self, volume: KspaceVolume, progress: tqdm | None = None) -> VolumeResult:
        """Reconstruct ``volume`` with the network (and the baselines): see the module docstring."""
        sampling = self.sampling(volume)
        validation = self.validation_slices(volume, sampling) if self.settings.baselines else None
        choice = choose_lambdas(validation) if validation is not None else {}  # once: the volume has one sampling
        middle = volume.num_slices // 2
        images, parts, result = [], [], VolumeResult(np.empty(0), sampling, [])
        for first in range(0, volume.num_slices, self.settings.batch_size):
            kspace = volume.kspace[first:first + self.settings.batch_size]
            slices = self._prepare(kspace, sampling.mask, sampling.retrospective, volume.name, first=first)
            baselines = classical_baselines(slices, choice) if self.settings.baselines else []
            image = self.spec.reconstruct(self.model, slices)
            network = evaluate(self.checkpoint.model_name, image, solver_report(self.model, len(slices)), slices)
            parts.append([*baselines, network])
            images.append((image.abs() * slices.scale[:, None, None]).float().cpu())
            if first <= middle < first + len(slices):
                result.middle = {r.name: r.image[middle - first].cpu() for r in parts[-1]}
                result.middle_reference = None if slices.reference is None else slices.reference[middle - first].cpu()
                result.protocol = {"reference": slices.reference_name, "maps": slices.maps_source, **choice}
            if progress is not None:
                progress.update(len(slices))
        result.image = torch.cat(images).numpy()
        result.methods = _merge(parts)
        return result

    def output_attrs(self, volume: KspaceVolume, result: VolumeResult) -> dict:
        """The attrs of the output h5: sampling, solver convergence, quality, and fastMRI's max and norm."""
        sampling, network, image = result.sampling, result.network, result.image
        attrs = {key: volume.attrs[key] for key in COPIED_ATTRS if key in volume.attrs}
        attrs.update(acceleration=sampling.acceleration, num_low_frequencies=sampling.calibration,
                     sampling="retrospective" if sampling.retrospective else "acquired", mask_kind=sampling.kind,
                     model=self.checkpoint.model_name, mbdlfast_version=__version__, checkpoint=self.checkpoint_path,
                     solver=network.solver.solver, converged=network.solver.converged,
                     solver_status=network.solver.status, iterations=network.solver.iterations,
                     max=float(image.max()), norm=float(np.linalg.norm(image)))
        if sampling.center_fraction is not None:
            attrs["center_fraction"] = sampling.center_fraction
        residuals = [r for r in network.solver.residual if r is not None]
        if residuals:
            attrs["residual"] = residuals
        for metric in network.metrics:
            attrs[metric] = network.mean(metric)
        return attrs

    def report(self, volume: KspaceVolume, result: VolumeResult) -> dict:
        """The JSON report of a volume: protocol, sampling and every method's quality and convergence."""
        sampling = result.sampling
        return {"volume": volume.name, "model": self.checkpoint.model_name, "checkpoint": self.checkpoint_path,
                **versions(), "sampling": {"kind": sampling.kind, "retrospective": sampling.retrospective,
                                           "acceleration": sampling.acceleration,
                                           "center_fraction": sampling.center_fraction,
                                           "calibration": sampling.calibration,
                                           "added_noise_snr_db": self.settings.noise_snr_db},
                "protocol": result.protocol, "methods": [method.as_dict() for method in result.methods]}


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


def _write_png(path: Path, result: VolumeResult, title: str) -> None:
    middle = result.image.shape[0] // 2
    metrics = {method.name: {"psnr": method.metrics["psnr"][middle], "ssim": method.metrics["ssim"][middle]}
               for method in result.methods if method.metrics}
    comparison_figure(path, result.middle, reference=result.middle_reference,
                      reference_name=result.protocol.get("reference", ""), metrics=metrics, title=title)


def write_outputs(out: Path, name: str, result: VolumeResult, attrs: dict, report: dict) -> Path:
    """``out/<name>.png``, ``.json`` and ``.h5``, each atomically; the h5 last (it marks a finished volume)."""
    image = result.image
    title = f"{name} slice {image.shape[0] // 2}: {attrs['model']}, R={attrs['acceleration']:.3g} ({attrs['sampling']})"
    with atomic_path(out / f"{name}.png") as temporary:
        _write_png(temporary, result, title)
    write_json(out / f"{name}.json", report)
    with atomic_path(out / f"{name}.h5") as temporary:
        _write_h5(temporary, image, result.sampling.mask, attrs)
    return out / f"{name}.h5"


@dataclass
class ReconRunResult:
    """What :func:`reconstruct_files` did on this rank: the h5 files written, the volumes skipped
    because their output existed, and the volumes that failed with why."""

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def reconstruct_files(model, data_path, out, settings: ReconSettings | None = None,
                      context: DistributedContext | None = None) -> ReconRunResult:
    """Reconstruct every volume at ``data_path`` (this rank's shard under torchrun) into ``out``.

    Bad input raises ValueError naming the argument, before any work. In a folder of several volumes,
    one that fails is logged and listed in ``failed``; if all of this rank's volumes fail, ValueError."""
    settings = settings or ReconSettings()
    context = context or DistributedContext()
    with output_folder(out) as out:
        files = volume_files(data_path)
        reconstructor = Reconstructor.from_name_or_file(model, settings, context.device)
        clobbered = [file for file in files if (out / f"{file.stem}.h5").resolve() == file.resolve()]
        if clobbered:
            raise ValueError(f"out: {out} holds the input {clobbered[0].name}; its reconstruction would replace it "
                             "(choose another output folder)")
        shard = files[context.rank::context.world_size]
        logger.info("reconstructing %d of %d volume(s) with %s into %s", len(shard), len(files),
                    reconstructor.checkpoint.model_name, out)
        run = ReconRunResult()
        for file in shard:
            if settings.skip_existing and (out / f"{file.stem}.h5").is_file():
                logger.info("skipping %s: %s exists (--skip-existing)", file.name, out / f"{file.stem}.h5")
                run.skipped.append(file)
                continue
            try:
                run.written.append(_reconstruct_one(reconstructor, file, out, settings, context))
            except ValueError as err:
                if len(files) == 1:
                    raise
                message = " ".join(str(err).split())
                logger.error("skipped %s: %s", file.name, message)
                run.failed[file.name] = message
        context.barrier()
        if run.failed and not run.written and not run.skipped:
            raise ValueError(f"data: none of the {len(run.failed)} volume(s) could be reconstructed: "
                             + "; ".join(f"{name}: {why}" for name, why in run.failed.items()))
    return run


def _reconstruct_one(reconstructor: Reconstructor, file: Path, out: Path, settings: ReconSettings,
                     context: DistributedContext) -> Path:
    volume = load_volume(file)
    with tqdm(total=volume.num_slices, desc=volume.name, unit="slice",
              disable=not (settings.progress and context.is_main)) as progress:
        result = reconstructor.reconstruct(volume, progress)
    result.image = crop_to_recon_size(result.image, volume.attrs)  # before the attrs' max and norm
    written = write_outputs(out, volume.name, result, reconstructor.output_attrs(volume, result),
                            reconstructor.report(volume, result))
    if result.network.metrics or settings.baselines:
        print(f"{volume.name} ({result.sampling.kind}, R={result.sampling.acceleration:.3g}, "
              f"{'retrospective' if result.sampling.retrospective else 'acquired'}):")
        print(format_table(result.methods, result.protocol.get("reference", ""), result.protocol.get("maps", "")))
    else:
        print(f"{volume.name}: {result.network.solver.summary()}")
    logger.debug("wrote %s", written)
    return written
