"""The seed's Table 4 on our data: USRNet pruned and school fine-tuned for super-resolution.

Pipeline: the dense USRNet (``--dense``: a checkpoint, default the shipped ``usrnet``) is pruned at
each ``--ratios`` with :func:`mbdlfast.prune.prune_structured` (DepGraph, group L1, the ResUNet
prior only: the hyper-network and the data module keep every channel, as in the seed), and each
pruned network is fine-tuned with school (the dense network is the teacher, no ground truth) for
``--finetune-steps`` on the training images of the dense run (never the test images). Every network
is then scored on the test images (Set5, held out from training) at each ``--scales`` with the
twelve test kernels (:func:`mbdlfast.physics.blur_kernels.usrnet_test_kernels`) and each
``--noise-levels``: PSNR / SSIM with USRNet's conventions (:mod:`mbdlfast.sr_metrics`: 8-bit, a
border of s pixels), averaged over images and kernels. Beside them, bicubic upsampling on the
degradation's grid (:func:`mbdlfast.super_resolution.aligned_bicubic`). CPU sizes: the test images
are centre-cropped to ``--eval-crop`` (0: whole images, the paper's setting).

Timing: every network on one colour image of ``--time-size``² high-resolution pixels per scale, the
candidates interleaved (``common.time_calls``), same threads; speed-up = dense median / variant
median at the same scale. ``psnr_loss_percent`` is relative to the dense network.

Writes ``benchmarks/results/sr_<device>.json`` (``--quick``: ``./bench_out``) and a PNG beside it
(PSNR against time per scale, and the table).

    python benchmarks/bench_sr.py --dense runs/usrnet_small/checkpoint.pt   # the table (~30 min on 2 cores)
    python benchmarks/bench_sr.py --quick                                   # a tiny network, seconds
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_output_argument, cpu_load_note, environment, results_folder, time_calls, write_results  # noqa: E402,E501

from mbdlfast.data.sr_images import degrade, read_rgb, split_images  # noqa: E402
from mbdlfast.finetune import finetune  # noqa: E402
from mbdlfast.physics.blur import BlurDownsample  # noqa: E402
from mbdlfast.physics.blur_kernels import gaussian_kernel, usrnet_test_kernels  # noqa: E402
from mbdlfast.prune import count_macs, count_params, prune_structured  # noqa: E402
from mbdlfast.shared_data import shared_data_path  # noqa: E402
from mbdlfast.sr_metrics import sr_quality  # noqa: E402
from mbdlfast.super_resolution import aligned_bicubic, check_sr_model, super_resolve  # noqa: E402
from mbdlfast.training import build_model  # noqa: E402
from mbdlfast.training.config import DataConfig, SRDataConfig, load_settings  # noqa: E402

logger = logging.getLogger("bench_sr")

QUICK_KWARGS = {"iterations": 2, "features": [8, 16, 16, 16], "blocks": 1, "hyper_features": 8}


def centre_crop(image: torch.Tensor, size: int, scale: int) -> torch.Tensor:
    """(C,H,W) centre-cropped to at most ``size`` (0: whole), then to multiples of ``scale``."""
    height, width = image.shape[-2:]
    new_h, new_w = (min(height, size), min(width, size)) if size else (height, width)
    new_h, new_w = new_h - new_h % scale, new_w - new_w % scale
    top, left = (height - new_h) // 2, (width - new_w) // 2
    return image[:, top:top + new_h, left:left + new_w]


def test_cases(args, scale: int, noise_level: float) -> list[dict]:
    """Every (test image, kernel) observation at ``scale`` and ``noise_level``, noise seeded per case."""
    _, test_files = split_images(args.images, args.test_folders)
    if not test_files:
        raise SystemExit(f"--images: {args.images} holds no test images (in {args.test_folders})")
    kernels = usrnet_test_kernels()[: args.kernels]
    cases = []
    for image_index, path in enumerate(test_files[: args.max_images]):
        reference = centre_crop(read_rgb(path), args.eval_crop, scale)[None].to(args.device)
        for kernel_index, kernel in enumerate(kernels):
            seed = np.random.default_rng([args.seed, scale, image_index, kernel_index]).integers(2**63)
            y = degrade(reference, kernel.float().to(args.device), scale, noise_level,
                        torch.Generator().manual_seed(int(seed)))
            cases.append({"image": path.name, "kernel": kernel_index + 1, "reference": reference, "y": y,
                          "kernel_tensor": kernel.float()})
    return cases


def score(restore, cases: list[dict], scale: int) -> dict:
    psnrs, ssims = [], []
    for case in cases:
        psnr, ssim = sr_quality(case["reference"], restore(case), border=scale)
        psnrs.append(float(psnr[0]))
        ssims.append(float(ssim[0]))
    return {"psnr": float(np.mean(psnrs)), "ssim": float(np.mean(ssims)), "cases": len(cases)}


def dense_model(args):
    """(dense model, its kwargs, its training data, where it came from)."""
    if args.quick:
        torch.manual_seed(args.seed)
        model, kwargs = build_model("usrnet", QUICK_KWARGS)
        data = DataConfig(source=str(args.images), image_size=36, val_fraction=0.0,
                          sr=SRDataConfig(scales=tuple(args.scales), patches_per_image=2,
                                          test_folders=tuple(args.test_folders)))
        return model.eval(), kwargs, data, "random initialisation (--quick)"
    from mbdlfast.pretrained import load_checkpoint_or_default

    checkpoint, source = load_checkpoint_or_default(args.dense)
    check_sr_model(checkpoint.model_name, source)
    stored = load_settings(DataConfig, base=(checkpoint.train_config or {}).get("data") or {})
    data = dataclasses.replace(stored, source=str(args.images), val_fraction=0.0,
                               sr=dataclasses.replace(stored.sr, test_folders=tuple(args.test_folders)))
    return checkpoint.model.eval(), checkpoint.model_kwargs, data, source


def variants(dense, kwargs: dict, data: DataConfig, args):
    """(ratio, tuning, model, fine-tuning seconds): the dense network, then each pruned one fine-tuned."""
    example = (torch.rand(1, 3, 24, 24), BlurDownsample(gaussian_kernel(9, 1.2).float(), 2, 0.01))
    yield 0.0, "none", dense, 0.0
    for ratio in args.ratios:
        began = time.perf_counter()
        pruned = prune_structured(dense, example, ratio, round_to=args.round_to)
        tuned = finetune(pruned, model_name="usrnet", mode="school", teacher=dense, data=data,
                         steps=args.finetune_steps, lr=args.finetune_lr, schedule="cosine", loss="l1",
                         batch_size=args.batch_size, progress=args.progress, device=str(args.device),
                         seed=args.seed, model_kwargs=kwargs).model
        yield ratio, "school", tuned.eval(), time.perf_counter() - began


def timing_inputs(scale: int, args) -> tuple:
    side = args.time_size - args.time_size % scale
    y = torch.rand(1, 3, side // scale, side // scale, generator=torch.Generator().manual_seed(0)).to(args.device)
    return y, BlurDownsample(usrnet_test_kernels()[0].float().to(args.device), scale, 0.0)


def run(args) -> dict:
    dense, kwargs, data, source = dense_model(args)
    models = list(variants(dense, kwargs, data, args))
    rows = []
    for scale in args.scales:
        y, physics = timing_inputs(scale, args)
        with torch.no_grad():
            timings = time_calls({f"{ratio}": (lambda m=model: m(y, physics)) for ratio, _, model, _ in models},
                                 args.device, warmup=1, repeats=args.repeats)
        macs = {ratio: count_macs(model, (y, physics)) for ratio, _, model, _ in models}
        for noise_level in args.noise_levels:
            cases = test_cases(args, scale, noise_level)
            bicubic = score(lambda case: aligned_bicubic(case["y"], scale), cases, scale)
            rows.append({"scale": scale, "noise_level": noise_level, "model": "bicubic", "ratio": None,
                         "tuning": None, **bicubic, "median_ms": None, "speedup": None, "params": 0})
            for ratio, tuning, model, seconds in models:
                quality = score(lambda case, m=model: super_resolve(m, case["y"], case["kernel_tensor"], scale,
                                                                    noise_level), cases, scale)
                rows.append({"scale": scale, "noise_level": noise_level, "model": "usrnet", "ratio": ratio,
                             "tuning": tuning, **quality, **timings[f"{ratio}"], "params": count_params(model),
                             "macs_per_prior_call": macs[ratio], "finetune_seconds": seconds})
                logger.info("x%d noise %g ratio %.2f: PSNR %.2f SSIM %.4f, %.1f ms", scale, noise_level, ratio,
                            quality["psnr"], quality["ssim"], timings[f"{ratio}"]["median_ms"])
    for row in rows:
        dense_row = next(r for r in rows if r["model"] == "usrnet" and r["ratio"] == 0.0 and r["scale"] == row["scale"]
                         and r["noise_level"] == row["noise_level"])
        row["psnr_loss_percent"] = 100 * (dense_row["psnr"] - row["psnr"]) / dense_row["psnr"]
        row["ssim_loss_percent"] = 100 * (dense_row["ssim"] - row["ssim"]) / dense_row["ssim"]
        if row["median_ms"] is not None:
            row["speedup"] = dense_row["median_ms"] / row["median_ms"]
    return {"benchmark": "bench_sr", **environment(args.device), "load": cpu_load_note(),
            "threads": torch.get_num_threads(), "dense": source, "model_kwargs": kwargs,
            "config": {key: (str(value) if isinstance(value, (Path, torch.device)) else value)
                       for key, value in vars(args).items()},
            "training_data": dataclasses.asdict(data), "rows": rows}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["model"] == "usrnet"]
    scales = sorted({r["scale"] for r in rows})
    noise = min(r["noise_level"] for r in rows)
    figure, axes = plt.subplots(1, len(scales) + 1, figsize=(4.2 * (len(scales) + 1), 3.8), squeeze=False)
    for axis, scale in zip(axes[0], scales):
        mine = [r for r in rows if r["scale"] == scale and r["noise_level"] == noise]
        axis.plot([r["median_ms"] for r in mine], [r["psnr"] for r in mine], "o-")
        for r in mine:
            axis.annotate(f"{r['ratio']:.2f}", (r["median_ms"], r["psnr"]), fontsize=7)
        bicubic = next(r for r in result["rows"] if r["model"] == "bicubic" and r["scale"] == scale
                       and r["noise_level"] == noise)
        axis.axhline(bicubic["psnr"], color="gray", linestyle="--", label="bicubic")
        axis.set_xlabel("ms per image")
        axis.set_ylabel("PSNR (dB)")
        axis.set_title(f"x{scale}, noise {noise:g}: pruning ratio labels", fontsize=8)
        axis.legend(fontsize=7)
    table = axes[0][-1]
    table.axis("off")
    cells = [[f"x{r['scale']}", f"{r['ratio']:.2f}" if r["ratio"] is not None else "bicubic",
              f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", f"{r['median_ms']:.0f}" if r["median_ms"] else "-",
              f"{r['speedup']:.2f}" if r["speedup"] else "-", f"{r['params']:,}"]
             for r in result["rows"] if r["noise_level"] == noise]
    table.table(cellText=cells, colLabels=["scale", "ratio", "PSNR", "SSIM", "ms", "speed-up", "params"],
                loc="center", fontsize=7)
    figure.suptitle(f"bench_sr on {result['device']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=110)
    plt.close(figure)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dense", default="usrnet", help="dense USRNet checkpoint or shipped weights (usrnet)")
    parser.add_argument("--images", type=Path, default=shared_data_path("images", must_exist=False))
    parser.add_argument("--test-folders", nargs="+", default=["set5"])
    parser.add_argument("--ratios", nargs="+", type=float, default=None)
    parser.add_argument("--round-to", type=int, default=4)
    parser.add_argument("--scales", nargs="+", type=int, default=[2, 3])
    parser.add_argument("--noise-levels", nargs="+", type=float, default=[0.0])
    parser.add_argument("--kernels", type=int, default=12, help="the first N of the twelve test kernels")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--eval-crop", type=int, default=None, help="centre crop of the test images (0: whole)")
    parser.add_argument("--finetune-steps", type=int, default=None)
    parser.add_argument("--finetune-lr", type=float, default=2e-4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--time-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a tiny random network, one image, two kernels")
    parser.add_argument("--progress", action="store_true")
    add_output_argument(parser)
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = dict(ratios=[0.5] if quick else [0.25, 0.5], finetune_steps=2 if quick else 400,
                    eval_crop=48 if quick else 256, time_size=48 if quick else 240, repeats=3 if quick else 7,
                    max_images=1 if quick else None)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if quick:
        args.kernels = min(args.kernels, 2)
    args.device = torch.device(args.device)
    if any(not 0 < r < 1 for r in args.ratios):
        parser.error(f"--ratios: expected pruning ratios in (0, 1), got {args.ratios}")
    if not args.images.is_dir():
        parser.error(f"--images: {args.images} is not a folder of images")
    return args


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    out_dir = results_folder(args.out, args.quick)
    result = run(args)
    path = write_results(result, out_dir, "sr", args.device, plot)
    print(f"wrote {path} and {path.with_suffix('.png')}")
    print(f"{'scale':>5s} {'noise':>6s} {'model':8s} {'ratio':>5s} {'PSNR':>6s} {'SSIM':>6s} {'ms':>8s} {'x':>5s} "
          f"{'params':>9s} {'loss %':>6s}")
    for r in result["rows"]:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        ms = f"{r['median_ms']:.1f}" if r["median_ms"] is not None else "-"
        speedup = f"{r['speedup']:.2f}" if r["speedup"] is not None else "-"
        print(f"{r['scale']:5d} {r['noise_level']:6.3f} {r['model']:8s} {ratio:>5s} {r['psnr']:6.2f} {r['ssim']:6.4f} "
              f"{ms:>8s} {speedup:>5s} {r['params']:9d} {r['psnr_loss_percent']:6.2f}")
    return result


if __name__ == "__main__":
    main()
