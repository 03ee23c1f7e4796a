"""Where benchmark results go: full runs into benchmarks/results, --quick runs never there."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "benchmarks" / "results"


@pytest.fixture()
def common(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    import common

    return common


def test_quick_runs_default_outside_the_committed_results(common, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert common.results_folder(None, quick=True).resolve() == (tmp_path / "bench_out").resolve()
    assert common.results_folder(None, quick=False).resolve() == RESULTS.resolve()


@pytest.mark.parametrize("folder", [RESULTS, RESULTS / "nested"])
def test_a_quick_run_into_the_committed_results_is_refused(common, folder):
    with pytest.raises(SystemExit, match="never writes into"):
        common.results_folder(folder, quick=True)
    assert not (RESULTS / "nested").exists()


def test_results_record_the_versions(common):
    header = common.environment(__import__("torch").device("cpu"))
    assert {"torch", "triton", "torch_pruning", "git_sha", "device"} <= set(header)
    assert header["torch_pruning"]  # a declared dependency: always installed
    assert header["device_type"] == "cpu"


def test_the_git_sha_of_a_copy_without_git_comes_from_the_caller(common, tmp_path, monkeypatch):
    """A device machine gets the working tree without .git: $GIT_SHA, else a GIT_SHA file, else unknown."""
    monkeypatch.setattr(common, "REPO_ROOT", tmp_path)
    monkeypatch.delenv("GIT_SHA", raising=False)
    assert common.git_sha() == "unknown"
    (tmp_path / "GIT_SHA").write_text("abc123\n")
    assert common.git_sha() == "abc123"
    monkeypatch.setenv("GIT_SHA", "def456")
    assert common.git_sha() == "def456"


def test_mbdlfast_bench_quick_writes_bench_out_and_leaves_the_results_alone(tmp_path):
    before = {path.name: path.stat().st_mtime_ns for path in RESULTS.iterdir()}
    run = subprocess.run([sys.executable, "-m", "mbdlfast", "bench", "sense", "--quick", "--shapes", "2x12x10",
                          "--providers", "torch,naive", "--ops", "A", "--repeats", "1", "--warmup", "0"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "bench_out" / "sense_cpu.json").read_text())
    assert result["torch_pruning"] and result["rows"]
    assert (tmp_path / "bench_out" / "sense_cpu.png").stat().st_size > 0
    assert {path.name: path.stat().st_mtime_ns for path in RESULTS.iterdir()} == before
    assert not list((tmp_path / "bench_out").glob(".mbdlfast-tmp.*"))
