"""``mbdlfast finetune``: fine-tune a (pruned) student checkpoint: supervised, school, self-supervised."""
from __future__ import annotations

import argparse
import logging

from mbdlfast.commands import Command
from mbdlfast.commands.train import FLAGS, add_config_arguments, config_from_arguments

EXAMPLES = """\
examples (from the repository root; the pruned files come from the 'mbdlfast prune --help' examples):
  mbdlfast finetune --student runs/deq/pruned50.pt --teacher runs/deq/checkpoint.pt --mode school --image-size 32 --steps 5 --out runs/ft
  mbdlfast finetune --student runs/deq_p50.pt --teacher deq --mode school --steps 5 --out runs/ft_shipped
  mbdlfast finetune --student runs/varnet_p30.pt --mode self_supervised --ei-weight 0.5 --steps 3 --out runs/ssl
  mbdlfast finetune --student runs/deq_p50.pt --teacher deq --mode supervised+school --lr 3e-4 --steps 3 --out runs/mix train.grad_clip=none
  mbdlfast finetune --student runs/usrnet_p25.pt --teacher usrnet --mode school --data ../shared/data/images/set14 --image-size 48 --batch-size 2 --steps 2 --out runs/usrnet_ft data.sr.patches_per_image=1
  mbdlfast finetune --student deq --mode self_supervised --data ../shared/data/mri/sigpy-mri-tutorial/cartesian_ksp.npy --steps 1 --out runs/test_time data.val_fraction=0

--student / --teacher: checkpoints, or the shipped weights by name (deq, varnet, usrnet).
USRNet (super-resolution) fine-tunes on colour images (--data: a file or folder; --image-size: the
high-resolution patch side, a multiple of every scale) with supervised or school.

--data: fully sampled volumes (undersampled retrospectively, as in training), or undersampled
acquisitions alone for school / self_supervised (test-time tuning): each slice keeps the file's own
1D or 2D sampling, maps come from the calibration square it keeps, and validation reports the data
residual |M A x - y| / |y| (no ground truth; supervised is refused).

modes: supervised (family loss against the ground truth), school (the same loss against the frozen
teacher's reconstruction), self_supervised (L1 measurement consistency in k-space + equivariant
imaging under random rotations of the image and coil maps, no ground truth), "+"-joined sums, and
none (no steps). The model family and its kwargs come from the student checkpoint; the teacher's
checkpoint is never written (an --out whose checkpoint.pt is the teacher's file is refused).

settings: data, optimiser, seed and device as in 'mbdlfast train' (the same flags, --config YAML
and key=value overrides; precedence: defaults < --config file < flags < key=value).
"""

# the model comes from --student, and a fine-tuning run starts from it rather than resuming; --out is required
SETTING_FLAGS = {flag: entry for flag, entry in FLAGS.items() if flag not in ("--model", "--model-kwargs", "--resume",
                                                                             "--out")}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--student", required=True, metavar="STUDENT.pt",
                        help="checkpoint of the network to fine-tune (pruned or dense), or shipped weights: deq, varnet, usrnet")
    parser.add_argument("--teacher", metavar="DENSE.pt",
                        help="checkpoint of the unpruned teacher (mode school), or shipped weights: deq, varnet, usrnet")
    parser.add_argument("--mode", default="school",
                        help="none, supervised, school, self_supervised or '+'-joined (default school)")
    parser.add_argument("--mc-weight", type=float, default=1.0, help="measurement-consistency weight (default 1)")
    parser.add_argument("--ei-weight", type=float, default=1.0, help="equivariant-imaging weight (default 1)")
    parser.add_argument("--rotation", default="auto", choices=("auto", "quarter", "any"),
                        help="EI rotations: quarter turns (exact), any angle (bilinear), auto: quarter if square")
    parser.add_argument("--out", dest="out", required=True, metavar="DIR",
                        help="output folder of the fine-tuned checkpoint (DIR/checkpoint.pt)")
    add_config_arguments(parser, SETTING_FLAGS)


def run(args: argparse.Namespace) -> int:
    from mbdlfast.training.config import ModelConfig
    from mbdlfast.finetune.finetuner import finetune_from_config
    from mbdlfast.outputs import output_folder
    from mbdlfast.pretrained import load_checkpoint_or_default

    config = config_from_arguments(args, {**SETTING_FLAGS, "--out": FLAGS["--out"]})  # --out is added above
    student, _ = load_checkpoint_or_default(args.student)
    teacher = load_checkpoint_or_default(args.teacher)[1] if args.teacher else None  # the file, so it is protected
    config.model = ModelConfig(student.model_name, student.model_kwargs)
    with output_folder(config.out):  # checked before the work; removed again if fine-tuning fails at once
        result = finetune_from_config(student.model, config, mode=args.mode, teacher=teacher,
                                      mc_weight=args.mc_weight, ei_weight=args.ei_weight, rotation=args.rotation)
    if result.checkpoint is None:
        logging.getLogger("mbdlfast").info("mode none: nothing to train; %s is the result", args.student)
    else:
        logging.getLogger("mbdlfast").info("fine-tuned %s (%s): checkpoint %s, validation %s", student.model_name,
                                           args.mode, result.checkpoint, result.validation)
    return 0


COMMAND = Command("finetune", "fine-tune a pruned network: supervised, school (distillation) or self-supervised",
                  add_arguments, run, EXAMPLES)
