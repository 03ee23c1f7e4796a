"""Fine-tuning modes: the terms of an :class:`~mbdlfast.training.objective.Objective` (the Trainer's
pluggable loss, which reconstructs the batch once per step and sums its terms on that
reconstruction). A mode names the terms, "+"-joined for sums ("supervised+school"):

``supervised``
    the family's loss (SmoothL1 for DEQ/MoDL, SSIM for the VarNets, or the ``loss`` given) against
    the ground truth ``batch.target``.
``school``
    the same loss against the reconstruction of a frozen teacher (the unpruned network, eval mode,
    no gradients) instead of the ground truth.
``self_supervised``
    no ground truth: ``mc_weight`` · measurement consistency + ``ei_weight`` · equivariant imaging.

    * MC: L1 between A x̂ and the measured k-space y on the sampled locations only
      (A = SenseOperator(batch.maps, batch.mask)); the unsampled zeros carry no information. A
      model that estimates its own coil maps (E2E-VarNet) is measured with those maps, not the
      batch's ESPIRiT maps: its image is the combination with them, so only they make A x̂ its
      prediction of y (and the MC gradient then trains its sensitivity network too). EI simulates
      with them alike.
    * EI (Chen, Tachella & Davies, 2021): per sample a random non-identity rotation g; x_g = T_g x̂
      and every coil map rotated alike, y_g = A_g x_g with the rotated maps and the same mask, then
      the family's loss between f(y_g, maps_g, mask) and x_g. x_g is detached (a pseudo-label): the
      EI term trains f to invert A_g on the current estimate but cannot move x̂ itself, which only
      the MC term (and other modes' terms) shape; this also halves the backward cost. The original
      EI paper back-propagates through x_g as well.
    * Rotations (``rotation``): "quarter" = multiples of 90°, exact pixel permutations about the
      k-space centre (no interpolation blur for the network to learn to undo, and T_g commutes
      exactly with the FFT); "any" = uniform angles with bilinear interpolation, for non-square
      images or a richer group; "auto" = "quarter" for square images, "any" otherwise.
    * The reconstruction must be a complex image: a VarNet with ``output="rss"`` returns a magnitude
      without phase, for which A x̂ is undefined, so it is refused. Its weights load unchanged into
      the same VarNet built with ``output="image"``, which does work.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from mbdlfast.training.data import TrainingBatch
from mbdlfast.training.losses import l1_loss
from mbdlfast.training.objective import LossFunction, Objective, Reconstruct, SupervisedTerm
from mbdlfast.finetune.rotations import rotate_bilinear, rotate_quarter_turns
from mbdlfast.physics.sense import SenseOperator

MODES = ("supervised", "school", "self_supervised")
NO_FINETUNING = "none"
ROTATIONS = ("auto", "quarter", "any")

__all__ = ["MODES", "NO_FINETUNING", "ROTATIONS", "Objective", "SchoolTerm", "SelfSupervisedTerm",
           "SupervisedTerm", "build_objective", "parse_mode"]


def parse_mode(mode: str) -> tuple[str, ...]:
    """The term names of ``mode`` ("none", a name of :data:`MODES` or "+"-joined names); () for "none"."""
    if not isinstance(mode, str):
        raise TypeError(f"mode: expected a string such as 'school' or 'supervised+school', got {type(mode).__name__}")
    if mode.strip() == NO_FINETUNING:
        return ()
    names = tuple(part.strip() for part in mode.split("+"))
    unknown = [name for name in names if name not in MODES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"mode: expected {NO_FINETUNING!r} or distinct names of {MODES} joined by '+', got {mode!r}")
    return names


class SchoolTerm:
    """``loss(x̂, teacher's reconstruction)``. The teacher, on the training device (``finetune`` passes
    a frozen copy), runs in eval mode without gradients and without autocast."""

    def __init__(self, loss_fn: LossFunction, reconstruct: Reconstruct, teacher: nn.Module):
        self.loss_fn, self.reconstruct, self.teacher = loss_fn, reconstruct, teacher

    def __call__(self, prediction: torch.Tensor, network, batch: TrainingBatch) -> torch.Tensor:
        self.teacher.eval()
        with torch.no_grad():
            target = self.reconstruct(self.teacher, batch)
        return self.loss_fn(prediction, target)


def measurement_consistency(image: torch.Tensor, batch: TrainingBatch) -> torch.Tensor:
    """L1 between A·image and the measured k-space over the sampled k-space locations."""
    sampled = batch.sampled.bool().expand_as(batch.kspace)
    return l1_loss(batch.physics().A(image)[sampled], batch.kspace[sampled])


class SelfSupervisedTerm:
    """``mc_weight`` · MC + ``ei_weight`` · EI, see the module docstring."""

    def __init__(self, loss_fn: LossFunction, reconstruct: Reconstruct, *, mc_weight: float = 1.0,
                 ei_weight: float = 1.0, rotation: str = "auto"):
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation: expected one of {ROTATIONS}, got {rotation!r}")
        for name, weight in (("mc_weight", mc_weight), ("ei_weight", ei_weight)):
            if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
                raise ValueError(f"{name}: expected a finite number >= 0, got {weight!r}")
        if mc_weight == 0 and ei_weight == 0:
            raise ValueError("mc_weight, ei_weight: at least one must be > 0")
        self.loss_fn, self.reconstruct = loss_fn, reconstruct
        self.mc_weight, self.ei_weight, self.rotation = float(mc_weight), float(ei_weight), rotation

    def rotate(self, x: torch.Tensor, group_elements: torch.Tensor) -> torch.Tensor:
        if self._quarter_turns(x):
            return rotate_quarter_turns(x, group_elements)
        return rotate_bilinear(x, group_elements)

    def random_group_elements(self, batch: TrainingBatch) -> torch.Tensor:
        """Random rotations, one per sample (quarter turns: never the identity), from the global CPU RNG,
        whose state the checkpoints save, so a resumed run draws the same rotations."""
        count = len(batch)
        if self._quarter_turns(batch.maps):
            return torch.randint(1, 4, (count,))
        return torch.rand(count, dtype=torch.float64) * (2 * math.pi)

    def _quarter_turns(self, x: torch.Tensor) -> bool:
        square = x.shape[-1] == x.shape[-2]
        if self.rotation == "quarter" and not square:
            raise ValueError(f"rotation: 'quarter' needs square images, got {x.shape[-2]}x{x.shape[-1]}")
        return self.rotation == "quarter" or (self.rotation == "auto" and square)

    def equivariance(self, prediction: torch.Tensor, network, batch: TrainingBatch) -> torch.Tensor:
        """loss(f(A_g T_g x̂), T_g x̂) with x̂ detached."""
        group_elements = self.random_group_elements(batch)
        rotated_image = self.rotate(prediction.detach(), group_elements)
        rotated_maps = self.rotate(batch.maps.detach(), group_elements)
        rotated_kspace = SenseOperator(rotated_maps, batch.mask, mask_is_2d=batch.mask.dim() == 3).A(rotated_image)
        rotated_batch = TrainingBatch(kspace=rotated_kspace, mask=batch.mask, maps=rotated_maps, target=rotated_image)
        return self.loss_fn(self.reconstruct(network, rotated_batch), rotated_image)

    @staticmethod
    def measured_with_model_maps(network, batch: TrainingBatch) -> TrainingBatch:
        """``batch`` with the coil maps of the model's own estimate where it makes one (E2E-VarNet)."""
        model = getattr(network, "model", network)
        if not getattr(model, "estimate_sens", False):
            return batch
        return dataclasses.replace(batch, maps=model.estimated_maps(batch.kspace, batch.physics()))

    def __call__(self, prediction: torch.Tensor, network, batch: TrainingBatch) -> torch.Tensor:
        if not prediction.is_complex():
            raise ValueError("mode: self_supervised needs a complex image reconstruction, but the model returns a "
                             "magnitude (a VarNet with output='rss'?); build it with output='image' (same weights)")
        prediction = prediction.to(torch.complex64)
        batch = self.measured_with_model_maps(network, batch)
        loss = prediction.new_zeros((), dtype=torch.float32)
        if self.mc_weight:
            loss = loss + self.mc_weight * measurement_consistency(prediction, batch)
        if self.ei_weight:
            loss = loss + self.ei_weight * self.equivariance(prediction, network, batch)
        return loss


def build_objective(mode: str, reconstruct: Reconstruct, loss_fn: LossFunction, *, teacher: nn.Module | None = None,
                    mc_weight: float = 1.0, ei_weight: float = 1.0, rotation: str = "auto") -> Objective:
    """The :class:`Objective` of ``mode`` (not "none"); ``school`` needs ``teacher``."""
    names = parse_mode(mode)
    if not names:
        raise ValueError(f"mode: {NO_FINETUNING!r} trains nothing and has no objective")
    if "school" in names and teacher is None:
        raise ValueError(f"teacher: mode {mode!r} needs the unpruned teacher network")
    terms = {}
    for name in names:
        if name == "supervised":
            terms[name] = SupervisedTerm(loss_fn)
        elif name == "school":
            terms[name] = SchoolTerm(loss_fn, reconstruct, teacher)
        else:
            terms[name] = SelfSupervisedTerm(loss_fn, reconstruct, mc_weight=mc_weight, ei_weight=ei_weight,
                                             rotation=rotation)
    return Objective(reconstruct, terms)
