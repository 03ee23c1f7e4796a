"""``mbdlfast prune``: structured channel pruning of a trained checkpoint (torch-pruning's DepGraph)."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from mbdlfast.commands import Command, add_settings_arguments, settings_from_arguments

EXAMPLES = """\
examples (from the repository root; runs/deq comes from the first 'mbdlfast train --help' example):
  mbdlfast prune --model runs/deq/checkpoint.pt --ratio 0.5 --out runs/deq/pruned50.pt
  mbdlfast prune --model varnet --ratio 0.3 --importance l2 --round-to 4 --out runs/varnet_p30.pt
  mbdlfast prune --model deq --ratio 0.7 --global --steps 3 --out runs/deq_p70.pt
  mbdlfast prune --model deq --out runs/deq_p50.pt ratio=0.5 importance=l2 round_to=4
  mbdlfast prune --model usrnet --ratio 0.25 --round-to 4 --out runs/usrnet_p25.pt

--model: a checkpoint or the shipped weights by name (deq, varnet, usrnet). USRNet: only its ResUNet
prior is pruned; the hyper-network and the data module keep every channel (the seed's setting).

Prints the parameters and MACs (one application of each CNN, see mbdlfast.prune.count_macs) before
and after. The output is a checkpoint that load_checkpoint / `mbdlfast finetune` read like any other;
fine-tune it next (the dense input checkpoint is the natural teacher).

settings: every flag sets one setting; --config (YAML) and key=value overrides use the same names:
model, ratio, importance, round_to, global_pruning, steps, image_size, coils, out.
Precedence: defaults < --config file < flags < key=value.
"""


@dataclass
class PruneSettings:
    """What ``mbdlfast prune`` does (see :func:`mbdlfast.prune.structured.prune_structured`); ``image_size``
    and ``coils`` shape the synthetic example that traces the networks. ``model``, ``ratio`` and ``out``
    are required."""

    model: str | None = None
    ratio: float | None = None
    importance: str = "l1"
    round_to: int = 8
    global_pruning: bool = False
    steps: int = 1
    image_size: int = 64
    coils: int = 4
    out: str | None = None


FLAGS = {
    "--model": ("model", "dense (or already pruned) checkpoint, or shipped weights: deq, varnet, usrnet; required",
                {"metavar": "CKPT|NAME"}),
    "--ratio": ("ratio", "fraction of channels to remove, in [0, 1); required"),
    "--importance": ("importance", "group magnitude norm: l1 (published code, default) or l2 (paper's text)",
                     {"choices": ("l1", "l2")}),
    "--round-to": ("round_to", "keep channel counts multiples of N (default 8; 1 = no rounding)", {"metavar": "N"}),
    "--global": ("global_pruning", "rank the channels of all layers together instead of per layer group",
                 {"action": "store_true"}),
    "--steps": ("steps", "iterative pruning steps (default 1)", {"metavar": "N"}),
    "--image-size": ("image_size", "side of the synthetic example used to trace the networks and count MACs "
                     "(default 64)", {"metavar": "S"}),
    "--coils": ("coils", "coils of the synthetic example (default 4)"),
    "--out": ("out", "output checkpoint (written atomically); required", {"metavar": "PRUNED.pt"}),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, FLAGS, "prune")


def _mri_example(image_size: int, num_coils: int):
    """A random (1, num_coils, S, S) k-space batch: R=4 lines and a fully sampled centre."""
    import torch

    from mbdlfast.training.data import TrainingBatch

    generator = torch.Generator().manual_seed(0)
    shape = (1, num_coils, image_size, image_size)
    kspace = torch.randn(shape, dtype=torch.complex64, generator=generator)
    maps = torch.randn(shape, dtype=torch.complex64, generator=generator)
    maps = maps / maps.abs().square().sum(dim=1, keepdim=True).sqrt()
    mask = torch.zeros(1, image_size, dtype=torch.bool)
    mask[:, ::4] = True
    mask[:, image_size // 2 - image_size // 16: image_size // 2 + image_size // 16] = True
    return TrainingBatch(kspace=kspace * mask[:, None, None, :], mask=mask, maps=maps,
                         target=torch.zeros(shape[0], image_size, image_size, dtype=torch.complex64))


def _sr_example(image_size: int):
    """A random colour (1, 3, S/2, S/2) observation of an S x S image at scale 2 (a 9x9 Gaussian blur)."""
    import torch

    from mbdlfast.physics.blur_kernels import gaussian_kernel
    from mbdlfast.training.sr_data import SRBatch

    if image_size % 2:
        raise ValueError(f"image_size: a super-resolution example needs an even side, got {image_size}")
    generator = torch.Generator().manual_seed(0)
    return SRBatch(measurement=torch.rand(1, 3, image_size // 2, image_size // 2, generator=generator),
                   kernel=gaussian_kernel(9, 1.2).float()[None], noise_level=torch.full((1,), 0.01),
                   target=torch.zeros(1, 3, image_size, image_size), scale=2)


def example_inputs(model, model_name: str, image_size: int, num_coils: int) -> tuple:
    """Positional ``model.forward`` arguments of one random example of side ``image_size`` (k-space of
    ``num_coils`` coils for MRI models, a colour image at scale 2 for super-resolution), built with
    the registry's own calling convention for ``model_name`` (so it covers every family alike)."""
    import inspect

    from mbdlfast.training.registry import model_spec

    spec = model_spec(model_name)
    batch = _sr_example(image_size) if spec.task == "sr" else _mri_example(image_size, num_coils)
    captured = {}

    class _Captured(Exception):
        pass

    def capture(module, args, kwargs):
        bound = inspect.signature(module.forward).bind(*args, **kwargs)
        bound.apply_defaults()
        captured["args"] = bound.args
        raise _Captured

    handle = model.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        spec.reconstruct(model, batch)
    except _Captured:
        pass
    finally:
        handle.remove()
    return captured["args"]


def run(args: argparse.Namespace) -> int:
    settings = settings_from_arguments(args, FLAGS, PruneSettings, required=("model", "ratio", "out"))
    return prune_checkpoint(settings)


def prune_checkpoint(settings: PruneSettings) -> int:
    """Prune ``settings.model`` into ``settings.out`` and print the size table; returns the exit status."""
    from pathlib import Path

    from mbdlfast._validation import check_int
    from mbdlfast.outputs import output_file
    from mbdlfast.pretrained import load_checkpoint_or_default

    source, out = Path(settings.model), Path(settings.out)
    if out.resolve() == source.resolve():
        raise ValueError(f"out: {out} is the input checkpoint; write the pruned model to another file")
    check_int("image_size", settings.image_size, minimum=8)
    check_int("coils", settings.coils, minimum=1)
    with output_file(out):  # its folder is checked (and created) before the work, removed again on failure
        return _prune(settings, out, *load_checkpoint_or_default(settings.model))


def _prune(settings: PruneSettings, out, checkpoint, source_file: str) -> int:
    """The pruning itself, once the output is known to be writable."""
    from mbdlfast.training.checkpoint import save_pruned
    from mbdlfast.prune.structured import count_macs, count_params, prune_structured

    dense = checkpoint.model
    inputs = example_inputs(dense, checkpoint.model_name, settings.image_size, settings.coils)
    pruned = prune_structured(dense, inputs, settings.ratio, importance=settings.importance,
                              round_to=settings.round_to, global_pruning=settings.global_pruning,
                              iterative_steps=settings.steps)
    before = count_params(dense), count_macs(dense, inputs)
    after = count_params(pruned), count_macs(pruned, inputs)
    extra = {**checkpoint.extra, "pruning": {
        "source": source_file, "ratio": settings.ratio, "importance": settings.importance,
        "round_to": settings.round_to, "global": settings.global_pruning, "steps": settings.steps,
        "dense_params": before[0], "dense_macs": before[1]}}
    save_pruned(pruned, out, checkpoint.model_name, checkpoint.model_kwargs, extra=extra)
    print(f"{'':8}{'params':>14}{'MACs':>16}   ({checkpoint.model_name}, {settings.image_size}x{settings.image_size})")
    for label, (params, macs) in (("dense", before), ("pruned", after)):
        print(f"{label:8}{params:>14,}{macs:>16,}")
    print(f"{'ratio':8}{after[0] / before[0]:>14.3f}{after[1] / max(before[1], 1):>16.3f}")
    print(f"wrote {out}")
    return 0


COMMAND = Command("prune", "structured channel pruning of a trained checkpoint (DepGraph, group L1/L2)",
                  add_arguments, run, EXAMPLES)
