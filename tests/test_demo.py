"""The demo on the shipped weights, at a tiny size: table, figures, JSON, and bad input."""
import json

import numpy as np
import pytest

from mbdlfast.cli import main as cli_main
from mbdlfast.data.cfl import write_cfl
from mbdlfast.data.synthetic import SyntheticMulticoil
from mbdlfast.demo import DemoSettings, format_table, run_demo

TINY = dict(ratios=(0.5,), finetune_steps=2, image_size=32, num_slices=1, repeats=1, progress=False)
FIGURES = ("recon_grid.png", "error_maps.png", "speedup_vs_ratio.png", "psnr_vs_ratio.png")


def test_demo_writes_the_table_figures_and_json(tmp_path):
    result = run_demo(DemoSettings(**TINY), tmp_path)
    pipelines = [(row.label, row.pipeline, row.tuning) for row in result.rows]
    assert pipelines == [("dense", "baseline", "none"), ("dense", "optimized", "none"),
                         ("pruned 50%", "optimized", "school")]
    dense, pruned = result.rows[1], result.rows[2]
    assert pruned.params < 0.5 * dense.params
    assert dense.psnr > 20 and abs(result.rows[0].psnr - dense.psnr) < 0.1  # baseline and optimized agree
    assert result.rows[0].speedup_vs_baseline == 1.0 and dense.speedup_vs_dense == 1.0
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 1000
    stored = json.loads((tmp_path / "demo.json").read_text())
    assert [row["ratio"] for row in stored["rows"]] == [0.0, 0.0, 0.5]
    assert "same solver tolerance" in format_table(result)
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_demo_runs_on_a_cfl_file(tmp_path):
    kspace = SyntheticMulticoil(32, 32, 4, seed=3).sample(0)["kspace"].numpy()
    write_cfl(tmp_path / "brain", np.moveaxis(kspace, 0, -1))  # BART dims [H W C]
    result = run_demo(DemoSettings(**TINY, data=str(tmp_path / "brain.cfl")), tmp_path / "out")
    assert result.reference.startswith("ground truth") and result.rows[1].psnr > 15


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
