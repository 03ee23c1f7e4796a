"""Supervised training of any registered model: AdamW, AMP on CUDA, gradient clipping, periodic
validation (PSNR/SSIM on magnitude images), atomic checkpoints, exact resume and DDP.

The batch at step ``s`` is a pure function of ``(seed, s)``: the training slices are shuffled per
epoch by a :class:`~torch.utils.data.distributed.DistributedSampler` seeded with the run's seed,
and step ``s`` reads batch ``s mod n`` of epoch ``s // n``. A resumed run therefore continues with
the very batches the uninterrupted run would have seen, and with the optimizer, scaler and RNG
states restored, it reproduces it (bit for bit on CPU).

Under ``torchrun`` every rank trains a :class:`~torch.nn.parallel.DistributedDataParallel` replica
on its shard of each epoch; rank 0 alone shows progress, logs and writes checkpoints (between
barriers). Validation is sharded over the ranks and the metric sums are all-reduced.

Fine-tuning reuses this loop: ``model`` starts from a given network (e.g. a pruned student) instead
of one built from the registry, and ``objective(network, batch) -> loss`` replaces the supervised
loss (:mod:`mbdlfast.training.objective`; fine-tuning's terms are in :mod:`mbdlfast.finetune.modes`).
The objective receives the network wrapped so that its calls run under the run's autocast while the loss itself is computed in full precision.
"""
from __future__ import annotations

import itertools
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from mbdlfast.training.checkpoint import load_checkpoint, restore_rng_state, save_checkpoint
from mbdlfast.training.config import OptimConfig, TrainConfig
from mbdlfast.training.data import TrainingBatch, split_train_val
from mbdlfast.training.distributed import DistributedContext
from mbdlfast.training.losses import loss_function
from mbdlfast.training.objective import JacobianTerm, Objective, SupervisedTerm
from mbdlfast.training.registry import MODEL_REGISTRY, build_model, model_spec
from mbdlfast.outputs import check_writable

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
AMP_DTYPE = torch.float16  # with GradScaler; complex views have no bfloat16 counterpart

__all__ = ["CHECKPOINT_NAME", "MODEL_REGISTRY", "TrainResult", "Trainer", "train"]


def scheduled_lr(train: OptimConfig, step: int) -> float:
    """Learning rate of 0-based ``step``: a linear warm-up, then constant or cosine-annealed to 0.
    A pure function of the step, so a resumed run follows the schedule of an uninterrupted one."""
    if step < train.warmup_steps:
        return train.lr * (step + 1) / (train.warmup_steps + 1)
    if train.schedule == "constant":
        return train.lr
    progress = (step - train.warmup_steps) / max(1, train.steps - train.warmup_steps)
    return train.lr * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class _SkipFirst(Sampler):
    """The indices of ``sampler`` after the first ``count`` (to resume in the middle of an epoch)."""

    def __init__(self, sampler: Sampler, count: int):
        self.sampler, self.count = sampler, count

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.count, None)

    def __len__(self) -> int:
        return len(self.sampler) - self.count


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns (on every rank)."""

    step: int
    history: list = field(default_factory=list)
    validation: dict | None = None
    checkpoint: Path | None = None


def data_residual(image: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
    """Per slice ‖M·A image − y‖ / ‖y‖ over the sampled k-space of ``batch``."""
    residual = (batch.physics().A(image.to(batch.kspace.dtype)) - batch.kspace) * batch.sampled
    return residual.flatten(1).norm(dim=1) / batch.kspace.flatten(1).norm(dim=1).clamp_min(torch.finfo(torch.float32).tiny)


class _UnderAutocast:
    """``module`` (the model, or its DDP wrapper) called under ``autocast()``: what an objective gets
    as its network; ``model`` is the bare model, for terms that call its methods."""

    def __init__(self, module: nn.Module, autocast, model: nn.Module):
        self.module, self.autocast, self.model = module, autocast, model

    def __call__(self, *args, **kwargs):
        with self.autocast():
            return self.module(*args, **kwargs)


class Trainer:
    """Training of ``config.model`` on ``config.data``; see the module docstring.

    ``context`` defaults to :meth:`DistributedContext.from_environment` (which joins a torchrun job);
    :meth:`fit` closes a process group it created. ``model``: the network to train (in place) instead
    of a new one built from ``config.model``, whose name and kwargs must still describe it (they go
    into the checkpoints); ``config.resume`` takes precedence. ``objective``: the loss of a step,
    default the supervised loss of ``config.train.loss``. ``extra`` is stored in every checkpoint.
    """

    def __init__(self, config: TrainConfig, context: DistributedContext | None = None, *,
                 model: nn.Module | None = None, objective: Callable | None = None, extra: dict | None = None):
        self.config = config
        self.owns_context = context is None
        self.context = context if context is not None else DistributedContext.from_environment(config.device)
        self.device = self.context.device
        self.out = Path(config.out)
        self.checkpoint_path = self.out / CHECKPOINT_NAME
        self.spec = model_spec(config.model.name)
        loss_fn = loss_function(self.spec.loss if config.train.loss == "auto" else config.train.loss)
        self.objective = objective or Objective(self.spec.reconstruct, {"supervised": SupervisedTerm(loss_fn)})
        if config.train.jacobian_weight > 0:
            if not isinstance(self.objective, Objective):
                raise TypeError("objective: train.jacobian_weight > 0 needs an Objective to add its term to")
            self.objective = self.objective.with_term(
                "jacobian", JacobianTerm(config.train.jacobian_weight, config.train.jacobian_samples))
        self.initial_model, self.extra = model, dict(extra or {})
        self.amp = config.train.amp and self.device.type == "cuda"

    # ---------------------------------------------------------------------------------------- set-up

    def _seed(self) -> None:
        seed = self.config.seed
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def _build(self) -> None:
        config, train = self.config, self.config.train
        self._seed()
        self.start_step, self.history, resumed = 0, [], None
        if config.resume is not None:
            resumed = load_checkpoint(config.resume, expected_model=config.model.name)
            model, self.model_kwargs = resumed.model.train(), resumed.model_kwargs
            if self.spec.resolve_kwargs(config.model.kwargs) != self.model_kwargs:
                logger.warning("resume: using the checkpoint's model kwargs %s, not the config's", self.model_kwargs)
        elif self.initial_model is not None:
            model, self.model_kwargs = self.initial_model.train(), self.spec.resolve_kwargs(config.model.kwargs)
        else:
            model, self.model_kwargs = build_model(config.model.name, config.model.kwargs)
        self.model = model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)
        if resumed is not None:
            self.start_step, self.history = resumed.step, list(resumed.history)
            if resumed.optimizer is not None:
                self.optimizer.load_state_dict(resumed.optimizer)
                for group in self.optimizer.param_groups:  # the config's hyper-parameters win
                    group.update(lr=train.lr, weight_decay=train.weight_decay)
            if resumed.scaler is not None and self.amp:
                self.scaler.load_state_dict(resumed.scaler)
            if resumed.rng is not None:
                restore_rng_state(resumed.rng)
            logger.info("resumed from %s at step %d", config.resume, self.start_step)
        self.network = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                                else None) if self.context.distributed else self.model)

        dataset = self.spec.dataset(config.data, seed=config.seed)
        self.collate = dataset.collate
        self.has_reference = dataset.has_reference
        if not self.has_reference and getattr(self.objective, "needs_reference", True):
            raise ValueError(f"data.source: {config.data.source} holds undersampled acquisitions without a fully "
                             f"sampled reference, but the objective {self.objective!r} needs ground truth; fine-tune "
                             "with mode school or self_supervised instead")
        self.train_set, self.val_set = split_train_val(dataset, config.data.val_fraction, config.seed)
        self.sampler = DistributedSampler(self.train_set, num_replicas=self.context.world_size,
                                          rank=self.context.rank, shuffle=True, seed=config.seed, drop_last=True)
        self.batches_per_epoch = len(self.sampler) // train.batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(f"train.batch_size: {len(self.train_set)} training slices over {self.context.world_size} "
                             f"rank(s) do not fill one batch of {train.batch_size}")

    def _batches(self, start_step: int):
        """Batches for steps ``start_step, start_step + 1, ...`` (see the module docstring)."""
        epoch, offset = divmod(start_step, self.batches_per_epoch)
        batch_size = self.config.train.batch_size
        while True:
            self.sampler.set_epoch(epoch)
            loader = DataLoader(self.train_set, batch_size=batch_size, sampler=_SkipFirst(self.sampler, offset * batch_size),
                                drop_last=True, collate_fn=self.collate, pin_memory=self.device.type == "cuda")
            yield from loader
            epoch, offset = epoch + 1, 0

    # ------------------------------------------------------------------------------------------ steps

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=AMP_DTYPE, enabled=self.amp)

    def _train_step(self, step: int, batch: TrainingBatch) -> torch.Tensor:
        self.network.train()
        for group in self.optimizer.param_groups:
            group["lr"] = scheduled_lr(self.config.train, step)
        loss = self.objective(_UnderAutocast(self.network, self._autocast, self.model), batch)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.train.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return loss.detach()

    @torch.no_grad()
    def validate(self) -> dict | None:
        """Mean PSNR and SSIM over the validation split (all ranks together), as the batch scores them
        (magnitude images for MRI, 8-bit colour images for super-resolution).
        Undersampled data without a reference give the mean relative data residual ‖M·A x̂ − y‖ / ‖y‖
        instead (a consistency check, not a quality measure; None for magnitude-only models)."""
        if self.val_set is None:
            return None
        batch_size, limit = self.config.train.batch_size, self.config.train.val_batches
        indices = list(range(len(self.val_set)))[: limit * batch_size if limit is not None else None]
        mine = indices[self.context.rank::self.context.world_size]
        totals = torch.zeros(3, dtype=torch.float64, device=self.device)  # psnr sum, ssim sum, count
        self.model.eval()
        for start in range(0, len(mine), batch_size):
            batch = self.collate([self.val_set[i] for i in mine[start:start + batch_size]]).to(self.device)
            with self._autocast():
                prediction = self.spec.reconstruct(self.model, batch)
            count = torch.tensor(float(len(batch)), device=self.device)
            if self.has_reference:
                psnr, ssim = batch.quality(prediction)
                totals += torch.stack([psnr.sum().to(count), ssim.sum().to(count), count]).double()
            elif prediction.is_complex():
                totals += torch.stack([data_residual(prediction, batch).sum(), count.new_zeros(()), count]).double()
        self.context.all_reduce_sum(totals)
        if not self.has_reference:
            return {"val_data_residual": float(totals[0] / totals[2])} if totals[2] > 0 else None
        return {"val_psnr": float(totals[0] / totals[2]), "val_ssim": float(totals[1] / totals[2])}

    def _replica_fingerprints(self) -> list[list[float]]:
        """(sum, sum of squares) of all parameters on every rank; replicas that drifted apart are an error."""
        params = torch.cat([p.detach().double().flatten() for p in self.model.parameters()])
        fingerprint = torch.stack([params.sum(), params.square().sum()])
        gathered = [t.cpu().tolist() for t in self.context.all_gather(fingerprint)]
        if any(g != gathered[0] for g in gathered):
            raise RuntimeError(f"DDP replicas diverged: parameter fingerprints per rank {gathered}")
        return gathered

    def _save(self, step: int, final: bool) -> None:
        extra = {**self.extra, "world_size": self.context.world_size}
        if final:
            extra["replica_fingerprints"] = self._replica_fingerprints()
        self.context.barrier()
        if self.context.is_main:
            save_checkpoint(self.checkpoint_path, self.model, self.config, step=step, optimizer=self.optimizer,
                            scaler=self.scaler, history=self.history, extra=extra)
            logger.info("step %d: checkpoint written to %s", step, self.checkpoint_path)
        self.context.barrier()

    # ------------------------------------------------------------------------------------------- loop

    def fit(self) -> TrainResult:
        """Train for ``config.train.steps`` steps in all (counting those of a resumed checkpoint)."""
        try:
            return self._fit()
        finally:
            if self.owns_context:
                self.context.close()

    def _fit(self) -> TrainResult:
        train = self.config.train
        check_writable(self.out)
        self._build()
        if self.context.is_main:
            count = sum(p.numel() for p in self.model.parameters())
            logger.info("training %s (%s parameters) on %s x %d rank(s), %d training slices, steps %d -> %d",
                        self.config.model.name, f"{count:,}", self.device, self.context.world_size,
                        len(self.train_set), self.start_step, train.steps)
        validation, step = None, self.start_step
        if step >= train.steps and self.context.is_main:
            logger.warning("nothing to do: the run is already at step %d of train.steps=%d", step, train.steps)
        progress = tqdm(total=train.steps, initial=step, disable=not (self.context.is_main and train.progress),
                        desc="train", dynamic_ncols=True)
        batches = self._batches(step)
        while step < train.steps:
            began = time.perf_counter()
            loss = self._train_step(step, next(batches).to(self.device))
            loss = float(self.context.all_reduce_sum(loss.float()) / self.context.world_size)
            if not math.isfinite(loss):
                raise FloatingPointError(f"step {step + 1}: the loss is {loss}; lower train.lr or enable grad_clip")
            step += 1
            record = {"step": step, "loss": loss, "seconds": time.perf_counter() - began}
            last = step == train.steps
            if last or (train.val_every and step % train.val_every == 0):
                validation = self.validate()
                record.update(validation or {})
                if self.context.is_main and validation:
                    logger.info("step %d: validation %s", step,
                                ", ".join(f"{name[4:]} {value:.4g}" for name, value in validation.items()))
            self.history.append(record)
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.4g}")
            if self.context.is_main and (step % train.log_every == 0 or last):
                logger.info("step %d/%d: loss %.5g (%.2f s)", step, train.steps, loss, record["seconds"])
            if last or (train.checkpoint_every and step % train.checkpoint_every == 0):
                self._save(step, final=last)
        progress.close()
        return TrainResult(step=step, history=self.history, validation=validation,
                           checkpoint=self.checkpoint_path if self.start_step < train.steps else None)


def train(config: TrainConfig, context: DistributedContext | None = None) -> TrainResult:
    """Run :class:`Trainer` on ``config``."""
    return Trainer(config, context).fit()
