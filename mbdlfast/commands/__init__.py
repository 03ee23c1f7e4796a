"""The subcommands of the ``mbdlfast`` command line, one module each.

A module ``mbdlfast.commands.<name>`` defines ``COMMAND``: a :class:`Command` holding a function that
adds the command's arguments to its parser and a function that runs it and returns the exit status.
Modules import only argparse-level things at the top, so ``mbdlfast --help`` stays fast; the work is
imported inside ``run``. :mod:`mbdlfast.cli` lists the modules in :data:`mbdlfast.cli.COMMAND_MODULES`.

Bad input is reported by raising ``ValueError`` (or ``OSError``) with a message that names the
argument; :func:`mbdlfast.cli.main` prints it as one line and exits with :data:`EXIT_BAD_INPUT`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    epilog: str = ""
