"""The evaluation protocol of ``recon``, ``demo`` and the benchmarks: one way to prepare inputs,
references, classical baselines and convergence reports, so that every table is measured alike.

Inputs (:func:`prepare_slices`):

- the undersampled k-space y = M·k: a retrospective mask applied to fully sampled data, or the data's
  own acquired sampling (1D lines or a 2D pattern), never re-undersampled;
- coil maps by ESPIRiT from the calibration square the mask keeps (:func:`calibration_maps`), so no
  sample the mask drops reaches the reconstruction; a simulation may pass its true maps instead,
  and ``maps_source`` says which;
- y and everything derived from it divided by max|Aᴴy| of the undersampled slice (as in training).

References (fully sampled data only): the RSS of the fully sampled coil images (fastMRI's multicoil
convention), the SENSE combination Sᴴ·ifft2c(k) with the same maps, and for simulations the true
image. Metrics (:func:`quality`): fastMRI PSNR / SSIM of magnitudes against a reference (maxval its
maximum), after scaling each magnitude image by the least-squares factor onto that reference
(SENSE-type images and an RSS weigh intensities differently; the factor removes only that).

Baselines (:data:`CLASSICAL`): zero-filled Aᴴy, CG-SENSE and ℓ1-wavelet compressed sensing, each
with its λ chosen on validation slices, never on the test slices (:func:`choose_lambda`). Every
reconstruction carries a :class:`SolverReport`.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, fields
from typing import Callable

import torch

from mbdlfast.data.noise import add_measurement_noise
from mbdlfast.metrics import psnr_batch, ssim_batch
from mbdlfast.physics.compressed_sensing import l1_wavelet
from mbdlfast.physics.espirit_maps import calibration_width, espirit
from mbdlfast.ops.fft import ifft2c
from mbdlfast.physics.linalg import cg_sense, rss
from mbdlfast.physics.sense import SenseOperator

CALIB_WIDTH = 24  # the calibration square ESPIRiT uses at most (as in training, DataConfig.calib_width)
ESPIRIT_KERNEL_WIDTH = 6  # espirit's default kernel: the calibration square must be at least this wide
# The λ grids are absolute, for k-space scaled by max|Aᴴy| (prepare_slices' normalise).
CG_LAMBDAS = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
CG_MAX_ITER = 100
CG_TOL = 1e-5
L1_LAMBDAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
L1_MAX_ITER = 100
L1_TOL = 1e-4
EQUAL_PSNR_DB = 0.05  # two PSNRs within this are equal (the equilibrium check, equal-quality timings)


@dataclass
class EvaluationSlices:
    """Slices prepared by :func:`prepare_slices`: ``kspace`` (B,C,H,W) undersampled and scaled, ``mask``
    (B,W) or (B,H,W) bool, ``maps`` (B,C,H,W), ``scale`` (B,); ``reference`` (B,H,W) real and
    ``sense_reference`` (B,H,W) complex when fully sampled data exist, else None."""

    kspace: torch.Tensor
    mask: torch.Tensor
    maps: torch.Tensor
    scale: torch.Tensor
    reference: torch.Tensor | None = None
    sense_reference: torch.Tensor | None = None
    maps_source: str = ""
    reference_name: str = ""
    name: str = ""

    def __len__(self) -> int:
        return self.kspace.shape[0]

    @property
    def mask_is_2d(self) -> bool:
        return self.mask.dim() == 3

    def physics(self) -> SenseOperator:
        """The slices' SENSE operator (validated here, once per call: build it once per batch)."""
        return SenseOperator(self.maps, self.mask, mask_is_2d=self.mask_is_2d)

    def select(self, index: slice) -> "EvaluationSlices":
        """The slices ``index`` (a slice object) of the batch."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return EvaluationSlices(**{name: value[index] if isinstance(value, torch.Tensor) else value
                                   for name, value in values.items()})

    @classmethod
    def concatenate(cls, parts: list["EvaluationSlices"]) -> "EvaluationSlices":
        """The slices of ``parts`` (prepared alike) as one batch."""
        values = {}
        for f in fields(cls):
            items = [getattr(part, f.name) for part in parts]
            values[f.name] = torch.cat(items) if isinstance(items[0], torch.Tensor) else items[0]
        return cls(**values)

    def to(self, device) -> "EvaluationSlices":
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return EvaluationSlices(**{name: value.to(device) if isinstance(value, torch.Tensor) else value
                                   for name, value in values.items()})


def batch_mask(mask: torch.Tensor, batch_size: int, height: int) -> torch.Tensor:
    """A volume's mask, (W,) lines or (H,W) 2D, as the per-slice (B,W) or (B,H,W) bool mask."""
    mask = mask.bool()
    if mask.dim() == 1:
        return mask.expand(batch_size, -1)
    if mask.dim() == 2 and mask.shape[0] == height:
        return mask.expand(batch_size, -1, -1)
    raise ValueError(f"mask: expected (W,) or (H,W) with H={height}, got {tuple(mask.shape)}")


def calibration_maps(undersampled: torch.Tensor, mask: torch.Tensor, *, calib_width: int = CALIB_WIDTH,
                     name: str = "data") -> tuple[torch.Tensor, str]:
    """ESPIRiT maps (B,C,H,W) of undersampled k-space from the calibration square ``mask`` keeps.

    ValueError naming ``center_fraction`` when the mask keeps no square of at least the ESPIRiT
    kernel width (e.g. ``center_fraction=0``), or when ESPIRiT finds no sensitivities."""
    height, width = undersampled.shape[-2:]
    side = calibration_width(mask, (height, width), upto=calib_width)
    if side < ESPIRIT_KERNEL_WIDTH:
        raise ValueError(f"center_fraction: the sampling of {name} keeps a fully sampled centre of {side}x{side}; "
                         f"coil maps need calibration data, at least {ESPIRIT_KERNEL_WIDTH}x{ESPIRIT_KERNEL_WIDTH} "
                         "(raise center_fraction or give data with a calibration region)")
    maps = espirit(undersampled, calib_width=side, kernel_width=ESPIRIT_KERNEL_WIDTH)
    if bool((maps.abs().flatten(1).amax(dim=1) == 0).any()):
        raise ValueError(f"data: {name}: ESPIRiT found no coil sensitivities in its {side}x{side} calibration "
                         "region (an empty slice, or too little calibration data)")
    return maps, f"ESPIRiT on the {side}x{side} calibration square the mask keeps"


def prepare_slices(kspace: torch.Tensor, mask: torch.Tensor, *, fully_sampled: bool, normalise: bool = True,
                   calib_width: int = CALIB_WIDTH, maps: torch.Tensor | None = None,
                   truth: torch.Tensor | None = None, name: str = "data", noise_snr_db: float | None = None,
                   noise_seed=0) -> EvaluationSlices:
    """The protocol's inputs and references for (B,C,H,W) ``kspace`` and its volume's ``mask``.

    ``fully_sampled``: ``kspace`` is fully sampled and ``mask`` is applied here (retrospective);
    otherwise ``kspace`` is the acquisition and ``mask`` its sampling. ``maps`` (true maps of a
    simulation) replace the ESPIRiT estimate; ``truth`` (B,H,W) becomes the reference (simulations).
    ``noise_snr_db``: noise added to the measured samples at that input SNR (drawn from
    ``noise_seed``, :func:`mbdlfast.data.noise.add_measurement_noise`) before anything is estimated
    from them; the references stay those of the data as given.
    """
    batch_size, _, height, _ = kspace.shape
    masks = batch_mask(mask.to(kspace.device), batch_size, height)
    undersampled = kspace * (masks[:, None] if masks.dim() == 3 else masks[:, None, None, :])
    if noise_snr_db is not None:
        undersampled = add_measurement_noise(undersampled, noise_snr_db, seed=noise_seed)
    maps_source = "the simulation's true maps"
    if maps is None:
        maps, maps_source = calibration_maps(undersampled, mask, calib_width=calib_width, name=name)
    maps = maps if maps.dim() == 4 else maps.expand(batch_size, -1, -1, -1)
    operator = SenseOperator(maps, masks, mask_is_2d=masks.dim() == 3)
    scale = torch.ones(batch_size, device=kspace.device)
    if normalise:
        scale = operator.A_adjoint(undersampled).abs().flatten(1).amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)
    reference = sense_reference = None
    reference_name = "none (undersampled data: no fully sampled reference)"
    if fully_sampled:
        coil_images = ifft2c(kspace) / scale[:, None, None, None]
        sense_reference = (maps.conj() * coil_images).sum(dim=1)
        if truth is not None:
            reference, reference_name = truth.abs() / scale[:, None, None], "the true image (simulation)"
        else:
            reference, reference_name = rss(coil_images, dim=1), "RSS of the fully sampled coil images"
    return EvaluationSlices(undersampled / scale[:, None, None, None], masks, maps, scale, reference,
                            sense_reference, maps_source, reference_name, name)


# ------------------------------------------------------------------------------------------- metrics


def scaled_magnitude(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """|image| (B,H,W) times its per-slice least-squares factor onto the real ``reference``."""
    magnitude = image.abs().to(reference.dtype)
    numerator = (magnitude * reference).flatten(1).sum(dim=1)
    denominator = magnitude.square().flatten(1).sum(dim=1).clamp_min(torch.finfo(reference.dtype).tiny)
    return magnitude * (numerator / denominator)[:, None, None]


def quality(image: torch.Tensor, slices: EvaluationSlices) -> dict[str, list[float]]:
    """Per-slice ``psnr`` / ``ssim`` against the reference and ``psnr_sense`` against the SENSE-combined
    reference (see the module docstring); empty without a fully sampled reference."""
    if slices.reference is None:
        return {}
    reference = slices.reference.float()
    scaled = scaled_magnitude(image.detach().to(reference.device), reference)
    sense = slices.sense_reference.abs().float()
    return {"psnr": psnr_batch(reference, scaled).tolist(), "ssim": ssim_batch(reference, scaled).tolist(),
            "psnr_sense": psnr_batch(sense, scaled_magnitude(image.detach().to(sense.device), sense)).tolist()}


# ------------------------------------------------------------------------------------------ solvers


@dataclass
class SolverReport:
    """How a reconstruction's solver ended, per slice: ``status`` ("converged", "max_iter",
    "diverged", "nan", or "fixed" for unrolled networks and closed forms), ``iterations`` and the
    final relative ``residual`` (None where there is none), with the solver's ``tol``."""

    solver: str
    status: list[str]
    iterations: list[int]
    residual: list[float | None] = field(default_factory=list)
    tol: float | None = None

    @property
    def converged(self) -> bool:
        return all(status in ("converged", "fixed") for status in self.status)

    def summary(self) -> str:
        """One line: e.g. 'anderson: converged, 18-21 iterations, residual <= 8.1e-04 (tol 1e-03)'."""
        counts = sorted(set(self.iterations))
        iterations = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
        if all(status == "fixed" for status in self.status):
            return f"{self.solver}: {iterations} fixed steps (no convergence criterion)"
        states = ", ".join(f"{self.status.count(s)} {s}" for s in dict.fromkeys(self.status)) \
            if len(set(self.status)) > 1 else self.status[0]
        residuals = [r for r in self.residual if r is not None]
        worst = f", residual <= {max(residuals):.1e}" if residuals else ""
        tol = f" (tol {self.tol:.0e})" if self.tol is not None else ""
        return f"{self.solver}: {states}, {iterations} iterations{worst}{tol}"

    def as_dict(self) -> dict:
        return {"solver": self.solver, "status": self.status, "iterations": self.iterations,
                "residual": self.residual, "tol": self.tol, "converged": self.converged}


def fixed_steps(solver: str, steps: int, batch_size: int) -> SolverReport:
    """The report of a reconstruction with a fixed number of steps (no convergence criterion)."""
    return SolverReport(solver, ["fixed"] * batch_size, [steps] * batch_size, [None] * batch_size)


def cg_report(info: dict, tol: float, solver: str = "CG") -> SolverReport:
    """The report of :func:`mbdlfast.physics.linalg.conjugate_gradient`'s ``info``."""
    converged = info["converged"].tolist()
    return SolverReport(solver, ["converged" if c else "max_iter" for c in converged], info["iterations"].tolist(),
                        info["residuals"][-1].tolist(), tol)


def solver_report(model, batch_size: int) -> SolverReport:
    """The report of the last forward of ``model`` (a network or its inference wrapper).

    Fixed-point solvers (DEQ) leave ``last_info`` with a per-sample ``status``; MoDL leaves its last
    data-consistency CG's info; networks without ``last_info`` ran a fixed number of steps."""
    network = getattr(model, "model", model)
    info = getattr(model, "last_info", None) or getattr(network, "last_info", None)
    if info is not None and "rel_residual" in info:
        tol = getattr(model, "tol", None) or getattr(network, "solver_kwargs", {}).get("tol")
        solver = getattr(getattr(model, "settings", None), "solver", "anderson")
        status = info.get("status") or ["converged" if c else "max_iter"
                                        for c in torch.as_tensor(info["converged"]).reshape(-1).tolist()]
        steps = info.get("sample_nstep", torch.full((batch_size,), int(info["nstep"])))
        return SolverReport(solver, list(status), torch.as_tensor(steps).reshape(-1).tolist(),
                            torch.as_tensor(info["rel_residual"]).float().reshape(-1).tolist(), tol)
    if info is not None and "residuals" in info:
        return cg_report(info, getattr(network, "cg_tol", None), solver="MoDL's last CG")
    cascades = getattr(network, "cascades", None)
    if cascades is not None:
        return fixed_steps("unrolled cascades", len(cascades), batch_size)
    return fixed_steps("one forward pass", 1, batch_size)


@dataclass
class EquilibriumCheck:
    """A DEQ stopped after ``early_iterations`` against the same DEQ solved to ``tol`` (at most
    ``max_iter`` iterations), per slice: is it an equilibrium model (the solve converges, and the
    equilibrium is not worse than the truncated iterate)? ``report`` is the solve's SolverReport."""

    tol: float
    max_iter: int
    early_iterations: int
    report: SolverReport
    psnr_early: list[float]
    psnr_converged: list[float]

    @property
    def converged(self) -> bool:
        return self.report.converged

    @property
    def holds(self) -> bool:
        """Converged on every slice, and on no slice is the equilibrium's PSNR below the early iterate's
        (by more than :data:`EQUAL_PSNR_DB`, the resolution at which this project calls PSNRs equal)."""
        return self.converged and all(c >= e - EQUAL_PSNR_DB for c, e in zip(self.psnr_converged, self.psnr_early))

    def as_dict(self) -> dict:
        return {"tol": self.tol, "max_iter": self.max_iter, "early_iterations": self.early_iterations,
                "solver": self.report.as_dict(), "psnr_early": self.psnr_early,
                "psnr_converged": self.psnr_converged, "converged": self.converged, "holds": self.holds}


@torch.no_grad()
def equilibrium_check(model, slices: EvaluationSlices, *, tol: float = 1e-4, max_iter: int = 100,
                      early_iterations: int = 25) -> EquilibriumCheck:
    """Run the DEQ ``model`` (anything with ``solver_kwargs``, e.g. :class:`mbdlfast.models.DEQ`) on
    ``slices`` twice with its own solver: exactly ``early_iterations`` iterations (the seed's capped
    solve), and to ``tol`` within ``max_iter``; both scored by :func:`quality`. The model is not changed."""
    if slices.reference is None:
        raise ValueError("slices: the equilibrium check scores against a reference; pass fully sampled slices")
    if not hasattr(model, "solver_kwargs"):
        raise TypeError(f"model: expected a DEQ (with solver_kwargs), got {type(model).__name__}")

    def solve(**settings) -> tuple[torch.Tensor, SolverReport]:
        variant = copy.copy(model)  # shares the parameters; only the solver settings differ
        variant.solver_kwargs = {**model.solver_kwargs, **settings}
        image = variant(slices.kspace, slices.physics())
        return image, solver_report(variant, len(slices))

    early, _ = solve(tol=0.0, max_iter=early_iterations)
    converged, report = solve(tol=tol, max_iter=max_iter)
    return EquilibriumCheck(tol, max_iter, early_iterations, report, quality(early, slices)["psnr"],
                            quality(converged, slices)["psnr"])


# ---------------------------------------------------------------------------------------- baselines


def zero_filled(slices: EvaluationSlices) -> torch.Tensor:
    """Aᴴy (B,H,W)."""
    return slices.physics().A_adjoint(slices.kspace)


def cg_sense_baseline(slices: EvaluationSlices, lam: float) -> tuple[torch.Tensor, SolverReport]:
    """CG-SENSE (AᴴA + λI) x = Aᴴy and its report."""
    image, info = cg_sense(slices.physics(), slices.kspace, lam=lam, max_iter=CG_MAX_ITER, tol=CG_TOL)
    return image, cg_report(info, CG_TOL, solver=f"CG-SENSE (lambda {lam:g})")


def l1_wavelet_baseline(slices: EvaluationSlices, lam: float) -> tuple[torch.Tensor, SolverReport]:
    """ℓ1-wavelet compressed sensing (db4, FISTA; :func:`mbdlfast.physics.compressed_sensing.l1_wavelet`)
    and its report (the residual is the last relative change of the iterate)."""
    image, info = l1_wavelet(slices.physics(), slices.kspace, lam, max_iter=L1_MAX_ITER, tol=L1_TOL)
    last = info["changes"][-1].tolist() if len(info["changes"]) else [0.0] * len(slices)
    status = ["converged" if c else "max_iter" for c in info["converged"].tolist()]
    return image, SolverReport(f"l1-wavelet FISTA (lambda {lam:g})", status, info["iterations"].tolist(), last, L1_TOL)


@dataclass(frozen=True)
class ClassicalMethod:
    """A classical reconstruction with one weight λ, chosen on validation slices from ``lambdas``."""

    name: str
    lambdas: tuple[float, ...]
    run: Callable[[EvaluationSlices, float], tuple[torch.Tensor, SolverReport]]


CLASSICAL = (ClassicalMethod("CG-SENSE", CG_LAMBDAS, cg_sense_baseline),
             ClassicalMethod("l1-wavelet", L1_LAMBDAS, l1_wavelet_baseline))


def choose_lambda(method: ClassicalMethod, validation: EvaluationSlices) -> tuple[float, dict[float, float]]:
    """The λ of ``method.lambdas`` with the best mean PSNR on the ``validation`` slices, and every
    λ's PSNR. The validation slices must have a fully sampled reference and must not be the test slices."""
    if validation.reference is None:
        raise ValueError(f"validation: choosing {method.name}'s lambda needs fully sampled validation slices")
    scores = {}
    for lam in method.lambdas:
        image, _ = method.run(validation, lam)
        psnr = quality(image, validation)["psnr"]
        scores[lam] = sum(psnr) / len(psnr)
    best = max(scores, key=lambda lam: scores[lam] if math.isfinite(scores[lam]) else -math.inf)
    return best, scores


# ------------------------------------------------------------------------------------------- results


@dataclass
class MethodResult:
    """One reconstruction method on the evaluation slices: its image (None once results of several
    batches are merged, see :mod:`mbdlfast.reconstruct`), solver report and quality."""

    name: str
    image: torch.Tensor | None
    solver: SolverReport
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def mean(self, metric: str) -> float:
        values = self.metrics.get(metric, [])
        return sum(values) / len(values) if values else float("nan")

    def as_dict(self) -> dict:
        return {"name": self.name, "metrics": self.metrics,
                "mean": {metric: self.mean(metric) for metric in self.metrics}, "solver": self.solver.as_dict()}


def evaluate(name: str, image: torch.Tensor, solver: SolverReport, slices: EvaluationSlices) -> MethodResult:
    return MethodResult(name, image, solver, quality(image, slices))


def choose_lambdas(validation: EvaluationSlices) -> dict:
    """Every :data:`CLASSICAL` method's λ chosen on the ``validation`` slices: a record with the
    validation data's name and, per method, the λ and each λ's validation PSNR. Choose once per
    sampling (a volume, a test set), not per batch of slices."""
    lambdas = {}
    for method in CLASSICAL:
        lam, scores = choose_lambda(method, validation)
        lambdas[method.name] = {"lambda": lam, "validation_psnr": {str(k): v for k, v in scores.items()}}
    return {"validation": validation.name, "lambdas": lambdas}


def baseline_runs(choice: dict | None) -> dict[str, Callable[[EvaluationSlices], tuple[torch.Tensor, SolverReport]]]:
    """The classical baselines by result name: zero-filled, and with a :func:`choose_lambdas` record
    every :data:`CLASSICAL` method at its chosen λ; each maps slices to (image, report). Results and
    timings both call these, so they name and run the same thing."""
    runs = {"zero-filled": lambda slices: (zero_filled(slices), fixed_steps("A^H y", 1, len(slices)))}
    for method in CLASSICAL if choice else ():
        lam = choice["lambdas"][method.name]["lambda"]
        runs[f"{method.name} (lambda {lam:g})"] = lambda slices, method=method, lam=lam: method.run(slices, lam)
    return runs


def classical_baselines(slices: EvaluationSlices, choice: dict | None) -> list[MethodResult]:
    """Every run of :func:`baseline_runs` on ``slices``, scored."""
    return [evaluate(name, *run(slices), slices) for name, run in baseline_runs(choice).items()]


def format_table(results: list[MethodResult], reference_name: str, maps_source: str) -> str:
    """The methods' mean PSNR / SSIM (against the reference and the SENSE combination) and solver status."""
    header = f"{'method':<28}{'PSNR':>8}{'SSIM':>8}{'PSNR(SENSE)':>13}  solver"
    lines = [header, "-" * (len(header) + 40)]
    for result in results:
        numbers = "".join(f"{result.mean(metric):>{width}.{digits}f}" if result.metrics else f"{'-':>{width}}"
                          for metric, width, digits in (("psnr", 8, 2), ("ssim", 8, 4), ("psnr_sense", 13, 2)))
        lines.append(f"{result.name:<28}{numbers}  {result.solver.summary()}")
    scored = any(result.metrics for result in results)
    lines.append(f"reference: {reference_name}; maps: {maps_source}"
                 + ("; magnitudes scaled by least squares onto the reference" if scored else ""))
    return "\n".join(lines)
