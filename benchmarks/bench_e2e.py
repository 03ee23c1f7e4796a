"""End-to-end prune → fine-tune → optimized-inference table (the seed paper's Tables 1–3, done right).

For each model (DEQ-EDSR, VarNet, E2E-VarNet, MoDL): start from the shipped weights
(:func:`mbdlfast.pretrained.load_default`) or, for models without them (or with ``--from-scratch``),
train ``--train-steps`` steps on the synthetic generator; prune with :func:`mbdlfast.prune.prune_structured` at each ratio; fine-tune each
pruned network in each tuning mode (:func:`mbdlfast.finetune.finetune`, the dense network is the
school teacher); ``scratch_self_supervised`` is the seed's comparison for self-supervised tuning: a
network of the pruned one's size (a freshly initialised dense network pruned at the same ratio, so
every layer has the same width) trained from scratch with the same self-supervised loss for the same
steps, beside the pruned network fine-tuned self-supervised. Then evaluate and time every variant in
two pipelines side by side:

* ``baseline``  — :data:`mbdlfast.inference.BASELINE`: naive operator, fp32 eager, the public Anderson;
* ``optimized`` — :data:`mbdlfast.inference.OPTIMIZED`: fused operators, our Anderson, channels_last,
  guarded low precision, CUDA graphs where legitimate, cudnn.benchmark.

Pruned and dense DEQs are ALWAYS timed at the same solver tolerance (``--tol``), unlike the published
code (dense 1e-4, pruned 4e-3). Quality, under the evaluation protocol of :mod:`mbdlfast.evaluation`:
PSNR/SSIM of magnitude images on held-out synthetic slices (true maps, scored against the true
image) and on the real 8-coil test brain (retrospectively undersampled at each ``--accelerations``
with 8% ACS, ESPIRiT maps from the calibration lines the mask keeps, scored against the RSS of the
fully sampled data), with every solver's convergence. Beside the networks, the classical baselines
on every test set: zero-filled, CG-SENSE and ℓ1-wavelet, their λ chosen on validation slices (synthetic slices of
another seed; for the brain, the real brain of ``--brain-validation``, another subject), never on
the test slices; they are timed on the timing slice too. Timing: one slice of ``--time-coils``
coils at ``--time-size``² (15 × 320² by default).

Writes ``benchmarks/results/e2e_<device>.json`` (``--quick``: ``./bench_out``; ``--out DIR``) with the
rows (model, ratio, tuning, pipeline, tol, psnr, ssim, params, macs, iters, converged, median_ms,
speedups, ...) and the baselines, and PNGs next to it: PSNR against parameters, speed-up against the
ratio, and per model the grid test slice (reference, zero-filled, CG-SENSE, dense, pruned, with
error maps).

    python benchmarks/bench_e2e.py                       # the full table (a GPU machine)
    python benchmarks/bench_e2e.py --quick               # a few minutes on a CPU
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_output_argument, cpu_load_note, device_slug, environment, results_folder, time_calls  # noqa: E402,E501

from mbdlfast.data.synthetic import SyntheticMulticoil  # noqa: E402
from mbdlfast.data.volumes import load_volume  # noqa: E402
from mbdlfast.evaluation import (  # noqa: E402
    EvaluationSlices, baseline_runs, choose_lambdas, classical_baselines, equilibrium_check, evaluate, format_table,
    prepare_slices, quality, solver_report,
)
from mbdlfast.figures import comparison_figure  # noqa: E402
from mbdlfast.training import DataConfig, TrainConfig, Trainer, build_model  # noqa: E402
from mbdlfast.finetune import finetune  # noqa: E402
from mbdlfast.training.config import LR_SCHEDULES, ModelConfig, OptimConfig  # noqa: E402
from mbdlfast.training.data import line_mask  # noqa: E402
from mbdlfast.inference import BASELINE, OPTIMIZED, optimize_for_inference  # noqa: E402
from mbdlfast.models import DEQ  # noqa: E402
from mbdlfast.outputs import atomic_path, write_json  # noqa: E402
from mbdlfast.shared_data import shared_data_path  # noqa: E402

logger = logging.getLogger("bench_e2e")

MODELS = ("deq", "varnet", "e2e_varnet", "modl")
RATIOS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)
SCRATCH = "scratch_self_supervised"
TUNINGS = ("none", "supervised", "school", "self_supervised", SCRATCH)
PIPELINES = {"baseline": BASELINE, "optimized": OPTIMIZED}
BRAIN = shared_data_path("mri", "auto-espirit", "brain_clean", must_exist=False)  # the held-out test brain
BRAIN_VALIDATION = shared_data_path("mri", "espirit-brain-alias", "kspace.npy", must_exist=False)  # another subject
SYNTHETIC_VALIDATION_SEED = 31_337
EQUILIBRIUM_TOL, EQUILIBRIUM_MAX_ITER, EQUILIBRIUM_EARLY = 1e-4, 100, 25  # the dense DEQ's convergence check

# Models trained from scratch here: the sizes of the shipped weights (mbdlfast/weights/*.yaml);
# --paper-size uses the registry's defaults (the paper's networks) instead.
SMALL_KWARGS = {
    "deq": {"prior_kwargs": {"n_resblocks": 6, "n_feats": 48}, "solver_kwargs": {"m": 5, "tol": 1e-3, "max_iter": 25}},
    "varnet": {"num_cascades": 4, "chans": 8, "pools": 3, "output": "image"},
    "e2e_varnet": {"num_cascades": 4, "chans": 8, "pools": 3, "sens_chans": 8, "sens_pools": 3, "output": "image"},
    "modl": {"num_iter": 5, "cg_iter": 5, "prior_kwargs": {"depth": 5, "channels": 48}},
}
TINY_KWARGS = {
    "deq": {"prior_kwargs": {"n_resblocks": 2, "n_feats": 16}, "solver_kwargs": {"m": 5, "tol": 1e-3, "max_iter": 25}},
    "varnet": {"num_cascades": 2, "chans": 8, "pools": 2, "output": "image"},
    "e2e_varnet": {"num_cascades": 2, "chans": 8, "pools": 2, "sens_chans": 8, "sens_pools": 2, "output": "image"},
    "modl": {"num_iter": 3, "cg_iter": 3, "prior_kwargs": {"depth": 4, "channels": 16}},
}


# ------------------------------------------------------------------------------------------------ data


def call_args(batch: EvaluationSlices) -> tuple:
    """The positional arguments of a model's forward for ``batch``: (k-space, physics)."""
    return (batch.kspace, batch.physics())


def synthetic_batch(size: int, coils: int, slices: int, acceleration: int, seed: int,
                    center_fraction: float) -> EvaluationSlices:
    """Synthetic slices of generator ``seed`` undersampled at ``acceleration`` (one equispaced mask),
    with the simulation's true maps, scored against the true image."""
    sample = SyntheticMulticoil(size, size, coils, seed=seed).batch(range(slices))
    mask = line_mask("equispaced", size, acceleration, center_fraction, seed=0)
    return prepare_slices(sample["kspace"], mask, fully_sampled=True, maps=sample["maps"], truth=sample["target"],
                          name=f"synthetic (seed {seed})")


def central_kspace(kspace: torch.Tensor, size: int | None) -> torch.Tensor:
    """The central ``size`` x ``size`` (at most) of (...,H,W) k-space: the whole field of view at a lower resolution."""
    height, width = kspace.shape[-2:]
    new_h, new_w = min(size or height, height), min(size or width, width)
    top, left = (height - new_h) // 2, (width - new_w) // 2
    return kspace[..., top:top + new_h, left:left + new_w].contiguous()


def brain_batch(path: Path, size: int | None, acceleration: int, center_fraction: float) -> EvaluationSlices:
    """A fully sampled real brain volume (its k-space centre up to ``size``), retrospectively
    undersampled: ESPIRiT maps from the calibration lines the mask keeps, the RSS reference."""
    volume = load_volume(path if Path(path).suffix else Path(f"{path}.cfl"))
    kspace = central_kspace(volume.kspace[:1], size)
    mask = line_mask("equispaced", kspace.shape[-1], acceleration, center_fraction, seed=0)
    return prepare_slices(kspace, mask, fully_sampled=True, name=f"{Path(path).parent.name}/{volume.name}")


def validation_batch(test: EvaluationSlices, test_name: str, args) -> EvaluationSlices:
    """Slices on which CG-SENSE's λ is chosen for ``test_name``: synthetic slices of another seed, and
    for the brain the real brain of ``--brain-validation`` (else synthetic slices of its size)."""
    acceleration = int(test_name.rsplit("R", 1)[1])
    if test_name.startswith("brain") and args.brain_validation is not None:
        return brain_batch(args.brain_validation, args.brain_size, acceleration, args.center_fraction)
    size, coils = test.kspace.shape[-1], test.kspace.shape[1]
    return synthetic_batch(size, coils, 2, acceleration, SYNTHETIC_VALIDATION_SEED, args.center_fraction)


# ---------------------------------------------------------------------------------------------- models


def starting_model(name: str, args, train_data: DataConfig, device: torch.device) -> tuple[torch.nn.Module, dict, str]:
    """(dense model, its constructor kwargs, where it came from)."""
    if not args.from_scratch:
        try:
            from mbdlfast.pretrained import load_default

            checkpoint = load_default(name)
            return checkpoint.model.to(device).eval(), checkpoint.model_kwargs, "pretrained"
        except (ImportError, FileNotFoundError, ValueError) as err:
            logger.warning("%s: no shipped weights (%s); training from scratch for %d steps", name, err,
                           args.train_steps)
    kwargs = copy.deepcopy(TINY_KWARGS[name] if args.quick else ({} if args.paper_size else SMALL_KWARGS[name]))
    steps = args.train_steps
    config = TrainConfig(model=ModelConfig(name, kwargs), data=train_data,
                         train=OptimConfig(batch_size=args.batch_size, steps=steps, lr=args.train_lr,
                                           progress=args.progress, log_every=max(steps, 1)),
                         seed=args.seed, out=str(args.work_dir / f"train_{name}"), device=str(device))
    trainer = Trainer(config)
    trainer.fit()
    return trainer.model.eval(), trainer.model_kwargs, f"trained {steps} steps"


def params_and_macs(name: str, model: torch.nn.Module, timing_args: tuple) -> tuple[int, int, str]:
    """Parameter count and MACs: of one forward, or of one denoiser call (one f-evaluation) for the DEQ."""
    from mbdlfast.prune import count_macs, count_params

    if isinstance(model, DEQ):
        kspace, physics = timing_args
        image = physics.A_adjoint(kspace)
        return count_params(model), count_macs(model.denoiser, (image,)), "per f-evaluation"
    return count_params(model), count_macs(model, timing_args), "per forward"


# -------------------------------------------------------------------------------------------- measuring


def variants(name: str, dense, model_kwargs: dict, args, train_data: DataConfig, guard_batch: EvaluationSlices):
    """(ratio, tuning, model, fine-tuning seconds) for the dense model and every pruned, fine-tuned one.
    Fine-tuning draws from ``train_data`` with ``--finetune-family`` as its family (see DataConfig)."""
    from mbdlfast.prune import prune_structured

    finetune_data = dataclasses.replace(train_data, family=args.finetune_family or train_data.family)
    for ratio in args.ratios:
        pruned = dense if ratio == 0 else prune_structured(dense, call_args(guard_batch), ratio)
        for tuning in (("none",) if ratio == 0 else args.tunings):
            began = time.perf_counter()
            start = scratch_of_size(name, model_kwargs, pruned, ratio, guard_batch, args) if tuning == SCRATCH else pruned
            model = pruned if tuning == "none" else finetune(
                start, model_name=name, mode="self_supervised" if tuning == SCRATCH else tuning, teacher=dense,
                data=finetune_data, steps=args.finetune_steps, lr=args.finetune_lr, schedule=args.finetune_schedule,
                warmup_steps=args.finetune_warmup, batch_size=args.batch_size, progress=args.progress,
                device=str(args.device), seed=args.seed, model_kwargs=model_kwargs).model
            yield ratio, tuning, model.eval(), time.perf_counter() - began


def scratch_of_size(name: str, model_kwargs: dict, pruned, ratio: float, guard_batch: EvaluationSlices, args):
    """A freshly initialised ``name`` network pruned at ``ratio`` on the same device: every layer as wide
    as in ``pruned`` (per-group pruning keeps the same count of channels whatever the weights)."""
    from mbdlfast.prune import count_params, prune_structured

    torch.manual_seed(args.seed + 1)
    fresh = build_model(name, model_kwargs)[0].to(args.device)
    scratch = prune_structured(fresh, call_args(guard_batch), ratio)
    if count_params(scratch) != count_params(pruned):
        raise RuntimeError(f"{name}: the from-scratch network has {count_params(scratch)} parameters, the pruned one "
                           f"{count_params(pruned)}; the comparison needs equal sizes")
    return scratch


def evaluate_model(name: str, wrapper, batch: EvaluationSlices, chunk: int) -> tuple[dict, torch.Tensor]:
    """Mean PSNR / SSIM of magnitude images under the protocol, the solver's convergence (and the
    DEQ's mean f-evaluations) over ``batch``; and the reconstructions."""
    outputs, solvers = [], []
    for start in range(0, len(batch), chunk):
        part = batch.select(slice(start, start + chunk))
        outputs.append(wrapper(*call_args(part)))
        solvers.append(solver_report(wrapper, len(part)))
    prediction = torch.cat(outputs)
    result = evaluate(name, prediction, solvers[0], batch)
    status = [s for report in solvers for s in report.status]
    metrics = {"psnr": result.mean("psnr"), "ssim": result.mean("ssim"), "psnr_sense": result.mean("psnr_sense"),
               "converged": all(s in ("converged", "fixed") for s in status), "solver_status": status}
    if wrapper.last_info is not None:
        metrics["iters"] = float(np.mean([i for report in solvers for i in report.iterations]))
    return metrics, prediction


def dense_equilibrium(name: str, model: DEQ, tests: dict[str, EvaluationSlices]) -> dict:
    """Is the dense DEQ an equilibrium model on every test set? :func:`equilibrium_check` at the
    issue's settings (tol 1e-4 within 100 iterations, against the seed's 25)."""
    checks = {}
    for test_name, batch in tests.items():
        check = equilibrium_check(model, batch, tol=EQUILIBRIUM_TOL, max_iter=EQUILIBRIUM_MAX_ITER,
                                  early_iterations=EQUILIBRIUM_EARLY)
        checks[test_name] = check.as_dict()
        logger.info("%s on %s: %s; PSNR after %d iterations %s dB, at tol %g %s dB", name, test_name,
                    check.report.summary(), EQUILIBRIUM_EARLY, [round(p, 2) for p in check.psnr_early],
                    EQUILIBRIUM_TOL, [round(p, 2) for p in check.psnr_converged])
    return checks


def baselines(tests: dict[str, EvaluationSlices], args) -> tuple[dict, dict]:
    """The classical baselines (their λs chosen on each test set's validation slices) on every test
    set: ({test: {validation, lambdas, methods: {method: metrics, solver}}}, {test: {method: image of
    the grid slice}})."""
    table, images = {}, {}
    for test_name, batch in tests.items():
        choice = choose_lambdas(validation_batch(batch, test_name, args).to(batch.kspace.device))
        results = classical_baselines(batch, choice)
        table[test_name] = {**choice, "methods": {r.name: r.as_dict() for r in results}}
        images[test_name] = {r.name: r.image[0].cpu() for r in results}
        print(f"{test_name}:\n{format_table(results, batch.reference_name, batch.maps_source)}")
    return table, images


def run(args, on_family_done=None) -> tuple[dict, dict, EvaluationSlices | None, dict]:
    """The whole table; ``on_family_done(result)`` is called with the rows so far after each model.
    Returns the result, the grid slice's reconstructions, the grid test set and the baselines' images."""
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    train_data = DataConfig(image_size=args.train_size, num_coils=args.train_coils, num_slices=args.train_slices,
                            acceleration=4, center_fraction=args.center_fraction)
    tests = {f"synthetic_R{r}": synthetic_batch(args.train_size, args.train_coils, args.test_slices, r, 10_000 + r,
                                                args.center_fraction) for r in args.accelerations}
    if args.brain is not None:
        for r in args.accelerations:
            tests[f"brain_R{r}"] = brain_batch(args.brain, args.brain_size, r, args.center_fraction)
    tests = {key: batch.to(device) for key, batch in tests.items()}
    primary = f"synthetic_R{args.accelerations[0]}"
    timing_batch = synthetic_batch(args.time_size, args.time_coils, 1, args.accelerations[0], 99,
                                   args.center_fraction).to(device)
    guard_batch = tests[primary].select(slice(0, 1))
    classical, classical_images = baselines(tests, args)
    calls = {name.split(" (")[0]: (lambda run=run: run(timing_batch))
             for name, run in baseline_runs(classical[primary]).items()}
    classical_timing = time_calls(calls, device, warmup=args.warmup, repeats=args.repeats)
    lambdas = classical[primary]["lambdas"]
    classical_rows = {name: {**timing, "lambda": lambdas.get(name, {}).get("lambda")}
                      for name, timing in classical_timing.items()}

    rows, recons, result, equilibria = [], {}, {}, {}
    for name in args.models:
        dense, model_kwargs, origin = starting_model(name, args, train_data, device)
        logger.info("%s: dense model %s", name, origin)
        if isinstance(dense, DEQ):
            equilibria[name] = dense_equilibrium(name, dense, tests)
        timing_args = call_args(timing_batch)
        entries = []
        for ratio, tuning, model, tune_seconds in variants(name, dense, model_kwargs, args, train_data, guard_batch):
            params, macs, macs_per = params_and_macs(name, model, timing_args)
            overrides = {"tol": args.tol, "max_iter": args.max_iter} if isinstance(model, DEQ) else {}
            for pipeline in args.pipelines:
                wrapper = optimize_for_inference(model, call_args(guard_batch), PIPELINES[pipeline],
                                                 target=guard_batch.reference, **overrides)
                row = {"model": name, "ratio": ratio, "tuning": tuning, "pipeline": pipeline, "tol": wrapper.tol,
                       "params": params, "macs": macs, "macs_per": macs_per, "precision": wrapper.precision,
                       "applied": wrapper.applied, "skipped": wrapper.skipped, "tune_seconds": round(tune_seconds, 2),
                       "start": origin, "metrics": {}}
                for test_name, batch in tests.items():
                    metrics, prediction = evaluate_model(name, wrapper, batch, args.eval_chunk)
                    row["metrics"][test_name] = metrics
                    if pipeline == args.pipelines[-1] and test_name == args.grid_test:
                        recons[(name, ratio, tuning)] = prediction[0].cpu()
                row["psnr"], row["ssim"] = row["metrics"][primary]["psnr"], row["metrics"][primary]["ssim"]
                entries.append((row, wrapper))
        # All variants of one family are timed together, round-robin, so load drift hits them alike.
        timing = time_calls({i: (lambda w=w: w(*timing_args)) for i, (_, w) in enumerate(entries)}, device,
                            warmup=args.warmup, repeats=args.repeats)
        for i, (row, wrapper) in enumerate(entries):
            wrapper(*timing_args)
            row["iters"] = wrapper.last_info["nstep"] if wrapper.last_info is not None else None
            row.update(timing[i])
            rows.append(row)
            logger.info("%s r=%.2f %-15s %-9s tol=%s psnr %.2f ssim %.4f params %d iters %s %.1f ms", name,
                        row["ratio"], row["tuning"], row["pipeline"], row["tol"], row["psnr"], row["ssim"],
                        row["params"], row["iters"], row["median_ms"])
        add_speedups(rows)
        result = {**environment(device), "load": cpu_load_note(), "config": config_record(args),
                  "primary_test": primary, "protocol": {name: {"reference": b.reference_name, "maps": b.maps_source}
                                                        for name, b in tests.items()},
                  "baselines": classical, "baseline_timing": classical_rows, "equilibrium": equilibria, "rows": rows}
        if on_family_done is not None:
            on_family_done(result)
    return result, recons, tests.get(args.grid_test), classical_images.get(args.grid_test, {})


def add_speedups(rows: list[dict]) -> None:
    """Speed-up of each row vs the dense model of the same family in each pipeline (same tol by construction)."""
    dense = {(r["model"], r["pipeline"]): r for r in rows if r["ratio"] == 0}
    for row in rows:
        for pipeline in ("baseline", "optimized"):
            ref = dense.get((row["model"], pipeline))
            if ref is not None:
                assert ref["tol"] == row["tol"], "dense and pruned must be timed at the same tolerance"
            row[f"speedup_vs_dense_{pipeline}"] = ref["median_ms"] / row["median_ms"] if ref else None


def config_record(args) -> dict:
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    record["device_slug"] = device_slug(torch.device(args.device))
    return record


# ---------------------------------------------------------------------------------------------- plots


def plot(result: dict, recons: dict, grid_batch: EvaluationSlices | None, classical_images: dict,
         stem: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    models = list(dict.fromkeys(r["model"] for r in rows))
    written = []

    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), squeeze=False)
    for ax, name in zip(axes[0], models):
        for tuning in dict.fromkeys(r["tuning"] for r in rows if r["model"] == name):
            sel = sorted((r for r in rows if r["model"] == name and r["tuning"] in (tuning, "none")
                          and r["pipeline"] == "optimized" and (r["tuning"] == tuning or r["ratio"] == 0)),
                         key=lambda r: r["params"])
            ax.plot([r["params"] for r in sel], [r["psnr"] for r in sel], "o-", label=tuning)
        ax.set(title=name, xlabel="parameters", ylabel=f"PSNR (dB), {result['primary_test']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(_save(fig, stem.with_name(stem.name + "_psnr_vs_params.png")))

    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), squeeze=False)
    for ax, name in zip(axes[0], models):
        for pipeline in dict.fromkeys(r["pipeline"] for r in rows):
            tunings = [r["tuning"] for r in rows if r["model"] == name and r["ratio"] > 0]
            tuning = "school" if "school" in tunings else (tunings[0] if tunings else "none")
            sel = sorted((r for r in rows if r["model"] == name and r["pipeline"] == pipeline
                          and (r["ratio"] == 0 or r["tuning"] == tuning)), key=lambda r: r["ratio"])
            ax.plot([r["ratio"] for r in sel], [r["speedup_vs_dense_baseline"] for r in sel], "o-",
                    label=f"{pipeline} ({tuning})")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set(title=f"{name} (equal tol)", xlabel="pruning ratio", ylabel="speed-up vs dense baseline")
        ax.legend(fontsize=7)
    fig.tight_layout()
    written.append(_save(fig, stem.with_name(stem.name + "_speedup_vs_ratio.png")))

    if grid_batch is not None and recons:
        for name in models:
            keys = sorted(k for k in recons if k[0] == name)
            largest = max(keys, key=lambda k: (k[1], k[2] == "school"))
            images = {**classical_images, f"{name} dense": recons[(name, 0.0, "none")],
                      f"{name} pruned {largest[1]:.0%} + {largest[2]}": recons[largest]}
            single, scores = grid_batch.select(slice(0, 1)), {}
            for label, image in images.items():
                metrics = quality(image[None].to(single.reference.device), single)
                scores[label] = {"psnr": metrics["psnr"][0], "ssim": metrics["ssim"][0]}
            written.append(comparison_figure(stem.with_name(f"{stem.name}_recon_{name}.png"), images,
                                             reference=grid_batch.reference[0], reference_name=grid_batch.reference_name,
                                             metrics=scores, title=f"{result['config']['grid_test']}: {name}"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------------------- CLI


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None)
    parser.add_argument("--ratios", nargs="+", type=float, default=None)
    parser.add_argument("--tunings", nargs="+", choices=TUNINGS, default=None)
    parser.add_argument("--pipelines", nargs="+", choices=tuple(PIPELINES), default=list(PIPELINES))
    parser.add_argument("--tol", type=float, default=None, help="DEQ solver tolerance, the same for every ratio")
    parser.add_argument("--max-iter", type=int, default=100)
    parser.add_argument("--train-steps", type=int, default=None,
                        help="training steps of the models without shipped weights (or all, with --from-scratch)")
    parser.add_argument("--from-scratch", action="store_true", help="train every model, ignoring shipped weights")
    parser.add_argument("--finetune-steps", type=int, default=None)
    parser.add_argument("--train-lr", type=float, default=1e-3)
    parser.add_argument("--finetune-lr", type=float, default=3e-4)
    parser.add_argument("--finetune-schedule", choices=LR_SCHEDULES, default="cosine")
    parser.add_argument("--finetune-family", default=None,
                        help="fine-tuning data: a phantom family, 'images:<path>[,...]' (random views of real "
                             "magnitude images with simulated coils) or a '|'-joined mixture such as "
                             "'brain|images:<path>'; default: the training family")
    parser.add_argument("--finetune-warmup", type=int, default=0, help="linear learning-rate warm-up steps")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=None, help="synthetic training/test image size")
    parser.add_argument("--train-coils", type=int, default=8)
    parser.add_argument("--train-slices", type=int, default=64)
    parser.add_argument("--test-slices", type=int, default=None)
    parser.add_argument("--time-size", type=int, default=None, help="timing image size (square)")
    parser.add_argument("--time-coils", type=int, default=None)
    parser.add_argument("--accelerations", nargs="+", type=int, default=[4, 8])
    parser.add_argument("--center-fraction", type=float, default=0.08,
                        help="fully sampled centre of every mask (the coil maps of the brain come from it alone)")
    parser.add_argument("--brain", type=Path, default=BRAIN, help="BART cfl base path of the real brain")
    parser.add_argument("--no-brain", action="store_true")
    parser.add_argument("--brain-validation", type=Path, default=BRAIN_VALIDATION,
                        help="fully sampled real k-space (another subject) on which CG-SENSE's lambda is chosen for the "
                             "brain tests (default: the espirit-brain-alias brain; synthetic slices when absent)")
    parser.add_argument("--brain-size", type=int, default=None,
                        help="keep the central N x N of the brain's k-space (a lower resolution); default: all")
    parser.add_argument("--paper-size", action="store_true", help="train the paper-size networks")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--eval-chunk", type=int, default=4)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a few minutes on a CPU: small everything")
    add_output_argument(parser)
    parser.add_argument("--work-dir", type=Path, default=Path("runs/bench_e2e"))
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = dict(models=list(MODELS), ratios=[0.0, 0.5] if quick else list(RATIOS),
                    tunings=["school"] if quick else list(TUNINGS), finetune_steps=5 if quick else 200,
                    train_size=32 if quick else 64, test_slices=2 if quick else 16, time_size=64 if quick else 320,
                    time_coils=4 if quick else 15, repeats=3 if quick else 20, tol=1e-3 if quick else 1e-4,
                    brain_size=128 if quick else None)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.train_steps is None:
        args.train_steps = 10 if quick else 2000
    if quick:
        args.accelerations = args.accelerations[:1]
    if args.no_brain:
        args.brain = None
    if args.brain_validation is not None and not args.brain_validation.is_file():
        args.brain_validation = None
    if any(not 0 <= r < 1 for r in args.ratios):
        parser.error(f"--ratios: expected values in [0, 1), got {args.ratios}")
    if 0.0 not in args.ratios:
        args.ratios = [0.0, *args.ratios]  # the dense reference every speed-up is measured against
    args.grid_test = f"brain_R{args.accelerations[0]}" if args.brain is not None else f"synthetic_R{args.accelerations[0]}"
    return args


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    out = results_folder(args.out, args.quick) / f"e2e_{device_slug(torch.device(args.device))}.json"

    def write(result: dict) -> None:  # after every model family, so a cut-short run leaves its rows
        write_json(out, result)

    result, recons, grid_batch, classical_images = run(args, on_family_done=write)
    print(f"wrote {out}")
    if not args.no_plots:
        for path in plot(result, recons, grid_batch, classical_images, out.with_suffix("")):
            print(f"wrote {path}")
    print_table(result)
    return result


def print_table(result: dict) -> None:
    """The networks' rows, then the classical baselines on the primary test set, timed alike."""
    rows = result["rows"]
    print(f"{'model':11s} {'ratio':>5s} {'tuning':23s} {'pipeline':9s} {'tol':>7s} {'PSNR':>6s} {'SSIM':>6s} "
          f"{'params':>9s} {'iters':>5s} {'conv':>4s} {'ms':>9s} {'x base':>6s} {'x opt':>6s}")
    for r in rows:
        tol = f"{r['tol']:.0e}" if r["tol"] is not None else "-"
        iters = str(r["iters"]) if r["iters"] is not None else "-"
        converged = "yes" if r["metrics"][result["primary_test"]]["converged"] else "no"
        print(f"{r['model']:11s} {r['ratio']:5.2f} {r['tuning']:23s} {r['pipeline']:9s} {tol:>7s} {r['psnr']:6.2f} "
              f"{r['ssim']:6.4f} {r['params']:9d} {iters:>5s} {converged:>4s} {r['median_ms']:9.1f} "
              f"{r['speedup_vs_dense_baseline'] or float('nan'):6.2f} {r['speedup_vs_dense_optimized'] or float('nan'):6.2f}")
    primary = result["primary_test"]
    for name, method in result["baselines"][primary]["methods"].items():
        timing = result["baseline_timing"][name.split(" (")[0]]
        print(f"{name:43s} {'-':>7s} {method['mean']['psnr']:6.2f} {method['mean']['ssim']:6.4f} {0:9d} "
              f"{max(method['solver']['iterations']):5d} {'yes' if method['solver']['converged'] else 'no':>4s} "
              f"{timing['median_ms']:9.1f}")
    print(f"PSNR/SSIM on {primary}; CG-SENSE's lambda chosen on {result['baselines'][primary]['validation']}")


if __name__ == "__main__":
    main()
