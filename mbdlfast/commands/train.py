"""``mbdlfast train``: supervised training of a reconstruction network (DDP under torchrun)."""
from __future__ import annotations

import argparse
import logging

from mbdlfast.commands import Command

EXAMPLES = """\
examples:
  mbdlfast train --model deq --data synthetic --steps 100 --out runs/deq
  mbdlfast train --config train.yaml train.lr=3e-4 data.acceleration=8
  mbdlfast train --model modl --data /data/fastmri/brain_train --image-size 320 --batch-size 2
  mbdlfast train --model deq --model-kwargs '{prior_kwargs: {n_resblocks: 4, n_feats: 32}}' --out runs/small
  mbdlfast train --config train.yaml --resume runs/deq/checkpoint.pt --steps 200
  torchrun --nproc_per_node 2 -m mbdlfast train --model deq --data synthetic --steps 4 --out runs/ddp

settings: every flag sets one dotted setting of the YAML config; any setting can also be given as
key=value after the flags (model.name, model.kwargs.<key>, data.source, data.image_size,
data.num_coils, data.num_slices, data.snr_db, data.acceleration, data.center_fraction, data.mask,
data.val_fraction, train.batch_size, train.steps, train.lr, train.weight_decay, train.grad_clip,
train.amp, train.loss, train.val_every, train.val_batches, train.checkpoint_every, seed, out, ...).
Precedence: defaults < --config file < flags < key=value.
"""

# flag -> (dotted setting, help); values are converted and checked by mbdlfast.finetune.config
FLAGS = {
    "--model": ("model.name", "network: deq, modl, varnet, e2e_varnet, edsr, dncnn (default deq)"),
    "--model-kwargs": ("model.kwargs", "constructor kwargs as a YAML/JSON mapping"),
    "--data": ("data.source", "'synthetic' or a fastMRI h5 file or folder (default synthetic)"),
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
    "--resume": ("resume", "checkpoint to continue from"),
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
    """The validated TrainConfig of the arguments added by :func:`add_config_arguments`."""
    from mbdlfast.finetune.config import load_config, parse_override

    given = {setting: getattr(args, setting) for setting, _ in flags.values()}
    given.update({name: getattr(args, name) for name in ("train.amp", "train.progress")})
    overrides = {key: value for key, value in given.items() if value is not None}
    overrides.update(parse_override(text) for text in args.overrides)
    return load_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    from mbdlfast.finetune.trainer import check_writable, train

    config = config_from_arguments(args)
    check_writable(config.out)
    result = train(config)
    logging.getLogger("mbdlfast").info("finished at step %d; checkpoint %s", result.step, result.checkpoint)
    return 0


COMMAND = Command("train", "supervised training of a reconstruction network (DDP under torchrun)",
                  add_config_arguments, run, EXAMPLES)
