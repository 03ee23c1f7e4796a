"""The ``mbdlfast`` command line (also ``python -m mbdlfast``).

Each subcommand is a module of :mod:`mbdlfast.commands` defining ``COMMAND``; to add one, write the
module and list its name in :data:`COMMAND_MODULES`. Bad input ends the program with exit status 2
and a one-line ``mbdlfast <command>: error: ...`` on stderr.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from mbdlfast.commands import EXIT_BAD_INPUT, Command


class _OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line, like every other bad-input error of the CLI."""

    def error(self, message: str):
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


COMMAND_MODULES = ("demo", "train", "prune", "finetune", "recon", "sr", "bench", "lip", "gan", "pun", "info")


def commands() -> list[Command]:
    """The :class:`Command` of every module in :data:`COMMAND_MODULES`, in that order."""
    return [importlib.import_module(f"mbdlfast.commands.{name}").COMMAND for name in COMMAND_MODULES]


# ----------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="mbdlfast", description="Fast model-based deep learning for multicoil MRI.",
                            epilog="run 'mbdlfast <command> --help' for a command's options and examples")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(title="commands", metavar="<command>", required=True)
    for command in commands():
        sub = subparsers.add_parser(command.name, help=command.help, description=command.help, epilog=command.epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        command.add_arguments(sub)
        sub.set_defaults(command=command)
    return parser


def _configure_logging(verbose: bool) -> None:
    rank = int(os.environ.get("RANK", "0") or 0)
    level = logging.DEBUG if verbose else (logging.INFO if rank == 0 else logging.WARNING)
    prefix = f"[rank {rank}] " if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else ""
    logging.basicConfig(level=level, format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mbdlfast`` script; returns the exit status."""
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    try:
        return args.command.run(args)
    except (ValueError, OSError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"mbdlfast {args.command.name}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
