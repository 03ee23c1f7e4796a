"""``mbdlfast recon``: reconstruct k-space volumes with a checkpoint into fastMRI-layout h5 and PNG."""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

from mbdlfast.commands import Command, add_settings_arguments, settings_from_arguments

EXAMPLES = """\
examples:
  mbdlfast recon --model runs/deq/checkpoint.pt --data /data/fastmri/brain_val --out recons
  mbdlfast recon --model pruned.pt --data volume.h5 --out recons --acceleration 8 --center-fraction 0.04
  mbdlfast recon --model runs/deq/checkpoint.pt --data brain_clean.cfl --out recons --device cpu
  mbdlfast recon --config recon.yaml acceleration=8 seed=3
  torchrun --nproc_per_node 2 -m mbdlfast recon --model ckpt.pt --data /data/brain_val --out recons

data: a fastMRI h5 file, a BART .cfl file ([H W C]), a .npy of complex k-space (C,H,W) or (S,C,H,W),
or a folder of these. Fully sampled data are undersampled retrospectively (equispaced lines plus a
fully sampled centre, as in training; R and the centre fraction default to the checkpoint's
training values); undersampled data keep their own sampling. Each volume gives <out>/<name>.h5
('reconstruction' (S,H,W) float32 magnitude, 'mask', attrs) and <out>/<name>.png (middle slice).
Under torchrun each rank reconstructs its share of the files.

settings: every flag sets one setting; --config (YAML) and key=value overrides use the same names:
model, data, out, acceleration, center_fraction, seed, batch_size, device, progress.
Precedence: defaults < --config file < flags < key=value.
"""


@dataclass
class ReconRun:
    """The command-line level settings of ``mbdlfast recon``; the rest are those of
    :class:`mbdlfast.reconstruct.ReconSettings`. ``model``, ``data`` and ``out`` are required."""

    model: str | None = None
    data: str | None = None
    out: str | None = None
    device: str = "auto"


FLAGS = {
    "--model": ("model", "an mbdlfast checkpoint (dense or pruned); required", {"metavar": "CKPT"}),
    "--data": ("data", "h5 / cfl / npy file or folder of volumes; required", {"metavar": "PATH"}),
    "--out": ("out", "output folder (created if needed); required", {"metavar": "DIR"}),
    "--acceleration": ("acceleration", "retrospective undersampling factor (default: the checkpoint's training "
                       "value)", {"metavar": "R"}),
    "--center-fraction": ("center_fraction", "fully sampled centre fraction (default: the checkpoint's training "
                          "value)", {"metavar": "F"}),
    "--seed": ("seed", "seed of the mask offset (default 0)"),
    "--batch-size": ("batch_size", "slices per model call (default 1)"),
    "--device": ("device", "auto, cpu, cuda or cuda:N (default auto)"),
    "--progress": ("progress", "tqdm progress bar on rank 0 (default on)", {"action": argparse.BooleanOptionalAction}),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, FLAGS, "recon")


def run(args: argparse.Namespace) -> int:
    from mbdlfast.finetune.distributed import DistributedContext
    from mbdlfast.reconstruct import ReconSettings, reconstruct_files

    settings = settings_from_arguments(args, FLAGS, (ReconRun, ReconSettings), required=("model", "data", "out"))
    context = DistributedContext.from_environment(settings.device)
    try:
        written = reconstruct_files(settings.model, settings.data, settings.out, settings, context)
    finally:
        context.close()
    logging.getLogger("mbdlfast").info("wrote %d reconstruction(s) to %s", len(written), settings.out)
    return 0


COMMAND = Command("recon", "reconstruct k-space volumes (fastMRI h5, cfl, npy) with a checkpoint",
                  add_arguments, run, EXAMPLES)
