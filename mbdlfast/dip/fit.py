"""Fitting an untrained prior to one measurement (the deep-image-prior optimisation).

Adam on ``task.loss(net(code + noise), y)``, where a fresh Gaussian perturbation of the fixed code is
drawn every iteration (DIP's input-noise regularisation, std 1/30), the network stays in training mode
throughout (BatchNorm on the batch statistics, as in DIP), and the reconstruction is an exponential
moving average of the outputs (DIP's ``exp_weight`` 0.99) or the last output.

Several images can be fitted by one network at once (weight sharing), in two ways: stack their codes
and measurements along the batch dimension (a joint fit: one code and one output per image,
BatchNorm over the whole batch), or give one code for B measurements (the lottery-image-prior
paper's Algorithm 2: the one output is fitted to every measurement). Either way the loss is the mean
over all images.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from mbdlfast._validation import check_int, check_tensor
from mbdlfast.dip.tasks import DIPTask
from mbdlfast.models.dip import noise_code

__all__ = ["DIPFit", "fit_dip"]

logger = logging.getLogger(__name__)


@dataclass
class DIPFit:
    """The result of :func:`fit_dip`.

    ``reconstruction``: the (EMA of the) output, in the network's output layout; ``image``: the same
    through ``task.image``; ``history``: per-iteration ``loss`` and, with a reference, ``psnr``
    (of the reconstruction, per image averaged over the batch); ``final_loss``: the mean loss of the
    last ``tail`` iterations (a less noisy figure than the last one); ``snapshot``: the network's
    state dict after iteration ``snapshot_iter`` (for late rewinding), else None.
    """

    reconstruction: torch.Tensor
    image: torch.Tensor
    history: dict[str, list[float]]
    final_loss: float
    psnr: float | None = None
    ssim: float | None = None
    snapshot: dict[str, torch.Tensor] | None = field(default=None, repr=False)


def fit_dip(net: nn.Module, task: DIPTask, measurement: torch.Tensor, *, iters: int, lr: float = 0.01,
            input_noise_std: float = 1 / 30, seed: int = 0, progress: bool = False, code: torch.Tensor | None = None,
            reference: torch.Tensor | None = None, ema: float | None = 0.99, snapshot_iter: int | None = None,
            tail: int = 10) -> DIPFit:
    """Fit ``net`` (in place) so that ``task.A(net(code))`` matches ``measurement``.

    Args:
        code: the fixed input; by default ``noise_code(net, H, W, seed=seed)`` for the size of the
            task's images, which must then be given by ``reference`` (or be the measurement's size).
        reference: the ground truth in ``task.image``'s layout, to record the PSNR per iteration and
            score the result.
        ema: weight of the moving average of outputs (None or 0: the last output).
        snapshot_iter: keep a copy of the network's state after this many iterations (0: before
            the first step).
    """
    iters = check_int("iters", iters, minimum=1)
    check_tensor("measurement", measurement)
    if not lr > 0:
        raise ValueError(f"lr: expected > 0, got {lr}")
    if ema is not None and not 0 <= ema < 1:
        raise ValueError(f"ema: expected a weight in [0, 1) or None, got {ema}")
    if snapshot_iter is not None:
        check_int("snapshot_iter", snapshot_iter, minimum=0)
        if snapshot_iter > iters:
            raise ValueError(f"snapshot_iter: expected <= iters ({iters}), got {snapshot_iter}")
    if code is None:
        code = _default_code(net, measurement, reference, seed)
    parameters = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    generator = torch.Generator(device=code.device).manual_seed(seed + 1)
    history: dict[str, list[float]] = {"loss": []}
    if reference is not None:
        history["psnr"] = []
    snapshot = _copy_state(net) if snapshot_iter == 0 else None
    average = None
    net.train()
    for step in tqdm(range(1, iters + 1), desc="DIP fit", disable=not progress, leave=False):
        net_input = code
        if input_noise_std:
            net_input = code + input_noise_std * torch.randn(code.shape, generator=generator, device=code.device)
        output = net(net_input)
        loss = task.loss(_per_image(output, measurement), measurement)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history["loss"].append(float(loss.detach()))
        with torch.no_grad():
            output = output.detach()
            average = output if average is None or not ema else ema * average + (1 - ema) * output
            if reference is not None:
                history["psnr"].append(float(task.psnr(reference, task.image(_per_image(average, reference))).mean()))
        if step == snapshot_iter:
            snapshot = _copy_state(net)
    window = history["loss"][-min(tail, iters):]
    with torch.no_grad():
        image = task.image(average)
        fit = DIPFit(average, image, history, sum(window) / len(window), snapshot=snapshot)
        if reference is not None:
            psnr, ssim = task.score(reference, task.image(_per_image(average, reference)))
            fit.psnr, fit.ssim = float(psnr.mean()), float(ssim.mean())
    logger.debug("DIP fit: %d iterations, final loss %.3e, psnr %s", iters, fit.final_loss, fit.psnr)
    return fit


def _per_image(output: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """``output`` for each of the B ``images``: a shared (one-code) output repeated B times."""
    if output.shape[0] == 1 and images.shape[0] > 1:
        return output.expand(images.shape[0], *output.shape[1:])
    if output.shape[0] != images.shape[0]:
        raise ValueError(f"code: {output.shape[0]} code(s) for {images.shape[0]} measurement(s); give one per "
                         "measurement or one shared by all")
    return output


def _default_code(net: nn.Module, measurement: torch.Tensor, reference: torch.Tensor | None, seed: int) -> torch.Tensor:
    sized = reference if reference is not None else measurement
    return noise_code(net, *sized.shape[-2:], batch=measurement.shape[0], seed=seed)


def _copy_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return copy.deepcopy({name: value.detach() for name, value in net.state_dict().items()})
