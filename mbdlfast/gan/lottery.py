"""Lottery tickets of a pretrained generator (GAN-LIP, section 5 of the lottery-image-prior paper).

Each IMP round fine-tunes the (masked) generator with its discriminator on image crops, removes
``prune_fraction`` of the remaining generator weights by global magnitude, and resets both networks
to their pretrained weights (the generator under the new mask). Round r therefore has sparsity
1 − (1 − prune_fraction)^r of the generator's conv weights; the discriminator is never pruned.
A ticket is the mask over the pretrained weights (:func:`mbdlfast.prune.lottery.rewind` applies it).
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import torch
from torch import nn

from mbdlfast._validation import check_int
from mbdlfast.gan.training import train_gan
from mbdlfast.prune.lottery import rewind
from mbdlfast.prune.masking import current_masks, global_magnitude_masks, sparsity

logger = logging.getLogger(__name__)


@dataclass
class GeneratorRound:
    """Round ``round`` (0: the dense pretrained generator): its sparsity and masks."""

    round: int
    sparsity: float
    masks: dict[str, torch.Tensor] = field(repr=False)


def generator_imp(generator: nn.Module, discriminator: nn.Module, crops, *, rounds: int, finetune_steps: int,
                  prune_fraction: float = 0.2, batch_size: int = 64, lr: float = 2e-4, seed: int = 0, device="cpu",
                  progress: bool = False) -> tuple[list[GeneratorRound], dict[str, torch.Tensor]]:
    """IMP on ``generator``'s weights (module docstring); returns the rounds and the pretrained
    generator state the tickets rewind to. Both networks end reset to their pretrained weights, the
    generator under the last round's mask."""
    check_int("rounds", rounds, minimum=1)
    check_int("finetune_steps", finetune_steps, minimum=1)
    if not 0 < prune_fraction < 1:
        raise ValueError(f"prune_fraction: expected a fraction in (0, 1), got {prune_fraction}")
    if any(mask.min() == 0 for mask in current_masks(generator).values()):
        raise ValueError("generator: expected a dense pretrained generator (it already carries pruning masks)")
    pretrained = copy.deepcopy({name: value.detach() for name, value in generator.state_dict().items()})
    critic = copy.deepcopy(discriminator.state_dict())
    history = [GeneratorRound(0, 0.0, current_masks(generator))]
    for round_index in range(1, rounds + 1):
        train_gan(generator, discriminator, crops, steps=finetune_steps, batch_size=batch_size, lr=lr,
                  seed=seed + round_index, device=device, progress=progress)
        masks = global_magnitude_masks(generator, prune_fraction)
        rewind(generator, pretrained, masks)
        discriminator.load_state_dict(critic)
        history.append(GeneratorRound(round_index, sparsity(generator), current_masks(generator)))
        logger.info("generator IMP round %d: sparsity %.4f", round_index, history[-1].sparsity)
    return history, pretrained
