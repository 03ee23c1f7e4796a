"""Typed training settings: dataclasses, loaded from YAML with dotted ``key=value`` overrides.

A configuration has three sections and a few top-level keys::

    model:  {name: deq, kwargs: {prior_kwargs: {n_resblocks: 4}}}
    data:   {source: synthetic, image_size: 64, num_coils: 4, acceleration: 4, ...}
    train:  {batch_size: 1, steps: 100, lr: 1.0e-4, amp: true, ...}
    seed: 0
    out: runs/train

Overrides name a setting by its dotted path (``train.lr=3e-4``, ``data.source=/data/brain``); below
a dict-valued setting the path goes on into the dict (``model.kwargs.prior_kwargs.n_feats=32``).
Values are parsed as YAML and then converted to the setting's declared type, so ``train.lr=1e-4``
is a float and ``train.steps=1.5`` is an error. :func:`validate` checks ranges and names and raises
``ValueError`` with a message naming the setting.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from mbdlfast.data.noise import check_snr_db
from mbdlfast.physics.blur_kernels import KERNEL_SIZE
from mbdlfast.training.losses import LOSSES

MASK_KINDS = ("equispaced", "equispaced_fraction", "random", "mbdl")
LOSS_CHOICES = ("auto", *LOSSES)
DEVICES = ("auto", "cpu", "cuda")
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class ModelConfig:
    """Which network to train: a name of :data:`mbdlfast.training.registry.MODEL_REGISTRY` and the
    keyword arguments of its constructor (merged over the registry's defaults)."""

    name: str = "deq"
    kwargs: dict = field(default_factory=dict)


@dataclass
class SRDataConfig:
    """How super-resolution training patches are degraded (models of the ``sr`` task, USRNet).

    Each HR patch (``data.image_size`` square, from the training images of ``data.source``) gets its
    own random kernel (:func:`mbdlfast.physics.blur_kernels.random_kernel`, motion blur for
    ``motion_fraction`` of them) and noise level uniform in [0, ``max_noise_level``] (25/255 as in
    USRNet); each batch one scale from ``scales``. Images in ``test_folders`` never train
    (:mod:`mbdlfast.data.sr_images`). ``patches_per_image`` patches are cut from every image.
    """

    scales: tuple[int, ...] = (2, 3, 4)
    max_noise_level: float = 25 / 255
    motion_fraction: float = 0.25
    patches_per_image: int = 64
    test_folders: tuple[str, ...] = ("set5",)


@dataclass
class DataConfig:
    """Where the slices come from and how they are undersampled.

    ``source`` is ``"synthetic"`` (the embedded phantom generator) or fully sampled volumes: a fastMRI
    h5, BART cfl or npy file, or a folder of them (the formats ``recon`` reads).
    ``image_size``: synthetic images are ``image_size`` square; fastMRI coil images are centre-cropped
    to at most ``image_size`` on each side (``None``: full size). ``num_coils``, ``num_slices``,
    ``snr_db`` and ``family`` (a phantom family, ``"images:<path>[,...]"`` for random views of real
    magnitude images, :mod:`mbdlfast.data.image_magnitudes`, or a "|"-joined mixture such as
    ``"brain|images:<path>"``) apply to synthetic data only; ``calib_width`` to the ESPIRiT maps
    estimated for fastMRI data. ``val_fraction`` of the slices (of the volumes, for fastMRI folders
    with several) is held out for validation, chosen by the run's seed.

    ``noise_snr_db`` adds white Gaussian noise to the measured k-space of every slice, of any source,
    at that input SNR (:mod:`mbdlfast.data.noise`; the seed's Table 3 uses 9 dB); ``snr_db`` is the
    generator's own noise and may not be set for data from files (use ``noise_snr_db``).
    ``accelerations``: when given, each slice's R is drawn from it (seeded per slice, e.g. ``[4, 8]``
    to train one model for both); ``acceleration`` stays the nominal R (``recon``'s default).

    Super-resolution models (USRNet) read colour images instead: ``source`` is an image file or a
    folder of them, ``image_size`` the side of the high-resolution training patches, ``sr`` the
    degradation (:class:`SRDataConfig`); ``val_fraction`` holds out whole images. The MRI settings
    do not apply to them.
    """

    source: str = "synthetic"
    image_size: int | None = 64
    num_coils: int = 4
    num_slices: int = 64
    snr_db: float | None = 30.0
    family: str = "brain"
    acceleration: int = 4
    accelerations: tuple[int, ...] | None = None
    noise_snr_db: float | None = None
    center_fraction: float = 0.08
    mask: str = "equispaced"
    calib_width: int = 24
    val_fraction: float = 0.125
    normalise: bool = True
    sr: SRDataConfig = field(default_factory=SRDataConfig)


@dataclass
class OptimConfig:
    """Optimisation and schedule. ``schedule``: "constant" or "cosine" (from ``lr`` down to 0 at
    ``steps``), after a linear warm-up of ``warmup_steps``. ``loss="auto"`` takes the model family's loss (SmoothL1 for DEQ and
    MoDL, SSIM for the VarNets). ``amp`` only takes effect on CUDA. ``val_every`` /
    ``checkpoint_every`` of 0 mean: only at the end; ``val_batches`` caps the validation batches
    (``None``: the whole split). ``jacobian_weight`` > 0 (DEQ only) adds the Jacobian regulariser
    μ·‖J‖²_F/d with ``jacobian_samples`` Hutchinson probes per step
    (:class:`~mbdlfast.training.objective.JacobianTerm`)."""

    batch_size: int = 1
    steps: int = 100
    lr: float = 1e-4
    schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    amp: bool = True
    loss: str = "auto"
    jacobian_weight: float = 0.0
    jacobian_samples: int = 1
    val_every: int = 0
    val_batches: int | None = None
    checkpoint_every: int = 0
    log_every: int = 10
    progress: bool = True


@dataclass
class TrainConfig:
    """A whole training run; ``resume`` is a checkpoint to continue from."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    seed: int = 0
    out: str = "runs/train"
    resume: str | None = None
    device: str = "auto"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------------
# building from mappings and overrides


def _type_hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional_inner(hint) -> tuple[Any, bool]:
    """(T, True) for ``T | None``, (hint, False) otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0], True
    return hint, False


def _parse_value(text: str):
    """``text`` read as YAML (``"8"`` -> 8, ``"[a, b]"`` -> a list); text that is not YAML (``","``)
    stays the plain string, for the type checks to judge."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _coerce(key: str, value, hint):
    """``value`` converted to the declared type ``hint`` of setting ``key``, or a ValueError."""
    inner, optional = _optional_inner(hint)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        if optional:
            return None
        raise ValueError(f"{key}: may not be empty (None)")
    if isinstance(value, str) and inner is not str:
        value = _parse_value(value)
        if inner is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
    if inner is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{key}: expected true or false, got {value!r}")
    if inner is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    if inner is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise ValueError(f"{key}: expected a finite number, got {value!r}")
    if inner is str:
        if isinstance(value, (str, Path)):
            return str(value)
        raise ValueError(f"{key}: expected a string, got {value!r}")
    if typing.get_origin(inner) is tuple:  # tuple[T, ...]: a YAML list or "a,b,c"
        items = value.split(",") if isinstance(value, str) else value
        items = items if isinstance(items, (list, tuple)) else [items]
        if not items:
            raise ValueError(f"{key}: expected a non-empty list, got {value!r}")
        element = typing.get_args(inner)[0]
        return tuple(_coerce(f"{key}[{i}]", item.strip() if isinstance(item, str) else item, element)
                     for i, item in enumerate(items))
    if inner is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise ValueError(f"{key}: expected a mapping, got {value!r}")
    raise TypeError(f"{key}: unsupported setting type {hint!r}")  # a bug in this module, not bad input


def _apply(target, mapping: Mapping, prefix: str = "", strict: bool = True) -> None:
    """Set the fields of dataclass ``target`` from a (nested) mapping; unknown keys are errors
    (``strict``) or skipped (settings stored by another mbdlfast version)."""
    hints = _type_hints(type(target))
    for key, value in mapping.items():
        dotted = f"{prefix}{key}"
        if key not in hints:
            if not strict:
                continue
            known = ", ".join(f"{prefix}{name}" for name in hints)
            raise ValueError(f"unknown setting {dotted!r} (known: {known})")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ValueError(f"{dotted}: expected a mapping of settings, got {value!r}")
            _apply(current, value, f"{dotted}.", strict)
        else:
            setattr(target, key, _coerce(dotted, value, hints[key]))


def dotted_settings(settings: Mapping) -> dict:
    """A nested settings mapping (e.g. ``TrainConfig.to_dict()``) as dotted keys, sections flattened one
    level (``train.lr``); dict-valued settings such as ``model.kwargs`` stay whole."""
    flat = {}
    for key, value in settings.items():
        if key in ("model", "data", "train") and isinstance(value, Mapping):
            flat.update({f"{key}.{inner}": inner_value for inner, inner_value in value.items()})
        else:
            flat[key] = value
    return flat


def _set_in_dict(mapping: dict, path: list[str], value) -> dict:
    result = dict(mapping)
    if len(path) == 1:
        result[path[0]] = _parse_value(value) if isinstance(value, str) else value
        return result
    inner = result.get(path[0], {})
    if not isinstance(inner, dict):
        raise ValueError(f"{path[0]}: is {inner!r}, not a mapping, so it has no key {path[1]!r}")
    result[path[0]] = _set_in_dict(inner, path[1:], value)
    return result


def apply_override(config: TrainConfig, key: str, value) -> None:
    """Set one dotted setting (``train.lr``, ``model.kwargs.prior_kwargs.n_feats``) from ``value``,
    a string (parsed as YAML) or a Python value."""
    parts = key.split(".")
    if not all(parts):
        raise ValueError(f"override {key!r}: expected a dotted setting name such as train.lr")
    target, prefix = config, ""
    for depth, part in enumerate(parts):
        hints = _type_hints(type(target))
        if part not in hints:
            known = ", ".join(f"{prefix}{name}" for name in hints)
            raise ValueError(f"unknown setting {prefix + part!r} (known: {known})")
        current = getattr(target, part)
        if dataclasses.is_dataclass(current):
            if depth == len(parts) - 1:
                raise ValueError(f"{key}: is a section; set one of its keys ({key}.<name>=...)")
            target, prefix = current, f"{prefix}{part}."
            continue
        rest = parts[depth + 1:]
        if rest:
            if _optional_inner(hints[part])[0] is not dict:
                raise ValueError(f"{prefix}{part}: is not a mapping, so {key!r} names nothing")
            setattr(target, part, _set_in_dict(current, rest, value))
        else:
            setattr(target, part, _coerce(key, value, hints[part]))
        return


def parse_override(text: str) -> tuple[str, str]:
    """``"train.lr=1e-4"`` -> ``("train.lr", "1e-4")``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"override {text!r}: expected key=value, e.g. train.lr=1e-4")
    return key.strip(), value


def load_config(path=None, overrides: Sequence[str] | Mapping[str, Any] = (), *,
                base: Mapping | None = None) -> TrainConfig:
    """Defaults, then ``base`` (stored settings, e.g. a checkpoint's ``train_config``), then the YAML
    file at ``path`` (if any), then ``overrides`` (``key=value`` strings or a mapping of dotted
    keys), validated."""
    return validate(load_settings(TrainConfig, path, overrides, base=base))


def read_config_file(path) -> dict:
    """The settings mapping of the YAML file at ``path`` (empty for an empty file); ValueError naming it."""
    path = Path(path)
    try:
        loaded = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ValueError(f"config: cannot read {path}: {err.strerror or err}") from err
    except yaml.YAMLError as err:
        raise ValueError(f"config: {path} is not valid YAML: {' '.join(str(err).split())}") from err
    if loaded is not None and not isinstance(loaded, Mapping):
        raise ValueError(f"config: {path} must hold a mapping of settings, got {type(loaded).__name__}")
    return dict(loaded or {})


def load_settings(settings_class, path=None, overrides: Sequence[str] | Mapping[str, Any] = (), *,
                  base: Mapping | None = None):
    """``settings_class()`` (any settings dataclass), then ``base`` (stored settings; keys this version
    does not know are skipped), then the YAML file at ``path`` (if any), then ``overrides``; values
    are converted to the declared types. Range checks are the caller's."""
    config = settings_class()
    if base:
        _apply(config, {key: value for key, value in base.items() if key != "resume"}, strict=False)
    if path is not None:
        _apply(config, read_config_file(path))
    items = overrides.items() if isinstance(overrides, Mapping) else (parse_override(o) for o in overrides)
    for key, value in items:
        apply_override(config, key, value)
    return config


# --------------------------------------------------------------------------------------------------
# validation


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _validate_sr(data: DataConfig) -> None:
    sr = data.sr
    _require(data.source != "synthetic" and Path(data.source).exists(),
             f"data.source: a super-resolution model trains on images; expected an image file or a folder of "
             f"them, got {data.source!r}")
    _require(all(scale >= 1 for scale in sr.scales), f"data.sr.scales: expected integers >= 1, got {sr.scales}")
    _require(data.image_size is not None and all(data.image_size % scale == 0 for scale in sr.scales),
             f"data.image_size: the patch side must be a multiple of every scale in data.sr.scales={sr.scales}, "
             f"got {data.image_size}")
    _require(data.image_size >= KERNEL_SIZE, f"data.image_size: the patches must hold the {KERNEL_SIZE}x{KERNEL_SIZE} "
                                             f"training kernels, got {data.image_size}")
    _require(0 <= sr.max_noise_level < 1, f"data.sr.max_noise_level: expected a standard deviation in [0, 1) "
                                          f"(images in [0, 1]), got {sr.max_noise_level}")
    _require(0 <= sr.motion_fraction <= 1, f"data.sr.motion_fraction: expected a fraction in [0, 1], "
                                           f"got {sr.motion_fraction}")
    _require(sr.patches_per_image >= 1, f"data.sr.patches_per_image: expected >= 1, got {sr.patches_per_image}")


def validate(config: TrainConfig) -> TrainConfig:
    """Check names, ranges and paths; returns ``config`` or raises ValueError naming the setting."""
    from mbdlfast.training.registry import MODEL_REGISTRY
    from mbdlfast.data.synthetic import check_family

    model, data, train = config.model, config.data, config.train
    _require(model.name in MODEL_REGISTRY,
             f"model.name: expected one of {sorted(MODEL_REGISTRY)}, got {model.name!r}")
    if MODEL_REGISTRY[model.name].task == "sr":
        _validate_sr(data)
    if data.source != "synthetic":
        source = Path(data.source)
        _require(source.exists() or source.with_name(source.name + ".cfl").is_file(),
                 f"data.source: expected 'synthetic' or a fastMRI h5, BART cfl or npy file or folder, "
                 f"{data.source!r} does not exist")
    _require(data.image_size is None or data.image_size >= 8,
             f"data.image_size: expected an integer >= 8 (SSIM needs 7x7 windows), got {data.image_size}")
    _require(data.source != "synthetic" or data.image_size is not None,
             "data.image_size: synthetic data needs an image size")
    _require(data.num_coils >= 1, f"data.num_coils: expected >= 1, got {data.num_coils}")
    _require(data.num_slices >= 2, f"data.num_slices: expected >= 2 (a training and a validation slice), "
                                   f"got {data.num_slices}")
    try:
        check_family(data.family)
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(f"data.{err}") from err
    _require(data.acceleration >= 1, f"data.acceleration: expected an integer >= 1, got {data.acceleration}")
    data.noise_snr_db = check_snr_db("data.noise_snr_db", data.noise_snr_db)
    _require(data.accelerations is None or (len(data.accelerations) > 0 and all(r >= 1 for r in data.accelerations)),
             f"data.accelerations: expected integers >= 1 or none, got {data.accelerations}")
    _require(data.source == "synthetic" or data.snr_db in (None, DataConfig.snr_db),
             f"data.snr_db: sets the synthetic generator's noise, not that of k-space from files "
             f"({data.source}); use data.noise_snr_db to add noise at an input SNR")
    _require(0 < data.center_fraction < 1, f"data.center_fraction: expected a fraction in (0, 1), "
                                           f"got {data.center_fraction}")
    _require(data.mask in MASK_KINDS, f"data.mask: expected one of {MASK_KINDS}, got {data.mask!r}")
    _require(data.calib_width >= 1, f"data.calib_width: expected >= 1, got {data.calib_width}")
    _require(0 <= data.val_fraction < 1, f"data.val_fraction: expected a fraction in [0, 1), got {data.val_fraction}")
    _require(train.batch_size >= 1, f"train.batch_size: expected >= 1, got {train.batch_size}")
    _require(train.steps >= 1, f"train.steps: expected >= 1, got {train.steps}")
    _require(train.lr > 0, f"train.lr: expected > 0, got {train.lr}")
    _require(train.schedule in LR_SCHEDULES, f"train.schedule: expected one of {LR_SCHEDULES}, got {train.schedule!r}")
    _require(0 <= train.warmup_steps < train.steps,
             f"train.warmup_steps: expected 0 <= warmup_steps < train.steps={train.steps}, got {train.warmup_steps}")
    _require(train.weight_decay >= 0, f"train.weight_decay: expected >= 0, got {train.weight_decay}")
    _require(train.grad_clip is None or train.grad_clip > 0,
             f"train.grad_clip: expected > 0 or none, got {train.grad_clip}")
    _require(train.loss in LOSS_CHOICES, f"train.loss: expected one of {LOSS_CHOICES}, got {train.loss!r}")
    for name in ("val_every", "checkpoint_every"):
        _require(getattr(train, name) >= 0, f"train.{name}: expected >= 0 (0: only at the end), "
                                            f"got {getattr(train, name)}")
    _require(train.val_batches is None or train.val_batches >= 1,
             f"train.val_batches: expected >= 1 or none, got {train.val_batches}")
    _require(train.jacobian_weight >= 0, f"train.jacobian_weight: expected >= 0, got {train.jacobian_weight}")
    _require(train.jacobian_samples >= 1, f"train.jacobian_samples: expected >= 1, got {train.jacobian_samples}")
    _require(train.jacobian_weight == 0 or config.model.name == "deq",
             f"train.jacobian_weight: the Jacobian regulariser applies to the deq model only, not {config.model.name!r}")
    _require(train.log_every >= 1, f"train.log_every: expected >= 1, got {train.log_every}")
    _require(config.seed >= 0, f"seed: expected >= 0, got {config.seed}")
    _require(bool(config.out), "out: expected an output folder")
    _require(config.resume is None or Path(config.resume).is_file(),
             f"resume: checkpoint {config.resume!r} does not exist")
    _require(config.device in DEVICES or config.device.startswith("cuda:"),
             f"device: expected one of {DEVICES} or cuda:N, got {config.device!r}")
    return config
