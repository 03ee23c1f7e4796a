"""``mbdlfast recon``: reconstruct k-space volumes with a checkpoint into fastMRI-layout h5 and PNG."""
from __future__ import annotations

import argparse
import logging

from mbdlfast.commands import Command

EXAMPLES = """\
examples:
  mbdlfast recon --model runs/deq/checkpoint.pt --data /data/fastmri/brain_val --out recons
  mbdlfast recon --model pruned.pt --data volume.h5 --out recons --acceleration 8 --center-fraction 0.04
  mbdlfast recon --model runs/deq/checkpoint.pt --data brain_clean.cfl --out recons --device cpu
  torchrun --nproc_per_node 2 -m mbdlfast recon --model ckpt.pt --data /data/brain_val --out recons

data: a fastMRI h5 file, a BART .cfl file ([H W C]), a .npy of complex k-space (C,H,W) or (S,C,H,W),
or a folder of these. Fully sampled data are undersampled retrospectively (equispaced lines plus a
fully sampled centre, as in training; R and the centre fraction default to the checkpoint's
training values); undersampled data keep their own sampling. Each volume gives <out>/<name>.h5
('reconstruction' (S,H,W) float32 magnitude, 'mask', attrs) and <out>/<name>.png (middle slice).
Under torchrun each rank reconstructs its share of the files.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, metavar="CKPT", help="an mbdlfast checkpoint (dense or pruned)")
    parser.add_argument("--data", required=True, metavar="PATH", help="h5 / cfl / npy file or folder of volumes")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (created if needed)")
    parser.add_argument("--acceleration", type=int, metavar="R", help="retrospective undersampling factor "
                        "(default: the checkpoint's training value)")
    parser.add_argument("--center-fraction", type=float, metavar="F", help="fully sampled centre fraction "
                        "(default: the checkpoint's training value)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mask offset (default 0)")
    parser.add_argument("--batch-size", type=int, default=1, help="slices per model call (default 1)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="tqdm progress bar on rank 0 (default on)")


def run(args: argparse.Namespace) -> int:
    from mbdlfast.finetune.distributed import DistributedContext
    from mbdlfast.reconstruct import ReconSettings, reconstruct_files

    settings = ReconSettings(acceleration=args.acceleration, center_fraction=args.center_fraction, seed=args.seed,
                             batch_size=args.batch_size, progress=args.progress)
    context = DistributedContext.from_environment(args.device)
    try:
        written = reconstruct_files(args.model, args.data, args.out, settings, context)
    finally:
        context.close()
    logging.getLogger("mbdlfast").info("wrote %d reconstruction(s) to %s", len(written), args.out)
    return 0


COMMAND = Command("recon", "reconstruct k-space volumes (fastMRI h5, cfl, npy) with a checkpoint",
                  add_arguments, run, EXAMPLES)
