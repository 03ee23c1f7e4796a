"""Deep image priors: inverse-problem tasks, fitting an untrained prior to one measurement, test images.

The priors themselves (:class:`~mbdlfast.models.SkipHourglass`, :class:`~mbdlfast.models.DeepDecoder`)
live in :mod:`mbdlfast.models`; lottery tickets of them in :mod:`mbdlfast.prune.lottery`.
"""
from mbdlfast.dip.fit import DIPFit, fit_dip
from mbdlfast.dip.images import IMAGE_SETS, KNOWN_IMAGES, load_image, load_inpainting_mask, resolve_image
from mbdlfast.dip.problems import TASKS, Problem, make_problem, stack_problems
from mbdlfast.dip.tasks import CompressedSensingMRI, DIPTask, Denoising, Inpainting, SuperResolution, lanczos_kernel

__all__ = [
    "CompressedSensingMRI", "DIPFit", "DIPTask", "Denoising", "IMAGE_SETS", "Inpainting", "KNOWN_IMAGES",
    "Problem", "SuperResolution", "TASKS", "fit_dip", "lanczos_kernel", "load_image", "load_inpainting_mask",
    "make_problem", "resolve_image", "stack_problems",
]
