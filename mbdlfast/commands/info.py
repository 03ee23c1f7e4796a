"""``mbdlfast info``: versions, optional packages, the CPU instruction set and each op's backend here."""
from __future__ import annotations

import argparse

from mbdlfast.commands import Command


def run(args: argparse.Namespace) -> int:
    from mbdlfast.info import main as info_main

    return info_main()


EXAMPLES = """\
examples:
  mbdlfast info
  MBDLFAST_CPU_ISA=avx2 mbdlfast info

Prints the versions (torch, triton, torch-pruning, ...), the optional packages and which are missing,
the instruction set of the C++ CPU kernels, and per op which backend 'auto' picks here and why, then
every backend's availability.
"""

COMMAND = Command("info", "versions, optional packages, CPU instruction set, and which backend each op runs on here",
                  lambda parser: None, run, EXAMPLES)
