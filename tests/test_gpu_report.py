"""The GPU report compiles every Triton kernel ahead of time (no GPU needed) as its launcher would
launch it, and nothing spills or fails to compile at sm_80 / sm_90. It runs in a subprocess: the
test session interprets the kernels (TRITON_INTERPRET), and interpreted kernels do not compile."""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("triton")

from mbdlfast import gpu_report  # noqa: E402

ROW_KERNELS = {"row_dft_forward", "row_dft_adjoint", "sense_normal"}
SHAPES = ("640x368", "320x320")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_report") / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    args = ["--arch", "sm_90", "--arch", "sm_80", "--json", str(out)]
    for shape in SHAPES:
        args += ["--shape", shape]
    run = subprocess.run([sys.executable, "-m", "mbdlfast.gpu_report", *args], env=env, capture_output=True,
                         text=True, timeout=600)
    return run, json.loads(out.read_text())["rows"]


def test_every_kernel_compiles_without_spills(report):
    run, rows = report
    assert run.returncode == 0, run.stderr[-3000:]
    assert gpu_report.problems(rows) == []
    assert {r["kernel"] for r in rows} == ROW_KERNELS | {"coil_expand", "coil_reduce", "soft_kspace_dc",
                                                        "anderson_residual_gram", "anderson_mix", "sr_data_solve"}
    assert len(rows) == 2 * len(SHAPES) * 15 and "sense_normal" in run.stdout
    for r in rows:
        if r["kernel"] in ROW_KERNELS:
            assert r["programs"] >= 132, r  # a batch-1 launch fills an H100
            assert (r["tensor_core_instructions"] > 0) == r["variant"].startswith("tf32x3"), r
        assert r["registers"] <= 255 and r["bytes_moved"] > 0


def test_reports_the_launchers_configuration(report):
    from mbdlfast.kernels.row_dft_triton import launch_config

    _, rows = report
    for precision in ("ieee", "tf32x3"):
        (row,) = [r for r in rows if r["kernel"] == "row_dft_forward" and r["variant"] == precision
                  and r["arch"] == "sm_90" and r["shape"].endswith("x640x368")]
        grid, meta = launch_config(1, gpu_report.COILS, 640, 368 // 4, precision)
        assert row["programs"] == grid[0] * grid[1] * grid[2]
        assert (row["num_warps"], row["num_stages"]) == (meta["num_warps"], meta["num_stages"])
        assert row["h100_roofline_us"] == pytest.approx(row["bytes_moved"] / 3.35e12 * 1e6)


def test_a_spill_or_an_error_fails_the_report():
    good = {"arch": "sm_90", "kernel": "k", "variant": "", "shape": "s", "spill_store_bytes": 0,
            "spill_load_bytes": 0}
    assert gpu_report.problems([good]) == []
    assert len(gpu_report.problems([{**good, "spill_load_bytes": 8}, {**good, "error": "PTXASError"}])) == 2
