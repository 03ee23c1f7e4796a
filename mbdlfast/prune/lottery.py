"""Lottery image priors: iterative magnitude pruning (IMP) of untrained priors, and ticket transfer.

One IMP run fits the dense prior, then repeats: remove the ``prune_fraction`` (20 %) of the remaining
convolution weights with the smallest magnitude, ranked globally over all layers; rewind the surviving
weights (and biases, BatchNorm parameters and statistics) to their values at initialization, or at
iteration ``rewind_iter`` of the dense fit; refit with the mask applied. Round r therefore has
sparsity 1 - 0.8^r (0.2, 0.36, 0.488, ...). Masks are persistent parametrization buffers
(:mod:`mbdlfast.prune.masking`), so pruned weights stay exactly zero through every optimizer step.

Multi-image IMP shares the weights between images: pass a batch of measurements (and references);
every image keeps its own input code and one network is fitted jointly on all of them (see
:mod:`mbdlfast.dip.fit`).

Stopping rule: the IMP loss (the data-fit loss at the end of a round) normally grows slowly with the
sparsity; when it rises in ``patience`` consecutive rounds the ticket has lost capacity and IMP
stops. The records then say which round was the last useful one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from mbdlfast._validation import check_int
from mbdlfast.dip.fit import fit_dip
from mbdlfast.dip.tasks import DIPTask
from mbdlfast.models.dip import noise_code
from mbdlfast.prune.masking import apply_masks, current_masks, global_magnitude_masks, remove_masks, sparsity

__all__ = ["IMPResult", "IMPRound", "iterative_magnitude_pruning", "rewind", "transfer_ticket"]

logger = logging.getLogger(__name__)


@dataclass
class IMPRound:
    """One IMP round (round 0 is the dense fit): sparsity of the conv weights, final loss, PSNR / SSIM
    of the reconstruction (None without a reference), and the masks of the round."""

    round: int
    sparsity: float
    loss: float
    psnr: float | None
    ssim: float | None
    masks: dict[str, torch.Tensor] = field(repr=False)

    def record(self) -> dict[str, float | int | None]:
        return {"round": self.round, "sparsity": self.sparsity, "loss": self.loss, "psnr": self.psnr,
                "ssim": self.ssim}


@dataclass
class IMPResult:
    """``rounds``: all rounds run, dense first; ``stopped_early``: the stopping rule ended the run;
    ``rewind_state``: the dense state dict the weights were rewound to; ``code``: the fixed input(s)."""

    rounds: list[IMPRound]
    stopped_early: bool
    rewind_state: dict[str, torch.Tensor] = field(repr=False)
    code: torch.Tensor = field(repr=False)
    reconstructions: list[torch.Tensor] = field(default_factory=list, repr=False)

    @property
    def records(self) -> list[dict[str, float | int | None]]:
        return [r.record() for r in self.rounds]

    def ticket(self, round: int | None = None) -> dict[str, torch.Tensor]:
        """The masks of ``round`` (default: the last round)."""
        return (self.rounds[-1] if round is None else self.rounds[round]).masks


def rewind(net: nn.Module, state: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> nn.Module:
    """Load the dense ``state`` into ``net`` and apply ``masks`` (pruned entries zero, alive entries
    equal to ``state``); in place. ``state`` uses the dense names (``<layer>.weight``)."""
    remove_masks(net)
    net.load_state_dict(state)
    return apply_masks(net, masks)


def transfer_ticket(ticket_masks: dict[str, torch.Tensor], net: nn.Module,
                    init_state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Apply a ticket found on one image / task to ``net`` (for another image or task), in place.

    ``init_state``: dense weights to start from (the ticket's own initialization, as the lottery
    hypothesis prescribes); None keeps ``net``'s current weights. Every masked layer must exist in
    ``net`` with the same shape (so tasks must agree on the number of output channels).
    """
    if init_state is not None:
        return rewind(net, init_state, ticket_masks)
    return apply_masks(net, ticket_masks)


def _stop(losses: list[float], patience: int | None) -> bool:
    """True when the loss rose in each of the last ``patience`` rounds."""
    if not patience or len(losses) <= patience:
        return False
    recent = losses[-(patience + 1):]
    return all(later > earlier for earlier, later in zip(recent, recent[1:]))


def iterative_magnitude_pruning(net: nn.Module, task: DIPTask, measurement: torch.Tensor, *, rounds: int,
                                iters: int, prune_fraction: float = 0.2, rewind_iter: int = 0,
                                patience: int | None = 2, reference: torch.Tensor | None = None,
                                code: torch.Tensor | None = None, lr: float = 0.01, input_noise_std: float = 1 / 30,
                                ema: float | None = 0.99, seed: int = 0, progress: bool = False,
                                keep_reconstructions: bool = False) -> IMPResult:
    """IMP on ``net`` (modified in place; it ends as the last round's fitted, masked network).

    Args:
        net: a dense prior (SkipHourglass or DeepDecoder); its current weights are the initialization.
        measurement: (B, ...) measurements; B > 1 fits one shared network on B images.
        rounds: pruning rounds after the dense fit (round r has sparsity 1 - (1 - prune_fraction)^r).
        rewind_iter: 0 rewinds to the initialization, k > 0 to the weights after iteration k of the
            dense fit (late rewinding).
        patience: stop after the loss rose in this many consecutive rounds (None: never stop early).
        reference: ground truth(s) in ``task.image``'s layout, for PSNR / SSIM per round.
        code: the fixed input(s); default ``noise_code`` of the reference's (or measurement's) size.
    """
    rounds = check_int("rounds", rounds, minimum=1)
    check_int("rewind_iter", rewind_iter, minimum=0)
    if rewind_iter > iters:
        raise ValueError(f"rewind_iter: expected <= iters ({iters}), got {rewind_iter}")
    if patience is not None:
        check_int("patience", patience, minimum=1)
    if not 0 < prune_fraction < 1:
        raise ValueError(f"prune_fraction: expected a fraction in (0, 1), got {prune_fraction}")
    if any(m.min() == 0 for m in current_masks(net).values()):
        raise ValueError("net: expected a dense network (it already carries pruning masks)")
    if code is None:
        sized = reference if reference is not None else measurement
        code = noise_code(net, *sized.shape[-2:], batch=measurement.shape[0], seed=seed)
    fit_options = dict(iters=iters, lr=lr, input_noise_std=input_noise_std, ema=ema, seed=seed, code=code,
                       reference=reference, progress=progress)
    init_state = {name: value.detach().clone() for name, value in net.state_dict().items()}

    history: list[IMPRound] = []
    reconstructions = []
    rewind_state = init_state
    stopped = False
    for round_index in range(rounds + 1):
        if round_index:
            masks = global_magnitude_masks(net, prune_fraction)
            rewind(net, rewind_state, masks)
        fit = fit_dip(net, task, measurement, snapshot_iter=(rewind_iter or None) if round_index == 0 else None,
                      **fit_options)
        if round_index == 0 and rewind_iter:
            rewind_state = fit.snapshot
        history.append(IMPRound(round_index, sparsity(net), fit.final_loss, fit.psnr, fit.ssim, current_masks(net)))
        if keep_reconstructions:
            reconstructions.append(fit.image)
        logger.info("IMP round %d: sparsity %.4f, loss %.4e, psnr %s", round_index, history[-1].sparsity,
                    fit.final_loss, "-" if fit.psnr is None else f"{fit.psnr:.2f} dB")
        if _stop([r.loss for r in history], patience):
            stopped = True
            logger.info("IMP stopped: the loss rose in %d consecutive rounds", patience)
            break
    return IMPResult(history, stopped, rewind_state, code, reconstructions)
