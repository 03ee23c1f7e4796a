"""Lottery image priors: PSNR against sparsity of the DIP hourglass, and what sparse priors really cost.

Per (image, task) pair:
* ``imp``: iterative magnitude pruning (20 % of the remaining conv weights per round, rewound to the
  initialization), round r at sparsity 1 - 0.8^r; ``dense`` is its round 0.
* ``random``, ``snip``, ``synflow``: pruned at initialization (:func:`mbdlfast.prune.at_init.prune_at_init`)
  from the same initialization to the sparsity of every ``compare_every``-th IMP round (and the last),
  then fitted like the ticket.
* ``deep_decoder``: Heckel and Hand's deep decoder (1x1 convolutions, about 0.1 M parameters next to
  the 2.2 M hourglass); its "sparsity" is 1 - its parameters / the hourglass's conv weights.
* ``structured``: a narrower hourglass (all levels at the same width) whose conv weights number about
  as many as the ticket's survivors at the highest sparsity: channel pruning to the same budget.

Timing (ms per fitting iteration: forward, backward, Adam step) of the dense hourglass, the masked
hourglass at the highest sparsity and the narrow one: masked dense kernels cost what dense ones do;
only the structured (narrower) network is faster.

The paper's other tables, each a section of rows:
* ``--multi`` (Fig. 4 shape): weight-sharing IMP (Algorithm 2) on the Set5 images, and single-image IMP
  on the first of them; both tickets at every round, the dense network and a random mask of the
  ticket's per-layer sparsity are fitted to each Set5 image and to F16 (unseen by both).
* ``--transfer`` (Fig. 5 shape): the tickets of the ``--task`` IMP on the first image, fitted to the
  same image under the other tasks (denoise, inpaint, sr4), beside dense and random.
* ``--gan`` (Table 1 shape): IMP on the generator's weights (``--gan-generator``, default the shipped
  DCGAN), then per ticket the per-pixel error of compressed sensing with ``--measurements`` Gaussian
  measurements, clean and with ``--corrupted`` of them corrupted (median-of-means), and of inpainting
  a central hole, on the Set5 images (held out from the GAN's training), each by inverting the generator.

    python benchmarks/bench_lip.py --quick                 # reduced CPU configuration (minutes)
    python benchmarks/bench_lip.py                         # F16, full size, 3000 iterations per round (GPU)
    python benchmarks/bench_lip.py --set5 --set14 --inpainting
    python benchmarks/bench_lip.py --quick --multi --transfer --gan   # the other tables at CPU sizes
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_output_argument, cpu_load_note, environment, results_folder, time_calls, write_results  # noqa: E402,E501

from mbdlfast.dip import IMAGE_SETS, fit_dip, make_problem, stack_problems  # noqa: E402
from mbdlfast.models import DeepDecoder, SkipHourglass, noise_code  # noqa: E402
from mbdlfast.prune.at_init import prune_at_init  # noqa: E402
from mbdlfast.prune.lottery import iterative_magnitude_pruning, rewind  # noqa: E402
from mbdlfast.prune.masking import prunable_weights  # noqa: E402

AT_INIT_METHODS = ("random", "snip", "synflow")
# ema: DIP's moving average of the outputs; too slow to warm up in a 100-iteration fit, so quick uses the last output.
# compare_every: the at-init baselines are fitted at every compare_every-th IMP round (and the last one).
FULL = {"size": None, "iters": 3000, "rounds": 8, "channels": 128, "lr": 0.01, "ema": 0.99, "compare_every": 1}
QUICK = {"size": 64, "iters": 100, "rounds": 7, "channels": 32, "lr": 0.01, "ema": None, "compare_every": 2}


def conv_weight_count(net: torch.nn.Module) -> int:
    return sum(layer.weight.numel() for layer in prunable_weights(net).values())


def hourglass(channels: int, out_channels: int, seed: int) -> SkipHourglass:
    torch.manual_seed(seed)
    return SkipHourglass(out_channels=out_channels, channels=channels)


def narrow_width(budget: int, out_channels: int) -> int:
    """The hourglass width whose conv weights come closest to ``budget``."""
    return min(range(4, 129), key=lambda c: abs(conv_weight_count(SkipHourglass(out_channels=out_channels,
                                                                                channels=c)) - budget))


def fit_row(method, problem, net, settings, sparsity, device, code=None) -> dict:
    fit = fit_dip(net, problem.task, problem.measurement, iters=settings["iters"], lr=settings["lr"],
                  ema=settings["ema"], reference=problem.truth, code=code, seed=settings["seed"],
                  progress=settings["progress"])
    return {"method": method, "image": problem.image_name, "task": problem.task.name, "sparsity": sparsity,
            "psnr": fit.psnr, "ssim": fit.ssim, "final_loss": fit.final_loss}


def run_pair(task: str, image: str, settings: dict, device: torch.device) -> tuple[list[dict], dict]:
    problem = make_problem(task, image, size=settings["size"], seed=settings["seed"]).to(device)
    height, width = problem.truth.shape[-2:]
    out_channels = problem.task.channels
    net = hourglass(settings["channels"], out_channels, settings["seed"]).to(device)
    init_state = {k: v.clone() for k, v in net.state_dict().items()}
    code = noise_code(net, height, width, seed=settings["seed"])
    dense_weights = conv_weight_count(net)
    result = iterative_magnitude_pruning(net, problem.task, problem.measurement, rounds=settings["rounds"],
                                         iters=settings["iters"], lr=settings["lr"], ema=settings["ema"],
                                         patience=None, code=code,
                                         reference=problem.truth, seed=settings["seed"], progress=settings["progress"])
    rows = []
    for record in result.records:
        rows.append({"method": "dense" if record["round"] == 0 else "imp", "image": problem.image_name,
                     "task": problem.task.name, "sparsity": record["sparsity"], "psnr": record["psnr"],
                     "ssim": record["ssim"], "final_loss": record["loss"]})
        print(f"{rows[-1]['method']:<13}{problem.image_name:<16}{task:<8}{record['sparsity']:>9.3f}"
              f"{record['psnr']:>9.2f}{record['ssim']:>8.3f}", flush=True)

    def loss_fn(model, batch):
        return problem.task.loss(model(batch[0]), batch[1])

    # SynFlow's all-ones input must have the code's shape: the 5-level hourglass needs >= 64 pixels
    method_options = {"random": {"seed": settings["seed"]}, "snip": {}, "synflow": {"input_shape": tuple(code.shape)}}
    last = result.records[-1]["round"]
    compared = [r for r in result.records[1:] if r["round"] % settings["compare_every"] == 0 or r["round"] == last]
    for method in AT_INIT_METHODS:
        for record in compared:
            pruned = hourglass(settings["channels"], out_channels, settings["seed"]).to(device)
            pruned.load_state_dict(init_state)
            prune_at_init(pruned, method, 1.0 - record["sparsity"], loss_fn=loss_fn,
                          batches=[(code, problem.measurement)], **method_options[method])
            rows.append(fit_row(method, problem, pruned, settings, record["sparsity"], device, code))
            print(f"{method:<13}{problem.image_name:<16}{task:<8}{record['sparsity']:>9.3f}"
                  f"{rows[-1]['psnr']:>9.2f}{rows[-1]['ssim']:>8.3f}", flush=True)

    torch.manual_seed(settings["seed"])
    decoder = DeepDecoder(out_channels, channels=settings["channels"]).to(device)
    decoder_sparsity = 1.0 - conv_weight_count(decoder) / dense_weights
    rows.append(fit_row("deep_decoder", problem, decoder, settings, decoder_sparsity, device))

    highest = result.records[-1]["sparsity"]
    width_narrow = narrow_width(round((1 - highest) * dense_weights), out_channels)
    narrow = hourglass(width_narrow, out_channels, settings["seed"]).to(device)
    narrow_sparsity = 1.0 - conv_weight_count(narrow) / dense_weights
    rows.append({**fit_row("structured", problem, narrow, settings, narrow_sparsity, device, code),
                 "channels": width_narrow})
    for row in rows[-2:]:
        print(f"{row['method']:<13}{problem.image_name:<16}{task:<8}{row['sparsity']:>9.3f}"
              f"{row['psnr']:>9.2f}{row['ssim']:>8.3f}", flush=True)

    timing = time_iterations(problem, {"dense": hourglass(settings["channels"], out_channels, 0),
                                       f"masked_{100 * highest:.0f}pct": net,
                                       f"structured_{width_narrow}ch": narrow}, code, device, settings)
    return rows, {"image": problem.image_name, "task": problem.task.name, "masked_sparsity": highest,
                  "structured_channels": width_narrow, "structured_sparsity": narrow_sparsity, "ms_per_iter": timing}


def _shuffled(masks: dict, seed: int) -> dict:
    """A random mask with the per-layer sparsity of ``masks``."""
    generator = torch.Generator().manual_seed(seed)
    return {name: mask.flatten()[torch.randperm(mask.numel(), generator=generator)].view_as(mask).to(mask.device)
            for name, mask in masks.items()}


def fit_ticket(label: str, masks: dict | None, init_state: dict, problem, settings, device, sparsity: float) -> dict:
    """Fit the hourglass from ``init_state`` under ``masks`` (None: dense) to ``problem``, one code per image."""
    net = hourglass(settings["channels"], problem.task.channels, settings["seed"]).to(device)
    rewind(net, init_state, masks or {})
    code = noise_code(net, *problem.truth.shape[-2:], seed=settings["seed"])
    return fit_row(label, problem, net, settings, sparsity, device, code)


def run_multi(settings: dict, device) -> list[dict]:
    """Weight-sharing IMP on Set5 against single-image IMP on its first image (module docstring)."""
    names = list(IMAGE_SETS["set5"])[: settings["multi_images"]]
    problems = {name: make_problem("denoise", name, size=settings["multi_size"], seed=settings["seed"]).to(device)
                for name in [*names, "f16"]}
    joint = stack_problems([problems[name] for name in names])
    init_state = {k: v.clone() for k, v in hourglass(settings["channels"], 3, settings["seed"]).state_dict().items()}
    tickets = {}
    for label, problem in (("multi", joint), ("single", problems[names[0]])):
        net = hourglass(settings["channels"], 3, settings["seed"]).to(device)
        net.load_state_dict(init_state)
        tickets[label] = iterative_magnitude_pruning(
            net, problem.task, problem.measurement, rounds=settings["rounds"], iters=settings["iters"],
            lr=settings["lr"], ema=settings["ema"], patience=None, reference=problem.truth, seed=settings["seed"])
    rows = []
    for name, problem in problems.items():
        rows.append({**fit_ticket("dense", None, init_state, problem, settings, device, 0.0), "section": "multi"})
        for imp_round in tickets["multi"].rounds[1:]:
            for label, masks in (("multi", imp_round.masks), ("single", tickets["single"].rounds[imp_round.round].masks),
                                 ("random", _shuffled(imp_round.masks, settings["seed"] + imp_round.round))):
                rows.append({**fit_ticket(label, masks, init_state, problem, settings, device, imp_round.sparsity),
                             "section": "multi", "round": imp_round.round})
                print(f"multi {label:<7}{name:<16}{imp_round.sparsity:>9.3f}{rows[-1]['psnr']:>9.2f}", flush=True)
    return rows


def run_transfer(settings: dict, image: str, source_task: str, device) -> list[dict]:
    """The tickets of ``source_task`` on ``image`` fitted to the other tasks on the same image."""
    source = make_problem(source_task, image, size=settings["size"], seed=settings["seed"]).to(device)
    net = hourglass(settings["channels"], 3, settings["seed"]).to(device)
    init_state = {k: v.clone() for k, v in net.state_dict().items()}
    result = iterative_magnitude_pruning(net, source.task, source.measurement, rounds=settings["rounds"],
                                         iters=settings["iters"], lr=settings["lr"], ema=settings["ema"],
                                         patience=None, reference=source.truth, seed=settings["seed"])
    rows = []
    for task in [t for t in ("denoise", "inpaint", "sr4") if t != source_task]:
        target = make_problem(task, image, size=settings["size"], seed=settings["seed"]).to(device)
        rows.append({**fit_ticket("dense", None, init_state, target, settings, device, 0.0), "section": "transfer",
                     "source_task": source_task})
        for imp_round in result.rounds[1:]:
            for label, masks in (("ticket", imp_round.masks),
                                 ("random", _shuffled(imp_round.masks, settings["seed"] + imp_round.round))):
                rows.append({**fit_ticket(label, masks, init_state, target, settings, device, imp_round.sparsity),
                             "section": "transfer", "source_task": source_task, "round": imp_round.round})
                print(f"transfer {source_task}->{task} {label:<7}{imp_round.sparsity:>9.3f}{rows[-1]['psnr']:>9.2f}",
                      flush=True)
    return rows


def run_gan(settings: dict, device) -> list[dict]:
    """GAN-LIP (module docstring): per generator ticket, the per-pixel errors of CS and inpainting."""
    from mbdlfast.data.sr_images import split_images
    from mbdlfast.dip.images import default_image_root, load_image
    from mbdlfast.gan import (GaussianMeasurements, ImageCrops, PixelMask, corrupt_measurements, generator_imp,
                              invert_generator, per_pixel_error)
    from mbdlfast.pretrained import load_gan_or_default

    checkpoint, source = load_gan_or_default(settings["gan_generator"])
    generator = checkpoint.generator.to(device)
    size = generator.image_size
    train_files, _ = split_images(default_image_root())
    crops = ImageCrops(train_files, size=size, length=4096, seed=settings["seed"])
    rounds, pretrained = generator_imp(generator, checkpoint.discriminator, crops, rounds=settings["gan_rounds"],
                                       finetune_steps=settings["gan_finetune_steps"], batch_size=32,
                                       seed=settings["seed"], device=device)
    truth = torch.cat([load_image(name, size=size, multiple=1) for name in IMAGE_SETS["set5"]]).to(device)
    measure = GaussianMeasurements(settings["measurements"], tuple(truth.shape[1:]), seed=settings["seed"], device=device)
    clean = measure(truth)
    corrupted, _ = corrupt_measurements(clean, settings["corrupted"], seed=settings["seed"])
    hole = torch.ones(size, size)
    side, start = round(0.35 * size), (size - round(0.35 * size)) // 2
    hole[start:start + side, start:start + side] = 0
    inpaint = PixelMask(hole.to(device))
    problems = {"cs": (measure, clean, "mse"), "cs_corrupted": (measure, corrupted, "mom"),
                "cs_corrupted_mse": (measure, corrupted, "mse"), "inpaint": (inpaint, inpaint(truth), "mse")}
    rows = []
    for imp_round in rounds:
        rewind(generator, pretrained, imp_round.masks if imp_round.round else {})
        row = {"section": "gan", "method": "dense" if imp_round.round == 0 else "ticket", "round": imp_round.round,
               "sparsity": imp_round.sparsity, "generator": source, "images": list(IMAGE_SETS["set5"])}
        for name, (observe, y, objective) in problems.items():
            result = invert_generator(generator, observe, y, iters=settings["gan_iters"], objective=objective,
                                      restarts=settings["gan_restarts"], seed=settings["seed"])
            row[name] = float(per_pixel_error(result.image, truth).mean())
        rows.append(row)
        print(f"gan round {imp_round.round} sparsity {imp_round.sparsity:.3f}: " +
              ", ".join(f"{name} {row[name]:.5f}" for name in problems), flush=True)
    return rows


def time_iterations(problem, nets: dict, code, device, settings) -> dict:
    """Median ms of one fitting iteration (forward, loss, backward, Adam step) per network."""
    calls = {}
    for name, net in nets.items():
        net = net.to(device).train()
        optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=settings["lr"])

        def step(net=net, optimizer=optimizer):
            loss = problem.task.loss(net(code), problem.measurement)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        calls[name] = step
    timings = time_calls(calls, device, warmup=2, repeats=settings["timing_repeats"])
    for name, timing in timings.items():
        print(f"# {name:<22} {timing['median_ms']:9.2f} ms per iteration", flush=True)
    return timings


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = sorted({(r["image"], r["task"]) for r in results["rows"]})
    extra = [section for section in ("multi", "transfer", "gan") if results.get(section)]
    figure, axes = plt.subplots(1, len(pairs) + len(extra), figsize=(5.5 * (len(pairs) + len(extra)), 4),
                                squeeze=False)
    for axis, section in zip(axes[0][len(pairs):], extra):
        _plot_section(axis, section, results[section])
    for axis, (image, task) in zip(axes[0], pairs):
        rows = [r for r in results["rows"] if r["image"] == image and r["task"] == task]
        for method, style in (("imp", "o-"), ("random", "s--"), ("snip", "^--"), ("synflow", "v--")):
            points = sorted((r["sparsity"], r["psnr"]) for r in rows if r["method"] == method)
            if points:
                axis.plot([100 * s for s, _ in points], [p for _, p in points], style, label=method)
        for method, marker in (("dense", "*"), ("deep_decoder", "D"), ("structured", "P")):
            for r in rows:
                if r["method"] == method:
                    axis.plot([100 * r["sparsity"]], [r["psnr"]], marker, markersize=10, label=method)
        axis.set_xlabel("sparsity (% of the hourglass conv weights)")
        axis.set_ylabel("PSNR (dB)")
        axis.set_title(f"{task}: {image}", fontsize=9)
        axis.legend(fontsize=7)
    figure.suptitle(f"LIP on {results['device']} ({results['settings']['iters']} iterations per fit)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _plot_section(axis, section: str, rows: list[dict]) -> None:
    """PSNR (multi, transfer: averaged over the evaluated images / tasks) or per-pixel error (gan) against sparsity."""
    if section == "gan":
        for name, style in (("cs", "o-"), ("cs_corrupted", "s-"), ("cs_corrupted_mse", "s:"), ("inpaint", "^-")):
            axis.plot([100 * r["sparsity"] for r in rows], [r[name] for r in rows], style, label=name)
        axis.set_ylabel("per-pixel error")
        axis.set_title("GAN-LIP: generator tickets on Set5 (Table 1 shape)", fontsize=9)
    else:
        for label in sorted({r["method"] for r in rows}):
            points: dict[float, list[float]] = {}
            for r in rows:
                if r["method"] == label:
                    points.setdefault(r["sparsity"], []).append(r["psnr"])
            xs = sorted(points)
            axis.plot([100 * x for x in xs], [sum(points[x]) / len(points[x]) for x in xs], "o-", label=label)
        axis.set_ylabel("mean PSNR (dB)")
        axis.set_title("multi-image vs single-image tickets (Fig. 4 shape)" if section == "multi"
                       else "tickets across tasks (Fig. 5 shape)", fontsize=9)
    axis.set_xlabel("sparsity (%)")
    axis.legend(fontsize=7)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true",
                        help=f"reduced CPU configuration {QUICK} (a narrower hourglass on a 64x64 crop)")
    parser.add_argument("--task", default="denoise", help="task for the --images / set images (default denoise)")
    parser.add_argument("--images", default="F16", help="comma-separated image names (default F16)")
    parser.add_argument("--set5", action="store_true", help="add Set5")
    parser.add_argument("--set14", action="store_true", help="add Set14")
    parser.add_argument("--inpainting", action="store_true", help="add kate, library, vase with their masks")
    for key in ("size", "iters", "rounds", "channels"):
        parser.add_argument(f"--{key}", type=int, default=None, help=f"override (full {FULL[key]}, quick {QUICK[key]})")
    parser.add_argument("--multi", action="store_true", help="add the multi-image section (Set5, Algorithm 2)")
    parser.add_argument("--transfer", action="store_true", help="add the cross-task transfer section")
    parser.add_argument("--gan", action="store_true", help="add the GAN-LIP section (Table 1 shape)")
    parser.add_argument("--gan-generator", default="dcgan", help="GAN checkpoint or shipped weights (default dcgan)")
    parser.add_argument("--measurements", type=int, default=1000)
    parser.add_argument("--corrupted", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-repeats", type=int, default=None)
    parser.add_argument("--progress", action="store_true", help="tqdm bars per fit")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    out = results_folder(args.out, args.quick)

    settings = dict(QUICK if args.quick else FULL)
    overrides = ("size", "iters", "rounds", "channels")
    settings.update({k: getattr(args, k) for k in overrides if getattr(args, k) is not None})
    settings.update(seed=args.seed, progress=args.progress, quick=args.quick,
                    timing_repeats=args.timing_repeats or (5 if args.quick else 20),
                    prune_fraction=0.2, rewind="init", input_noise_std=1 / 30, sigma=25 / 255,
                    multi_images=2 if args.quick else 5, multi_size=64 if args.quick else 256,
                    gan_generator=args.gan_generator, gan_rounds=2 if args.quick else 4,
                    gan_finetune_steps=10 if args.quick else 200, gan_iters=100 if args.quick else 1500,
                    gan_restarts=1 if args.quick else 2, measurements=args.measurements, corrupted=args.corrupted)
    pairs = [(args.task, name) for name in args.images.split(",") if name]
    pairs += [(args.task, name) for flag in ("set5", "set14") if getattr(args, flag) for name in IMAGE_SETS[flag]]
    pairs += [("inpaint", name) for name in IMAGE_SETS["inpainting"] if args.inpainting]

    device = torch.device(args.device)
    header = environment(device)
    print(f"# {header['device']} | torch {header['torch']} | git {header['git_sha'][:10]} | settings {settings}")
    if device.type != "cuda":
        print(f"# {cpu_load_note()}")
    print(f"{'method':<13}{'image':<16}{'task':<8}{'sparsity':>9}{'psnr':>9}{'ssim':>8}")
    started = time.perf_counter()
    rows, timings = [], []
    for task, image in pairs:
        pair_rows, pair_timing = run_pair(task, image, settings, device)
        rows += pair_rows
        timings.append(pair_timing)
    sections = {}
    if args.multi:
        sections["multi"] = run_multi(settings, device)
    if args.transfer:
        sections["transfer"] = run_transfer(settings, pairs[0][1], args.task, device)
    if args.gan:
        sections["gan"] = run_gan(settings, device)
    results = {**header, "settings": settings, "wall_s": time.perf_counter() - started, "timing": timings,
               **sections,
               "notes": ("sparsity of deep_decoder and structured = 1 - their conv weights / the dense hourglass's; "
                         "masked networks run dense kernels (same ms per iteration as dense)"),
               "rows": rows}
    path = write_results(results, out, "lip", device, plot)
    print(f"# wrote {path} and .png in {results['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
