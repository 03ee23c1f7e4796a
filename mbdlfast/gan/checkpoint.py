"""GAN checkpoints: the generator and its critic with their constructor arguments, the training
history and settings, in one torch file of plain tensors and values, written atomically.

A pruned generator (a lottery ticket) is stored with its masks as part of its state (the masks are
persistent parametrization buffers, :mod:`mbdlfast.prune.masking`); :func:`load_gan` re-attaches
them, so a ticket loads as the masked network it was.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mbdlfast.models.dcgan import DCGANDiscriminator, DCGANGenerator
from mbdlfast.outputs import atomic_write, read_tagged_payload
from mbdlfast.prune.masking import apply_masks, current_masks, sparsity

GAN_FORMAT = "mbdlfast-gan"


@dataclass
class GANCheckpoint:
    """What :func:`load_gan` returns: both networks (eval mode), their constructor arguments, the
    training history and the settings of the run that wrote the file (a ticket's round and source
    under ``settings["ticket"]``)."""

    generator: DCGANGenerator
    discriminator: DCGANDiscriminator
    generator_kwargs: dict
    discriminator_kwargs: dict
    history: list = field(default_factory=list, repr=False)
    settings: dict = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        """The fraction of the generator's conv weights its masks prune (0 for a dense generator)."""
        return sparsity(self.generator)

    def describe(self) -> str:
        parameters = sum(p.numel() for p in self.generator.parameters())
        ticket = self.settings.get("ticket")
        pruned = f", ticket of round {ticket['round']}: {100 * self.sparsity:.0f} % sparse" if ticket else ""
        return f"DCGAN generator {self.generator.image_size}x{self.generator.image_size}, {parameters:,} weights{pruned}"


ORIGINAL = ".parametrizations.weight.original"


def _dense_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict under dense names, pruned entries zero (the module itself is left as it is)."""
    masks, state = current_masks(module), {}
    for name, value in module.state_dict().items():
        if name.endswith(ORIGINAL):
            layer = name[:-len(ORIGINAL)]
            state[f"{layer}.weight"] = value * masks[layer]
        elif ".parametrizations.weight." not in name:
            state[name] = value
    return state


def save_gan(path, generator: DCGANGenerator, discriminator: DCGANDiscriminator, generator_kwargs: dict,
             discriminator_kwargs: dict, *, history: list | None = None, settings: dict | None = None) -> Path:
    """Write a GAN checkpoint to ``path`` atomically; the generator's pruning masks go with it."""
    masks = {name: mask for name, mask in current_masks(generator).items() if not bool(mask.all())}
    payload = {"format": GAN_FORMAT, "version": 1, "generator_kwargs": dict(generator_kwargs),
               "discriminator_kwargs": dict(discriminator_kwargs), "generator": _dense_state(generator),
               "generator_masks": masks, "discriminator": discriminator.state_dict(),
               "history": list(history or []), "settings": dict(settings or {})}
    path = Path(path)
    with atomic_write(path) as handle:
        torch.save(payload, handle)
    return path


def load_gan(path) -> GANCheckpoint:
    """The GAN at ``path`` (eval mode, on CPU); ValueError naming the file when it is missing, corrupt
    or not a GAN checkpoint."""
    payload = read_tagged_payload(path, "generator", GAN_FORMAT,
                                  "an mbdlfast GAN checkpoint (written by 'mbdlfast gan train')")
    generator = DCGANGenerator(**payload["generator_kwargs"])
    generator.load_state_dict(payload["generator"])
    if payload["generator_masks"]:
        apply_masks(generator, payload["generator_masks"])
    discriminator = DCGANDiscriminator(**payload["discriminator_kwargs"])
    discriminator.load_state_dict(payload["discriminator"])
    return GANCheckpoint(generator.eval(), discriminator.eval(), payload["generator_kwargs"],
                         payload["discriminator_kwargs"], payload["history"], payload["settings"])
