"""benchmarks/gpu_check.sh, the prepared GPU check: its dry run on CPU (every step, tiny sizes), and
that each step keeps to its timeout and a failed step never stops the next."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def _load_gpu_check():
    """benchmarks/gpu_check.py as a module, without putting benchmarks/ on the import path."""
    spec = importlib.util.spec_from_file_location("gpu_check", REPO_ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = _load_gpu_check()

RAN_ON_CPU = {"install", "environment", "info", "tests", "bench_sense", "bench_anderson", "demo", "bench_e2e"}


def test_the_dry_run_runs_every_step_on_cpu(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(REPO_ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", str(out)],
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    steps = {step["name"]: step for step in summary["steps"]}
    assert list(steps) == [step.name for step in gpu_check.STEPS]
    assert {name for name, step in steps.items() if step["status"] == "passed"} == RAN_ON_CPU, steps
    assert all(step["reason"] for step in steps.values() if step["status"] == "skipped")
    assert all(step["wall_s"] <= step["timeout_s"] + 5 for step in steps.values() if step["timeout_s"])
    assert summary["dry_run"] and summary["wall_s"] <= summary["budget_s"]
    environment = summary["environment"]
    assert environment["device_type"] == "cpu" and environment["git_sha"] != "unknown"
    assert {"device", "torch", "triton", "cuda"} <= set(environment)
    assert summary["tests"]["skipped"] > 0 and summary["tests"]["failed_ids"] == []  # every GPU case, skipped here
    assert steps["bench_sense"]["files"] == ["bench/sense_cpu.json", "bench/sense_cpu.png"]
    assert "bench/anderson_cpu.json" in steps["bench_anderson"]["files"] and "demo/demo.json" in steps["demo"]["files"]
    assert sorted(path.name for path in out.iterdir()) == ["results.tar.gz", "sense_cpu.json", "summary.json"]
    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
    assert {f"gpu_check/{name}.log" for name in RAN_ON_CPU} | {"gpu_check/bench/e2e_cpu.json"} <= names


def test_a_failed_or_timed_out_step_does_not_stop_the_next(tmp_path, monkeypatch):
    def python(code):
        return lambda run: [sys.executable, "-c", code]

    monkeypatch.setattr(gpu_check, "STEPS", (
        gpu_check.Step("fails", 30, python("raise SystemExit(3)"), min_s=0),
        gpu_check.Step("hangs", 1, python("import time; time.sleep(60)"), min_s=0),
        gpu_check.Step("missing", 30, lambda run: ["/no/such/program"], min_s=0),
        gpu_check.Step("passes", 30, python("print('fine')"), min_s=0),
    ))
    assert gpu_check.check(tmp_path, dry_run=True, budget_s=60) == 1
    steps = json.loads((tmp_path / "summary.json").read_text())["steps"]
    assert (steps[0]["name"], steps[0]["status"], steps[0]["returncode"]) == ("fails", "failed", 3)
    assert steps[1]["status"] == "timeout" and steps[1]["wall_s"] < 10
    assert steps[2]["status"] == "failed" and "could not start" in steps[2]["log_tail"]
    assert steps[3]["status"] == "passed" and steps[3]["log_tail"].endswith("fine")


def test_steps_out_of_budget_are_skipped_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "STEPS", (gpu_check.Step("late", 30, lambda run: ["true"], min_s=20),))
    assert gpu_check.check(tmp_path, dry_run=True, budget_s=5) == 0
    (step,) = json.loads((tmp_path / "summary.json").read_text())["steps"]
    assert step["status"] == "skipped" and step["reason"].startswith("out of time")


def test_unknown_steps_are_refused(capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["out", "--steps", "install,bench_everything"])
    assert "--steps: expected names from" in capsys.readouterr().err
