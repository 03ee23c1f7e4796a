"""benchmarks/bench_lip.py at toy sizes: the sparsity curves and the sections of the paper's other
tables (multi-image, cross-task transfer, GAN-LIP), their JSON rows and the plot."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture(scope="module")
def bench_lip():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_lip

        yield bench_lip
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_quick_run_with_every_section(bench_lip, tiny_gan, tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("MBDLFAST_SHARED_DATA", str(shared_data))
    bench_lip.main(["--quick", "--iters", "2", "--rounds", "1", "--channels", "8", "--timing-repeats", "1",
                    "--multi", "--transfer", "--gan", "--gan-generator", str(tiny_gan), "--measurements", "100",
                    "--corrupted", "2", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "lip_cpu.json").read_text())
    assert (tmp_path / "lip_cpu.png").stat().st_size > 0
    multi = result["multi"]
    assert {r["image"] for r in multi} == {"set5/baby", "set5/bird", "f16"}
    assert {r["method"] for r in multi} == {"dense", "multi", "single", "random"}
    transfer = result["transfer"]
    assert {r["task"] for r in transfer} == {"inpaint", "sr"}  # the other tasks than --task denoise
    assert {r["method"] for r in transfer} == {"dense", "ticket", "random"}
    gan = result["gan"]
    assert [r["round"] for r in gan] == [0, 1, 2] and gan[0]["method"] == "dense"
    assert all(r[key] > 0 for r in gan for key in ("cs", "cs_corrupted", "cs_corrupted_mse", "inpaint"))
