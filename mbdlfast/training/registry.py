"""The trainable models by name: how to build each from plain (checkpointable) keyword arguments, how
to call it on a training batch, and which loss its published training used.

Every model is built from JSON-like kwargs only (CNN priors are named, not passed as modules), so a
checkpoint that stores the name and the resolved kwargs rebuilds the same network from the file.

=============  ===================================================  ============  =========
name           network                                              called as     loss
=============  ===================================================  ============  =========
deq            :class:`~mbdlfast.models.DEQ`, EDSR prior            (y, physics)  smooth_l1
modl           :class:`~mbdlfast.models.MoDL`, DnCNN-5 prior        (y, physics)  smooth_l1
varnet         :class:`~mbdlfast.models.VarNet`, given maps         (y, physics)  ssim
e2e_varnet     :class:`~mbdlfast.models.VarNet`, learned maps       (y, physics)  ssim
edsr, dncnn    image-domain CNN on the zero-filled Aᴴy              (Aᴴy)         smooth_l1
usrnet         :class:`~mbdlfast.models.USRNet` (super-resolution)   (y, physics)  l1
=============  ===================================================  ============  =========

``physics`` is the batch's operator (``batch.physics()``): a
:class:`~mbdlfast.physics.sense.SenseOperator` for the MRI models, whose data are k-space slices
(:mod:`mbdlfast.training.data`), and a :class:`~mbdlfast.physics.blur.BlurDownsample` for the
super-resolution task's USRNet, whose data are image patches (:mod:`mbdlfast.training.sr_data`).
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from mbdlfast.models import DEQ, ComplexAdapter, DnCNN, EDSR, MoDL, USRNet, VarNet
from mbdlfast.training.data import training_slices
from mbdlfast.training.sr_data import SRPatches

PRIORS: dict[str, type[nn.Module]] = {"edsr": EDSR, "dncnn": DnCNN}
TASK_DATASETS = {"mri": training_slices, "sr": SRPatches}  # (DataConfig, seed) -> a dataset with .collate


def _constructor_defaults(network: type[nn.Module]) -> dict:
    """The keyword arguments of ``network``'s constructor with their defaults (a denoiser module excluded)."""
    return {name: p.default for name, p in inspect.signature(network).parameters.items()
            if name != "denoiser" and p.default is not inspect.Parameter.empty}


def _checked(name: str, kwargs: dict, known: dict) -> dict:
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise ValueError(f"{name}: unknown argument(s) {unknown}; known: {sorted(known)}")
    return kwargs


def _reconstruction(model: nn.Module, batch) -> torch.Tensor:
    return model(batch.kspace, batch.physics())


def _image_domain(model: nn.Module, batch) -> torch.Tensor:
    return model(batch.physics().A_adjoint(batch.kspace))


def _super_resolution(model: nn.Module, batch) -> torch.Tensor:
    return model(batch.measurement, batch.physics())


@dataclass(frozen=True)
class ModelSpec:
    """How to build and call one model family.

    ``network`` is the module class; ``defaults`` override its constructor defaults (e.g. the paper's
    sizes). Models with a CNN prior (``"prior"`` in ``defaults``) take ``prior`` (a name of
    :data:`PRIORS`) and ``prior_kwargs`` instead of a denoiser module. ``complex_adapter`` wraps a
    2-channel CNN for complex images. ``reconstruct(model, batch)`` returns the (B,H,W) image,
    complex or magnitude (MRI), or the (B,C,H,W) images (super-resolution); ``loss`` is the default
    loss name; ``task`` names the data it trains on (a key of :data:`TASK_DATASETS`).
    """

    network: type[nn.Module]
    reconstruct: Callable[[nn.Module, object], torch.Tensor]
    loss: str
    defaults: dict = field(default_factory=dict)
    complex_adapter: bool = False
    task: str = "mri"

    def dataset(self, data, seed: int = 0):
        """The training data of this model's task from ``data`` (a DataConfig)."""
        return TASK_DATASETS[self.task](data, seed)

    def resolve_kwargs(self, kwargs: dict | None) -> dict:
        """Every constructor argument: the user's ``kwargs`` over ``defaults`` over the class's defaults.

        A nested ``prior_kwargs`` is completed the same way from the prior's constructor; the
        ``defaults``' prior_kwargs only apply while the prior is the default one.
        """
        kwargs = copy.deepcopy(dict(kwargs or {}))
        known = {**_constructor_defaults(self.network), **copy.deepcopy(self.defaults)}
        resolved = {**known, **_checked(f"model.kwargs of {self.network.__name__}", kwargs, known)}
        if "prior" in self.defaults:
            prior = resolved["prior"]
            if prior not in PRIORS:
                raise ValueError(f"model.kwargs.prior: expected one of {sorted(PRIORS)}, got {prior!r}")
            base = {**_constructor_defaults(PRIORS[prior]),
                    **(self.defaults["prior_kwargs"] if prior == self.defaults["prior"] else {})}
            given = kwargs.get("prior_kwargs") or {}
            resolved["prior_kwargs"] = {**base, **_checked(f"model.kwargs.prior_kwargs of {prior}", given, base)}
        return resolved

    def build(self, resolved: dict) -> nn.Module:
        """The module from :meth:`resolve_kwargs`' output."""
        kwargs = copy.deepcopy(resolved)
        if "prior" in self.defaults:
            kwargs["denoiser"] = ComplexAdapter(PRIORS[kwargs.pop("prior")](**kwargs.pop("prior_kwargs")))
        module = self.network(**kwargs)
        return ComplexAdapter(module) if self.complex_adapter else module


_PAPER_VARNET = {"num_cascades": 8, "chans": 18, "pools": 4, "output": "image"}

MODEL_REGISTRY: dict[str, ModelSpec] = {
    "deq": ModelSpec(DEQ, _reconstruction, "smooth_l1", {"prior": "edsr", "prior_kwargs": {}}),
    "modl": ModelSpec(MoDL, _reconstruction, "smooth_l1",
                      {"prior": "dncnn", "prior_kwargs": {"depth": 5, "channels": 64, "batch_norm": True}}),
    "varnet": ModelSpec(VarNet, _reconstruction, "ssim", {**_PAPER_VARNET, "estimate_sens": False}),
    "e2e_varnet": ModelSpec(VarNet, _reconstruction, "ssim", {**_PAPER_VARNET, "estimate_sens": True}),
    "edsr": ModelSpec(EDSR, _image_domain, "smooth_l1", complex_adapter=True),
    "dncnn": ModelSpec(DnCNN, _image_domain, "smooth_l1", complex_adapter=True),
    "usrnet": ModelSpec(USRNet, _super_resolution, "l1", task="sr"),
}


def model_spec(name: str) -> ModelSpec:
    if name not in MODEL_REGISTRY:
        raise ValueError(f"model: expected one of {sorted(MODEL_REGISTRY)}, got {name!r}")
    return MODEL_REGISTRY[name]


def build_model(name: str, kwargs: dict | None = None) -> tuple[nn.Module, dict]:
    """The model ``name`` built from ``kwargs`` over the defaults -> (module, resolved kwargs).

    The resolved kwargs name every constructor argument, so they rebuild the same network even if
    a default changes later.
    """
    spec = model_spec(name)
    resolved = spec.resolve_kwargs(kwargs)
    return spec.build(resolved), resolved
