"""Tensor layouts of the SENSE ops: masks as k-space weights and compact k-space.

Image x (B,H,W); k-space (B,C,H,W); maps (B,C,H,W) or (C,H,W); mask (W,), (B,W), (H,W) or (B,H,W)
of bool or real 0/1 values. Compact k-space keeps the sampled phase-encode lines only,
(B,C,H,n_s), in increasing column order.
"""
from __future__ import annotations

import torch


def mask_as_kspace_weight(mask: torch.Tensor, is_2d: bool) -> torch.Tensor:
    """Broadcast a 1D (W,)/(B,W) or 2D (H,W)/(B,H,W) mask to (B|1, 1, H|1, W) for k-space products."""
    if is_2d:
        weight = mask if mask.dim() == 3 else mask.unsqueeze(0)
        weight = weight.unsqueeze(1)
    else:
        weight = mask if mask.dim() == 2 else mask.unsqueeze(0)
        weight = weight[:, None, None, :]
    return weight.to(torch.float64 if not weight.is_floating_point() else weight.dtype)


def sampled_columns(mask: torch.Tensor) -> torch.Tensor:
    """Indices of the sampled columns of a 1D mask: (n_s,) for (W,), (B,n_s) for (B,W).

    Compact k-space needs the same number of sampled lines in every batch entry.
    """
    sampled = mask != 0
    if mask.dim() == 1:
        return torch.nonzero(sampled).flatten()
    counts = sampled.sum(dim=-1)
    if bool((counts != counts[0]).any()):
        raise ValueError(f"mask: compact k-space needs the same number of sampled lines per batch entry, got {counts.tolist()}")
    return torch.nonzero(sampled)[:, 1].reshape(mask.shape[0], -1)


def to_compact(k: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """Keep the sampled columns of full (B,C,H,W) k-space: (B,C,H,n_s)."""
    if columns.dim() == 1:
        return k[..., columns]
    index = columns[:, None, None, :].expand(k.shape[0], k.shape[1], k.shape[2], -1)
    return torch.gather(k, -1, index)


def from_compact(kc: torch.Tensor, columns: torch.Tensor, width: int) -> torch.Tensor:
    """Zero-fill compact (B,C,H,n_s) k-space back to the full (B,C,H,W) grid: the adjoint of
    :func:`to_compact`, so values at a repeated column add up."""
    full = kc.new_zeros(*kc.shape[:-1], width)
    index = columns if columns.dim() == 2 else columns.unsqueeze(0)
    index = index[:, None, None, :].expand(kc.shape)
    return full.scatter_add(-1, index, kc)


def sum_to_maps(grad: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """A (B,C,H,W) gradient summed over the batch when the maps are shared, (1,C,H,W) or (C,H,W)."""
    if maps.dim() == 3:
        return grad.sum(dim=0)
    return grad.sum(dim=0, keepdim=True) if maps.shape[0] == 1 and grad.shape[0] != 1 else grad
