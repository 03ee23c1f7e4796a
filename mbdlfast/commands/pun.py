"""``mbdlfast pun``: dense vs pruned-at-initialization MoDL, in distribution and under shift."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from mbdlfast.commands import Command

EXAMPLES = """\
examples:
  mbdlfast pun --density 0.1 --methods pun,snip,random --steps 200 --image-size 64 --out runs/pun
  mbdlfast pun --density 0.05 --methods pun,synflow,grasp,magnitude --search-steps 200 --out runs/pun5
  mbdlfast pun --steps 2 --search-steps 2 --image-size 16 --slices 4 --test-slices 2 --out /tmp/pun-tiny

Trains dense MoDL and MoDL pruned at initialization by each method (same initialization, same data:
synthetic, one acceleration / mask / noise level / phantom family) and writes DIR/pun.json with one
row per (method, test set): in_dist, shift_accel, shift_mask, shift_noise, shift_family and
shift_brain (the real brain of --brain, skipped when the file is missing).
"""

DEFAULT_BRAIN = Path(__file__).resolve().parents[3] / "shared" / "data" / "mri" / "auto-espirit" / "brain_clean"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--density", type=float, default=0.1, help="fraction of conv weights kept (default 0.1)")
    parser.add_argument("--methods", default="pun,snip,random",
                        help="comma-separated: random, magnitude, snip, grasp, synflow, pun (default pun,snip,random)")
    parser.add_argument("--steps", type=_positive_int, default=200, help="training steps per model (default 200)")
    parser.add_argument("--search-steps", type=_positive_int, default=100, help="PUN search steps (default 100)")
    parser.add_argument("--image-size", type=_positive_int, default=64, help="synthetic image side (default 64)")
    parser.add_argument("--coils", type=_positive_int, default=4, help="synthetic coils (default 4)")
    parser.add_argument("--slices", type=_positive_int, default=64, help="training slices (default 64)")
    parser.add_argument("--test-slices", type=_positive_int, default=8, help="slices per test set (default 8)")
    parser.add_argument("--acceleration", type=_positive_int, default=4, help="training acceleration (default 4)")
    parser.add_argument("--shift-acceleration", type=_positive_int, default=8, help="shifted acceleration (default 8)")
    parser.add_argument("--batch-size", type=_positive_int, default=2, help="batch size (default 2)")
    parser.add_argument("--lr", type=float, default=1e-3, help="training learning rate (default 1e-3)")
    parser.add_argument("--num-iter", type=_positive_int, default=5, help="MoDL unrolled iterations (default 5)")
    parser.add_argument("--cg-iter", type=_positive_int, default=5, help="CG steps per iteration (default 5)")
    parser.add_argument("--channels", type=_positive_int, default=64, help="denoiser features (default 64)")
    parser.add_argument("--brain", default=str(DEFAULT_BRAIN), help="BART base path of the real brain test slice")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, masks and initialization (default 0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    parser.add_argument("--out", required=True, help="output folder (pun.json and one checkpoint per method)")


def run(args: argparse.Namespace) -> int:
    from mbdlfast.finetune.trainer import check_writable
    from mbdlfast.pun import PunConfig, run_pun, summarize

    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    config = PunConfig(
        methods=methods, density=args.density, image_size=args.image_size, num_coils=args.coils,
        train_slices=args.slices, test_slices=args.test_slices, acceleration=args.acceleration,
        shift_acceleration=args.shift_acceleration, brain=args.brain or None,
        model_kwargs={"num_iter": args.num_iter, "cg_iter": args.cg_iter, "prior_kwargs": {"channels": args.channels}},
        steps=args.steps, lr=args.lr, batch_size=args.batch_size, search_steps=args.search_steps, seed=args.seed,
        device=args.device, progress=args.progress,
    ).check()
    out = check_writable(args.out)
    result = run_pun(config, out=out)
    table = summarize(result.rows)
    (out / "pun.json").write_text(json.dumps({"config": result.config, "methods": result.methods, "summary": table,
                                              "zero_filled": result.zero_filled, "rows": result.rows}, indent=2))
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
