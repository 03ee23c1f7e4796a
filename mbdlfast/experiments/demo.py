"""The demo: the shipped DEQ-EDSR, pruned, fine-tuned and timed against the paper-style baseline,
beside the classical reconstructions.

:func:`run_demo` walks the library's main path on the embedded default (or on a user's data):

1. load the shipped DEQ-EDSR (:func:`mbdlfast.pretrained.load_default`);
2. prepare held-out slices with the evaluation protocol (:mod:`mbdlfast.evaluation`) and
   reconstruct them with the classical baselines: zero-filled, CG-SENSE and ℓ1-wavelet, their λ
   chosen on validation slices (another seed; for ``data``, slices with the data's size and sampling);
3. reconstruct them with the paper-style pipeline (:data:`mbdlfast.inference.BASELINE`: naive
   operator, fp32 eager, the public Anderson) and with :data:`~mbdlfast.inference.OPTIMIZED`;
4. prune the network's channels at each ratio (:func:`mbdlfast.prune.prune_structured`), fine-tune
   each pruned network by distillation from the dense one (``school``, on synthetic slices);
5. reconstruct again with the optimized pipeline, at the SAME solver tolerance as the dense runs.

Each row of the result gives the method, parameters, PSNR / SSIM of the magnitude images, solver
iterations and whether the solver converged, the median time per slice and the speed-ups over the
dense baseline and the dense optimized model. ``recon_grid.png`` shows the reference, zero-filled,
CG-SENSE, ℓ1-wavelet and each network with PSNR / SSIM in the titles and their error maps with a colour bar;
two more PNGs show speed-up and PSNR against the ratio. Synthetic slices are scored against the
true image (the simulation's true maps are used, by every method alike). With ``data`` the test
slices come from a fastMRI h5 / cfl / npy file or folder: fully sampled data are undersampled
retrospectively and scored against the RSS of the fully sampled data; for undersampled data there
is no ground truth, so PSNR / SSIM are measured against the dense optimized reconstruction (the
table says so).
"""
from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import torch

from mbdlfast.data.synthetic import SyntheticMulticoil
from mbdlfast.evaluation import (
    EvaluationSlices,
    MethodResult,
    choose_lambdas,
    classical_baselines,
    evaluate,
    prepare_slices,
    solver_report,
)
from mbdlfast.training.config import DataConfig
from mbdlfast.training.data import line_mask
from mbdlfast.info import versions
from mbdlfast.outputs import output_folder, write_json

logger = logging.getLogger(__name__)

TEST_SEED = 20_261_121  # held-out synthetic slices: a seed the default weights never trained on
VALIDATION_SEED = 31_337  # CG-SENSE's λ is chosen on these, never on the test slices
VALIDATION_SLICES = 2
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
    center_fraction: float | None = None
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
    """One line of the demo's table: a network (``pipeline`` baseline or optimized) or a classical
    reconstruction (``pipeline`` "classical", no parameters)."""

    label: str
    pipeline: str
    ratio: float
    tuning: str
    params: int
    psnr: float
    ssim: float
    iters: float
    median_ms: float
    converged: bool
    solver: str
    speedup_vs_baseline: float = 1.0
    speedup_vs_dense: float = 1.0


@dataclass
class DemoResult:
    rows: list[DemoRow]
    reference: str  # what PSNR / SSIM are measured against
    device: str
    files: list[Path] = field(default_factory=list)


# ------------------------------------------------------------------------------------------- data


def _synthetic_slices(settings: DemoSettings, seed: int, count: int) -> EvaluationSlices:
    """``count`` synthetic slices of generator ``seed`` with their true maps and image, one line mask."""
    size = settings.image_size
    sample = SyntheticMulticoil(size, size, settings.num_coils, seed=seed).batch(range(count))
    fraction = settings.center_fraction if settings.center_fraction is not None else DataConfig.center_fraction
    mask = line_mask("equispaced", size, settings.acceleration, fraction, seed=settings.seed)
    return prepare_slices(sample["kspace"], mask, fully_sampled=True, maps=sample["maps"], truth=sample["target"],
                          name=f"synthetic slices (seed {seed})")


def _user_slices(settings: DemoSettings, checkpoint) -> tuple[EvaluationSlices, EvaluationSlices | None]:
    """The middle slices of the first volume at ``settings.data`` and validation slices with its
    size and sampling, prepared as ``recon`` prepares them."""
    from mbdlfast.data.volumes import load_volumes
    from mbdlfast.reconstruct import Reconstructor, ReconSettings

    volume = load_volumes(settings.data)[0]
    reconstructor = Reconstructor(checkpoint, settings.data, ReconSettings(
        acceleration=settings.acceleration, center_fraction=settings.center_fraction, seed=settings.seed,
        progress=False))
    sampling = reconstructor.sampling(volume)
    first = max(0, volume.num_slices // 2 - settings.num_slices // 2)
    kspace = volume.kspace[first:first + settings.num_slices]
    slices = prepare_slices(kspace, sampling.mask, fully_sampled=sampling.retrospective,
                            calib_width=reconstructor.data.calib_width, name=volume.name)
    return slices, reconstructor.validation_slices(volume, sampling)


# ------------------------------------------------------------------------------------- evaluation


def _time_per_slice_ms(call: Callable[[], object], batch_size: int, repeats: int, device: torch.device) -> float:
    samples = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        samples.append((time.perf_counter() - began) * 1e3)
    return statistics.median(samples) / batch_size


def _network(model, name: str, slices: EvaluationSlices, settings: DemoSettings, pipeline,
             device: torch.device) -> tuple[MethodResult, float]:
    """``model`` under the inference ``pipeline`` on ``slices``: its result and median ms per slice."""
    from mbdlfast.inference import optimize_for_inference

    inputs = (slices.kspace, slices.physics())
    wrapper = optimize_for_inference(model, inputs, pipeline, tol=settings.tol, max_iter=settings.max_iter)
    image = wrapper(*inputs)
    result = evaluate(name, image, solver_report(wrapper, len(slices)), slices)
    return result, _time_per_slice_ms(lambda: wrapper(*inputs), len(slices), settings.repeats, device)


def _row(result: MethodResult, pipeline: str, ratio: float, tuning: str, params: int, median_ms: float) -> DemoRow:
    return DemoRow(result.name, pipeline, ratio, tuning, params, result.mean("psnr"), result.mean("ssim"),
                   statistics.mean(result.solver.iterations), median_ms, result.solver.converged,
                   result.solver.summary())


def run_demo(settings: DemoSettings, out) -> DemoResult:
    """Run the demo (see the module docstring) and write its PNGs and ``demo.json`` to ``out``."""
    settings = settings.resolved()
    with output_folder(out) as out:
        return _run(settings, out)


def _run(settings: DemoSettings, out: Path) -> DemoResult:
    from mbdlfast.evaluation import baseline_runs
    from mbdlfast.finetune import finetune
    from mbdlfast.inference import BASELINE, OPTIMIZED
    from mbdlfast.pretrained import DEFAULT_DATA, load_default
    from mbdlfast.prune import count_params, prune_structured

    device = torch.device("cuda" if settings.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if settings.device == "auto" else settings.device))
    checkpoint = load_default("deq")
    teacher = checkpoint.model.to(device)
    if settings.data:
        slices, validation = _user_slices(settings, checkpoint)
    else:
        slices = _synthetic_slices(settings, TEST_SEED, settings.num_slices)
        validation = _synthetic_slices(settings, VALIDATION_SEED, VALIDATION_SLICES)
    slices = slices.to(device)
    validation = validation.to(device) if validation is not None else None

    dense_baseline, baseline_ms = _network(teacher, "dense", slices, settings, BASELINE, device)
    dense, dense_ms = _network(teacher, "dense", slices, settings, OPTIMIZED, device)
    if slices.reference is None:  # undersampled data: agreement with the dense optimized reconstruction
        slices = dataclasses.replace(slices, reference=dense.image.abs(), sense_reference=dense.image,
                                     reference_name="the dense optimized reconstruction (no fully sampled data)")
        dense_baseline, dense = (evaluate(r.name, r.image, r.solver, slices) for r in (dense_baseline, dense))
    logger.info("demo on %s: %d test slice(s) of %s, R=%d, tol %g; PSNR/SSIM against %s", device, len(slices),
                "x".join(map(str, slices.kspace.shape[-3:])), settings.acceleration, settings.tol,
                slices.reference_name)

    record = choose_lambdas(validation) if validation is not None else {}
    classical = classical_baselines(slices, record)
    rows = [_row(dense_baseline, "baseline", 0.0, "none", count_params(teacher), baseline_ms),
            _row(dense, "optimized", 0.0, "none", count_params(teacher), dense_ms)]
    runs = baseline_runs(record)
    for result in classical:
        ms = _time_per_slice_ms(lambda run=runs[result.name]: run(slices), len(slices), settings.repeats, device)
        rows.append(_row(result, "classical", 0.0, "none", 0, ms))
    images = {result.name: result for result in classical}
    images["dense"] = dense

    finetune_data = dataclasses.replace(DEFAULT_DATA, num_slices=max(8, 2 * settings.finetune_steps),
                                        acceleration=settings.acceleration, num_coils=settings.num_coils)
    first = slices.select(slice(0, 1))
    example = (first.kspace, first.physics())
    for ratio in settings.ratios:
        student = prune_structured(teacher, example, ratio)
        tuning = "none"
        if settings.finetune_steps > 0:
            tuning = "school"
            student = finetune(student, model_name=checkpoint.model_name, model_kwargs=checkpoint.model_kwargs,
                               mode="school", teacher=teacher, data=finetune_data, steps=settings.finetune_steps,
                               lr=FINETUNE_LR, batch_size=2, progress=settings.progress, device=str(device),
                               seed=FINETUNE_SEED).model
        label = f"pruned {ratio:.0%}"
        result, ms = _network(student, label, slices, settings, OPTIMIZED, device)
        rows.append(_row(result, "optimized", ratio, tuning, count_params(student), ms))
        images[f"{label} + {tuning}"] = result
    for row in rows:
        row.speedup_vs_baseline = rows[0].median_ms / row.median_ms
        row.speedup_vs_dense = rows[1].median_ms / row.median_ms

    from mbdlfast.experiments.demo_plots import write_demo_figures

    files = write_demo_figures(out, rows, {name: result.image[0] for name, result in images.items()},
                               {name: {"psnr": r.metrics["psnr"][0], "ssim": r.metrics["ssim"][0]}
                                for name, r in images.items()},
                               reference=slices.reference[0], reference_name=slices.reference_name)
    result = DemoResult(rows=rows, reference=slices.reference_name, device=str(device), files=files)
    files.append(write_json(out / "demo.json", {
        "settings": asdict(settings), "device": str(device), **versions(), "reference": slices.reference_name,
        "maps": slices.maps_source, **record, "rows": [asdict(row) for row in rows],
        "solvers": {name: r.solver.as_dict() for name, r in images.items()}}))
    return result


def format_table(result: DemoResult) -> str:
    """The demo's table as aligned text."""
    header = f"{'method':<28}{'pipeline':<11}{'tuning':<8}{'params':>10}{'PSNR':>8}{'SSIM':>8}{'iters':>7}" \
             f"{'conv':>6}{'ms/slice':>10}{'x base':>8}{'x dense':>9}"
    lines = [header, "-" * len(header)]
    for row in result.rows:
        lines.append(f"{row.label:<28}{row.pipeline:<11}{row.tuning:<8}{row.params:>10,}{row.psnr:>8.2f}"
                     f"{row.ssim:>8.4f}{row.iters:>7.1f}{'yes' if row.converged else 'no':>6}{row.median_ms:>10.1f}"
                     f"{row.speedup_vs_baseline:>8.2f}{row.speedup_vs_dense:>9.2f}")
    lines.append(f"PSNR/SSIM against {result.reference}; device {result.device}; all DEQs at the same solver "
                 "tolerance; conv: every slice's solver converged (classical and unrolled: fixed steps count as yes)")
    return "\n".join(lines)
