"""``mbdlfast lip``: lottery image priors, iterative magnitude pruning of the DIP hourglass on a test image."""
from __future__ import annotations

import argparse
import logging

from mbdlfast.commands import Command

KNOWN_NAMES = ("F16, snail, kate, library, vase (inpainting masks: kate, library, vase), barbara, zebra, "
               "set5/{baby,bird,butterfly,head,woman}, set14/{baboon,barbara,bridge,coastguard,comic,face,flowers,"
               "foreman,lenna,man,monarch,pepper,ppt3,zebra}")

EXAMPLES = f"""\
examples:
  mbdlfast lip --image F16 --task denoise --rounds 2 --iters 20 --size 64 --out runs/lip
  mbdlfast lip --image F16 --task denoise --rounds 8 --iters 3000 --device cuda --out runs/lip_f16
  mbdlfast lip --image kate --task inpaint --rounds 5 --iters 2000 --rewind-iter 100 --out runs/lip_kate
  mbdlfast lip --image set5/baby set5/bird --task sr4 --size 256 --rounds 4 --iters 2000 --out runs/lip_multi
  mbdlfast lip --image my_photo.png --task mri --size 128 --rounds 3 --iters 1000 --out runs/lip_mri

images (in ../shared/data/images, or $MBDLFAST_SHARED_DATA/images; any file path works too):
  {KNOWN_NAMES}
Several images fit one shared network jointly (each with its own input code; use --size so they agree).
Writes DIR/lip.json (settings and per-round sparsity, loss, PSNR, SSIM), DIR/lip_psnr.png (PSNR against
sparsity) and DIR/lip_images.png (truth, measurement, reconstruction per round).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", nargs="+", default=["F16"], metavar="NAME",
                        help="test image name(s) or path(s) (default F16)")
    parser.add_argument("--task", default="denoise", help="denoise, inpaint, sr4, sr8 or mri (default denoise)")
    parser.add_argument("--rounds", type=int, default=5, help="pruning rounds after the dense fit (default 5)")
    parser.add_argument("--iters", type=int, default=3000, help="Adam iterations per round (default 3000)")
    parser.add_argument("--size", type=int, default=None,
                        help="centre-crop to a square and resize to SIZE (a multiple of 32, >= 64; default: crop only)")
    parser.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (default 0.01)")
    parser.add_argument("--prune-fraction", type=float, default=0.2,
                        help="fraction of the remaining weights pruned per round (default 0.2)")
    parser.add_argument("--rewind-iter", type=int, default=0,
                        help="rewind to the weights after this iteration of the dense fit (default 0: the init)")
    parser.add_argument("--patience", type=int, default=2,
                        help="stop when the loss rose in this many consecutive rounds (default 2; 0: never)")
    parser.add_argument("--ema", type=float, default=0.99,
                        help="moving-average weight of the outputs (default 0.99; 0: the last output)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the init, the code and the noise (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="tqdm progress bars (default on)")
    parser.add_argument("--out", default="runs/lip", help="output folder (default runs/lip)")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device: {name!r} requested but CUDA is not available")
    return device


def _check(args: argparse.Namespace) -> None:
    from mbdlfast.dip import TASKS

    if args.task not in TASKS:
        raise ValueError(f"--task: expected one of {', '.join(TASKS)}, got {args.task!r}")
    for flag, value in (("--rounds", args.rounds), ("--iters", args.iters)):
        if value < 1:
            raise ValueError(f"{flag}: expected an integer >= 1, got {value}")
    if args.size is not None and (args.size < 64 or args.size % 32):
        raise ValueError(f"--size: expected a multiple of 32 of at least 64 (the hourglass has 5 levels), "
                         f"got {args.size}")
    if not 0 <= args.rewind_iter <= args.iters:
        raise ValueError(f"--rewind-iter: expected 0..--iters ({args.iters}), got {args.rewind_iter}")
    if args.patience < 0:
        raise ValueError(f"--patience: expected >= 0, got {args.patience}")
    if not 0 <= args.ema < 1:
        raise ValueError(f"--ema: expected a weight in [0, 1), got {args.ema}")


def run(args: argparse.Namespace) -> int:
    _check(args)
    from pathlib import Path

    import torch

    from mbdlfast.dip import make_problem, stack_problems
    from mbdlfast.dip.report import save_lip_report
    from mbdlfast.models import SkipHourglass
    from mbdlfast.prune.lottery import iterative_magnitude_pruning

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = _device(args.device)
    problems = [make_problem(args.task, name, size=args.size, seed=args.seed) for name in args.image]
    problem = stack_problems(problems).to(device)
    torch.manual_seed(args.seed)
    net = SkipHourglass(out_channels=problem.task.channels).to(device)
    result = iterative_magnitude_pruning(
        net, problem.task, problem.measurement, rounds=args.rounds, iters=args.iters,
        prune_fraction=args.prune_fraction, rewind_iter=args.rewind_iter, patience=args.patience or None,
        reference=problem.truth, lr=args.lr, ema=args.ema or None, seed=args.seed, progress=args.progress,
        keep_reconstructions=True)
    names = ("image", "task", "rounds", "iters", "size", "lr", "prune_fraction", "rewind_iter", "patience", "ema", "seed")
    settings = {name: getattr(args, name) for name in names}
    settings["device"] = str(device)
    paths = save_lip_report(out, settings, result, problem)
    log = logging.getLogger("mbdlfast")
    for record in result.records:
        log.info("round %d: sparsity %.4f  loss %.4e  PSNR %.2f dB", record["round"], record["sparsity"],
                 record["loss"], record["psnr"])
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return 0


COMMAND = Command("lip", "lottery image priors: iterative magnitude pruning of a deep image prior", add_arguments, run,
                  EXAMPLES)
