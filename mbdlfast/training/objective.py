"""The Trainer's loss: ``objective(network, batch) -> loss``, a sum of terms on one reconstruction.

Supervised training uses the one term here; fine-tuning adds its own (school, self-supervised, see
:mod:`mbdlfast.finetune.modes`).
"""
from __future__ import annotations

from typing import Callable

import torch

from mbdlfast.training.data import TrainingBatch

Reconstruct = Callable[[Callable, TrainingBatch], torch.Tensor]
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class SupervisedTerm:
    """``loss(x̂, ground truth)``."""

    def __init__(self, loss_fn: LossFunction):
        self.loss_fn = loss_fn

    def __call__(self, prediction: torch.Tensor, network, batch: TrainingBatch) -> torch.Tensor:
        return self.loss_fn(prediction, batch.target)


class Objective:
    """``objective(network, batch)``: the sum of ``terms`` on one reconstruction of the batch."""

    def __init__(self, reconstruct: Reconstruct, terms: dict[str, Callable]):
        if not terms:
            raise ValueError("terms: an objective needs at least one term")
        self.reconstruct, self.terms = reconstruct, dict(terms)

    def __call__(self, network, batch: TrainingBatch) -> torch.Tensor:
        prediction = self.reconstruct(network, batch)
        return sum(term(prediction, network, batch) for term in self.terms.values())

    def __repr__(self) -> str:
        return f"Objective({'+'.join(self.terms)})"
