"""One prepared check of mbdlfast on a bare GPU machine: install, GPU tests, benchmarks, demo.

A GPU machine may be lent for minutes, once, with its own torch and Triton and no network. This
script makes that first contact one command (``benchmarks/gpu_check.sh OUT_DIR``, which wraps it):

1. ``wheels``: installs the wheels of ``.whl/`` (the pure-Python dependencies the machine lacks,
   downloaded beforehand by ``--prepare``), if there are any;
2. ``install``: ``pip install --no-deps --no-build-isolation -e .``, building the C++/CUDA extension
   against the machine's torch; if that fails, ``install-triton-only`` installs without it
   (``MBDLFAST_NO_EXTENSION=1``) and the run goes on, Triton and torch only;
3. ``environment`` (device name; torch, Triton, CUDA versions; git sha, from ``$GIT_SHA`` or a
   ``GIT_SHA`` file where ``.git`` did not travel) and ``info`` (``mbdlfast info``: what each op runs);
4. ``tests``: the GPU tests (``pytest -m gpu``: the CUDA-parametrised cases and the CUDA-only tests);
5. ``bench_sense`` (and ``record``: its timings as a candidate ``gpu_measurements.json``, see
   ``benchmarks/record_gpu_measurement.py``), ``bench_anderson``, ``demo`` and a short ``bench_e2e``.

Each step runs with its own timeout inside one overall budget (8 minutes by default) and its exit
status is recorded; a failed step never stops the next. ``OUT_DIR`` receives, after every step:
``summary.json`` (the environment, each step's status, exit code, wall time, files and log tail, the
test counts), ``results.tar.gz`` (every log and output file) and, top-level, the bench_sense JSON and
the candidate measurements: few files, as a device machine returns at most eight.

``--dry-run`` runs the same steps on the CPU at tiny sizes (pip with ``--dry-run``, Triton in its
interpreter, nothing recorded), in 45–100 s on a shared 2-core CPU: a test runs it in CI.
``--prepare`` (here, with network) writes ``GIT_SHA`` and downloads the wheels into ``.whl/``.

    benchmarks/gpu_check.sh --prepare
    benchmarks/gpu_check.sh OUT_DIR                  # on the GPU machine (carry .whl and GIT_SHA)
    benchmarks/gpu_check.sh --dry-run OUT_DIR        # here, on CPU

On a lent machine whose results come back from ``$OUT``: ``bash benchmarks/gpu_check.sh $OUT`` with
``.whl`` and ``GIT_SHA`` carried and a command timeout of about 560 s (the budget plus the bundling).
``--steps a,b`` reruns only the steps named.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parent.parent
WHEELS = REPO_ROOT / ".whl"
BUDGET_S = 480
# What the GPU machine's image lacks (by its package list) that the demo, the benchmarks and the GPU
# tests import: torch-pruning, and the test references PyWavelets and SigPy.
WHEEL_PACKAGES = ("torch-pruning", "PyWavelets", "sigpy")
DEVICE_PYTHON = "3.12"
DEVICE_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
# The header every results file carries (benchmarks/common.py) and how each compiled part loaded, as JSON.
ENVIRONMENT = ("import json, sys, torch; sys.path.insert(0, 'benchmarks'); from common import environment; "
               "from mbdlfast._extension import part_status; "
               "parts = {part: part_status(part)[1] for part in ('_C', '_C_cpu', '_C_cuda')}; "
               "print(json.dumps({**environment(torch.device(sys.argv[1])), 'extension': parts}))")
TEST_LINE = re.compile(r"^(tests/\S+::\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)\b")


def _step_environment() -> dict:
    """The steps' environment: unbuffered output, this tree first on the import path (installed or not)."""
    path = os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH"))))
    return dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)


@dataclasses.dataclass
class Run:
    """The state of one check: where things go, what is known so far."""

    out: Path
    work: Path
    dry_run: bool
    budget_s: int
    deadline: float
    python: str = sys.executable
    env: dict = dataclasses.field(default_factory=_step_environment)
    steps: list = dataclasses.field(default_factory=list)
    environment: dict = dataclasses.field(default_factory=dict)

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"

    @property
    def timeout_scale(self) -> int:
        """The dry run checks that the steps run, not how fast: a shared CPU gets 4x the GPU's step timeouts."""
        return 4 if self.dry_run else 1

    def status(self, name: str) -> str | None:
        return next((step["status"] for step in self.steps if step["name"] == name), None)


@dataclasses.dataclass(frozen=True)
class Step:
    """A command with its own timeout; ``command(run)`` returns the argv, or a reason to skip."""

    name: str
    timeout_s: int
    command: Callable[[Run], list[str] | str]
    outputs: str = ""  # a glob under the work folder: the files this step writes
    min_s: int = 20  # skipped when less of the budget is left


def _pip(run: Run, *args: str) -> list[str]:
    return [run.python, "-m", "pip", "install", *(["--dry-run"] if run.dry_run else []), *args]


def _wheels(run: Run):
    if run.dry_run:
        return f"dry run: the wheels are for the GPU machine's Python {DEVICE_PYTHON}"
    wheels = sorted(str(path) for path in WHEELS.glob("*.whl"))
    if not wheels:
        return "no wheels in .whl/ (benchmarks/gpu_check.sh --prepare downloads them)"
    return _pip(run, "--no-index", "--no-deps", "--no-cache-dir", *wheels)


def _install(run: Run):
    """-v: the build's output (which parts compiled, and why one did not) goes to the log."""
    return ["env", f"MAX_JOBS={os.cpu_count() or 1}", *_pip(run, "-v", "--no-deps", "--no-build-isolation", "-e", ".")]


def _install_triton_only(run: Run):
    if run.status("install") == "passed":
        return "the extension built"
    return ["env", "MBDLFAST_NO_EXTENSION=1", *_pip(run, "--no-deps", "--no-build-isolation", "-e", ".")]


def _tests(run: Run):
    argv = [run.python, "-m", "pytest", "tests", "-m", "gpu and not slow", "-o", "addopts=", "-v", "-rfE",
            "-p", "no:cacheprovider", "--continue-on-collection-errors"]
    if importlib.util.find_spec("pytest_timeout") is not None:
        argv += ["--timeout", "120"]
    return argv


def _bench_sense(run: Run):
    sizes = (["--shapes", "2x16x16", "--repeats", "2", "--warmup", "1"] if run.dry_run else
             ["--shapes", "15x640x368,15x320x368,8x230x180", "--repeats", "20"])
    return [run.python, "benchmarks/bench_sense.py", "--device", run.device, "--quick", *sizes,
            "--out", str(run.work / "bench")]


def _record(run: Run):
    if run.dry_run:
        return "dry run: only a GPU run is recorded"
    results = sorted((run.work / "bench").glob("sense_*.json"))
    if not results:
        return "bench_sense wrote no results"
    return [run.python, "benchmarks/record_gpu_measurement.py", str(results[0]),
            "--out", str(run.work / "gpu_measurements.json")]


def _bench_anderson(run: Run):
    sizes = ["--batch", "2", "--n", "32", "--max-iter", "40"] if run.dry_run else []
    return [run.python, "benchmarks/bench_anderson.py", "--device", run.device, *sizes,
            "--out", str(run.work / "bench")]


def _demo(run: Run):
    sizes = (["--steps", "2", "--slices", "1", "--repeats", "1", "--image-size", "32", "--coils", "4", "max_iter=20"]
             if run.dry_run else [])
    return [run.python, "-m", "mbdlfast", "demo", "--quick", "--device", run.device, "--no-progress", *sizes,
            "--out", str(run.work / "demo")]


def _bench_e2e(run: Run):
    sizes = (["--from-scratch", "--train-steps", "2", "--finetune-steps", "1", "--train-size", "16",
              "--train-coils", "2", "--train-slices", "4", "--test-slices", "1", "--time-size", "24",
              "--time-coils", "2", "--center-fraction", "0.25", "--repeats", "1", "--warmup", "0", "--max-iter", "8"]
             if run.dry_run else ["--time-size", "320", "--time-coils", "15", "--repeats", "5"])
    return [run.python, "benchmarks/bench_e2e.py", "--quick", "--models", "deq", "--ratios", "0.5", "--no-brain",
            "--device", run.device, *sizes, "--out", str(run.work / "bench"), "--work-dir", str(run.work / "runs")]


STEPS = (
    Step("wheels", 60, _wheels, min_s=10),
    Step("install", 240, _install),
    Step("install-triton-only", 60, _install_triton_only),
    Step("environment", 60, lambda run: [run.python, "-c", ENVIRONMENT, run.device], min_s=5),
    Step("info", 60, lambda run: [run.python, "-m", "mbdlfast", "info"], min_s=5),
    Step("tests", 150, _tests),
    Step("bench_sense", 120, _bench_sense, "bench/sense_*"),
    Step("record", 30, _record, "gpu_measurements.json", min_s=5),
    Step("bench_anderson", 30, _bench_anderson, "bench/anderson_*"),
    Step("demo", 90, _demo, "demo/*"),
    Step("bench_e2e", 90, _bench_e2e, "bench/e2e_*"),
)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])[-4000:]


def _run_logged(command: list[str], env: dict, log, timeout: int) -> tuple[int | None, str]:
    """(exit code, status) of ``command`` with its output in ``log``; at the timeout its whole process
    group is killed; a program that cannot start fails the step (the next one still runs)."""
    try:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    except OSError as err:
        log.write(f"could not start: {err}\n")
        return None, "failed"
    try:
        returncode = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait(), "timeout"
    return returncode, "passed" if returncode == 0 else "failed"


def _execute(run: Run, step: Step) -> dict:
    """Run one step under its timeout, or say why it is skipped."""
    record = {"name": step.name, "status": "skipped", "returncode": None, "wall_s": 0.0, "timeout_s": None,
              "files": [], "log": f"{step.name}.log"}
    left = run.deadline - time.monotonic()
    command = step.command(run)
    if isinstance(command, str):
        return {**record, "reason": command}
    if left < step.min_s:
        return {**record, "reason": f"out of time: {left:.0f} s of the budget left"}
    timeout = int(min(step.timeout_s * run.timeout_scale, left))
    log = run.work / record["log"]
    started = time.monotonic()
    with log.open("w") as handle:
        handle.write("$ " + " ".join(command) + "\n")
        handle.flush()
        returncode, status = _run_logged(command, run.env, handle, timeout)
    files = sorted(str(path.relative_to(run.work)) for path in run.work.glob(step.outputs)) if step.outputs else []
    return {**record, "status": status, "returncode": returncode, "wall_s": round(time.monotonic() - started, 1),
            "timeout_s": timeout, "command": " ".join(command), "files": files, "log_tail": _tail(log)}


def _test_counts(log: Path) -> dict:
    """Per status, how many tests the verbose log reports (so a run cut short still counts), and the
    ids of those that failed or errored."""
    counts, failed = {}, []
    for line in log.read_text(errors="replace").splitlines() if log.is_file() else ():
        if match := TEST_LINE.match(line):
            counts[match.group(2).lower()] = counts.get(match.group(2).lower(), 0) + 1
            if match.group(2) in ("FAILED", "ERROR"):
                failed.append(match.group(1))
    return {**counts, "failed_ids": failed}


def _install_mode(run: Run) -> str:
    if run.status("install-triton-only") == "passed":
        return "without the extension (MBDLFAST_NO_EXTENSION=1: Triton and torch only)"
    if run.status("install") == "passed":
        return "with the extension (environment.extension: how each part loaded)"
    return "not installed (steps import the tree's mbdlfast)"


def _write_outputs(run: Run, started: float) -> None:
    """summary.json, results.tar.gz and the top-level copies, each replaced atomically."""
    if run.status("environment") == "passed" and not run.environment:
        lines = (run.work / "environment.log").read_text().splitlines()
        run.environment = json.loads(next(line for line in reversed(lines) if line.startswith("{")))
    summary = {"dry_run": run.dry_run, "budget_s": run.budget_s, "wall_s": round(time.monotonic() - started, 1),
               "environment": run.environment, "install": _install_mode(run),
               "tests": _test_counts(run.work / "tests.log"), "steps": run.steps}
    _replace(run.out / "summary.json", lambda path: path.write_text(json.dumps(summary, indent=1) + "\n"))
    (run.work / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")

    def bundle(path: Path) -> None:  # without bench_e2e's checkpoints (runs/)
        with tarfile.open(path, "w:gz") as tar:
            tar.add(run.work, arcname="gpu_check",
                    filter=lambda member: None if member.name.startswith("gpu_check/runs") else member)

    _replace(run.out / "results.tar.gz", bundle)
    for pattern in ("bench/sense_*.json", "gpu_measurements.json"):
        for path in run.work.glob(pattern):
            _replace(run.out / path.name, lambda target, source=path: shutil.copyfile(source, target))


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    os.replace(temporary, path)


def check(out: Path, dry_run: bool, budget_s: int = BUDGET_S, only: tuple[str, ...] = ()) -> int:
    """Run the steps (``only``: those named) into ``out``; 0 when no step that ran failed."""
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gpu_check.") as work:
        run = Run(out=out, work=Path(work), dry_run=dry_run, budget_s=budget_s, deadline=started + budget_s)
        if dry_run:
            run.env.setdefault("TRITON_INTERPRET", "1")  # Triton's steps run on CPU tensors in its interpreter
        for step in STEPS:
            if only and step.name not in only:
                continue
            record = _execute(run, step)
            run.steps.append(record)
            print(f"gpu_check: {step.name}: {record['status']} ({record['wall_s']} s)"
                  + (f": {record['reason']}" if "reason" in record else ""), flush=True)
            _write_outputs(run, started)
    failed = [step["name"] for step in run.steps if step["status"] in ("failed", "timeout")
              and not (step["name"] == "install" and run.status("install-triton-only") == "passed")]
    print(f"gpu_check: {len(run.steps)} steps in {time.monotonic() - started:.0f} s; "
          + (f"failed: {', '.join(failed)}" if failed else "none failed") + f"; results in {out}")
    return 1 if failed else 0


def prepare() -> int:
    """Here, with network: GIT_SHA for the copy that travels without .git, and the wheels of .whl/."""
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    (REPO_ROOT / "GIT_SHA").write_text(sha.stdout)
    try:
        pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEEL_PACKAGES]
    except importlib.metadata.PackageNotFoundError as err:
        raise SystemExit(f"--prepare: expected {err} installed here (its wheel is fetched at the version "
                         "installed here): pip install -e '.[test]'") from None
    platforms = [argument for platform in DEVICE_PLATFORMS for argument in ("--platform", platform)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", DEVICE_PYTHON, "--implementation", "cp", *platforms, "-d", str(WHEELS), *pins],
                   check=True)
    print(f"wrote GIT_SHA ({sha.stdout.strip()[:10]}) and {', '.join(pins)} into {WHEELS}; on the GPU machine run "
          "benchmarks/gpu_check.sh OUT_DIR with .whl and GIT_SHA carried")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="steps: " + ", ".join(step.name for step in STEPS))
    parser.add_argument("out", type=Path, nargs="?", help="output folder (summary.json, results.tar.gz)")
    parser.add_argument("--dry-run", action="store_true", help="the same steps on CPU at tiny sizes")
    parser.add_argument("--prepare", action="store_true", help="write GIT_SHA and download the wheels into .whl/")
    parser.add_argument("--budget", type=int, default=BUDGET_S, help=f"seconds for all steps (default {BUDGET_S})")
    parser.add_argument("--steps", default="", help="comma-separated steps to run (default: all)")
    args = parser.parse_args(argv)
    if args.prepare:
        return prepare()
    if args.out is None:
        parser.error("out: expected the output folder")
    only = tuple(name for name in args.steps.split(",") if name)
    if unknown := set(only) - {step.name for step in STEPS}:
        parser.error(f"--steps: expected names from {[step.name for step in STEPS]}, got {sorted(unknown)}")
    return check(args.out, args.dry_run, args.budget, only)


if __name__ == "__main__":
    sys.exit(main())
