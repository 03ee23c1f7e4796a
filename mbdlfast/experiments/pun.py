"""The PUN experiment: does pruning an unrolled network at initialization make it generalise better?

Dense MoDL and MoDL pruned at initialization (PUN, SNIP, random, ... from
:mod:`mbdlfast.prune.at_init`) are trained alike, from the same random initialization, on ONE
distribution of synthetic data (one acceleration, mask kind, noise level and phantom family), then
tested in distribution and under shifts of one factor at a time:

=================  ==============================================================================
``in_dist``        held-out slices of the training distribution
``shift_accel``    another acceleration
``shift_mask``     random instead of equispaced lines (or the reverse)
``shift_noise``    another noise level
``shift_family``   another phantom family
``shift_brain``    the real 8-coil brain (BART's ``brain_clean``), fully sampled, k-space
                   centre-cropped to the training width, ESPIRiT maps, retrospectively undersampled
                   with the training mask
=================  ==============================================================================

Metrics are PSNR and SSIM of the magnitude images, each slice against its own maximum (the test
slices are normalised as the training slices are, by max|Aᴴy|). The masks stay applied through
training (:mod:`mbdlfast.prune.masking`), which uses :class:`mbdlfast.finetune.Trainer` with the
pre-masked model.
"""
from __future__ import annotations

import copy
import logging
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mbdlfast.data.cfl import read_cfl
from mbdlfast.training.config import DataConfig, ModelConfig, OptimConfig, TrainConfig, validate
from mbdlfast.training.data import TrainingBatch, TrainingSlices, collate_batch, line_mask
from mbdlfast.training.losses import loss_function
from mbdlfast.training.registry import build_model, model_spec
from mbdlfast.training.trainer import Trainer
from mbdlfast.metrics import psnr_batch, ssim_batch
from mbdlfast.physics.espirit_maps import espirit
from mbdlfast.ops.fft import ifft2c
from mbdlfast.physics.sense import SenseOperator
from mbdlfast.prune.at_init import METHODS, prune_at_init
from mbdlfast.prune.masking import sparsity

logger = logging.getLogger(__name__)

MODEL_NAME = "modl"
DENSE = "dense"
SHIFTS = ("shift_accel", "shift_mask", "shift_noise", "shift_family", "shift_brain")

__all__ = ["DENSE", "PunConfig", "PunResult", "SHIFTS", "brain_test_batch", "evaluate", "run_pun", "summarize",
           "zero_filled"]


@dataclass
class PunConfig:
    """Settings of one experiment. ``methods``: pruning-at-init methods trained besides the dense
    model; ``density``: the fraction of the denoiser's conv weights they keep. ``search_steps``:
    PUN's logit optimisation steps; ``score_batches``: training batches the data-driven methods
    score on. ``brain``: BART base path of the real brain (None or missing: no shift_brain)."""

    methods: tuple[str, ...] = ("pun", "snip", "random")
    density: float = 0.1
    image_size: int = 64
    num_coils: int = 4
    train_slices: int = 64
    test_slices: int = 8
    acceleration: int = 4
    center_fraction: float = 0.08
    mask: str = "equispaced"
    snr_db: float = 30.0
    family: str = "brain"
    shift_acceleration: int = 8
    shift_snr_db: float = 15.0
    shift_family: str = "shepp_logan"
    brain: str | None = None
    model_kwargs: dict = field(default_factory=lambda: {"num_iter": 5, "cg_iter": 5})
    steps: int = 200
    lr: float = 1e-3
    batch_size: int = 2
    search_steps: int = 100
    search_lr: float = 0.1
    score_batches: int = 4
    synflow_iterations: int = 100
    seed: int = 0
    device: str = "auto"
    progress: bool = False

    def check(self) -> "PunConfig":
        unknown = [m for m in self.methods if m not in METHODS]
        if not self.methods or unknown:
            raise ValueError(f"methods: expected a non-empty list from {METHODS}, got {list(self.methods)}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods: listed twice in {list(self.methods)}")
        if isinstance(self.density, bool) or not 0.0 < self.density <= 1.0:
            raise ValueError(f"density: expected a fraction in (0, 1], got {self.density}")
        for name in ("test_slices", "search_steps", "score_batches", "synflow_iterations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.shift_acceleration == self.acceleration or self.shift_snr_db == self.snr_db \
                or self.shift_family == self.family:
            raise ValueError("shift_acceleration, shift_snr_db, shift_family: each must differ from the training value")
        validate(self.train_config(Path(".")))  # image size, coils, slices, mask kind, family, lr, ...
        return self

    def train_data(self) -> DataConfig:
        return DataConfig(source="synthetic", image_size=self.image_size, num_coils=self.num_coils,
                          num_slices=self.train_slices, snr_db=self.snr_db, family=self.family,
                          acceleration=self.acceleration, center_fraction=self.center_fraction, mask=self.mask,
                          val_fraction=0.0)

    def train_config(self, out: Path) -> TrainConfig:
        return TrainConfig(model=ModelConfig(MODEL_NAME, dict(self.model_kwargs)), data=self.train_data(),
                           train=OptimConfig(batch_size=self.batch_size, steps=self.steps, lr=self.lr,
                                             progress=self.progress, log_every=max(1, self.steps // 5)),
                           seed=self.seed, out=str(out), device=self.device)

    def test_data(self) -> dict[str, DataConfig]:
        """The synthetic test distributions (shift_brain is real data, see :func:`brain_test_batch`)."""
        base = replace(self.train_data(), num_slices=self.test_slices)
        return {
            "in_dist": base,
            "shift_accel": replace(base, acceleration=self.shift_acceleration),
            "shift_mask": replace(base, mask="equispaced" if self.mask == "random" else "random"),
            "shift_noise": replace(base, snr_db=self.shift_snr_db),
            "shift_family": replace(base, family=self.shift_family),
        }


@dataclass
class PunResult:
    """``rows``: one per (method, test set) with method, density, eval, psnr, ssim; ``methods``:
    per method the kept density, pruning and training seconds; ``zero_filled``: PSNR/SSIM of Aᴴy
    per test set."""

    rows: list[dict]
    methods: dict[str, dict]
    config: dict
    zero_filled: dict[str, dict] = field(default_factory=dict)


def brain_test_batch(path, config: PunConfig) -> TrainingBatch:
    """The real brain as one test batch: coil k-space centre-cropped to ``image_size`` columns (and
    the same field-of-view aspect in rows), ESPIRiT maps, the training mask, the target Sᴴ·ifft2c(k)
    and the training normalisation by max|Aᴴy|."""
    array = read_cfl(path)
    if array.ndim < 3 or math.prod(array.shape[3:]) != 1:
        raise ValueError(f"brain: expected a single-slice BART array (X, Y, coils), got dims {array.shape}")
    kspace = torch.from_numpy(np.ascontiguousarray(np.moveaxis(array.reshape(array.shape[:3]), -1, 0)))
    height, width = kspace.shape[-2:]
    new_w = min(config.image_size, width)
    new_h = min(height, max(8, round(new_w * height / width)))
    top, left = (height - new_h) // 2, (width - new_w) // 2
    kspace = kspace[:, top:top + new_h, left:left + new_w].contiguous()
    maps = espirit(kspace, calib_width=min(24, new_h, new_w))
    target = (maps.conj() * ifft2c(kspace)).sum(dim=0)
    mask = line_mask(config.mask, new_w, config.acceleration, config.center_fraction, seed=(config.seed, 0))
    undersampled = kspace * mask
    scale = SenseOperator(maps, mask).A_adjoint(undersampled.unsqueeze(0)).abs().max()
    return collate_batch([{"kspace": undersampled / scale, "mask": mask, "maps": maps, "target": target / scale}])


def zero_filled(batch: TrainingBatch) -> torch.Tensor:
    """The zero-filled coil combination Aᴴy, the reference every trained network should beat."""
    return batch.physics().A_adjoint(batch.kspace)


@torch.no_grad()
def evaluate(reconstruct, batches: list[TrainingBatch], device: torch.device) -> dict[str, float]:
    """Mean PSNR and SSIM of the magnitudes of ``reconstruct(batch)`` over all slices of ``batches``."""
    psnrs, ssims = [], []
    for batch in batches:
        batch = batch.to(device)
        gt, pred = batch.target.abs().float(), reconstruct(batch).abs().float()
        psnrs.append(psnr_batch(gt, pred))
        ssims.append(ssim_batch(gt, pred))
    return {"psnr": float(torch.cat(psnrs).mean()), "ssim": float(torch.cat(ssims).mean())}


def _test_sets(config: PunConfig) -> dict[str, list[TrainingBatch]]:
    sets = {}
    for name, data in config.test_data().items():
        items = TrainingSlices(data, seed=config.seed + 1000)  # slices never seen in training
        sets[name] = [collate_batch([items[i] for i in range(start, min(start + config.batch_size, len(items)))])
                      for start in range(0, len(items), config.batch_size)]
    if config.brain is not None and Path(str(config.brain) + ".cfl").is_file():
        sets["shift_brain"] = [brain_test_batch(config.brain, config)]
    else:
        logger.warning("no shift_brain: BART file %s.cfl not found", config.brain)
    return sets


def _prune(model: nn.Module, method: str, config: PunConfig, score_batches: list[TrainingBatch],
           device: torch.device) -> None:
    spec = model_spec(MODEL_NAME)
    loss = loss_function(spec.loss)

    def loss_fn(network, batch):
        return loss(spec.reconstruct(network, batch), batch.target)

    options = {"random": {"seed": config.seed},
               "synflow": {"iterations": config.synflow_iterations},
               "pun": {"steps": config.search_steps, "lr": config.search_lr, "seed": config.seed,
                       "progress": config.progress}}.get(method, {})
    prune_at_init(model, method, config.density, loss_fn=loss_fn,
                  batches=[b.to(device) for b in score_batches], **options)


def run_pun(config: PunConfig, out=None) -> PunResult:
    """Train dense MoDL and each of ``config.methods`` at ``config.density``; evaluate on every test
    set. ``out``: folder for the training checkpoints (a temporary one if None)."""
    config.check()
    torch.manual_seed(config.seed)
    initial, _ = build_model(MODEL_NAME, config.model_kwargs)
    train_items = TrainingSlices(config.train_data(), seed=config.seed)
    score_batches = [collate_batch([train_items[(b * config.batch_size + i) % len(train_items)]
                                    for i in range(config.batch_size)]) for b in range(config.score_batches)]
    tests = _test_sets(config)
    spec = model_spec(MODEL_NAME)
    rows, summary = [], {}
    with tempfile.TemporaryDirectory(prefix="pun-") as scratch:
        root = Path(out) if out is not None else Path(scratch)
        for method in (DENSE, *config.methods):
            model = copy.deepcopy(initial)  # one initialization for every method
            trainer = Trainer(config.train_config(root / method), model=model, extra={"pun_method": method})
            model.to(trainer.device)
            began = time.perf_counter()
            if method != DENSE:
                _prune(model, method, config, score_batches, trainer.device)
            pruned = time.perf_counter()
            trainer.fit()
            trained = time.perf_counter()
            kept = 1.0 - sparsity(model)
            summary[method] = {"kept_density": kept, "prune_seconds": pruned - began, "train_seconds": trained - pruned}
            model.eval()
            for name, batches in tests.items():
                metrics = evaluate(lambda batch: spec.reconstruct(model, batch), batches, trainer.device)
                rows.append({"method": method, "density": 1.0 if method == DENSE else config.density, "eval": name,
                             **metrics})
                logger.info("%s (density %.3f) on %s: PSNR %.2f dB, SSIM %.4f", method, kept, name,
                            metrics["psnr"], metrics["ssim"])
    references = {name: evaluate(zero_filled, batches, torch.device("cpu")) for name, batches in tests.items()}
    return PunResult(rows=rows, methods=summary, config=asdict(config), zero_filled=references)


def summarize(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per method: in-distribution PSNR/SSIM, mean PSNR/SSIM over the shifted test sets, and the
    differences to the dense model (``delta_*``, method minus dense)."""
    table: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(row["method"] for row in rows):
        mine = [row for row in rows if row["method"] == method]
        shifted = [row for row in mine if row["eval"].startswith("shift_")]
        in_dist = [row for row in mine if row["eval"] == "in_dist"]
        table[method] = {
            "density": mine[0]["density"],
            "in_dist_psnr": in_dist[0]["psnr"] if in_dist else float("nan"),
            "in_dist_ssim": in_dist[0]["ssim"] if in_dist else float("nan"),
            "shift_psnr": float(np.mean([r["psnr"] for r in shifted])) if shifted else float("nan"),
            "shift_ssim": float(np.mean([r["ssim"] for r in shifted])) if shifted else float("nan"),
        }
    if DENSE in table:
        for entry in table.values():
            entry["delta_in_dist_psnr"] = entry["in_dist_psnr"] - table[DENSE]["in_dist_psnr"]
            entry["delta_shift_psnr"] = entry["shift_psnr"] - table[DENSE]["shift_psnr"]
    return table
