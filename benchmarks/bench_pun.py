"""PUN benchmark: dense MoDL vs MoDL pruned at initialization, PSNR/SSIM in distribution and under shift.

Runs :func:`mbdlfast.experiments.pun.run_pun` and writes ``results/pun_<device>.json`` (environment, settings,
per-method timings and kept densities, the per-method summary, the issue's target checks and one
row per (method, density, eval)) and a PNG of PSNR and SSIM per test set.

Target of the issue: PUN at density <= 0.1 beats dense MoDL on the mean PSNR over the shifted test
sets and stays within 0.5 dB of it in distribution.

    python benchmarks/bench_pun.py --quick            # reduced CPU configuration (minutes)
    python benchmarks/bench_pun.py                    # MoDL 64x64, 10 unrolls x 10 CG, needs a GPU
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_output_argument, cpu_load_note, environment, results_folder, write_results  # noqa: E402

from mbdlfast.prune.at_init import METHODS  # noqa: E402
from mbdlfast.experiments.pun import DENSE, PunConfig, run_pun, summarize  # noqa: E402
from mbdlfast.shared_data import shared_data_path  # noqa: E402

BRAIN = shared_data_path("mri", "auto-espirit", "brain_clean", must_exist=False)

FULL = dict(methods=("pun", "snip", "grasp", "synflow", "random"), image_size=64, num_coils=8, train_slices=256,
            test_slices=16, model_kwargs={"num_iter": 10, "cg_iter": 10}, steps=2000, batch_size=4,
            search_steps=300, score_batches=8)
QUICK = dict(methods=("pun", "snip", "random"), image_size=32, num_coils=4, train_slices=32, test_slices=4,
             model_kwargs={"num_iter": 3, "cg_iter": 4, "prior_kwargs": {"channels": 32}}, steps=40, batch_size=2,
             search_steps=20, score_batches=2, synflow_iterations=20)


def target_checks(summary: dict, density: float) -> dict:
    """The issue's PUN target, evaluated on ``summary`` (from :func:`mbdlfast.experiments.pun.summarize`)."""
    if "pun" not in summary or DENSE not in summary:
        return {"evaluated": False, "reason": "needs both pun and dense rows"}
    pun = summary["pun"]
    return {
        "evaluated": True,
        "density_at_most_0.1": density <= 0.1,
        "pun_minus_dense_mean_shift_psnr_db": pun["delta_shift_psnr"],
        "pun_minus_dense_in_dist_psnr_db": pun["delta_in_dist_psnr"],
        "beats_dense_under_shift": pun["delta_shift_psnr"] > 0,
        "within_0.5_db_in_dist": pun["delta_in_dist_psnr"] >= -0.5,
        "met": density <= 0.1 and pun["delta_shift_psnr"] > 0 and pun["delta_in_dist_psnr"] >= -0.5,
    }


def plot(results: dict, path: Path) -> None:
    """PSNR and SSIM per test set, one bar per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    evals = list(dict.fromkeys(r["eval"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    width = 0.8 / len(methods)
    for ax, metric in zip(axes, ("psnr", "ssim")):
        for i, method in enumerate(methods):
            values = {r["eval"]: r[metric] for r in rows if r["method"] == method}
            density = next(r["density"] for r in rows if r["method"] == method)
            ax.bar([j + i * width for j in range(len(evals))], [values[e] for e in evals], width,
                   label=f"{method} (density {density:g})", color=f"C{i}")
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(evals))])
        ax.set_xticklabels([e.replace("shift_", "shift\n") for e in evals], fontsize=8)
        ax.set_ylabel("PSNR (dB)" if metric == "psnr" else "SSIM")
        ax.plot([j + 0.4 - width / 2 for j in range(len(evals))], [results["zero_filled"][e][metric] for e in evals],
                "k_", markersize=30, mew=2, label="zero-filled Aᴴy")
        low = min(min(r[metric] for r in rows), min(v[metric] for v in results["zero_filled"].values()))
        ax.set_ylim(low - (2 if metric == "psnr" else 0.05), None)
    axes[0].legend(fontsize=8)
    settings = results["settings"]
    fig.suptitle(f"MoDL pruned at init vs dense, {settings['image_size']}px, {settings['steps']} training steps, "
                 f"{results['device']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reduced CPU configuration")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", default=None, help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--density", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=None, help="training steps per model")
    parser.add_argument("--search-steps", type=int, default=None, help="PUN search steps")
    parser.add_argument("--seed", type=int, default=0)
    add_output_argument(parser)
    args = parser.parse_args(argv)
    out = results_folder(args.out, args.quick)

    settings = dict(QUICK if args.quick else FULL)
    if args.methods:
        settings["methods"] = tuple(m for m in args.methods.split(",") if m)
    if args.steps is not None:
        settings["steps"] = args.steps
    if args.search_steps is not None:
        settings["search_steps"] = args.search_steps
    config = PunConfig(**settings, density=args.density, seed=args.seed, device=args.device,
                       brain=str(BRAIN) if BRAIN.with_suffix(".cfl").is_file() else None)
    began = time.perf_counter()
    result = run_pun(config)
    summary = summarize(result.rows)
    device = torch.device(args.device)
    results = {**environment(device), "load": cpu_load_note() if device.type == "cpu" else None,
               "preset": "quick" if args.quick else "full", "seconds": time.perf_counter() - began,
               "settings": asdict(config), "methods": result.methods, "summary": summary,
               "zero_filled": result.zero_filled,
               "target": target_checks(summary, config.density), "rows": result.rows}
    path = write_results(results, out, "pun", device, plot)
    print(f"{'method':<10}{'density':>8}{'in_dist':>9}{'shift':>8}{'Δin':>7}{'Δshift':>8}")
    for method, entry in summary.items():
        print(f"{method:<10}{entry['density']:>8.3f}{entry['in_dist_psnr']:>9.2f}{entry['shift_psnr']:>8.2f}"
              f"{entry['delta_in_dist_psnr']:>7.2f}{entry['delta_shift_psnr']:>8.2f}")
    print("zero-filled PSNR: " + ", ".join(f"{k} {v['psnr']:.2f}" for k, v in result.zero_filled.items()))
    print(f"# target: {results['target']}")
    print(f"# wrote {path} and .png in {results['seconds']:.0f} s")


if __name__ == "__main__":
    main()
