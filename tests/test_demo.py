"""The demo on the shipped weights, at a tiny size: table, figures, JSON, and bad input."""
import json

import numpy as np
import pytest

from mbdlfast.cli import main as cli_main
from mbdlfast.data.cfl import write_cfl
from mbdlfast.data.synthetic import SyntheticMulticoil
from mbdlfast.experiments.demo import DemoSettings, format_table, run_demo

TINY = dict(ratios=(0.5,), finetune_steps=2, image_size=32, num_slices=1, repeats=1, progress=False)
FIGURES = ("recon_grid.png", "speedup_vs_ratio.png", "psnr_vs_ratio.png")


def test_demo_writes_the_table_figures_and_json(tmp_path):
    result = run_demo(DemoSettings(**TINY), tmp_path)
    pipelines = [(row.label, row.pipeline, row.tuning) for row in result.rows]
    assert pipelines[:3] == [("dense", "baseline", "none"), ("dense", "optimized", "none"),
                             ("zero-filled", "classical", "none")]
    assert pipelines[3][0].startswith("CG-SENSE (lambda") and pipelines[3][1] == "classical"
    assert pipelines[4][0].startswith("l1-wavelet (lambda") and pipelines[4][1] == "classical"
    assert pipelines[5] == ("pruned 50%", "optimized", "school")
    dense, cg, pruned = result.rows[1], result.rows[3], result.rows[5]
    assert pruned.params < 0.5 * dense.params and cg.params == 0
    assert dense.psnr > 20 and abs(result.rows[0].psnr - dense.psnr) < 0.1  # baseline and optimized agree
    assert cg.psnr > result.rows[2].psnr and cg.converged  # CG-SENSE beats zero-filled, and says it converged
    assert result.rows[0].speedup_vs_baseline == 1.0 and dense.speedup_vs_dense == 1.0
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 1000
    stored = json.loads((tmp_path / "demo.json").read_text())
    assert [row["ratio"] for row in stored["rows"]] == [0.0, 0.0, 0.0, 0.0, 0.0, 0.5]
    assert stored["lambdas"]["CG-SENSE"]["lambda"] in (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    assert stored["validation"].startswith("synthetic slices (seed") and stored["torch_pruning"]
    assert {"status", "iterations", "residual", "converged"} <= set(stored["solvers"]["dense"])
    table = format_table(result)
    assert "same solver tolerance" in table and "CG-SENSE" in table and "zero-filled" in table and "l1-wavelet" in table
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_demo_runs_on_a_cfl_file(tmp_path):
    kspace = SyntheticMulticoil(32, 32, 4, seed=3).sample(0)["kspace"].numpy()
    write_cfl(tmp_path / "brain", np.moveaxis(kspace, 0, -1))  # BART dims [H W C]
    result = run_demo(DemoSettings(**TINY, data=str(tmp_path / "brain.cfl"), center_fraction=0.375), tmp_path / "out")
    assert result.reference.startswith("RSS of the fully sampled") and result.rows[1].psnr > 15


@pytest.mark.parametrize("args, message", [
    (["--ratios", "1.5"], "ratios"),
    (["--steps", "-1"], "finetune_steps"),
    (["--data", "/no/such/file.h5"], "does not exist"),
    (["tol=abc"], "tol"),
])
def test_demo_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    assert cli_main(["demo", *args, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
