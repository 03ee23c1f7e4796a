"""Persistent weight masks for unstructured pruning (lottery tickets, pruning at initialization).

A masked layer's ``weight`` is parametrized (:mod:`torch.nn.utils.parametrize`) as
``original * mask``, with the 0/1 mask a persistent buffer of :class:`WeightMask`. So the mask stays
applied through any number of optimizer steps, pruned weights get zero gradient, the mask travels
in the ``state_dict`` (``<layer>.parametrizations.weight.0.mask``) and the model survives
``copy.deepcopy``. Masks are keyed by the module's dotted name in the model.

Scores of any method (magnitude, SNIP, SynFlow, PUN's keep-probabilities, ...) become masks through
:func:`masks_from_scores`, a global top-k over all prunable weights, optionally among the weights
that are still alive. Masked dense kernels cost what dense ones do: sparsity here is a statement
about the network, not a speed-up (structured pruning is what makes layers smaller).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

PRUNABLE_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)

__all__ = [
    "PRUNABLE_TYPES", "WeightMask", "apply_masks", "current_masks", "global_magnitude_masks", "masks_from_scores",
    "prunable_weights", "remove_masks", "sparsity",
]


class WeightMask(nn.Module):
    """The parametrization ``weight = original * mask``; ``mask`` is a persistent 0/1 buffer."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def _mask_of(module: nn.Module) -> WeightMask | None:
    if parametrize.is_parametrized(module, "weight"):
        for parametrization in module.parametrizations.weight:
            if isinstance(parametrization, WeightMask):
                return parametrization
    return None


def prunable_weights(model: nn.Module, types: tuple[type[nn.Module], ...] = PRUNABLE_TYPES) -> dict[str, nn.Module]:
    """The modules whose ``weight`` unstructured pruning acts on, by dotted name (convolutions and
    linear layers by default; biases and normalisation layers are never pruned)."""
    found = {name: module for name, module in model.named_modules() if isinstance(module, types)}
    if not found:
        raise ValueError(f"model: has no prunable layers of types {[t.__name__ for t in types]}")
    return found


def _dense_weight(module: nn.Module) -> torch.Tensor:
    """The unmasked weight: the parametrization's ``original`` for a masked module, else ``weight``."""
    return module.parametrizations.weight.original if _mask_of(module) is not None else module.weight


def current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every prunable layer's mask; an unmasked layer counts as all ones."""
    masks = {}
    for name, module in prunable_weights(model).items():
        mask = _mask_of(module)
        masks[name] = mask.mask.detach().clone() if mask is not None else torch.ones_like(module.weight)
    return masks


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """Attach (or replace) the masks of the named layers in place; returns ``model``.

    Each mask must have the layer's weight shape and hold only zeros and ones.
    """
    layers = prunable_weights(model)
    for name, mask in masks.items():
        if name not in layers:
            raise ValueError(f"masks: {name!r} is not a prunable layer of the model (known: {sorted(layers)[:8]}...)")
        module = layers[name]
        weight = _dense_weight(module)
        if tuple(mask.shape) != tuple(weight.shape):
            raise ValueError(f"masks[{name!r}]: expected shape {tuple(weight.shape)}, got {tuple(mask.shape)}")
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError(f"masks[{name!r}]: expected only zeros and ones")
        mask = mask.to(device=weight.device, dtype=weight.dtype)
        existing = _mask_of(module)
        if existing is not None:
            existing.mask.copy_(mask)
        else:
            parametrize.register_parametrization(module, "weight", WeightMask(mask))
    return model


def remove_masks(model: nn.Module) -> nn.Module:
    """Make the masks permanent (the zeros stay in ``weight``) and drop the mask buffers; in place."""
    for module in prunable_weights(model).values():
        if _mask_of(module) is not None:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def sparsity(model: nn.Module) -> float:
    """Fraction of the prunable weights that are masked out (0 for a dense model)."""
    masks = current_masks(model).values()
    total = sum(m.numel() for m in masks)
    return 1.0 - sum(float(m.sum()) for m in masks) / total


def masks_from_scores(scores: dict[str, torch.Tensor], density: float, *,
                      alive: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Keep the ``density`` fraction of all scored weights with the highest scores (one global top-k).

    ``alive``: current masks; dead weights are never revived and ``density`` is then the fraction of
    ALL scored weights kept (so it must not exceed the current density). Ties at the threshold are
    broken by position, so exactly ``round(density * total)`` weights survive.
    """
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density: expected a fraction in (0, 1], got {density}")
    if not scores:
        raise ValueError("scores: empty")
    names = list(scores)
    flat = torch.cat([scores[n].detach().float().flatten().cpu() for n in names])
    if not torch.isfinite(flat).all():
        raise ValueError("scores: contain NaN or Inf")
    if alive is not None:
        alive_flat = torch.cat([alive[n].flatten().cpu().bool() for n in names])
        flat = torch.where(alive_flat, flat, torch.tensor(float("-inf")))
    keep = round(density * flat.numel())
    if alive is not None and keep > int(alive_flat.sum()):
        raise ValueError(f"density: {density} keeps {keep} weights but only {int(alive_flat.sum())} are alive")
    kept = torch.zeros(flat.numel(), dtype=torch.float32)
    kept[torch.topk(flat, keep, sorted=False).indices] = 1.0
    masks, start = {}, 0
    for name in names:
        count = scores[name].numel()
        masks[name] = kept[start:start + count].view(scores[name].shape).to(scores[name].device)
        start += count
    return masks


def global_magnitude_masks(model: nn.Module, prune_fraction: float) -> dict[str, torch.Tensor]:
    """Masks that remove ``prune_fraction`` of the still-alive prunable weights with the smallest |w|,
    ranked globally across layers (one IMP round: 0.2 removes 20 % of the remaining weights)."""
    if not 0.0 <= prune_fraction < 1.0:
        raise ValueError(f"prune_fraction: expected a fraction in [0, 1), got {prune_fraction}")
    alive = current_masks(model)
    scores = {name: _dense_weight(module).detach().abs() for name, module in prunable_weights(model).items()}
    alive_count = sum(float(m.sum()) for m in alive.values())
    total = sum(m.numel() for m in alive.values())
    return masks_from_scores(scores, alive_count * (1.0 - prune_fraction) / total, alive=alive)
