"""``mbdlfast train``: supervised training of a reconstruction network (DDP under torchrun)."""
from __future__ import annotations

import argparse
import logging

from mbdlfast.commands import Command

EXAMPLES = """\
examples (from the repository root; each runs in seconds to a minute on a CPU, as a test checks):
  mbdlfast train --model deq --model-kwargs '{prior_kwargs: {n_resblocks: 2, n_feats: 16}, solver_kwargs: {max_iter: 10}}' --image-size 32 --slices 16 --steps 10 --out runs/deq
  mbdlfast train --resume runs/deq/checkpoint.pt --steps 20
  mbdlfast train --config mbdlfast/weights/varnet_small.yaml train.steps=5 train.val_batches=1 out=runs/varnet
  mbdlfast train --model modl --model-kwargs '{num_iter: 2, cg_iter: 3, prior_kwargs: {channels: 16}}' --data ../shared/data/mri/espirit-brain-alias/kspace.npy --image-size 64 --steps 3 --out runs/modl_real data.val_fraction=0
  mbdlfast train --model usrnet --model-kwargs '{iterations: 2, features: [8, 16, 16, 16], hyper_features: 8}' --data ../shared/data/images/set14 --image-size 48 --steps 2 --batch-size 2 --out runs/usrnet data.sr.patches_per_image=2
  torchrun --nproc_per_node 2 -m mbdlfast train --model deq --model-kwargs '{prior_kwargs: {n_resblocks: 1, n_feats: 8}}' --image-size 16 --slices 8 --steps 2 --out runs/ddp --no-progress

The shipped recipes are mbdlfast/weights/*_small.yaml (e.g. --config mbdlfast/weights/deq_small.yaml
reproduces the shipped DEQ). --resume continues a run with the settings stored in its checkpoint
(model, data, optimiser, out); what --config, a flag or key=value gives again wins, and the log says
which value came from where. --data takes 'synthetic' or fully sampled volumes in the formats recon
reads (fastMRI h5, BART cfl, npy; a file or a folder); for usrnet (super-resolution) it takes colour
images (a file or a folder; images in a set5 folder are held out for testing, data.sr.test_folders),
--image-size is the side of the high-resolution patches, data.sr.* sets scales, noise and kernels.

settings: every flag sets one dotted setting of the YAML config; any setting can also be given as
key=value after the flags (model.name, model.kwargs.<key>, data.source, data.image_size,
data.num_coils, data.num_slices, data.snr_db, data.acceleration, data.center_fraction, data.mask,
data.val_fraction, train.batch_size, train.steps, train.lr, train.weight_decay, train.grad_clip,
train.amp, train.loss, train.val_every, train.val_batches, train.checkpoint_every, seed, out, ...).
Precedence: defaults < --config file < flags < key=value.
"""

# flag -> (dotted setting, help); values are converted and checked by mbdlfast.training.config
FLAGS = {
    "--model": ("model.name", "network: deq, modl, varnet, e2e_varnet, edsr, dncnn, usrnet (default deq)"),
    "--model-kwargs": ("model.kwargs", "constructor kwargs as a YAML/JSON mapping"),
    "--data": ("data.source", "'synthetic', or h5 / cfl / npy volumes, a file or folder: fully sampled (undersampled "
                         "acquisitions for finetune's school / self_supervised) (default synthetic)"),
    "--image-size": ("data.image_size", "synthetic image side / fastMRI centre crop (default 64)"),
    "--coils": ("data.num_coils", "synthetic coils (default 4)"),
    "--slices": ("data.num_slices", "synthetic slices (default 64)"),
    "--acceleration": ("data.acceleration", "undersampling factor R (default 4)"),
    "--center-fraction": ("data.center_fraction", "fully sampled centre fraction (default 0.08)"),
    "--batch-size": ("train.batch_size", "batch size per rank (default 1)"),
    "--steps": ("train.steps", "total optimizer steps (default 100)"),
    "--lr": ("train.lr", "AdamW learning rate (default 1e-4)"),
    "--weight-decay": ("train.weight_decay", "AdamW weight decay (default 0)"),
    "--loss": ("train.loss", "auto, smooth_l1, ssim, l1, mse (default auto: per model family)"),
    "--val-every": ("train.val_every", "validate every N steps (default 0: at the end only)"),
    "--val-batches": ("train.val_batches", "cap on validation batches (default: whole split)"),
    "--checkpoint-every": ("train.checkpoint_every", "checkpoint every N steps (default 0: at the end only)"),
    "--seed": ("seed", "seed of data, split, masks and init (default 0)"),
    "--device": ("device", "auto, cpu, cuda or cuda:N (default auto)"),
    "--resume": ("resume", "checkpoint to continue from; its stored settings apply unless given again"),
    "--out": ("out", "output folder for the checkpoint (default runs/train)"),
}


def add_config_arguments(parser: argparse.ArgumentParser, flags: dict = FLAGS) -> None:
    """--config, the setting ``flags`` (flag -> (dotted setting, help)), --amp, --progress and key=value
    overrides; :func:`config_from_arguments` turns them into a config (also used by ``finetune``)."""
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file of settings")
    for flag, (setting, help_text) in flags.items():
        parser.add_argument(flag, dest=setting, metavar=setting.rsplit(".", 1)[-1].upper(), help=help_text)
    parser.add_argument("--amp", dest="train.amp", action=argparse.BooleanOptionalAction,
                        help="mixed precision on CUDA (default on; ignored on CPU)")
    parser.add_argument("--progress", dest="train.progress", action=argparse.BooleanOptionalAction,
                        help="tqdm progress bar on rank 0 (default on)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="any setting, e.g. train.lr=3e-4")


def config_from_arguments(args: argparse.Namespace, flags: dict = FLAGS):
    """The validated TrainConfig of the arguments added by :func:`add_config_arguments`.

    With ``resume`` (a flag, an override or in the file) the resumed checkpoint's stored settings sit
    between the defaults and the file: the run keeps its model, data and optimiser settings unless
    the file or the command line changes them, and the log says which value came from where."""
    from mbdlfast.training.config import dotted_settings, load_config, parse_override, read_config_file

    given = {setting: getattr(args, setting) for setting, _ in flags.values()}
    given.update({name: getattr(args, name) for name in ("train.amp", "train.progress")})
    overrides = {key: value for key, value in given.items() if value is not None}
    overrides.update(parse_override(text) for text in args.overrides)
    config = load_config(args.config, overrides)
    if config.resume is None:
        return config
    stored = _stored_settings(config.resume)
    file_settings = dotted_settings(read_config_file(args.config)) if args.config else {}
    for key in ("model.name",):
        chosen = overrides.get(key, file_settings.get(key))
        if chosen is not None and chosen != stored.get("model", {}).get("name"):
            raise ValueError(f"model.name: the checkpoint {config.resume} holds a {stored['model']['name']!r} model, "
                             f"not {chosen!r} (resuming needs no --model)")
    resumed = load_config(args.config, overrides, base=stored)
    _log_sources(config.resume, dotted_settings(stored), file_settings, overrides, args.config)
    return resumed


def _stored_settings(checkpoint_path: str) -> dict:
    """The training settings stored in a checkpoint (those of a run that trained it), for resuming."""
    from mbdlfast.training.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(checkpoint_path)
    if checkpoint.train_config is None:
        return {"model": {"name": checkpoint.model_name, "kwargs": checkpoint.model_kwargs}}
    return checkpoint.train_config


def _log_sources(checkpoint: str, stored: dict, file_settings: dict, overrides: dict, config_file) -> None:
    """One log line per source of a resumed run's settings: the checkpoint, the file, the command line."""
    from mbdlfast.training.config import TrainConfig, dotted_settings

    defaults = dotted_settings(TrainConfig().to_dict())
    later = set(file_settings) | set(overrides)
    from_checkpoint = sorted(key for key, value in stored.items()
                             if key != "resume" and key not in later and value != defaults.get(key))
    log = logging.getLogger("mbdlfast")
    log.info("resume: from the checkpoint %s: %s", checkpoint, ", ".join(from_checkpoint) or "nothing but defaults")
    if file_settings:
        log.info("resume: from --config %s: %s", config_file, ", ".join(sorted(file_settings)))
    if overrides:
        log.info("resume: from the command line: %s", ", ".join(f"{key}={overrides[key]}" for key in sorted(overrides)))


def run(args: argparse.Namespace) -> int:
    from mbdlfast.training.trainer import train
    from mbdlfast.outputs import output_folder

    config = config_from_arguments(args)
    with output_folder(config.out):  # checked before the work; removed again if training fails at once
        result = train(config)
    logging.getLogger("mbdlfast").info("finished at step %d; checkpoint %s", result.step, result.checkpoint)
    return 0


COMMAND = Command("train", "supervised training of a reconstruction network (DDP under torchrun)",
                  add_config_arguments, run, EXAMPLES)
