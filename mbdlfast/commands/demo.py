"""``mbdlfast demo``: the shipped DEQ-EDSR reconstructed, pruned, fine-tuned and timed (see mbdlfast.experiments.demo)."""
from __future__ import annotations

import argparse

from mbdlfast.commands import Command, add_settings_arguments, settings_from_arguments

EXAMPLES = """\
examples:
  mbdlfast demo --quick                       # about a minute on a 2-core CPU
  mbdlfast demo --ratios 0.3 --steps 5 --slices 1 --repeats 1 --out demo_small tol=1e-4 max_iter=50
  mbdlfast demo --data ../shared/data/mri/auto-espirit/brain_clean.cfl --steps 5 --slices 1 --repeats 1 --out demo_brain

The full demo (no --quick: pruning ratios 0.25 and 0.5, 150 school steps each) takes under 10
minutes on a CPU.

It prints a table (ratio, params, PSNR, SSIM, solver iterations, ms per slice, speed-ups) and writes
recon_grid.png, error_maps.png, speedup_vs_ratio.png, psnr_vs_ratio.png and demo.json to --out.
Every DEQ, dense or pruned, is solved to the same tolerance (--tol). Settings of --config (YAML) and
key=value overrides use the names of mbdlfast.experiments.demo.DemoSettings (quick, ratios, finetune_steps,
image_size, num_slices, num_coils, acceleration, tol, max_iter, repeats, data, device, seed).
"""

FLAGS = {
    "--ratios": ("ratios", "comma-separated pruning ratios in (0, 1) (default 0.25,0.5; quick 0.25)"),
    "--steps": ("finetune_steps", "school fine-tuning steps per pruned network (default 150; quick 60)"),
    "--image-size": ("image_size", "synthetic test image side (default 64, the weights' training size)"),
    "--slices": ("num_slices", "test slices (default 4; quick 2)"),
    "--coils": ("num_coils", "synthetic coils (default 8)"),
    "--acceleration": ("acceleration", "undersampling factor R (default 4)"),
    "--center-fraction": ("center_fraction", "fully sampled centre fraction of the retrospective mask (default: the "
                          "weights' training value, 0.08)"),
    "--tol": ("tol", "relative solver tolerance of every DEQ run (default 1e-3)"),
    "--repeats": ("repeats", "timed repetitions, median reported (default 3)"),
    "--data": ("data", "fastMRI h5 file or folder, BART cfl or npy k-space instead of synthetic slices"),
    "--device": ("device", "auto, cpu, cuda or cuda:N (default auto: the GPU when there is one)"),
    "--seed": ("seed", "seed of the retrospective mask for --data (default 0)"),
    "--quick": ("quick", "one ratio, a few steps, small images: under 2 minutes on a 2-core CPU",
                {"action": "store_true"}),
    "--progress": ("progress", "tqdm progress bars (default on)", {"action": argparse.BooleanOptionalAction}),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, FLAGS, "demo")
    parser.add_argument("--out", default="demo_out", help="output folder (default demo_out)")


def run(args: argparse.Namespace) -> int:
    from mbdlfast.experiments.demo import DemoSettings, format_table, run_demo

    settings = settings_from_arguments(args, FLAGS, DemoSettings)
    result = run_demo(settings, args.out)
    print(format_table(result))
    print("wrote " + ", ".join(str(path) for path in result.files))
    return 0


COMMAND = Command("demo", "the shipped DEQ-EDSR pruned, fine-tuned and timed against the paper-style baseline",
                  add_arguments, run, EXAMPLES)
