"""Every example in every command's --help runs, as written, from a checkout with the shared data beside it.

The examples are run in order (train, prune, finetune, ...: later ones use what earlier ones wrote)
in a scratch checkout: ``mbdlfast/`` links to this package (the shipped YAML recipes are read from
it) and ``../shared/data`` to the shared data. ``mbdlfast`` runs as ``python -m mbdlfast`` and
``torchrun`` as ``python -m torch.distributed.run`` on a free port.
"""
from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mbdlfast.cli import commands

REPO_ROOT = Path(__file__).resolve().parent.parent
ORDER = ("train", "prune", "finetune", "recon", "sr", "demo", "lip", "gan", "pun", "bench", "info")
NEEDS = {"prune": ("train",), "finetune": ("prune",)}


def help_examples(command) -> list[str]:
    """The example command lines of a command's --help (indented lines that run mbdlfast)."""
    lines = []
    epilog = command.epilog
    if command.name == "bench":
        from mbdlfast.commands.bench import _epilog

        epilog = _epilog()
    for line in epilog.splitlines():
        text = line.strip()
        if line.startswith("  ") and re.match(r"^([A-Z_]+=\S+ )*(mbdlfast|torchrun) ", text):
            lines.append(text.split("  #")[0].strip())
    return lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def argv_of(line: str) -> tuple[list[str], dict[str, str]]:
    """``line`` as an argv for this Python, and the environment assignments that lead it."""
    words, env = shlex.split(line), {}
    while "=" in words[0] and not words[0].startswith("-"):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if words[0] == "mbdlfast":
        return [sys.executable, "-m", "mbdlfast", *words[1:]], env
    rest = words[1:]
    return [sys.executable, "-m", "torch.distributed.run", "--master_port", str(_free_port()),
            *rest[:rest.index("-m")], "-m", *rest[rest.index("-m") + 1:]], env


class Examples:
    """The scratch checkout and which commands' examples ran there."""

    def __init__(self, root: Path, shared: Path):
        self.checkout = root / "checkout"
        self.checkout.mkdir()
        (self.checkout / "mbdlfast").symlink_to(REPO_ROOT / "mbdlfast")
        (root / "shared").mkdir()
        (root / "shared" / "data").symlink_to(shared)
        self.done: set[str] = set()
        self.by_name = {command.name: command for command in commands()}

    def run(self, name: str) -> None:
        for needed in NEEDS.get(name, ()):
            if needed not in self.done:
                self.run(needed)
        examples = help_examples(self.by_name[name])
        assert examples, f"mbdlfast {name} --help shows no examples"
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "2"}
        env.pop("MBDLFAST_SHARED_DATA", None)  # the examples rely on ../shared/data, as written
        for line in examples:
            argv, extra = argv_of(line)
            run = subprocess.run(argv, cwd=self.checkout, env={**env, **extra}, capture_output=True, text=True,
                                 timeout=600)
            assert run.returncode == 0, f"{line!r} failed ({run.returncode}):\n{run.stderr[-3000:]}"
            assert "Traceback" not in run.stderr, f"{line!r}:\n{run.stderr[-3000:]}"
        self.done.add(name)


@pytest.fixture(scope="module")
def examples(tmp_path_factory, shared_data):
    return Examples(tmp_path_factory.mktemp("examples"), shared_data)


def test_every_command_shows_examples():
    assert {command.name for command in commands()} == set(ORDER)
    for command in commands():
        assert help_examples(command), command.name


@pytest.mark.parametrize("name", ORDER)
def test_help_examples_run(examples, name):
    examples.run(name)
