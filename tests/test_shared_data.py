"""One rule for the shared data in every command and test: $MBDLFAST_SHARED_DATA, else ../shared/data."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mbdlfast import shared_data
from mbdlfast.dip import KNOWN_IMAGES

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_the_variable_wins_and_the_default_is_beside_the_repository(monkeypatch, tmp_path):
    monkeypatch.delenv(shared_data.ENVIRONMENT_VARIABLE, raising=False)
    assert shared_data.shared_data_dir() == REPO_ROOT.parent / "shared" / "data"
    monkeypatch.setenv(shared_data.ENVIRONMENT_VARIABLE, str(tmp_path))
    assert shared_data.shared_data_dir() == tmp_path
    with pytest.raises(FileNotFoundError) as missing:
        shared_data.shared_data_path("mri", "auto-espirit", "brain_clean")
    assert str(missing.value) == shared_data.missing_message(tmp_path / "mri" / "auto-espirit" / "brain_clean")


def run(argv, tmp_path):
    env = {**os.environ, shared_data.ENVIRONMENT_VARIABLE: str(tmp_path / "nowhere")}
    return subprocess.run([sys.executable, *argv], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_commands_and_examples_give_the_same_message_when_it_is_absent(tmp_path):
    image = tmp_path / "nowhere" / "images" / KNOWN_IMAGES["f16"]
    expected = shared_data.missing_message(image)
    lip = run(["-m", "mbdlfast", "lip", "--image", "F16", "--rounds", "1", "--iters", "1", "--out",
               str(tmp_path / "out")], tmp_path)
    assert lip.returncode == 2 and expected in lip.stderr and lip.stderr.count("\n") == 1, lip.stderr
    example = run(["examples/lip_ticket.py"], tmp_path)
    assert example.returncode != 0 and expected in example.stderr


def test_the_test_suite_skips_with_that_message(monkeypatch, tmp_path):
    import conftest

    monkeypatch.setattr(conftest, "SHARED_DATA", tmp_path / "absent")
    with pytest.raises(pytest.skip.Exception) as skipped:
        conftest.shared_data.__wrapped__()
    assert str(skipped.value) == shared_data.missing_message(tmp_path / "absent")
