"""Fine-tuning of a (pruned) student network with the objectives of :mod:`mbdlfast.finetune.modes`.

The loop is :class:`~mbdlfast.training.trainer.Trainer`'s (AdamW, AMP on CUDA, atomic checkpoints,
validation against the ground truth, DDP under torchrun): :func:`finetune` only prepares the
student, the frozen teacher and the objective. The student passed in is not modified: a copy is
trained and returned. The teacher's checkpoint file is never written: an output folder whose
checkpoint would land on it is refused.
"""
from __future__ import annotations

import copy
import logging
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mbdlfast.training.checkpoint import check_architecture, load_checkpoint
from mbdlfast.training.config import DataConfig, ModelConfig, OptimConfig, TrainConfig, validate
from mbdlfast.training.distributed import DistributedContext
from mbdlfast.training.losses import loss_function
from mbdlfast.finetune.modes import build_objective, parse_mode
from mbdlfast.training.registry import model_spec
from mbdlfast.training.trainer import CHECKPOINT_NAME, Trainer

logger = logging.getLogger(__name__)

__all__ = ["FinetuneResult", "finetune", "finetune_from_config"]


@dataclass
class FinetuneResult:
    """The fine-tuned student (eval mode, on the training device), the per-step history, the final
    validation metrics (PSNR/SSIM against the ground truth) and the checkpoint written (or None)."""

    model: nn.Module
    history: list = field(default_factory=list)
    validation: dict | None = None
    checkpoint: Path | None = None


def _teacher(teacher, model_name: str) -> tuple[nn.Module | None, Path | None]:
    """(teacher module, its checkpoint file or None) from a module or a checkpoint path."""
    if teacher is None or isinstance(teacher, nn.Module):
        return teacher, None
    if isinstance(teacher, (str, Path)):
        path = Path(teacher)
        return load_checkpoint(path, expected_model=model_name).model, path
    raise TypeError(f"teacher: expected an nn.Module or a checkpoint path, got {type(teacher).__name__}")


def _frozen_copy(network: nn.Module, device: torch.device) -> nn.Module:
    return copy.deepcopy(network).to(device).eval().requires_grad_(False)


def _refuse_overwriting(out: Path, protected: Path | None) -> None:
    if protected is None:
        return
    protected = protected.resolve()
    if out.resolve() == protected or (out / CHECKPOINT_NAME).resolve() == protected:
        raise ValueError(f"out: {out} would overwrite the teacher's checkpoint {protected}; choose another folder")


def finetune_from_config(student: nn.Module, config: TrainConfig, *, mode: str = "school", teacher=None,
                         mc_weight: float = 1.0, ei_weight: float = 1.0, rotation: str = "auto") -> FinetuneResult:
    """Fine-tune a copy of ``student`` with the settings of ``config`` (data, optimiser, seed, out,
    device); ``config.model`` must name the student's family and constructor kwargs.

    ``teacher``: an nn.Module or a checkpoint path (needed by mode "school"). See :func:`finetune`.
    """
    names = parse_mode(mode)
    if not names:
        logger.info("mode 'none': the student is returned unchanged")
        return FinetuneResult(model=student)
    validate(config)
    if config.resume is not None:
        raise ValueError("resume: fine-tuning starts from the given student; resuming is not supported")
    check_architecture(student, config.model, "student")
    teacher, teacher_path = _teacher(teacher, config.model.name)
    if teacher is not None:
        check_architecture(teacher, config.model, "teacher")
    _refuse_overwriting(Path(config.out), teacher_path)
    spec = model_spec(config.model.name)
    if spec.task != "mri" and "self_supervised" in names:
        raise ValueError(f"mode: self_supervised fine-tuning (k-space consistency and equivariant imaging) applies to "
                         f"the MRI models, not to {config.model.name!r}; use school or supervised")
    loss_fn = loss_function(spec.loss if config.train.loss == "auto" else config.train.loss)
    context = DistributedContext.from_environment(config.device)
    try:
        frozen_teacher = _frozen_copy(teacher, context.device) if "school" in names and teacher is not None else None
        objective = build_objective(mode, spec.reconstruct, loss_fn, teacher=frozen_teacher,
                                    mc_weight=mc_weight, ei_weight=ei_weight, rotation=rotation)
        record = {"mode": "+".join(names), "teacher": str(teacher_path) if teacher_path else None,
                  "mc_weight": mc_weight, "ei_weight": ei_weight, "rotation": rotation}
        trainer = Trainer(config, context, model=copy.deepcopy(student), objective=objective,
                          extra={"finetune": record})
        result = trainer.fit()
    finally:
        context.close()
    return FinetuneResult(model=trainer.model.eval(), history=result.history, validation=result.validation,
                          checkpoint=result.checkpoint)


def finetune(student: nn.Module, *, model_name: str, mode: str = "school", teacher=None,
             data: DataConfig | None = None, steps: int = 100, lr: float = 1e-4, schedule: str = "constant",
             warmup_steps: int = 0, batch_size: int = 1, loss: str = "auto", mc_weight: float = 1.0,
             ei_weight: float = 1.0, rotation: str = "auto", amp: bool = True, out=None, progress: bool = True, device: str = "auto", seed: int = 0,
             model_kwargs: dict | None = None) -> FinetuneResult:
    """Fine-tune a copy of ``student`` (e.g. from :func:`mbdlfast.prune.prune_structured`).

    Args:
        student: the network to fine-tune, of registry family ``model_name`` built with
            ``model_kwargs`` (the constructor kwargs; a pruned network keeps its unpruned kwargs).
        mode: "none" (return ``student`` unchanged, no steps), "supervised", "school",
            "self_supervised" or a "+"-joined sum such as "supervised+school"; see
            :mod:`mbdlfast.finetune.modes`.
        teacher: the unpruned network (module or checkpoint path) for "school"; a frozen copy is used.
        data: the slices (default :class:`DataConfig`); ``loss``: "auto" (the family's) or a name of
            :data:`mbdlfast.training.losses.LOSSES`; ``mc_weight``, ``ei_weight``, ``rotation``: of
            "self_supervised".
        schedule, warmup_steps: the learning-rate schedule (see :class:`OptimConfig`).
        out: folder of the final checkpoint (``out/checkpoint.pt``); None writes none.
    """
    config = TrainConfig(model=ModelConfig(model_name, dict(model_kwargs or {})), data=data or DataConfig(),
                         train=OptimConfig(batch_size=batch_size, steps=steps, lr=lr, schedule=schedule,
                                           warmup_steps=warmup_steps, loss=loss, amp=amp,
                                           progress=progress),
                         seed=seed, out=str(out) if out is not None else "", device=device)
    with ExitStack() as stack:
        if out is None:
            config.out = stack.enter_context(tempfile.TemporaryDirectory(prefix="mbdlfast-finetune-"))
        result = finetune_from_config(student, config, mode=mode, teacher=teacher, mc_weight=mc_weight,
                                      ei_weight=ei_weight, rotation=rotation)
    if out is None:
        result.checkpoint = None
    return result
