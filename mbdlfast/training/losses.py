"""Supervised reconstruction losses, by name.

A complex prediction is compared with the complex target on its real and imaginary parts
(SmoothL1, L1, MSE); a magnitude prediction (e.g. a VarNet's RSS output) with the target's
magnitude. The SSIM loss always compares magnitudes, with each target's maximum as data range
(fastMRI's convention). Losses are computed in float32 / complex64 even under autocast.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from mbdlfast.metrics import SSIMLoss


def _as_pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Comparable real tensors: (re, im) channels of both if pred is complex, else magnitudes."""
    if pred.is_complex():
        return torch.view_as_real(pred.to(torch.complex64)), torch.view_as_real(target.to(torch.complex64))
    return pred.float(), target.abs().float()


def smooth_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.smooth_l1_loss(*_as_pair(pred, target))


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(*_as_pair(pred, target))


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(*_as_pair(pred, target))


_SSIM = SSIMLoss()


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _SSIM(pred.abs().float(), target.abs().float())


LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "smooth_l1": smooth_l1_loss, "l1": l1_loss, "mse": mse_loss, "ssim": ssim_loss,
}


def loss_function(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if name not in LOSSES:
        raise ValueError(f"loss: expected one of {sorted(LOSSES)}, got {name!r}")
    return LOSSES[name]
