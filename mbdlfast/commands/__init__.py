"""The subcommands of the ``mbdlfast`` command line, one module each.

A module ``mbdlfast.commands.<name>`` defines ``COMMAND``: a :class:`Command` holding a function that
adds the command's arguments to its parser and a function that runs it and returns the exit status.
Modules import only argparse-level things at the top, so ``mbdlfast --help`` stays fast; the work is
imported inside ``run``. :mod:`mbdlfast.cli` lists the modules in :data:`mbdlfast.cli.COMMAND_MODULES`.

Bad input is reported by raising ``ValueError`` (or ``OSError``) with a message that names the
argument; :func:`mbdlfast.cli.main` prints it as one line and exits with :data:`EXIT_BAD_INPUT`.

Commands whose settings are a dataclass take them from ``--config FILE.yaml``, their flags and positional
``key=value`` overrides alike (:func:`add_settings_arguments`, :func:`settings_from_arguments`).
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Callable, Mapping

EXIT_BAD_INPUT = 2
EXIT_SOME_FAILED = 1  # a batch command finished, but some of its inputs failed and were skipped


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    epilog: str = ""


def add_settings_arguments(parser: argparse.ArgumentParser, flags: Mapping[str, tuple], noun: str) -> None:
    """``--config FILE.yaml``, one option per entry of ``flags`` and positional ``key=value`` overrides.

    ``flags`` maps an option to ``(setting, help)`` or ``(setting, help, {argparse keyword arguments})``;
    every option defaults to None (not given), so that :func:`settings_from_arguments` can tell what
    the command line set. ``noun`` names the settings in the help ("recon" -> "YAML file of recon settings").
    """
    parser.add_argument("--config", metavar="FILE.yaml", help=f"YAML file of {noun} settings")
    for flag, (setting, help_text, *options) in flags.items():
        extra = dict(options[0]) if options else {}
        if "action" not in extra and "choices" not in extra:  # those show their own forms
            extra.setdefault("metavar", setting.rsplit(".", 1)[-1].upper())
        parser.add_argument(flag, dest=setting, default=None, help=help_text, **extra)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=f"any {noun} setting, e.g. seed=1")


def settings_from_arguments(args: argparse.Namespace, flags: Mapping[str, tuple], settings_class,
                            required: tuple[str, ...] = ()):
    """The settings dataclass of the arguments added by :func:`add_settings_arguments`.

    Precedence: the class's defaults < ``--config`` < flags < ``key=value``; values are converted to the
    declared types by :func:`mbdlfast.training.config.load_settings`. ``settings_class`` may be a tuple
    of dataclasses, merged into one (fields of earlier classes win, so command-level fields and defaults
    go first). Settings named in ``required`` must end up not None. The result is built once more from
    its final values so that the class's ``__post_init__`` checks see them.
    """
    from mbdlfast.training.config import load_settings, parse_override

    if isinstance(settings_class, tuple):
        settings_class = dataclasses.make_dataclass(settings_class[0].__name__, [], bases=settings_class)
    given = {setting: getattr(args, setting) for setting, *_ in flags.values()}
    overrides = {key: value for key, value in given.items() if value is not None}
    overrides.update(parse_override(text) for text in args.overrides)
    settings = load_settings(settings_class, args.config, overrides)
    flag_of = {setting: flag for flag, (setting, *_) in flags.items()}
    for name in required:
        if getattr(settings, name) is None:
            raise ValueError(f"{name}: required; give {flag_of.get(name, name)}, {name}=... or set it in --config")
    return dataclasses.replace(settings)
