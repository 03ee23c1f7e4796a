"""The demo: the shipped DEQ-EDSR, pruned, fine-tuned and timed against the paper-style baseline.

:func:`run_demo` walks the library's main path on the embedded default (or on a user's data):

1. load the shipped DEQ-EDSR (:func:`mbdlfast.pretrained.load_default`);
2. reconstruct held-out slices with the paper-style pipeline (:data:`mbdlfast.inference.BASELINE`:
   naive operator, fp32 eager, the public Anderson) and with :data:`~mbdlfast.inference.OPTIMIZED`;
3. prune the network's channels at each ratio (:func:`mbdlfast.prune.prune_structured`), fine-tune
   each pruned network by distillation from the dense one (``school``, on synthetic slices);
4. reconstruct again with the optimized pipeline, at the SAME solver tolerance as the dense runs.

Each row of the result gives the ratio, parameters, PSNR / SSIM of the magnitude images, solver
iterations, the median time per slice and the speed-ups over the dense baseline and the dense
optimized model. The PNGs show the reconstructions, their error maps, and speed-up and PSNR
against the ratio. With ``data`` the test slices come from a fastMRI h5 / cfl / npy file or folder:
fully sampled data are undersampled retrospectively and compared with the fully sampled coil
combination; for undersampled data there is no ground truth, so PSNR / SSIM are measured against
the dense optimized reconstruction (the table says so).
"""
from __future__ import annotations

import json
import logging
import os
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from mbdlfast.finetune.config import DataConfig
from mbdlfast.finetune.data import TrainingBatch, TrainingSlices, collate_batch
from mbdlfast.metrics import psnr_batch, ssim_batch
from mbdlfast.physics.sense import SenseOperator

logger = logging.getLogger(__name__)

TEST_SEED = 20_261_121  # held-out synthetic slices: a seed the default weights never trained on
FINETUNE_SEED = 7
FINETUNE_LR = 1e-3  # measured on the shipped DEQ pruned 25 %: 1e-4 recovers far more slowly


@dataclass
class DemoSettings:
    """What the demo runs; ``None`` fields take the ``quick`` or full default (see :meth:`resolved`)."""

    quick: bool = False
    ratios: tuple[float, ...] | None = None
    finetune_steps: int | None = None
    image_size: int | None = None
    num_slices: int | None = None
    num_coils: int = 8
    acceleration: int = 4
    tol: float = 1e-3
    max_iter: int = 100
    repeats: int | None = None
    data: str | None = None
    device: str = "auto"
    seed: int = 0
    progress: bool = True

    def resolved(self) -> "DemoSettings":
        quick = {"ratios": (0.25,), "finetune_steps": 60, "image_size": 64, "num_slices": 2, "repeats": 3}
        # the shipped DEQ was trained at 64x64: at 96x96 its map is barely contractive (48-100 Anderson
        # steps at tol 1e-3), and iteration counts, not network size, would dominate the timings
        full = {"ratios": (0.25, 0.5), "finetune_steps": 150, "image_size": 64, "num_slices": 4, "repeats": 3}
        chosen = quick if self.quick else full
        values = {key: (getattr(self, key) if getattr(self, key) is not None else chosen[key]) for key in chosen}
        settings = DemoSettings(**{**asdict(self), **values})
        settings.ratios = tuple(float(r) for r in settings.ratios)
        for ratio in settings.ratios:
            if not 0.0 < ratio < 1.0:
                raise ValueError(f"ratios: expected pruning ratios in (0, 1), got {ratio}")
        for name in ("finetune_steps", "image_size", "num_slices", "num_coils", "acceleration", "repeats", "max_iter"):
            if getattr(settings, name) < (0 if name == "finetune_steps" else 1):
                raise ValueError(f"{name}: expected a positive integer, got {getattr(settings, name)}")
        if not 0.0 < settings.tol < 1.0:
            raise ValueError(f"tol: expected a relative tolerance in (0, 1), got {settings.tol}")
        return settings


@dataclass
class DemoRow:
    """One line of the demo's table."""

    label: str
    pipeline: str
    ratio: float
    tuning: str
    params: int
    psnr: float
    ssim: float
    iters: float
    median_ms: float
    speedup_vs_baseline: float = 1.0
    speedup_vs_dense: float = 1.0


@dataclass
class DemoResult:
    rows: list[DemoRow]
    reference: str  # what PSNR / SSIM are measured against
    device: str
    files: list[Path] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- data


def _synthetic_test_batch(settings: DemoSettings) -> tuple[TrainingBatch, str]:
    data = DataConfig(source="synthetic", image_size=settings.image_size, num_coils=settings.num_coils,
                      num_slices=settings.num_slices, acceleration=settings.acceleration)
    slices = TrainingSlices(data, seed=TEST_SEED)
    return collate_batch([slices[i] for i in range(len(slices))]), "ground truth"


def _user_test_batch(settings: DemoSettings, checkpoint) -> tuple[TrainingBatch, str]:
    """The middle slices of the first volume at ``settings.data``, prepared as in training."""
    from mbdlfast.data.volumes import load_volumes
    from mbdlfast.physics.fft import ifft2c
    from mbdlfast.reconstruct import Reconstructor, ReconSettings

    volume = load_volumes(settings.data)[0]
    reconstructor = Reconstructor(checkpoint, settings.data, ReconSettings(acceleration=settings.acceleration,
                                                                           seed=settings.seed, progress=False))
    sampling = reconstructor.sampling(volume)
    middle = volume.num_slices // 2
    first = max(0, middle - settings.num_slices // 2)
    kspace = volume.kspace[first:first + settings.num_slices]
    maps = reconstructor.estimate_maps(kspace, sampling, volume.name)
    mask = sampling.mask.expand(kspace.shape[0], -1)
    undersampled = kspace * sampling.mask
    scale = SenseOperator(maps, mask).A_adjoint(undersampled).abs().flatten(1).amax(dim=1)
    scale = scale.clamp_min(torch.finfo(torch.float32).tiny)[:, None, None]
    target = (maps.conj() * ifft2c(kspace)).sum(dim=1) / scale
    reference = "ground truth (fully sampled)" if volume.fully_sampled else "the dense optimized reconstruction"
    batch = TrainingBatch(kspace=undersampled / scale[:, None], mask=mask, maps=maps, target=target)
    return batch, reference


# ------------------------------------------------------------------------------------- evaluation


def _time_per_slice_ms(wrapper, inputs: tuple, repeats: int, device: torch.device) -> float:
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        wrapper(*inputs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        samples.append((time.perf_counter() - began) * 1e3)
    return statistics.median(samples) / inputs[0].shape[0]


def _evaluate(model, batch: TrainingBatch, settings: DemoSettings, pipeline, device: torch.device):
    """(image, iterations, median ms per slice) of ``model`` under the inference ``pipeline``."""
    from mbdlfast.inference import optimize_for_inference

    inputs = (batch.kspace, batch.maps, batch.mask)
    wrapper = optimize_for_inference(model, inputs, pipeline, tol=settings.tol, max_iter=settings.max_iter)
    image = wrapper(*inputs)
    info = wrapper.last_info or {}
    iters = info.get("sample_nstep", info.get("nstep", float("nan")))
    iters = float(torch.as_tensor(iters, dtype=torch.float64).mean())
    return image, iters, _time_per_slice_ms(wrapper, inputs, settings.repeats, device)


def _metrics(image: torch.Tensor, reference: torch.Tensor) -> tuple[float, float]:
    gt, pred = reference.abs().float().cpu(), image.abs().float().cpu()
    return float(psnr_batch(gt, pred).mean()), float(ssim_batch(gt, pred).mean())


def run_demo(settings: DemoSettings, out) -> DemoResult:
    """Run the demo (see the module docstring) and write its PNGs and ``demo.json`` to ``out``."""
    from mbdlfast.finetune import finetune
    from mbdlfast.finetune.trainer import check_writable
    from mbdlfast.inference import BASELINE, OPTIMIZED
    from mbdlfast.pretrained import DEFAULT_DATA, load_default
    from mbdlfast.prune import count_params, prune_structured

    settings = settings.resolved()
    out = check_writable(out)
    device = torch.device("cuda" if settings.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if settings.device == "auto" else settings.device))
    checkpoint = load_default("deq")
    teacher = checkpoint.model
    batch, reference_name = (_user_test_batch(settings, checkpoint) if settings.data
                             else _synthetic_test_batch(settings))
    batch = batch.to(device)
    teacher = teacher.to(device)
    logger.info("demo on %s: %d test slice(s) of %s, R=%d, tol %g; PSNR/SSIM against %s", device, len(batch),
                "x".join(map(str, batch.kspace.shape[-3:])), settings.acceleration, settings.tol, reference_name)

    images, rows = {}, []
    baseline_image, iters, ms = _evaluate(teacher, batch, settings, BASELINE, device)
    dense_image, dense_iters, dense_ms = _evaluate(teacher, batch, settings, OPTIMIZED, device)
    reference = batch.target if reference_name.startswith("ground truth") else dense_image
    for label, pipeline, image, its, time_ms in (("dense", "baseline", baseline_image, iters, ms),
                                                 ("dense", "optimized", dense_image, dense_iters, dense_ms)):
        rows.append(DemoRow(label, pipeline, 0.0, "none", count_params(teacher), *_metrics(image, reference),
                            its, time_ms))
        images[f"{label} ({pipeline})"] = image

    finetune_data = DataConfig(**{**asdict(DEFAULT_DATA), "num_slices": max(8, 2 * settings.finetune_steps),
                                  "acceleration": settings.acceleration, "num_coils": settings.num_coils})
    for ratio in settings.ratios:
        student = prune_structured(teacher, (batch.kspace[:1], batch.maps[:1], batch.mask[:1]), ratio)
        tuning = "none"
        if settings.finetune_steps > 0:
            tuning = "school"
            student = finetune(student, model_name=checkpoint.model_name, model_kwargs=checkpoint.model_kwargs,
                               mode="school", teacher=teacher, data=finetune_data, steps=settings.finetune_steps,
                               lr=FINETUNE_LR, batch_size=2, progress=settings.progress, device=str(device),
                               seed=FINETUNE_SEED).model
        image, its, time_ms = _evaluate(student, batch, settings, OPTIMIZED, device)
        rows.append(DemoRow(f"pruned {ratio:.0%}", "optimized", ratio, tuning, count_params(student),
                            *_metrics(image, reference), its, time_ms))
        images[f"pruned {ratio:.0%} + {tuning}"] = image
    for row in rows:
        row.speedup_vs_baseline = rows[0].median_ms / row.median_ms
        row.speedup_vs_dense = rows[1].median_ms / row.median_ms

    from mbdlfast.demo_plots import write_demo_figures

    zero_filled = SenseOperator(batch.maps, batch.mask).A_adjoint(batch.kspace)
    files = write_demo_figures(out, rows, images, reference=reference, zero_filled=zero_filled,
                               reference_name=reference_name)
    result = DemoResult(rows=rows, reference=reference_name, device=str(device), files=files)
    files.append(_write_json(out / "demo.json", {"settings": asdict(settings), "device": str(device),
                                                  "reference": reference_name,
                                                  "rows": [asdict(row) for row in rows]}))
    return result


def _write_json(path: Path, payload: dict) -> Path:
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as handle:
            json.dump(payload, handle, indent=2, default=float)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path


def format_table(result: DemoResult) -> str:
    """The demo's table as aligned text."""
    header = f"{'model':<14}{'pipeline':<11}{'tuning':<8}{'params':>10}{'PSNR':>8}{'SSIM':>8}{'iters':>7}" \
             f"{'ms/slice':>10}{'x base':>8}{'x dense':>9}"
    lines = [header, "-" * len(header)]
    for row in result.rows:
        lines.append(f"{row.label:<14}{row.pipeline:<11}{row.tuning:<8}{row.params:>10,}{row.psnr:>8.2f}"
                     f"{row.ssim:>8.4f}{row.iters:>7.1f}{row.median_ms:>10.1f}{row.speedup_vs_baseline:>8.2f}"
                     f"{row.speedup_vs_dense:>9.2f}")
    lines.append(f"PSNR/SSIM against {result.reference}; device {result.device}; all DEQs at the same solver tolerance")
    return "\n".join(lines)
