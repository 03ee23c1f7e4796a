"""Lottery image priors: iterative magnitude pruning (IMP) of untrained priors, and ticket transfer.

One IMP run fits the dense prior, then repeats: remove the ``prune_fraction`` (20 %) of the remaining
convolution weights with the smallest magnitude, ranked globally over all layers; rewind the surviving
weights (and biases, BatchNorm parameters and statistics) to their values at initialization, or at
iteration ``rewind_iter`` of the dense fit; refit with the mask applied. Round r therefore has
sparsity 1 - 0.8^r (0.2, 0.36, 0.488, ...). Masks are persistent parametrization buffers
(:mod:`mbdlfast.prune.masking`), so pruned weights stay exactly zero through every optimizer step.

Multi-image IMP is the paper's Algorithm 2 (weight-sharing IMP): pass a batch of measurements (and
references); one fixed code and one network are fitted, the network's single output against every
measurement, the data-fit loss averaged over the images (see :mod:`mbdlfast.dip.fit`).

Stopping rule (no ground truth needed): the IMP loss (the data-fit loss at the end of a round)
normally grows slowly with the sparsity; when it rises in ``patience`` consecutive rounds the ticket
has lost capacity and IMP stops. The matching ticket is the round before the rise began
(:attr:`IMPResult.chosen_round`), which :meth:`IMPResult.ticket` returns.

A :class:`Ticket` (masks, the dense weights they rewind to, the layer shapes of the network they were
found on, and where they were found) is saved and loaded with :func:`save_ticket` /
:func:`load_ticket`, to transfer to another image or task (:meth:`Ticket.apply`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mbdlfast._validation import check_int
from mbdlfast.outputs import atomic_write, read_tagged_payload
from mbdlfast.dip.fit import fit_dip
from mbdlfast.dip.tasks import DIPTask
from mbdlfast.models.dip import noise_code
from mbdlfast.prune.masking import apply_masks, current_masks, global_magnitude_masks, remove_masks, sparsity

__all__ = ["IMPResult", "IMPRound", "Ticket", "iterative_magnitude_pruning", "load_ticket", "rewind", "save_ticket",
           "transfer_ticket"]

TICKET_FORMAT = "mbdlfast-lottery-ticket"

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
    ``chosen_round``: the matching ticket's round (the round before the loss began to rise when the
    rule stopped the run, else the last one); ``rewind_state``: the dense state dict the weights were
    rewound to; ``code``: the fixed input."""

    rounds: list[IMPRound]
    stopped_early: bool
    chosen_round: int
    rewind_state: dict[str, torch.Tensor] = field(repr=False)
    code: torch.Tensor = field(repr=False)
    reconstructions: list[torch.Tensor] = field(default_factory=list, repr=False)

    @property
    def records(self) -> list[dict[str, float | int | None]]:
        return [r.record() for r in self.rounds]

    def ticket(self, round: int | None = None) -> dict[str, torch.Tensor]:
        """The masks of ``round`` (default: :attr:`chosen_round`, the matching ticket)."""
        return self.rounds[self.chosen_round if round is None else round].masks

    def ticket_file(self, net: nn.Module, round: int, found_on: dict) -> "Ticket":
        """Round ``round`` as a :class:`Ticket` of ``net``'s architecture; ``found_on`` says where
        (images, task, settings)."""
        chosen = self.rounds[round]
        return Ticket(chosen.masks, self.rewind_state, layer_shapes(self.rewind_state), chosen.round,
                      chosen.sparsity, {**found_on, "network": type(net).__name__})


def layer_shapes(state: dict[str, torch.Tensor]) -> dict[str, list[int]]:
    """The shape of every tensor of a dense state dict: a network's architecture as a ticket checks it."""
    return {name: list(value.shape) for name, value in state.items()}


@dataclass
class Ticket:
    """A lottery ticket: ``masks`` (layer -> 0/1), the dense ``init_state`` they rewind to, the
    ``shapes`` of the network they were found on, its IMP ``round`` and ``sparsity``, and ``found_on``
    (the images, task and network)."""

    masks: dict[str, torch.Tensor] = field(repr=False)
    init_state: dict[str, torch.Tensor] = field(repr=False)
    shapes: dict[str, list[int]] = field(repr=False)
    round: int
    sparsity: float
    found_on: dict

    def apply(self, net: nn.Module) -> nn.Module:
        """Rewind ``net`` (dense) to the ticket's init and apply its masks, in place; ValueError naming
        the first layer whose shape differs (a ticket of another architecture or channel count)."""
        found = self.found_on.get("network")
        if found is not None and found != type(net).__name__:
            raise ValueError(f"ticket: found on a {found}; this network is a {type(net).__name__}")
        mine = layer_shapes(net.state_dict())
        if mine != self.shapes:
            differing = sorted(set(mine) ^ set(self.shapes)) or [
                name for name in mine if mine[name] != self.shapes[name]]
            name = differing[0]
            raise ValueError(f"ticket: found on a {self.found_on.get('network', '?')} whose layers differ from this "
                             f"network's: {name} is {self.shapes.get(name, 'absent')} in the ticket and "
                             f"{mine.get(name, 'absent')} here ({len(differing)} layer(s) differ)")
        return rewind(net, self.init_state, self.masks)


def save_ticket(path, ticket: Ticket) -> Path:
    """Write ``ticket`` to ``path`` atomically (a torch file of plain tensors and values)."""
    payload = {"format": TICKET_FORMAT, "version": 1, "masks": ticket.masks, "init_state": ticket.init_state,
               "shapes": ticket.shapes, "round": ticket.round, "sparsity": ticket.sparsity,
               "found_on": ticket.found_on}
    path = Path(path)
    with atomic_write(path) as handle:
        torch.save(payload, handle)
    return path


def load_ticket(path) -> Ticket:
    """The :class:`Ticket` at ``path``; ValueError naming the file when it is missing, corrupt or not a ticket."""
    payload = read_tagged_payload(path, "ticket", TICKET_FORMAT, "an mbdlfast lottery ticket (saved by 'mbdlfast lip')")
    return Ticket(payload["masks"], payload["init_state"], payload["shapes"], payload["round"], payload["sparsity"],
                  payload["found_on"])


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


def _rising(losses: list[float], patience: int | None) -> bool:
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
        measurement: (B, ...) measurements; B > 1 is weight-sharing IMP (Algorithm 2): one code, one
            network, its output fitted to all B measurements.
        rounds: pruning rounds after the dense fit (round r has sparsity 1 - (1 - prune_fraction)^r).
        rewind_iter: 0 rewinds to the initialization, k > 0 to the weights after iteration k of the
            dense fit (late rewinding).
        patience: stop after the loss rose in this many consecutive rounds (None: never stop early).
        reference: ground truth(s) in ``task.image``'s layout, for PSNR / SSIM per round.
        code: the fixed input; default one ``noise_code`` of the reference's (or measurement's) size.
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
        code = noise_code(net, *sized.shape[-2:], batch=1, seed=seed)
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
        if _rising([r.loss for r in history], patience):
            stopped = True
            logger.info("IMP stopped: the loss rose in %d consecutive rounds; the matching ticket is round %d",
                        patience, len(history) - patience - 1)
            break
    chosen = len(history) - patience - 1 if stopped else len(history) - 1
    return IMPResult(history, stopped, chosen, rewind_state, code, reconstructions)
