"""A lottery ticket of a deep image prior: find it on F16 by IMP, then transfer it to another image.

Iterative magnitude pruning (``mbdlfast.prune.iterative_magnitude_pruning``) fits the DIP hourglass to
a noisy F16 (sigma 25/255), then in each round removes 20 % of the remaining convolution weights
(smallest magnitude, ranked over all layers), rewinds the survivors to their initial values and
fits again. The mask of the last round (the ticket) is then applied, with the same initial weights,
to a fresh network that denoises another image (``transfer_ticket``). PSNRs are against the clean
images. The network is narrow and the fits are short so that it runs in seconds on a CPU; the
paper-scale run is ``mbdlfast lip --image F16 --rounds 8 --iters 3000`` (128 channels).

Needs the test images in ../shared/data/images (or $MBDLFAST_SHARED_DATA/images).

Run (from the repository root): python examples/lip_ticket.py [--rounds 2] [--iters 250] [--transfer-image snail]
"""
import argparse
import sys

import torch

from mbdlfast.dip import KNOWN_IMAGES, fit_dip, make_problem
from mbdlfast.dip.images import default_image_root
from mbdlfast.models import SkipHourglass
from mbdlfast.prune import iterative_magnitude_pruning, sparsity, transfer_ticket
from mbdlfast.shared_data import missing_message

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--rounds", type=int, default=2, help="pruning rounds after the dense fit (default 2)")
parser.add_argument("--iters", type=int, default=250, help="Adam iterations per fit (default 250)")
parser.add_argument("--channels", type=int, default=32,
                    help="hourglass width (default 32, a quarter of DIP's 128, so that a fit takes seconds on a CPU)")
parser.add_argument("--size", type=int, default=64, help="image size, a multiple of 32 (default 64)")
parser.add_argument("--transfer-image", default="snail", help="image the ticket is transferred to (default snail)")
args = parser.parse_args()

root = default_image_root()
if not (root / KNOWN_IMAGES["f16"]).is_file():
    sys.exit(f"lip_ticket: {missing_message(root / KNOWN_IMAGES['f16'])}")

source = make_problem("denoise", "F16", size=args.size, seed=0)
noisy_psnr = float(source.task.psnr(source.truth, source.measurement).mean())
print(f"F16 {args.size}x{args.size}, sigma 25/255: noisy input PSNR {noisy_psnr:.2f} dB")

torch.manual_seed(0)
net = SkipHourglass(out_channels=source.task.channels, channels=args.channels)
imp = iterative_magnitude_pruning(net, source.task, source.measurement, rounds=args.rounds, iters=args.iters,
                                  reference=source.truth, patience=None, seed=0)
for record in imp.records:
    print(f"round {record['round']}: sparsity {record['sparsity']:.3f}  PSNR {record['psnr']:.2f} dB")

target = make_problem("denoise", args.transfer_image, size=args.size, seed=1)
for name, ticket in (("dense", None), ("ticket", imp.ticket())):
    candidate = SkipHourglass(out_channels=target.task.channels, channels=args.channels)
    candidate.load_state_dict(imp.rewind_state)  # both start from the ticket's initialization
    if ticket is not None:
        transfer_ticket(ticket, candidate)  # mask the loaded weights
    fit = fit_dip(candidate, target.task, target.measurement, iters=args.iters, reference=target.truth, seed=0)
    print(f"{args.transfer_image} with the {name} network (sparsity {sparsity(candidate):.3f}): PSNR {fit.psnr:.2f} dB")
