"""``mbdlfast info``: versions, and which backends can run each op here."""
from __future__ import annotations

import argparse

from mbdlfast.commands import Command


def run(args: argparse.Namespace) -> int:
    from mbdlfast.info import main as info_main

    return info_main()


COMMAND = Command("info", "versions, and which backends can run each op here", lambda parser: None, run)
