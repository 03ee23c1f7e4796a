"""``mbdlfast sr``: super-resolve colour images with a USRNet checkpoint, PNG out."""
from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass

from mbdlfast.commands import Command, add_settings_arguments, settings_from_arguments

EXAMPLES = """\
examples (from the repository root, with the shared data in ../shared/data):
  mbdlfast sr --model usrnet --input ../shared/data/images/set5 --simulate --scale 3 --kernel usrnet:6 --out sr/x3
  mbdlfast sr --model usrnet --input ../shared/data/images/set5/bird.png --simulate --noise-level 0.01 --out sr/noisy
  mbdlfast sr --model usrnet --input sr/noisy/bird_lr.png --scale 2 --kernel usrnet:1 --noise-level 0.01 --out sr/bird
  mbdlfast sr --model usrnet --input ../shared/data/images/set5/head.png --simulate --scale 4 --kernel gaussian:2.6,1.2,30 --out sr/x4

model: a checkpoint of a super-resolution model (usrnet; dense, pruned or fine-tuned) or the shipped
weights by name (usrnet). USRNet is non-blind: give the kernel, scale and noise level the input was
observed with. kernel: usrnet:N (the N-th of the twelve test kernels: 1-4 isotropic Gaussians of
widths 0.7, 1.2, 1.6, 2.0; 5-8 anisotropic; 9-12 motion), gaussian:W or gaussian:W1,W2,ANGLE (25x25),
or a .npy / .mat file such as the official kernels_12.mat (kernel_index picks one of several). noise_level: the noise standard deviation
on images in [0, 1] (e.g. 2.55/255 = 0.01).

--simulate: the inputs are high-resolution images; each is degraded first (circular blur, every
s-th pixel, seeded noise) and scored against itself beside bicubic: <out>/<name>.json and a
comparison <out>/<name>.png. Always: <out>/<name>_sr.png.

settings: every flag sets one setting; --config (YAML) and key=value overrides use the same names:
model, input, out, scale, kernel, kernel_index, noise_level, simulate, seed, device, progress.
Precedence: defaults < --config file < flags < key=value.
"""


@dataclass
class SRRun:
    """The command-line level settings of ``mbdlfast sr``; the rest are those of
    :class:`mbdlfast.super_resolution.SRSettings`. ``model``, ``input`` and ``out`` are required."""

    model: str | None = None
    input: str | None = None
    out: str | None = None
    device: str = "auto"
    progress: bool = True


FLAGS = {
    "--model": ("model", "a usrnet checkpoint or shipped weights: usrnet; required", {"metavar": "CKPT|NAME"}),
    "--input": ("input", "an image file or a folder of images; required", {"metavar": "PATH"}),
    "--out": ("out", "output folder (created if needed); required", {"metavar": "DIR"}),
    "--scale": ("scale", "super-resolution factor s (default 2)", {"metavar": "S"}),
    "--kernel": ("kernel", "usrnet:N, gaussian:W[,W2,ANGLE] or a .npy / .mat file (default usrnet:1)",
                 {"metavar": "KERNEL"}),
    "--noise-level": ("noise_level", "noise standard deviation of the input, images in [0, 1] (default 0)",
                      {"metavar": "SIGMA"}),
    "--simulate": ("simulate", "inputs are high-resolution: degrade, restore and score them",
                   {"action": "store_true"}),
    "--seed": ("seed", "seed of the simulated noise (default 0)"),
    "--device": ("device", "auto, cpu, cuda or cuda:N (default auto)"),
    "--progress": ("progress", "tqdm progress bar (default on)", {"action": argparse.BooleanOptionalAction}),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, FLAGS, "sr")


def run(args: argparse.Namespace) -> int:
    from dataclasses import fields

    from mbdlfast.outputs import output_folder
    from mbdlfast.pretrained import load_checkpoint_or_default
    from mbdlfast.super_resolution import SRSettings, super_resolve_files
    from mbdlfast.training.distributed import resolve_device

    settings = settings_from_arguments(args, FLAGS, (SRRun, SRSettings), required=("model", "input", "out"))
    device = resolve_device(settings.device)
    checkpoint, source = load_checkpoint_or_default(settings.model)
    sr_settings = SRSettings(**{f.name: getattr(settings, f.name) for f in fields(SRSettings)})
    with output_folder(settings.out):
        records = super_resolve_files(checkpoint.model, checkpoint.model_name, settings.input, settings.out,
                                      sr_settings, device=device, progress=settings.progress)
    logging.getLogger("mbdlfast").info("wrote %d super-resolved image(s) to %s", len(records), settings.out)
    return 0


COMMAND = Command("sr", "super-resolve colour images with a USRNet checkpoint (non-blind: kernel, scale, noise)",
                  add_arguments, run, EXAMPLES)
