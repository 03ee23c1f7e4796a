"""``mbdlfast gan``: GAN priors: train a DCGAN on image crops, compressed sensing and inpainting by
inverting it (CSGM, median-of-means), and lottery tickets of its weights (IMP)."""
from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass

from mbdlfast.commands import Command, add_settings_arguments, settings_from_arguments

ACTIONS = ("train", "cs", "inpaint", "imp")

EXAMPLES = """\
examples (from the repository root, with the shared data in ../shared/data):
  mbdlfast gan train --size 16 --features 4 --latent-dim 16 --steps 3 --batch-size 4 --out runs/gan
  mbdlfast gan cs --generator runs/gan/gan.pt --image set5/bird --measurements 200 --corrupted 4 --iters 20 --out runs/gan_cs
  mbdlfast gan inpaint --generator runs/gan/gan.pt --image set5/head --iters 20 --out runs/gan_inpaint
  mbdlfast gan imp --generator runs/gan/gan.pt --rounds 2 --finetune-steps 2 --batch-size 4 --out runs/gan_imp
  mbdlfast gan cs --generator runs/gan_imp/tickets/round_2.pt --image set5/bird --measurements 200 --iters 20 --out runs/gan_cs_ticket

actions:
  train    a DCGAN on random crops of the training images (--images; those in a set5 folder are held
           out for testing) -> DIR/gan.pt, DIR/samples.png
  cs       compressed sensing of each --image (centre-cropped and resized to the generator's size):
           --measurements Gaussian measurements, --corrupted of them replaced by gross outliers,
           solved over the generator's input with --objective mom (median of means over --groups
           random groups, Jalal et al. 2020) or mse (CSGM) -> DIR/cs.json, DIR/cs.png
  inpaint  the same with a central hole of --hole of the side missing -> DIR/inpaint.json, DIR/inpaint.png
  imp      lottery tickets of the generator: --rounds of fine-tuning (--finetune-steps on the crops),
           pruning 20 % of the remaining weights and rewinding to the pretrained ones
           -> DIR/tickets/round_<r>.pt (GAN checkpoints: any action takes them as --generator)

--generator: a GAN checkpoint of 'gan train' / 'gan imp', or the shipped weights: dcgan.

settings: every flag sets one setting; --config (YAML) and key=value overrides use the same names:
generator, images, image, out, size, latent_dim, features, steps, batch_size, lr, crops, checkpoint_every,
measurements,
corrupted, objective, groups, iters, restarts, latent_weight, hole, rounds, finetune_steps, seed,
device, progress. Precedence: defaults < --config file < flags < key=value.
"""


@dataclass
class GanSettings:
    """One ``mbdlfast gan`` run; the fields each action reads are in the help."""

    generator: str = "dcgan"
    images: str | None = None
    image: tuple[str, ...] = ("set5/bird",)
    out: str | None = None
    size: int = 64
    latent_dim: int = 100
    features: int = 32
    steps: int = 2000
    batch_size: int = 64
    lr: float = 2e-4
    crops: int = 8192
    measurements: int = 1000
    corrupted: int = 20
    objective: str = "mom"
    groups: int = 10
    iters: int = 1500
    inversion_lr: float = 0.05
    restarts: int = 2
    latent_weight: float = 0.0
    hole: float = 0.35
    checkpoint_every: int = 200
    rounds: int = 3
    finetune_steps: int = 200
    seed: int = 0
    device: str = "auto"
    progress: bool = True


FLAGS = {
    "--generator": ("generator", "GAN checkpoint or shipped weights: dcgan (default dcgan)", {"metavar": "GAN.pt"}),
    "--images": ("images", "training images, a file or folder (default: the shared images)", {"metavar": "PATH"}),
    "--image": ("image", "test image name(s) or path(s) for cs / inpaint (default set5/bird)",
                {"nargs": "+", "metavar": "NAME"}),
    "--out": ("out", "output folder; required", {"metavar": "DIR"}),
    "--size": ("size", "image side of a new GAN: 4·2^k (default 64)"),
    "--latent-dim": ("latent_dim", "latent code size of a new GAN (default 100)"),
    "--features": ("features", "width of a new GAN (default 32)"),
    "--steps": ("steps", "training batches (default 2000)"),
    "--batch-size": ("batch_size", "crops per batch (default 64)"),
    "--lr": ("lr", "Adam learning rate of GAN training (default 2e-4)"),
    "--crops": ("crops", "distinct training crops (default 8192)"),
    "--measurements": ("measurements", "Gaussian measurements for cs (default 1000)"),
    "--corrupted": ("corrupted", "measurements replaced by outliers (default 20)"),
    "--objective": ("objective", "mom (median of means) or mse (default mom)"),
    "--groups": ("groups", "median-of-means groups (default 10)"),
    "--iters": ("iters", "Adam iterations on the latent code (default 1500)"),
    "--restarts": ("restarts", "random starts of the latent code; the best objective wins (default 2)"),
    "--hole": ("hole", "side of the central hole for inpaint, as a fraction of the image side (default 0.35)"),
    "--checkpoint-every": ("checkpoint_every", "train: rewrite DIR/gan.pt every N steps (default 200; 0: at the end)"),
    "--rounds": ("rounds", "IMP rounds (default 3)"),
    "--finetune-steps": ("finetune_steps", "GAN training batches per IMP round (default 200)"),
    "--seed": ("seed", "seed of init, crops, measurements and starts (default 0)"),
    "--device": ("device", "auto, cpu, cuda or cuda:N (default auto)"),
    "--progress": ("progress", "tqdm progress bars (default on)", {"action": argparse.BooleanOptionalAction}),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", metavar="ACTION", help=f"one of {', '.join(ACTIONS)}")
    add_settings_arguments(parser, FLAGS, "gan")


def run(args: argparse.Namespace) -> int:
    from mbdlfast.outputs import output_folder
    from mbdlfast.training.distributed import resolve_device

    if args.action not in ACTIONS:
        raise ValueError(f"action: expected one of {', '.join(ACTIONS)}, got {args.action!r}")
    settings = settings_from_arguments(args, FLAGS, GanSettings, required=("out",))
    if settings.objective not in ("mom", "mse"):
        raise ValueError(f"objective (--objective): expected mom or mse, got {settings.objective!r}")
    if not 0 < settings.hole < 1:
        raise ValueError(f"hole (--hole): expected a fraction of the side in (0, 1), got {settings.hole}")
    device = resolve_device(settings.device)
    with output_folder(settings.out) as out:
        return {"train": _train, "cs": _invert, "inpaint": _invert, "imp": _imp}[args.action](
            args.action, settings, out, device)


def _training_crops(settings: GanSettings, size: int):
    from mbdlfast.data.sr_images import split_images
    from mbdlfast.gan import ImageCrops
    from mbdlfast.shared_data import shared_data_path

    source = settings.images or shared_data_path("images")
    train, _ = split_images(source)
    return ImageCrops(train, size=size, length=settings.crops, seed=settings.seed)


def _train(action: str, settings: GanSettings, out, device) -> int:
    import torch

    from mbdlfast.gan import train_gan
    from mbdlfast.gan.checkpoint import save_gan
    from mbdlfast.gan.report import save_samples
    from mbdlfast.models import DCGANDiscriminator, DCGANGenerator
    from mbdlfast.models.dcgan import init_dcgan_weights

    crops = _training_crops(settings, settings.size)
    torch.manual_seed(settings.seed)
    generator_kwargs = {"latent_dim": settings.latent_dim, "features": settings.features, "image_size": settings.size}
    discriminator_kwargs = {"features": settings.features, "image_size": settings.size}
    generator, discriminator = DCGANGenerator(**generator_kwargs), DCGANDiscriminator(**discriminator_kwargs)
    init_dcgan_weights(generator)
    init_dcgan_weights(discriminator)

    def save(history):
        return save_gan(out / "gan.pt", generator, discriminator, generator_kwargs, discriminator_kwargs,
                        history=history, settings=dataclasses.asdict(settings))

    history = train_gan(generator, discriminator, crops, steps=settings.steps, batch_size=settings.batch_size,
                        lr=settings.lr, seed=settings.seed, device=device, progress=settings.progress,
                        checkpoint_every=settings.checkpoint_every, on_checkpoint=save)
    path = save(history)
    samples = save_samples(out / "samples.png", generator, seed=settings.seed)
    logging.getLogger("mbdlfast").info("wrote %s and %s", path, samples)
    return 0


def _invert(action: str, settings: GanSettings, out, device) -> int:
    import torch

    from mbdlfast.dip.images import load_image
    from mbdlfast.gan import GaussianMeasurements, PixelMask, corrupt_measurements, invert_generator, per_pixel_error
    from mbdlfast.gan.report import save_inversions
    from mbdlfast.outputs import write_json
    from mbdlfast.pretrained import load_gan_or_default

    checkpoint, source = load_gan_or_default(settings.generator)
    generator = checkpoint.generator.to(device)
    size = generator.image_size
    truth = torch.cat([load_image(name, size=size, multiple=1) for name in settings.image]).to(device)
    if action == "cs":
        observe = GaussianMeasurements(settings.measurements, tuple(truth.shape[1:]), seed=settings.seed, device=device)
        y, _ = corrupt_measurements(observe(truth), settings.corrupted, seed=settings.seed)
    else:
        hole = max(1, round(settings.hole * size))
        mask = torch.ones(size, size)
        start = (size - hole) // 2
        mask[start:start + hole, start:start + hole] = 0
        observe = PixelMask(mask.to(device))
        y = observe(truth)
    result = invert_generator(generator, observe, y, iters=settings.iters, lr=settings.inversion_lr,
                              objective=settings.objective, groups=settings.groups,
                              latent_weight=settings.latent_weight, restarts=settings.restarts, seed=settings.seed,
                              progress=settings.progress)
    errors = per_pixel_error(result.image, truth)
    record = {"action": action, "generator": source, "settings": dataclasses.asdict(settings),
              "images": {name: {"per_pixel_error": float(error), "objective": float(value)}
                         for name, error, value in zip(settings.image, errors, result.objective)},
              "mean_per_pixel_error": float(errors.mean()), "generator_sparsity": checkpoint.sparsity}
    json_path = write_json(out / f"{action}.json", record)
    figure = save_inversions(out / f"{action}.png", truth, result.image, list(settings.image), errors,
                             f"{action}: {checkpoint.describe()}")
    logging.getLogger("mbdlfast").info("%s: mean per-pixel error %.5f; wrote %s and %s", action, float(errors.mean()),
                                       json_path, figure)
    return 0


def _imp(action: str, settings: GanSettings, out, device) -> int:
    from mbdlfast.gan import generator_imp
    from mbdlfast.gan.checkpoint import save_gan
    from mbdlfast.outputs import write_json
    from mbdlfast.pretrained import load_gan_or_default
    from mbdlfast.prune.lottery import rewind

    checkpoint, source = load_gan_or_default(settings.generator)
    crops = _training_crops(settings, checkpoint.generator.image_size)
    rounds, pretrained = generator_imp(checkpoint.generator, checkpoint.discriminator, crops, rounds=settings.rounds,
                              finetune_steps=settings.finetune_steps, batch_size=settings.batch_size, lr=settings.lr,
                              seed=settings.seed, device=device, progress=settings.progress)
    (out / "tickets").mkdir(exist_ok=True)
    generator, discriminator = checkpoint.generator.cpu(), checkpoint.discriminator.cpu()
    for imp_round in rounds[1:]:
        rewind(generator, pretrained, imp_round.masks)
        save_gan(out / "tickets" / f"round_{imp_round.round}.pt", generator, discriminator,
                 checkpoint.generator_kwargs, checkpoint.discriminator_kwargs, history=checkpoint.history,
                 settings={**checkpoint.settings, "ticket": {"source": source, "round": imp_round.round,
                                                             "sparsity": imp_round.sparsity}})
    path = write_json(out / "imp.json", {"generator": source, "settings": dataclasses.asdict(settings),
                                         "rounds": [{"round": r.round, "sparsity": r.sparsity} for r in rounds]})
    logging.getLogger("mbdlfast").info("generator IMP: sparsities %s; wrote %s and %s",
                                       [round(r.sparsity, 4) for r in rounds], path, out / "tickets")
    return 0


COMMAND = Command("gan", "GAN priors: train a DCGAN, compressed sensing / inpainting by inverting it, its tickets",
                  add_arguments, run, EXAMPLES)
