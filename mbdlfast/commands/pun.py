"""``mbdlfast pun``: dense vs pruned-at-initialization MoDL, in distribution and under shift."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from mbdlfast.commands import Command, add_settings_arguments, settings_from_arguments
from mbdlfast.shared_data import shared_data_path

EXAMPLES = """\
examples (seconds at these sizes; the full configuration is the defaults on a GPU):
  mbdlfast pun --steps 2 --search-steps 2 --image-size 16 --slices 4 --test-slices 2 --out runs/pun
  mbdlfast pun --density 0.05 --methods pun,synflow,grasp,magnitude --steps 2 --search-steps 2 --image-size 16 --slices 4 --test-slices 2 --out runs/pun5
  mbdlfast pun --steps 2 --search-steps 2 --image-size 16 --slices 4 --test-slices 2 --out runs/pun_shift density=0.05 shift_snr_db=10 model_kwargs.prior_kwargs.channels=8

Trains dense MoDL and MoDL pruned at initialization by each method (same initialization, same data:
synthetic, one acceleration / mask / noise level / phantom family) and writes DIR/pun.json with one
row per (method, test set): in_dist, shift_accel, shift_mask, shift_noise, shift_family and
shift_brain (the real brain of --brain, skipped when the file is missing).

settings: every flag sets one setting of mbdlfast.experiments.pun.PunConfig (plus out); --config (YAML) and
key=value overrides use the same names: methods (a list, or comma-separated), density, image_size,
num_coils, train_slices, test_slices, acceleration, center_fraction, mask, snr_db, family,
shift_acceleration, shift_snr_db, shift_family, brain, model_kwargs (num_iter, cg_iter,
prior_kwargs.channels, ...), steps, lr, batch_size, search_steps, search_lr, score_batches,
synflow_iterations, seed, device, progress, out. Precedence: defaults < --config file < flags < key=value.
"""

DEFAULT_BRAIN = shared_data_path("mri", "auto-espirit", "brain_clean", must_exist=False)


@dataclass
class PunRun:
    """The command-line level settings of ``mbdlfast pun`` and its defaults where they differ from
    :class:`mbdlfast.experiments.pun.PunConfig` (the shipped brain slice, progress bars, 64 denoiser features);
    ``out`` is required."""

    brain: str | None = str(DEFAULT_BRAIN)
    model_kwargs: dict = field(default_factory=lambda: {"num_iter": 5, "cg_iter": 5, "prior_kwargs": {"channels": 64}})
    progress: bool = True
    out: str | None = None


FLAGS = {
    "--density": ("density", "fraction of conv weights kept (default 0.1)"),
    "--methods": ("methods", "comma-separated: random, magnitude, snip, grasp, synflow, pun (default pun,snip,random)"),
    "--steps": ("steps", "training steps per model (default 200)"),
    "--search-steps": ("search_steps", "PUN search steps (default 100)"),
    "--image-size": ("image_size", "synthetic image side (default 64)"),
    "--coils": ("num_coils", "synthetic coils (default 4)"),
    "--slices": ("train_slices", "training slices (default 64)"),
    "--test-slices": ("test_slices", "slices per test set (default 8)"),
    "--acceleration": ("acceleration", "training acceleration (default 4)"),
    "--shift-acceleration": ("shift_acceleration", "shifted acceleration (default 8)"),
    "--batch-size": ("batch_size", "batch size (default 2)"),
    "--lr": ("lr", "training learning rate (default 1e-3)"),
    "--num-iter": ("model_kwargs.num_iter", "MoDL unrolled iterations (default 5)"),
    "--cg-iter": ("model_kwargs.cg_iter", "CG steps per iteration (default 5)"),
    "--channels": ("model_kwargs.prior_kwargs.channels", "denoiser features (default 64)"),
    "--brain": ("brain", "BART base path of the real brain test slice ('' or none: no shift_brain)"),
    "--seed": ("seed", "seed of data, masks and initialization (default 0)"),
    "--device": ("device", "auto, cpu, cuda or cuda:N (default auto)"),
    "--progress": ("progress", "progress bars (default on)", {"action": argparse.BooleanOptionalAction}),
    "--out": ("out", "output folder (pun.json and one checkpoint per method); required"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, FLAGS, "pun")


def run(args: argparse.Namespace) -> int:
    from mbdlfast.outputs import output_folder, write_json
    from mbdlfast.experiments.pun import PunConfig, run_pun, summarize

    config = settings_from_arguments(args, FLAGS, (PunRun, PunConfig), required=("out",))
    config.brain = config.brain or None  # --brain '': no real-brain test set
    config.check()
    with output_folder(config.out) as out:  # checked before the training runs; removed again if they fail at once
        result = run_pun(config, out=out)
        table = summarize(result.rows)
        write_json(out / "pun.json", {"config": result.config, "methods": result.methods, "summary": table,
                                      "zero_filled": result.zero_filled, "rows": result.rows})
    evals = list(dict.fromkeys(row["eval"] for row in result.rows))
    print(f"{'method':<10} {'density':>7} " + " ".join(f"{e:>13}" for e in evals) + f" {'mean shift':>11}")
    for method, entry in table.items():
        psnrs = [next(r["psnr"] for r in result.rows if r["method"] == method and r["eval"] == e) for e in evals]
        print(f"{method:<10} {entry['density']:>7.3f} " + " ".join(f"{p:>13.2f}" for p in psnrs)
              + f" {entry['shift_psnr']:>11.2f}")
    print(f"{'zero-fill':<10} {'':>7} " + " ".join(f"{result.zero_filled[e]['psnr']:>13.2f}" for e in evals))
    print(f"PSNR in dB; results in {out / 'pun.json'}")
    return 0


COMMAND = Command("pun", "dense vs pruned-at-initialization MoDL, tested in distribution and under shift",
                  add_arguments, run, EXAMPLES)
