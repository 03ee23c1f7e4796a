"""Quality of the shipped default weights on unseen synthetic slices, against the zero-filled Aᴴy.

The slices come from the training generator (:data:`mbdlfast.pretrained.DEFAULT_DATA`) with another
seed than training's, so the phantoms, coil maps, noise and masks are all new. Reported: mean PSNR
and SSIM of the magnitude images (as in training's validation) for the network and for the
zero-filled image, and for the DEQ the Anderson f-evaluations per slice at its solver tolerance.

    python benchmarks/eval_pretrained.py [--slices 32] [--checkpoint deq=/tmp/run/checkpoint.pt]
"""
from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace

import torch

from mbdlfast import pretrained
from mbdlfast.training.checkpoint import load_checkpoint
from mbdlfast.training.data import TrainingSlices, collate_batch
from mbdlfast.training.registry import model_spec
from mbdlfast.metrics import psnr_batch, ssim_batch

HELD_OUT_SEED = 9173


def evaluate(name: str, checkpoint, slices: TrainingSlices) -> dict:
    model, spec = checkpoint.model, model_spec(checkpoint.model_name)
    psnr, ssim, zf_psnr, zf_ssim, fevals, converged = [], [], [], [], [], []
    with torch.no_grad():
        for index in range(len(slices)):
            batch = collate_batch([slices[index]])
            recon = spec.reconstruct(model, batch).abs()
            zero_filled = batch.physics().A_adjoint(batch.kspace).abs()
            target = batch.target.abs()
            psnr.append(float(psnr_batch(target, recon)[0]))
            ssim.append(float(ssim_batch(target, recon)[0]))
            zf_psnr.append(float(psnr_batch(target, zero_filled)[0]))
            zf_ssim.append(float(ssim_batch(target, zero_filled)[0]))
            if getattr(model, "last_info", None) is not None:
                fevals.append(int(model.last_info["sample_nstep"][0]))
                converged.append(model.last_info["status"][0] == "converged")
    result = {"name": name, "step": checkpoint.step, "slices": len(slices),
              "psnr": statistics.mean(psnr), "ssim": statistics.mean(ssim),
              "zero_filled_psnr": statistics.mean(zf_psnr), "zero_filled_ssim": statistics.mean(zf_ssim),
              "min_gain_db": min(p - z for p, z in zip(psnr, zf_psnr))}
    if fevals:
        result.update(solver=dict(model.solver_kwargs), fevals_mean=statistics.mean(fevals),
                      fevals_max=max(fevals), converged=f"{sum(converged)}/{len(converged)}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=32)
    parser.add_argument("--names", nargs="+", default=sorted(pretrained.DEFAULT_WEIGHTS))
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="evaluate this file instead of the shipped weights of NAME")
    args = parser.parse_args()
    files = dict(item.split("=", 1) for item in args.checkpoint)
    slices = TrainingSlices(replace(pretrained.DEFAULT_DATA, num_slices=args.slices), seed=HELD_OUT_SEED)
    for name in args.names:
        checkpoint = load_checkpoint(files[name]) if name in files else pretrained.load_default(name)
        print(json.dumps(evaluate(name, checkpoint, slices)))


if __name__ == "__main__":
    main()
