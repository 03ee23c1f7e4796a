"""Ready-made inverse problems on the test images: a task, its ground truth and a simulated measurement.

Task names (:data:`TASKS`): ``denoise`` (sigma 25/255), ``inpaint`` (the published mask of kate /
library / vase, else a seeded random mask keeping half of the pixels), ``sr4`` / ``sr8``
(Lanczos-2 downsampling), ``mri`` (the image's luminance as a real object, 8 simulated coils, a
random 1D mask at R = 4 with 8 % fully sampled centre lines).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mbdlfast.dip.images import INPAINTING_MASKS, load_image, load_inpainting_mask
from mbdlfast.dip.tasks import CompressedSensingMRI, Denoising, DIPTask, Inpainting, SuperResolution

__all__ = ["Problem", "TASKS", "make_problem", "stack_problems"]

TASKS = ("denoise", "inpaint", "sr4", "sr8", "mri")


@dataclass
class Problem:
    """``truth`` in ``task.image``'s layout, ``measurement`` = ``task.measure(truth)``."""

    task: DIPTask
    truth: torch.Tensor
    measurement: torch.Tensor
    image_name: str

    def to(self, device) -> "Problem":
        """Move the task, truth and measurement to ``device``; in place, returns the problem."""
        self.task.to(device)
        self.truth, self.measurement = self.truth.to(device), self.measurement.to(device)
        return self


def make_problem(task: str, image: str, *, size: int | None = None, seed: int = 0, root=None) -> Problem:
    """The problem ``task`` (one of :data:`TASKS`) on the test image ``image`` (a known name or a path)."""
    if task not in TASKS:
        raise ValueError(f"task: expected one of {', '.join(TASKS)}, got {task!r}")
    truth = load_image(image, size=size, grayscale=task == "mri", root=root)
    channels = truth.shape[1]
    if task == "denoise":
        dip_task = Denoising(channels=channels)
    elif task == "inpaint":
        dip_task = Inpainting(_inpainting_mask(image, truth, size, seed, root), channels=channels)
    elif task in ("sr4", "sr8"):
        dip_task = SuperResolution(int(task[2:]), channels=channels)
    else:
        dip_task, truth = _mri_task(truth[:, 0], seed)
    return Problem(dip_task, truth, dip_task.measure(truth, seed=seed), str(image))


def _inpainting_mask(image: str, truth: torch.Tensor, size: int | None, seed: int, root) -> torch.Tensor:
    if str(image).lower() in INPAINTING_MASKS:
        return load_inpainting_mask(image, size=size, root=root)
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(truth.shape[-2:], generator=generator) < 0.5).float()


def _mri_task(magnitude: torch.Tensor, seed: int) -> tuple[CompressedSensingMRI, torch.Tensor]:
    from mbdlfast.physics import masks
    from mbdlfast.physics.coils import simulate_coil_maps
    from mbdlfast.physics.sense import SenseOperator

    height, width = magnitude.shape[-2:]
    maps = simulate_coil_maps(8, height, width, seed=seed)
    mask = masks.random(width, 4, 0.08, seed=seed)
    truth = magnitude.to(torch.complex64)
    return CompressedSensingMRI(SenseOperator(maps, mask)), truth


def stack_problems(problems: list[Problem]) -> Problem:
    """One batched problem of several images of one size and task (for weight-shared multi-image fits)."""
    if not problems:
        raise ValueError("problems: empty")
    first = problems[0]
    for problem in problems[1:]:
        if type(problem.task) is not type(first.task) or problem.truth.shape[1:] != first.truth.shape[1:]:
            raise ValueError(f"problems: {problem.image_name!r} does not match {first.image_name!r} in task, "
                             f"channels or size ({tuple(problem.truth.shape)} vs {tuple(first.truth.shape)})")
    task = first.task
    if isinstance(task, Inpainting):
        masks = [p.task.mask.expand(p.truth.shape[-2:]) if p.task.mask.dim() == 2 else p.task.mask[0]
                 for p in problems]
        task = Inpainting(torch.stack(masks), channels=task.channels)
    return Problem(task, torch.cat([p.truth for p in problems]), torch.cat([p.measurement for p in problems]),
                   "+".join(p.image_name for p in problems))
