"""Smoke test of benchmarks/bench_e2e.py's --quick path at toy sizes: the JSON schema, equal tolerances."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
ROW_KEYS = {"model", "ratio", "tuning", "pipeline", "tol", "psnr", "ssim", "params", "macs", "iters", "median_ms",
            "p20_ms", "p80_ms", "speedup_vs_dense_baseline", "speedup_vs_dense_optimized", "metrics", "applied"}


@pytest.fixture(scope="module")
def bench_e2e():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_e2e

        yield bench_e2e
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_quick_run_writes_the_table(bench_e2e, tmp_path, shared_data):
    out = tmp_path / "e2e_cpu.json"  # --out is the folder; the file is named after the device
    brain = shared_data / "mri" / "auto-espirit" / "brain_clean"
    bench_e2e.main(["--quick", "--models", "deq", "varnet", "--ratios", "0", "0.5", "--tunings", "school",
                    "--from-scratch", "--train-steps", "2", "--finetune-steps", "1", "--train-size", "16", "--train-coils", "2",
                    "--train-slices", "4", "--test-slices", "1", "--time-size", "24", "--time-coils", "2",
                    "--brain", str(brain), "--brain-size", "48", "--center-fraction", "0.25", "--repeats", "1", "--warmup", "0",
                    "--max-iter", "8", "--device", "cpu", "--out", str(tmp_path), "--work-dir", str(tmp_path / "runs")])
    result = json.loads(out.read_text())
    assert {"device", "torch", "triton", "torch_pruning", "git_sha", "config", "rows"} <= set(result)
    rows = result["rows"]
    assert len(rows) == 2 * 2 * 2  # models x (dense + pruned/school) x pipelines
    for row in rows:
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["median_ms"] > 0 and row["params"] > 0 and row["macs"] > 0
        assert set(row["metrics"]) == {"synthetic_R4", "brain_R4"}
    for model in ("deq", "varnet"):
        family = [r for r in rows if r["model"] == model]
        assert {r["pipeline"] for r in family} == {"baseline", "optimized"}
        assert len({r["tol"] for r in family}) == 1  # dense and pruned at the same tolerance
        dense = [r for r in family if r["ratio"] == 0]
        pruned = [r for r in family if r["ratio"] == 0.5]
        assert {r["tuning"] for r in dense} == {"none"} and {r["tuning"] for r in pruned} == {"school"}
        assert all(p["params"] < dense[0]["params"] for p in pruned)
        for r in dense:
            assert r[f"speedup_vs_dense_{r['pipeline']}"] == pytest.approx(1.0)
    deq = [r for r in rows if r["model"] == "deq"]
    assert all(r["tol"] == 1e-3 and isinstance(r["iters"], int) and r["iters"] >= 1 for r in deq)
    assert all(r["tol"] is None and r["iters"] is None for r in rows if r["model"] == "varnet")
    for suffix in ("psnr_vs_params", "speedup_vs_ratio", "recon_deq", "recon_varnet"):
        assert (tmp_path / f"e2e_cpu_{suffix}.png").stat().st_size > 0
    # the classical baselines beside the networks, CG-SENSE's lambda chosen on validation slices
    for test in ("synthetic_R4", "brain_R4"):
        baseline = result["baselines"][test]
        names = list(baseline["methods"])
        assert names[0] == "zero-filled" and names[1].startswith("CG-SENSE (lambda") and names[2].startswith("l1-wavelet")
        for method in ("CG-SENSE", "l1-wavelet"):
            choice = baseline["lambdas"][method]
            assert choice["lambda"] in map(float, choice["validation_psnr"])
        assert baseline["validation"] != test
        assert all(method["solver"]["converged"] in (True, False) for method in baseline["methods"].values())
    assert baseline["validation"] == "espirit-brain-alias/kspace"  # a real brain of another subject, not the test brain
    assert result["protocol"]["brain_R4"]["maps"].startswith("ESPIRiT on the")
    assert set(result["baseline_timing"]) == {"zero-filled", "CG-SENSE", "l1-wavelet"}
    assert all(isinstance(row["metrics"]["brain_R4"]["converged"], bool) for row in rows)
    # the dense DEQ's equilibrium check on every test set (tol 1e-4 within 100 iterations vs 25 iterations)
    assert set(result["equilibrium"]) == {"deq"}
    for test in ("synthetic_R4", "brain_R4"):
        check = result["equilibrium"]["deq"][test]
        assert (check["tol"], check["max_iter"], check["early_iterations"]) == (1e-4, 100, 25)
        assert len(check["psnr_early"]) == len(check["psnr_converged"]) == len(check["solver"]["status"]) == 1
        assert isinstance(check["holds"], bool)


def test_rejects_a_bad_ratio(bench_e2e):
    with pytest.raises(SystemExit):
        bench_e2e.parse_args(["--ratios", "0.5", "1.0"])


def test_the_self_supervised_comparison_trains_a_network_of_the_pruned_size_from_scratch(bench_e2e):
    """The seed's comparison: beside the pruned network fine-tuned self-supervised, a freshly
    initialised network of exactly its size trained with the same loss for the same steps."""
    import argparse

    import torch

    from mbdlfast.prune import count_params
    from mbdlfast.training import DataConfig, build_model

    torch.manual_seed(0)
    dense, kwargs = build_model("deq", {"prior_kwargs": {"n_resblocks": 1, "n_feats": 16},
                                        "solver_kwargs": {"max_iter": 3}})
    guard = bench_e2e.synthetic_batch(16, 2, 1, 4, 0, 0.25)
    args = argparse.Namespace(seed=0, device="cpu", ratios=[0.0, 0.5], tunings=["self_supervised", bench_e2e.SCRATCH],
                              finetune_family=None, finetune_steps=1, finetune_lr=1e-3, finetune_schedule="constant",
                              finetune_warmup=0, batch_size=1, progress=False)
    data = DataConfig(image_size=16, num_coils=2, num_slices=2, val_fraction=0.5, center_fraction=0.25)
    variants = {(ratio, tuning): model for ratio, tuning, model, _ in bench_e2e.variants("deq", dense, kwargs, args,
                                                                                          data, guard)}
    assert set(variants) == {(0.0, "none"), (0.5, "self_supervised"), (0.5, bench_e2e.SCRATCH)}
    tuned, scratch = variants[(0.5, "self_supervised")], variants[(0.5, bench_e2e.SCRATCH)]
    assert count_params(scratch) == count_params(tuned) < count_params(dense)
    assert [p.shape for p in scratch.parameters()] == [p.shape for p in tuned.parameters()]
    assert all(not torch.equal(a, b) for a, b in zip(scratch.parameters(), tuned.parameters()) if a.numel() > 1)
