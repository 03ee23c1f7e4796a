"""Default weights shipped with the package: small networks trained here on a CPU.

``load_default("deq")`` returns a small DEQ-EDSR (6 residual blocks, 48 features) and
``load_default("varnet")`` a small VarNet with given maps (4 cascades, 8 channels, 3 pools), both
trained on :data:`DEFAULT_DATA`; ``load_default("usrnet")`` a small USRNet (prior widths 16-128)
trained on the shared colour images without Set5. All are ordinary
:class:`~mbdlfast.training.checkpoint.Checkpoint` objects, trained with
``mbdlfast train --config mbdlfast/weights/<name>_small.yaml``; the convolutional parts are
size-agnostic, so they also run on larger images. They are demo and test
weights, not clinical models: see ``mbdlfast/weights/README.md`` for how they were made and what
they reach.

The shipped files carry no optimizer, AMP-scaler or RNG state (see :func:`strip_training_state`),
only the weights, the model kwargs, the training config and the loss history.
"""
from __future__ import annotations

from pathlib import Path

from mbdlfast.gan.checkpoint import GANCheckpoint, load_gan
from mbdlfast.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mbdlfast.training.config import DataConfig, load_config

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# name -> (file in WEIGHTS_DIR, registry name of the model it holds)
DEFAULT_WEIGHTS: dict[str, tuple[str, str]] = {
    "deq": ("deq_small.pt", "deq"),
    "varnet": ("varnet_small.pt", "varnet"),
    "usrnet": ("usrnet_small.pt", "usrnet"),
}

DEFAULT_DATA = DataConfig(source="synthetic", image_size=64, num_coils=8, num_slices=256, snr_db=30.0,
                          family="brain", acceleration=4, center_fraction=0.08, mask="equispaced",
                          val_fraction=0.0625, normalise=True)
"""The data both default models were trained on: synthetic brain phantoms, 8 coils, 64x64, R=4
equispaced lines with an 8 % fully sampled centre, 30 dB SNR, k-space scaled by max|Aᴴy|."""

GAN_WEIGHTS = {"dcgan": "dcgan_small.pt"}  # name -> GAN checkpoint in WEIGHTS_DIR (mbdlfast.gan.checkpoint)

__all__ = ["DEFAULT_DATA", "DEFAULT_WEIGHTS", "GAN_WEIGHTS", "WEIGHTS_DIR", "available", "load_checkpoint_or_default",
           "load_default", "load_gan_or_default",
           "strip_training_state"]


def available() -> list[str]:
    """Names accepted by :func:`load_default` whose weight file is present."""
    return sorted(name for name, (file, _) in DEFAULT_WEIGHTS.items() if (WEIGHTS_DIR / file).is_file())


def load_default(name: str = "deq", map_location="cpu") -> Checkpoint:
    """The shipped checkpoint ``name`` ("deq" or "varnet"), model rebuilt in eval mode on ``map_location``."""
    if name not in DEFAULT_WEIGHTS:
        raise ValueError(f"name: expected one of {sorted(DEFAULT_WEIGHTS)} (available: {available()}), got {name!r}")
    file, model_name = DEFAULT_WEIGHTS[name]
    path = WEIGHTS_DIR / file
    if not path.is_file():
        raise ValueError(f"name: the weights of {name!r} ({path}) are not installed; available: {available()}")
    return load_checkpoint(path, expected_model=model_name, map_location=map_location)


def load_checkpoint_or_default(model: str, map_location="cpu") -> tuple[Checkpoint, str]:
    """``model`` as a checkpoint file, or as the name of shipped weights (:data:`DEFAULT_WEIGHTS`) when
    no such file exists; returns the checkpoint and where it came from (a resolved path)."""
    path = Path(model)
    if path.is_file() or model not in DEFAULT_WEIGHTS:
        if not path.exists():
            raise ValueError(f"checkpoint: {path} does not exist (give a checkpoint file or the name of shipped "
                             f"weights: {', '.join(available())})")
        return load_checkpoint(path, map_location=map_location), str(path.resolve())
    checkpoint = load_default(model, map_location=map_location)
    return checkpoint, str((WEIGHTS_DIR / DEFAULT_WEIGHTS[model][0]).resolve())


def load_gan_or_default(generator: str) -> tuple[GANCheckpoint, str]:
    """``generator`` as a GAN checkpoint file, or the shipped GAN of that name (:data:`GAN_WEIGHTS`);
    returns the checkpoint and where it came from."""
    path = Path(generator)
    if not path.is_file() and generator in GAN_WEIGHTS:
        path = WEIGHTS_DIR / GAN_WEIGHTS[generator]
        if not path.is_file():
            raise ValueError(f"generator: the shipped GAN {generator!r} ({path}) is not installed")
    elif not path.is_file():
        raise ValueError(f"generator: {path} does not exist (give a GAN checkpoint or the shipped weights: "
                         f"{', '.join(GAN_WEIGHTS)})")
    return load_gan(path), str(path.resolve())


def strip_training_state(source, destination, *, overrides: dict | None = None, extra: dict | None = None) -> Path:
    """Re-save the training checkpoint ``source`` at ``destination`` without optimizer, scaler and RNG
    state (what a shipped file needs: weights, kwargs, config, history).

    ``overrides``: dotted settings applied to the stored training config (e.g. ``{"train.steps": 600}``
    so the config names the step the weights come from); ``extra``: merged into the file's ``extra``.
    """
    checkpoint = load_checkpoint(source)
    if checkpoint.train_config is None:
        raise ValueError(f"source: {source} has no training config to ship with the weights")
    config = load_config(None, overrides or {}, base=checkpoint.train_config)
    return save_checkpoint(destination, checkpoint.model, config, step=checkpoint.step, history=checkpoint.history,
                           extra={**checkpoint.extra, **(extra or {})}, save_rng=False)
