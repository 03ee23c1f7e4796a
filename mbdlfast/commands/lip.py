"""``mbdlfast lip``: lottery image priors: iterative magnitude pruning of a deep image prior (the DIP
hourglass or the deep decoder) on one or several images, and transfer of a saved ticket."""
from __future__ import annotations

import argparse
import dataclasses
import logging
from dataclasses import dataclass

from mbdlfast.commands import Command, add_settings_arguments, settings_from_arguments

KNOWN_NAMES = ("F16, snail, kate, library, vase (inpainting masks: kate, library, vase), barbara, zebra, "
               "set5/{baby,bird,butterfly,head,woman}, set14/{baboon,barbara,bridge,coastguard,comic,face,flowers,"
               "foreman,lenna,man,monarch,pepper,ppt3,zebra}")

EXAMPLES = f"""\
examples (each a few seconds at these sizes; the paper's runs use --iters 3000 and --device cuda):
  mbdlfast lip --image F16 --task denoise --rounds 2 --iters 20 --size 64 --out runs/lip
  mbdlfast lip --image kate --task inpaint --rounds 1 --iters 10 --size 64 --rewind-iter 5 --out runs/lip_kate
  mbdlfast lip --image set5/baby set5/bird --task sr4 --size 64 --rounds 1 --iters 10 --out runs/lip_multi
  mbdlfast lip --image ../shared/data/images/set14/lenna.png --task mri --size 64 --rounds 1 --iters 10 --out runs/lip_mri
  mbdlfast lip --out runs/lip_snail iters=10 rounds=1 size=64 image=snail ema=0
  mbdlfast lip --image F16 --net deep_decoder --task denoise --rounds 2 --iters 20 --size 64 --out runs/lip_dd
  mbdlfast lip --image kate --task inpaint --size 64 --iters 10 --ticket runs/lip/ticket.pt --out runs/lip_transfer

images (in ../shared/data/images, or $MBDLFAST_SHARED_DATA/images; any file path works too):
  {KNOWN_NAMES}
Several images run the paper's weight-sharing IMP (Algorithm 2): one fixed code and one network whose
output is fitted to all of them, the loss averaged (use --size so they agree). The stopping rule (no
ground truth) ends IMP when the loss rose in --patience consecutive rounds; the matching ticket is the
round before the rise. Writes DIR/lip.json (settings, per-round sparsity, loss, PSNR, SSIM, the chosen
round), DIR/lip_psnr.png (PSNR against sparsity), DIR/lip_images.png (truth, measurement,
reconstruction per round), DIR/lip_layers.png (the chosen ticket's sparsity per layer), and the
tickets (masks and the init they rewind to): DIR/tickets/round_<r>.pt and DIR/ticket.pt (the chosen).

--ticket FILE transfers a saved ticket to the --image / --task given here (another image, another
task; the network and channel count must match the ticket's): it fits the ticket, the dense network
from the same init and a random mask of the same per-layer sparsity, and writes DIR/transfer.json and
DIR/transfer.png.

settings: every flag sets one setting; --config (YAML) and key=value overrides use the same names:
image (a list, or names separated by commas), task, net, ticket, rounds, iters, size, lr, prune_fraction,
rewind_iter, patience, ema, seed, device, progress, out. Precedence: defaults < --config file < flags < key=value.
"""


@dataclass
class LipSettings:
    """One lottery-image-prior run: the DIP problem (``image``, ``task``, ``size``, ``seed``) and the
    iterative magnitude pruning schedule (see :func:`mbdlfast.prune.lottery.iterative_magnitude_pruning`)."""

    image: tuple[str, ...] = ("F16",)
    task: str = "denoise"
    net: str = "hourglass"
    ticket: str | None = None
    rounds: int = 5
    iters: int = 3000
    size: int | None = None
    lr: float = 0.01
    prune_fraction: float = 0.2
    rewind_iter: int = 0
    patience: int = 2
    ema: float = 0.99
    seed: int = 0
    device: str = "auto"
    progress: bool = True
    out: str = "runs/lip"


FLAGS = {
    "--image": ("image", "test image name(s) or path(s) (default F16)", {"nargs": "+", "metavar": "NAME"}),
    "--task": ("task", "denoise, inpaint, sr4, sr8 or mri (default denoise)"),
    "--net": ("net", "hourglass (DIP's skip network) or deep_decoder (default hourglass)"),
    "--ticket": ("ticket", "a ticket saved by lip (DIR/ticket.pt) to transfer to this image and task",
                 {"metavar": "TICKET.pt"}),
    "--rounds": ("rounds", "pruning rounds after the dense fit (default 5)"),
    "--iters": ("iters", "Adam iterations per round (default 3000)"),
    "--size": ("size", "centre-crop to a square and resize to SIZE (a multiple of 32, >= 64; default: crop only)"),
    "--lr": ("lr", "Adam learning rate (default 0.01)"),
    "--prune-fraction": ("prune_fraction", "fraction of the remaining weights pruned per round (default 0.2)"),
    "--rewind-iter": ("rewind_iter", "rewind to the weights after this iteration of the dense fit "
                      "(default 0: the init)"),
    "--patience": ("patience", "stop when the loss rose in this many consecutive rounds (default 2; 0: never)"),
    "--ema": ("ema", "moving-average weight of the outputs (default 0.99; 0: the last output)"),
    "--seed": ("seed", "seed of the init, the code and the noise (default 0)"),
    "--device": ("device", "auto, cpu, cuda or cuda:N (default auto)"),
    "--progress": ("progress", "tqdm progress bars (default on)", {"action": argparse.BooleanOptionalAction}),
    "--out": ("out", "output folder (default runs/lip)"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_settings_arguments(parser, FLAGS, "lip")


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"device (--device): {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device (--device): {name!r} requested but CUDA is not available")
    return device


def _check(settings: LipSettings) -> None:
    """Messages name the setting and its flag (both set it)."""
    from mbdlfast.dip import TASKS

    if settings.task not in TASKS:
        raise ValueError(f"task (--task): expected one of {', '.join(TASKS)}, got {settings.task!r}")
    if settings.net not in NETS:
        raise ValueError(f"net (--net): expected one of {', '.join(NETS)}, got {settings.net!r}")
    for name in ("rounds", "iters"):
        if getattr(settings, name) < 1:
            raise ValueError(f"{name} (--{name}): expected an integer >= 1, got {getattr(settings, name)}")
    if settings.size is not None and (settings.size < 64 or settings.size % 32):
        raise ValueError(f"size (--size): expected a multiple of 32 of at least 64 (the hourglass has 5 levels, the "
                         f"deep decoder upsamples 5 times), got {settings.size}")
    if not 0 <= settings.rewind_iter <= settings.iters:
        raise ValueError(f"rewind_iter (--rewind-iter): expected 0..iters ({settings.iters}), "
                         f"got {settings.rewind_iter}")
    if settings.patience < 0:
        raise ValueError(f"patience (--patience): expected >= 0, got {settings.patience}")
    if not 0 <= settings.ema < 1:
        raise ValueError(f"ema (--ema): expected a weight in [0, 1), got {settings.ema}")


def run(args: argparse.Namespace) -> int:
    return run_lip(settings_from_arguments(args, FLAGS, LipSettings))


def run_lip(settings: LipSettings) -> int:
    """Fit, prune and report one lottery-image-prior run; returns the exit status."""
    _check(settings)
    from mbdlfast.outputs import output_folder

    with output_folder(settings.out) as out:  # checked before the (long) fits; removed again if they fail
        return _fit_and_report(settings, out)


NETS = ("hourglass", "deep_decoder")


def _network(settings: LipSettings, channels: int, device):
    """A freshly initialised prior of ``settings.net`` (seeded) with ``channels`` outputs."""
    import torch

    from mbdlfast.models import DeepDecoder, SkipHourglass

    torch.manual_seed(settings.seed)
    network = SkipHourglass(out_channels=channels) if settings.net == "hourglass" else DeepDecoder(out_channels=channels)
    return network.to(device)


def _fit_and_report(settings: LipSettings, out) -> int:
    from mbdlfast.dip import make_problem, stack_problems

    device = _device(settings.device)
    problems = [make_problem(settings.task, name, size=settings.size, seed=settings.seed) for name in settings.image]
    problem = stack_problems(problems).to(device)
    report = {name: value for name, value in dataclasses.asdict(settings).items() if name not in ("progress", "out")}
    report.update(image=list(settings.image), device=str(device))
    if settings.ticket is not None:
        return _transfer(settings, problem, report, out, device)
    return _prune(settings, problem, report, out, device)


def _prune(settings: LipSettings, problem, report: dict, out, device) -> int:
    from mbdlfast.dip.report import save_layer_sparsity, save_lip_report
    from mbdlfast.prune.lottery import iterative_magnitude_pruning, save_ticket

    net = _network(settings, problem.task.channels, device)
    result = iterative_magnitude_pruning(
        net, problem.task, problem.measurement, rounds=settings.rounds, iters=settings.iters,
        prune_fraction=settings.prune_fraction, rewind_iter=settings.rewind_iter, patience=settings.patience or None,
        reference=problem.truth, lr=settings.lr, ema=settings.ema or None, seed=settings.seed,
        progress=settings.progress, keep_reconstructions=True)
    paths = save_lip_report(out, report, result, problem)
    found_on = {"images": list(settings.image), "task": settings.task, "net": settings.net, "size": settings.size}
    (out / "tickets").mkdir(exist_ok=True)
    for imp_round in result.rounds[1:]:
        paths.append(save_ticket(out / "tickets" / f"round_{imp_round.round}.pt",
                                 result.ticket_file(net, imp_round.round, found_on)))
    chosen = result.ticket_file(net, result.chosen_round, found_on)
    paths += [save_ticket(out / "ticket.pt", chosen), save_layer_sparsity(out / "lip_layers.png", chosen.masks,
                                                                          f"ticket of round {chosen.round}")]
    log = logging.getLogger("mbdlfast")
    for record in result.records:
        log.info("round %d: sparsity %.4f  loss %.4e  PSNR %.2f dB", record["round"], record["sparsity"],
                 record["loss"], record["psnr"])
    log.info("matching ticket: round %d (sparsity %.4f)%s", chosen.round, chosen.sparsity,
             ", chosen by the stopping rule" if result.stopped_early else "")
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return 0


def _transfer(settings: LipSettings, problem, report: dict, out, device) -> int:
    """Fit the saved ticket, the dense network from its init and a random mask of its per-layer sparsity."""
    import torch

    from mbdlfast.dip.fit import fit_dip
    from mbdlfast.dip.report import save_transfer_report
    from mbdlfast.models.dip import noise_code
    from mbdlfast.prune.lottery import load_ticket, rewind

    ticket = load_ticket(settings.ticket)
    generator = torch.Generator().manual_seed(settings.seed)
    shuffled = {name: mask.flatten()[torch.randperm(mask.numel(), generator=generator)].view_as(mask)
                for name, mask in ticket.masks.items()}
    fits = {}
    for label in ("ticket", "dense", "random"):
        net = _network(settings, problem.task.channels, device)
        ticket.apply(net)  # checks the architecture, then rewinds to the ticket's init
        if label == "dense":
            rewind(net, ticket.init_state, {})
        elif label == "random":
            rewind(net, ticket.init_state, {name: mask.to(device) for name, mask in shuffled.items()})
        code = noise_code(net, *problem.truth.shape[-2:], batch=problem.measurement.shape[0], seed=settings.seed)
        fits[label] = fit_dip(net, problem.task, problem.measurement, iters=settings.iters, lr=settings.lr,
                              seed=settings.seed, code=code, reference=problem.truth, ema=settings.ema or None,
                              progress=settings.progress)
        logging.getLogger("mbdlfast").info("transfer %s: PSNR %.2f dB, SSIM %.4f", label, fits[label].psnr,
                                           fits[label].ssim)
    record = {"settings": report, "ticket": {"file": str(settings.ticket), "round": ticket.round,
                                             "sparsity": ticket.sparsity, "found_on": ticket.found_on},
              "fits": {label: {"psnr": fit.psnr, "ssim": fit.ssim, "final_loss": fit.final_loss}
                       for label, fit in fits.items()}}
    paths = save_transfer_report(out, record, fits, problem)
    logging.getLogger("mbdlfast").info("wrote %s", ", ".join(str(p) for p in paths))
    return 0


COMMAND = Command("lip", "lottery image priors: iterative magnitude pruning of a deep image prior", add_arguments, run,
                  EXAMPLES)
