"""What ``auto`` picks on CUDA: torch until a committed GPU measurement says otherwise.

The dispatcher decides on metadata only, so a CUDA case is built without a GPU: the GPU's name and
the committed measurements are replaced by test values (the timings below are made up for the
test, not measured).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

from mbdlfast.ops import dispatch, measurements

CUDA = torch.device("cuda")
GPU = "Test GPU"
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")


def case(op="sense_normal", dtype=torch.complex64, mask="1d", shape=(1, 15, 320, 368)) -> dispatch.Case:
    return dispatch.Case(op, CUDA, dtype, mask, "real", *shape)


def row(shape, accel, **median_ms) -> dict:
    batch, coils, height, width = shape
    return {"op": "sense_normal", "dtype": "complex64", "mask": "1d", "batch": batch, "coils": coils,
            "height": height, "width": width, "accel": accel, "median_ms": median_ms}


@pytest.fixture
def measured(monkeypatch):
    """Install ``rows`` as the committed measurements of the test GPU."""
    monkeypatch.setattr(measurements, "gpu_name", lambda device: GPU)

    def install(rows):
        monkeypatch.setattr(measurements, "committed", lambda: {GPU: {"source": {}, "rows": rows}} if rows else {})

    return install


def test_without_a_measurement_auto_runs_torch_and_says_why(measured):
    measured([])
    decision = dispatch.decide(case())
    assert decision.backend == "torch"
    reason = f"no committed GPU measurement for sense_normal on {GPU} (complex64, 1d mask)"
    assert decision.skipped == {"cuda": [reason], "triton": [reason]}
    assert f"skipped cuda: {reason}; triton: {reason}" in str(decision)


@needs_triton
def test_a_measurement_decides_per_op_dtype_mask_and_nearest_size(measured):
    big, small = (1, 15, 320, 368), (1, 8, 64, 64)
    measured([row(big, 4, torch=2.0, triton=1.0), row(big, 8, torch=1.8, triton=1.2),
              row(small, 4, torch=0.5, triton=0.9)])
    decision = dispatch.decide(case(shape=(1, 15, 640, 368)))  # nearest measured size: big
    assert decision.backend == "triton" and decision.skipped == {
        "cuda": [f"not in the committed GPU measurement of sense_normal on {GPU} at 1x15x320x368"]}
    assert f"measured on {GPU} at 1x15x320x368: triton 2.2 ms, torch 3.8 ms" in str(decision)
    assert dispatch.decide(case(shape=(1, 4, 48, 48))).backend == "torch"  # nearest: small, torch faster there
    for other in (case(dtype=torch.complex128), case(mask="2d"), case(op="sense_forward")):
        decision = dispatch.decide(other)
        assert decision.backend == "torch"
        assert decision.skipped["triton"][0].startswith(f"no committed GPU measurement for {other.op} on {GPU}")


@needs_triton
def test_a_measured_backend_that_cannot_run_here_is_passed_over(measured):
    measured([row((1, 15, 320, 368), 4, torch=2.0, triton=1.0, cuda=0.5)])
    if dispatch.backend_unavailable_reason("cuda", CUDA) is None:
        pytest.skip("the CUDA extension is loaded here")
    decision = dispatch.decide(case())
    assert decision.backend == "triton"
    assert decision.skipped == {"cuda": [dispatch.backend_unavailable_reason("cuda", CUDA)]}


def test_cpu_keeps_its_fixed_order(measured):
    measured([])
    cpu = dispatch.Case("sense_normal", torch.device("cpu"), torch.complex64, "2d")
    assert dispatch.decide(cpu).backend == "torch" and not dispatch.decide(cpu).basis


def test_the_committed_measurements_are_well_formed():
    """Every recorded row names a registered op and carries its case and torch's time."""
    for name, entry in measurements.committed().items():
        assert entry["rows"], name
        for recorded in entry["rows"]:
            assert recorded["op"] in dispatch.ops() and recorded["mask"] in ("1d", "2d")
            assert {"batch", "coils", "height", "width", "accel"} <= set(recorded)
            assert "torch" in recorded["median_ms"] and set(recorded["median_ms"]) <= set(dispatch.AUTO_ORDER["cuda"])


# ------------------------------------------------------------------- benchmarks/record_gpu_measurement.py

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def recorder():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import record_gpu_measurement

        yield record_gpu_measurement
    finally:
        sys.path.remove(str(BENCHMARKS))


def bench_row(op, provider, median_ms, rel_err=1e-7):
    return {"op": op, "provider": provider, "coils": 15, "height": 320, "width": 368, "accel": 4, "batch": 1,
            "median_ms": median_ms, "rel_err": rel_err, "backend": provider}


def test_recording_a_gpu_run_orders_auto_on_that_gpu(recorder, measured, tmp_path, monkeypatch):
    result = {"device": GPU, "device_type": "cuda", "git_sha": "abc", "torch": "2.11", "triton": "3.6", "cuda": "13.0",
              "rows": [bench_row("A_adjoint_A", "torch", 2.0), bench_row("A_adjoint_A", "triton", 1.0),
                       bench_row("A_adjoint_A", "naive", 9.0), bench_row("A_adjoint_A", "auto", 2.0),
                       bench_row("A_adjoint_A", "cuda", 0.1, rel_err=0.5),  # wrong: not recorded
                       bench_row("A", "triton", 1.0)]}  # no torch time to compare with: not recorded
    (tmp_path / "sense.json").write_text(json.dumps(result))
    out = tmp_path / "gpu_measurements.json"
    recorder.main([str(tmp_path / "sense.json"), "--out", str(out)])
    written = json.loads(out.read_text())["devices"][GPU]
    assert written["source"] == {"file": "sense.json", **{k: result[k] for k in ("git_sha", "torch", "triton", "cuda")}}
    assert written["rows"] == [{**row((1, 15, 320, 368), 4, torch=2.0, triton=1.0), "op": "sense_normal"}]
    monkeypatch.setattr(measurements, "gpu_name", lambda device: GPU)
    monkeypatch.setattr(measurements, "committed", lambda: json.loads(out.read_text())["devices"])
    if importlib.util.find_spec("triton") is not None:
        assert dispatch.decide(case()).backend == "triton"


def test_recording_refuses_a_cpu_run(recorder, tmp_path):
    (tmp_path / "sense.json").write_text(json.dumps({"device": "AMD EPYC", "device_type": "cpu", "rows": []}))
    with pytest.raises(SystemExit, match="expected a bench_sense run on CUDA, got one on cpu"):
        recorder.main([str(tmp_path / "sense.json"), "--out", str(tmp_path / "m.json")])
