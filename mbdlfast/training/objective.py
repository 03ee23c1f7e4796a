"""The Trainer's loss: ``objective(network, batch) -> loss``, a sum of terms on one reconstruction.

Supervised training uses :class:`SupervisedTerm`; fine-tuning adds its own (school, self-supervised, see
:mod:`mbdlfast.finetune.modes`); ``train.jacobian_weight`` adds :class:`JacobianTerm` to either.
"""
from __future__ import annotations

from typing import Callable

import torch

from mbdlfast.training.data import TrainingBatch

Reconstruct = Callable[[Callable, TrainingBatch], torch.Tensor]
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class SupervisedTerm:
    """``loss(x̂, ground truth)``."""

    needs_reference = True

    def __init__(self, loss_fn: LossFunction):
        self.loss_fn = loss_fn

    def __call__(self, prediction: torch.Tensor, network, batch: TrainingBatch) -> torch.Tensor:
        return self.loss_fn(prediction, batch.target)


class JacobianTerm:
    """``weight`` · the Hutchinson estimate of ‖J_T‖²_F / d of a DEQ's iteration T at its
    reconstruction (:func:`mbdlfast.deq.jacobian_frobenius`): keeps T contractive, so the fixed point
    training shapes is one the solver reaches. Needs a model with ``jacobian_penalty`` (the DEQ)."""

    def __init__(self, weight: float, samples: int = 1):
        self.weight, self.samples = weight, samples

    def __call__(self, prediction: torch.Tensor, network, batch: TrainingBatch) -> torch.Tensor:
        return self.weight * network.model.jacobian_penalty(prediction, batch.kspace, batch.physics(),
                                                            samples=self.samples)


class Objective:
    """``objective(network, batch)``: the sum of ``terms`` on one reconstruction of the batch."""

    def __init__(self, reconstruct: Reconstruct, terms: dict[str, Callable]):
        if not terms:
            raise ValueError("terms: an objective needs at least one term")
        self.reconstruct, self.terms = reconstruct, dict(terms)

    def __call__(self, network, batch: TrainingBatch) -> torch.Tensor:
        prediction = self.reconstruct(network, batch)
        return sum(term(prediction, network, batch) for term in self.terms.values())

    @property
    def needs_reference(self) -> bool:
        """Whether a term needs the batch's ground truth (data without a fully sampled reference cannot
        serve it)."""
        return any(getattr(term, "needs_reference", False) for term in self.terms.values())

    def with_term(self, name: str, term: Callable) -> "Objective":
        """This objective plus ``term`` under ``name``."""
        if name in self.terms:
            raise ValueError(f"{name}: the objective already has a term of this name")
        return Objective(self.reconstruct, {**self.terms, name: term})

    def __repr__(self) -> str:
        return f"Objective({'+'.join(self.terms)})"
