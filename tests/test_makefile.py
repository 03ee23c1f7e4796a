"""README's make targets: `make install` is done once per environment and shows the build's progress."""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def make(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([MAKE, "--no-print-directory", f"PYTHON={sys.executable}", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, **kwargs)


def test_install_is_up_to_date_after_an_install_in_this_environment():
    stamp = REPO_ROOT / "build" / f"installed-{hashlib.sha1(sys.prefix.encode()).hexdigest()[:12]}.stamp"
    if not stamp.exists():
        pytest.skip("this environment was not installed with make install")
    # -q: exit 0 when nothing would be rebuilt, so `make test` after `make demo` builds nothing
    assert make("-q", "install").returncode == 0


def test_install_reruns_when_a_build_input_changes(tmp_path):
    run = make("-n", "-W", "setup.py", "install")  # as if setup.py had just been edited
    assert "build_ext --inplace" in run.stdout and "pip install" in run.stdout


def test_the_build_prints_one_progress_line_per_compiled_file(tmp_path):
    compile_line = ("[2/4] /usr/bin/c++ -MMD -MF /b/temp/csrc/cpu/coil_ops.o.d -pthread -O3 "
                    "-c /src/csrc/cpu/coil_ops.cpp -o /b/temp/csrc/cpu/coil_ops.o -fopenmp -DTORCH_EXTENSION_NAME=_C")
    probe = tmp_path / "probe.mk"
    probe.write_text(f"progress-probe:\n\t@printf '%s\\n' '{compile_line}' | $(NINJA_PROGRESS)\n")
    run = make("-s", "-f", "Makefile", "-f", str(probe), "progress-probe")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[2/4] compile /src/csrc/cpu/coil_ops.cpp"
