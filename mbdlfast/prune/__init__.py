"""Pruning: structured (DepGraph) pruning of trained networks, pruning at initialization (PUN and the
SNIP / GraSP / SynFlow baselines) and lottery tickets by iterative magnitude pruning.

Exports resolve lazily, so ``import mbdlfast.prune`` does not import torch-pruning until a
structured-pruning name is used.
"""
import importlib

_EXPORTS = {
    # structured pruning of trained networks (torch-pruning's dependency graph)
    "prune_structured": "structured",
    "count_params": "structured", "count_macs": "structured",
    # pruning at initialization (PUN and the SNIP / GraSP / SynFlow baselines)
    "prune_at_init": "at_init", "score_weights": "at_init",
    # lottery tickets by iterative magnitude pruning
    "iterative_magnitude_pruning": "lottery", "transfer_ticket": "lottery", "rewind": "lottery",
    # persistent weight masks shared by unstructured methods
    "apply_masks": "masking", "remove_masks": "masking", "current_masks": "masking", "prunable_weights": "masking",
    "sparsity": "masking", "global_magnitude_masks": "masking", "masks_from_scores": "masking",
    "WeightMask": "masking",
}

__all__ = sorted(_EXPORTS) + ["at_init", "lottery"]


def __getattr__(name):
    if name in ("at_init", "lottery", "structured", "masking"):
        return importlib.import_module(f"mbdlfast.prune.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"mbdlfast.prune.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'mbdlfast.prune' has no attribute {name!r}")
