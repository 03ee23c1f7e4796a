"""Reconstruct held-out synthetic slices with the shipped DEQ-EDSR and compare it with zero filling.

Loads the default DEQ (``mbdlfast.pretrained.load_default("deq")``), simulates slices like the ones it
was trained on (``DEFAULT_DATA``) but from a seed it never saw, runs it through the optimized
inference pipeline and prints PSNR / SSIM of the zero-filled and the DEQ images against the ground
truth, and the Anderson iterations each slice took. Writes a PNG of truth, zero filled, DEQ and
the DEQ's error.

Run (from the repository root): python examples/deq_reconstruction.py [--size 64] [--slices 2] [--out DIR]
"""
import argparse
import dataclasses
from pathlib import Path

import torch
from matplotlib.figure import Figure  # no pyplot: renders without a display

from mbdlfast.experiments.demo import TEST_SEED
from mbdlfast.training import TrainingSlices, collate_batch
from mbdlfast.inference import OPTIMIZED, optimize_for_inference
from mbdlfast.metrics import psnr_batch, ssim_batch
from mbdlfast.pretrained import DEFAULT_DATA, load_default

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--size", type=int, default=64, help="image size in pixels (default 64, the training size)")
parser.add_argument("--slices", type=int, default=2, help="number of test slices (default 2)")
parser.add_argument("--tol", type=float, default=1e-3, help="Anderson relative tolerance (default 1e-3)")
parser.add_argument("--out", default="out/examples", help="folder of the PNG (default out/examples)")
args = parser.parse_args()

checkpoint = load_default("deq")
data = dataclasses.replace(DEFAULT_DATA, image_size=args.size, num_slices=args.slices)
slices = TrainingSlices(data, seed=TEST_SEED)  # held out: the weights were trained on seed 0
batch = collate_batch([slices[i] for i in range(len(slices))])
physics = batch.physics()  # the SENSE operator, built once
inputs = (batch.kspace, physics)

deq = optimize_for_inference(checkpoint.model, inputs, OPTIMIZED, tol=args.tol)
with torch.no_grad():
    reconstruction = deq(*inputs)
    zero_filled = physics.A_adjoint(batch.kspace)
iterations = deq.last_info["sample_nstep"].tolist()

truth = batch.target.abs()
print(f"{len(batch)} held-out slice(s), {args.size}x{args.size}, {data.num_coils} coils, R={data.acceleration}")
for name, image in (("zero-filled", zero_filled), ("DEQ", reconstruction)):
    psnr, ssim = psnr_batch(truth, image.abs()).mean(), ssim_batch(truth, image.abs()).mean()
    print(f"{name:>12}: PSNR {psnr:6.2f} dB  SSIM {ssim:.4f}")
converged = int(deq.last_info["converged"].sum())
print(f"Anderson iterations per slice: {iterations} (tol {deq.tol:g}, {converged}/{len(batch)} converged)")

panels = {"ground truth": truth[0], "zero-filled": zero_filled[0].abs(), "DEQ": reconstruction[0].abs(),
          "|DEQ - truth| x5": 5 * (reconstruction[0].abs() - truth[0]).abs()}
figure = Figure(figsize=(3 * len(panels), 3.5))
axes = figure.subplots(1, len(panels))
for axis, (title, image) in zip(axes, panels.items()):
    axis.imshow(image.numpy(), cmap="gray", vmin=0, vmax=float(truth[0].max()))
    axis.set_title(title)
    axis.axis("off")
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
figure.tight_layout()
figure.savefig(out / "deq_reconstruction.png", dpi=100)
print(f"wrote {out / 'deq_reconstruction.png'}")
