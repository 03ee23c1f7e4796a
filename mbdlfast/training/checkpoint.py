"""Self-describing checkpoints: the model's registry name and constructor kwargs travel with its
weights, so :func:`load_checkpoint` rebuilds the network from the file alone; the training state
(step, optimizer, AMP scaler, RNG states, history) lets a run resume exactly where it stopped.

Files are written atomically: to a temporary file in the destination folder, flushed to disk, then
renamed over the destination with ``os.replace``. A crash or an error during the save leaves the
previous checkpoint intact and no half-written file behind. Files load with
``torch.load(weights_only=True)``: nothing in them executes code on load.

Structurally pruned models (:mod:`mbdlfast.prune.structured`) have narrower layers than their
registry build. Their files carry an ``architecture`` record: for each module whose structural
attributes (channel / feature counts) differ from the registry build, the new values.
:func:`load_checkpoint` applies it to the registry build before loading the weights, so dense and
pruned files load alike. Files with such a record are written as format version 2; the others stay
version 1, readable by older mbdlfast.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mbdlfast.training.config import ModelConfig, TrainConfig
from mbdlfast.training.registry import build_model
from mbdlfast.outputs import atomic_write
from mbdlfast.prune.masking import apply_masks

logger = logging.getLogger(__name__)

FORMAT = "mbdlfast-checkpoint"
FORMAT_VERSION = 2  # 2: may hold an "architecture" record (pruned layer sizes); files without one are written as 1

#: The constructor attributes that structured pruning changes, per module type.
STRUCTURAL_ATTRIBUTES = {
    nn.modules.conv._ConvNd: ("in_channels", "out_channels"),
    nn.Linear: ("in_features", "out_features"),
    nn.modules.batchnorm._NormBase: ("num_features",),  # batch and instance norms
    nn.GroupNorm: ("num_channels",),
}
# Unstructured pruning masks (mbdlfast.prune.masking) parametrize ``<layer>.weight``: the file keeps
# those keys, and loading re-attaches the masks before the weights are read.
_MASK_SUFFIX = ".parametrizations.weight.0.mask"
_ORIGINAL_SUFFIX = ".parametrizations.weight.original"


def _unmasked_keys(state_dict: dict) -> set[str]:
    """The state_dict keys the model would have without its pruning masks."""
    return {key[:-len(_ORIGINAL_SUFFIX)] + ".weight" if key.endswith(_ORIGINAL_SUFFIX) else key
            for key in state_dict if not key.endswith(_MASK_SUFFIX)}


def check_architecture(model: nn.Module, model_config: ModelConfig, role: str = "model") -> tuple[nn.Module, dict]:
    """ValueError unless ``model``'s parameter names (pruning masks aside; pruned shapes may differ)
    are those of ``model_config``'s network; returns that network, built on the meta device, and its
    resolved kwargs."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{role}: expected an nn.Module, got {type(model).__name__}")
    with torch.device("meta"):  # only the parameter names are needed: build without memory or init cost
        reference, resolved = build_model(model_config.name, model_config.kwargs)
    if set(reference.state_dict()) != _unmasked_keys(model.state_dict()):
        raise ValueError(f"{role}: its parameters do not match a {model_config.name!r} built from kwargs {resolved} "
                         "(pass the kwargs the network was built with)")
    return reference, resolved


def capture_rng_state() -> dict:
    """The global RNG states (torch CPU and CUDA, Python, numpy) as weights-only-loadable values."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": _to_lists(random.getstate()),
        "numpy": {"name": np_state[0], "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
    }


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state((np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))


def _to_lists(value):
    return [_to_lists(v) for v in value] if isinstance(value, tuple) else value


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns: the rebuilt model (eval mode, on CPU unless
    ``map_location`` says otherwise) and everything needed to resume."""

    model: nn.Module
    model_name: str
    model_kwargs: dict
    mbdlfast_version: str
    step: int = 0
    train_config: dict | None = None
    optimizer: dict | None = None
    scaler: dict | None = None
    rng: dict | None = None
    history: list = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def _structural_attributes(module: nn.Module) -> tuple[str, ...]:
    return next((names for kind, names in STRUCTURAL_ATTRIBUTES.items() if isinstance(module, kind)), ())


def architecture_difference(model: nn.Module, reference: nn.Module) -> dict[str, dict[str, int]]:
    """``{module name: {attribute: value}}`` for the structural attributes of ``model`` that differ from
    ``reference`` (same module names, e.g. the registry build); empty for an unpruned model."""
    references = dict(reference.named_modules())
    difference = {}
    for name, module in model.named_modules():
        changed = {attr: int(getattr(module, attr)) for attr in _structural_attributes(module)
                   if name in references and getattr(module, attr) != getattr(references[name], attr)}
        if changed:
            difference[name] = changed
    return difference


def _pruned_shape(module: nn.Module, tensor_name: str, shape: torch.Size) -> tuple[int, ...]:
    """The shape of ``module``'s parameter / buffer ``tensor_name`` after its attributes were changed."""
    if isinstance(module, nn.modules.conv._ConvNd):
        outer, inner = module.out_channels, module.in_channels // module.groups
        if module.transposed:
            outer, inner = module.in_channels, module.out_channels // module.groups
        return (outer, inner, *shape[2:]) if tensor_name == "weight" else (module.out_channels,)
    if isinstance(module, nn.Linear):
        return (module.out_features, module.in_features) if tensor_name == "weight" else (module.out_features,)
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return tuple(shape) if tensor_name == "num_batches_tracked" else (module.num_features,)
    return (module.num_channels,)  # GroupNorm


def apply_architecture(model: nn.Module, architecture: dict) -> None:
    """Set the recorded structural attributes on ``model``'s modules and give their parameters and
    buffers the matching (uninitialised) shapes, ready for ``load_state_dict``.

    Raises ValueError when the record names a module or attribute the model does not have.
    """
    if not isinstance(architecture, dict) or not all(isinstance(a, dict) for a in architecture.values()):
        raise ValueError("its architecture record is not a {module name: {attribute: value}} mapping")
    for name, attributes in architecture.items():
        try:
            module = model.get_submodule(name)
        except AttributeError as err:
            raise ValueError(f"its architecture names a module {name!r} that the model does not have") from err
        allowed = _structural_attributes(module)
        for attr, value in attributes.items():
            if attr not in allowed or isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"its architecture sets {name}.{attr}={value!r}; "
                                 f"a {type(module).__name__} only takes positive {allowed}")
            setattr(module, attr, value)
        for tensor_name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            resized = torch.empty(_pruned_shape(module, tensor_name, tensor.shape), dtype=tensor.dtype)
            if isinstance(tensor, nn.Parameter):
                resized = nn.Parameter(resized, requires_grad=tensor.requires_grad)
            setattr(module, tensor_name, resized)


def _model_config(config) -> tuple[ModelConfig, dict | None]:
    if isinstance(config, TrainConfig):
        return config.model, config.to_dict()
    if isinstance(config, ModelConfig):
        return config, None
    raise TypeError(f"config: expected a TrainConfig or a ModelConfig, got {type(config).__name__}")


def save_checkpoint(path, model: nn.Module, config: TrainConfig | ModelConfig, *, step: int = 0,
                    optimizer: torch.optim.Optimizer | None = None, scaler=None, history: list | None = None,
                    extra: dict | None = None, save_rng: bool = True) -> Path:
    """Write ``model`` (unwrapped from DDP if needed) with its config and training state to ``path``
    atomically; returns the path.

    ``config``: the run's :class:`TrainConfig` (stored whole) or just a :class:`ModelConfig`.
    The kwargs are stored resolved over the registry defaults, and the model's state_dict must match
    what they build (checked here, so a mismatched pair never reaches the disk).
    """
    from mbdlfast import __version__

    model = getattr(model, "module", model)  # DistributedDataParallel
    model_config, train_config = _model_config(config)
    reference, resolved = check_architecture(model, model_config)
    state_dict = model.state_dict()
    architecture = architecture_difference(model, reference)
    payload = {
        "format": FORMAT,
        "format_version": 2 if architecture else 1,
        "architecture": architecture,
        "mbdlfast_version": __version__,
        "model": {"name": model_config.name, "kwargs": resolved},
        "state_dict": {k: v.detach().cpu() for k, v in state_dict.items()},
        "train_config": train_config,
        "step": int(step),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
        "rng": capture_rng_state() if save_rng else None,
        "history": list(history or []),
        "extra": dict(extra or {}),
    }
    path = Path(path)
    with atomic_write(path) as handle:
        torch.save(payload, handle)
    logger.debug("saved checkpoint %s (step %d)", path, step)
    return path


def save_pruned(model: nn.Module, path, model_name: str, model_kwargs: dict | None = None, *,
                extra: dict | None = None) -> Path:
    """Save a structurally pruned ``model`` of registry family ``model_name`` built from ``model_kwargs``:
    the file records the pruned layer shapes, so :func:`load_checkpoint` rebuilds it. ``extra`` is
    stored as is; put the pruning settings there (ratio, importance, round_to, dense params)."""
    return save_checkpoint(path, model, ModelConfig(model_name, dict(model_kwargs or {})), extra=extra, save_rng=False)


def load_checkpoint(path, *, expected_model: str | None = None, map_location="cpu") -> Checkpoint:
    """Rebuild the model stored at ``path`` and return it with its training state.

    Raises ValueError (one line) for a missing, unreadable or corrupt file, a file that is not an
    mbdlfast checkpoint, or a checkpoint of another model than ``expected_model``.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint: {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for corrupt / truncated / foreign files
        reason = " ".join(str(err).split())[:200]
        raise ValueError(f"checkpoint: {path} is not a readable checkpoint (corrupt or truncated?): {reason}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"checkpoint: {path} is not an mbdlfast checkpoint (no '{FORMAT}' marker)")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"checkpoint: {path} has format version {payload['format_version']}; this mbdlfast "
                         f"reads up to {FORMAT_VERSION} (upgrade mbdlfast)")
    name, kwargs = payload["model"]["name"], payload["model"]["kwargs"]
    if expected_model is not None and name != expected_model:
        raise ValueError(f"checkpoint: {path} holds a {name!r} model, expected {expected_model!r}")
    model, _ = build_model(name, kwargs)
    masks = {key[:-len(_MASK_SUFFIX)]: value for key, value in payload["state_dict"].items() if key.endswith(_MASK_SUFFIX)}
    try:
        apply_architecture(model, payload.get("architecture") or {})
        if masks:
            apply_masks(model, masks)
        model.load_state_dict(payload["state_dict"])
    except (RuntimeError, ValueError) as err:
        first = " ".join(line.strip() for line in str(err).splitlines()[:2]) if str(err) else type(err).__name__
        raise ValueError(f"checkpoint: {path}: its weights do not fit a {name!r} built from {kwargs}: {first}") from err
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu").eval()
    return Checkpoint(
        model=model, model_name=name, model_kwargs=kwargs, mbdlfast_version=payload["mbdlfast_version"],
        step=payload["step"], train_config=payload["train_config"], optimizer=payload["optimizer"],
        scaler=payload["scaler"], rng=payload["rng"], history=payload["history"], extra=payload["extra"],
    )
