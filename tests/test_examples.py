"""The scripts in examples/ run as documented (from the repository root) at their smallest settings."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mbdlfast.dip import KNOWN_IMAGES
from mbdlfast.shared_data import missing_message

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, f"examples/{name}.py", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=180, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def number_after(label: str, text: str) -> float:
    match = re.search(rf"{label}\s*([-\d.]+)", text)
    assert match, f"{label!r} not in the output:\n{text}"
    return float(match.group(1))


def test_deq_reconstruction_beats_zero_filling_and_writes_the_png(tmp_path):
    result = run_example("deq_reconstruction", "--size", "32", "--slices", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    zero_filled = number_after("zero-filled: PSNR", result.stdout)
    deq = number_after("DEQ: PSNR", result.stdout)
    assert deq > zero_filled + 5, result.stdout
    assert "1/1 converged" in result.stdout
    assert (tmp_path / "deq_reconstruction.png").stat().st_size > 1000


def test_prune_and_finetune_reloads_identically_and_prunes(tmp_path):
    result = run_example("prune_and_finetune", "--steps", "2", "--slices", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "reloaded outputs identical: True" in result.stdout
    table = {}  # network -> (params, MACs, PSNR)
    for label in ("dense", r"pruned 25%", r"pruned \+ school \(2\)"):
        match = re.search(rf"^{label}\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)$", result.stdout, re.MULTILINE)
        assert match, f"no row {label!r} in the output:\n{result.stdout}"
        table[label] = [float(group.replace(",", "")) for group in match.groups()]
    dense, pruned, tuned = table.values()
    assert pruned[0] < 0.75 * dense[0] and pruned[1] < 0.75 * dense[1]  # params and MACs
    assert tuned[:2] == pruned[:2]  # fine-tuning keeps the pruned shapes
    assert dense[2] > 25  # the shipped DEQ on held-out slices
    assert (tmp_path / "deq_pruned.pt").is_file()


def test_lip_ticket_prunes_and_transfers(shared_data):
    result = run_example("lip_ticket", "--rounds", "1", "--iters", "10",
                         env={"MBDLFAST_SHARED_DATA": str(shared_data)})
    assert result.returncode == 0, result.stderr
    assert number_after("round 1: sparsity", result.stdout) == pytest.approx(0.2, abs=1e-3)
    assert "snail with the ticket network (sparsity 0.200): PSNR" in result.stdout


def test_lip_ticket_without_the_images_says_where_they_should_be(tmp_path):
    result = run_example("lip_ticket", env={"MBDLFAST_SHARED_DATA": str(tmp_path)})
    assert result.returncode != 0
    assert missing_message(tmp_path / "images" / KNOWN_IMAGES["f16"]) in result.stderr
    assert "Traceback" not in result.stderr
