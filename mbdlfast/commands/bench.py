"""``mbdlfast bench``: run one of the benchmark scripts of a source checkout (benchmarks/bench_NAME.py).

The benchmarks are not installed with the package: they live next to it in the repository, so this
command finds ``benchmarks/`` beside the package folder and runs the script in a fresh Python (with
the checkout first on PYTHONPATH) with the remaining arguments; its exit status is returned.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

from mbdlfast.commands import Command

BENCHMARKS_DIR = Path(__file__).resolve().parent.parent.parent / "benchmarks"
PREFIX = "bench_"


def available() -> dict[str, Path]:
    """Benchmark name -> script, from benchmarks/bench_NAME.py of the source checkout (empty if none)."""
    if not (BENCHMARKS_DIR / "common.py").is_file():
        return {}
    return {path.stem[len(PREFIX):]: path for path in sorted(BENCHMARKS_DIR.glob(f"{PREFIX}*.py"))}


def _summary(script: Path) -> str:
    """The first line of the script's docstring."""
    try:
        docstring = ast.get_docstring(ast.parse(script.read_text())) or ""
    except (OSError, SyntaxError, UnicodeDecodeError):
        return ""
    return docstring.strip().splitlines()[0] if docstring.strip() else ""


def _epilog() -> str:
    scripts = available()
    if not scripts:
        return f"no benchmarks found: they run from a source checkout (looked for {BENCHMARKS_DIR})"
    width = max(map(len, scripts))
    lines = [f"  {name:<{width}}  {_summary(script)}" for name, script in scripts.items()]
    return ("benchmarks (benchmarks/bench_NAME.py):\n" + "\n".join(lines) + "\n\nexamples:\n"
            "  mbdlfast bench sense --quick --shapes 4x32x32 --repeats 3\n"
            "  mbdlfast bench deq --quick --coils 4 --height 32 --width 32 --repeats 1\n"
            "  mbdlfast bench e2e --help\n\n"
            "A full run writes benchmarks/results/<name>_<device>.json and its PNGs (the committed results);\n"
            "a --quick run writes to ./bench_out (or --out DIR) and never into benchmarks/results.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _epilog()
    parser.add_argument("name", metavar="NAME", help="benchmark to run (listed below)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed on to the benchmark script")


def run(args: argparse.Namespace) -> int:
    import os
    import subprocess
    import sys

    scripts = available()
    if not scripts:
        raise ValueError(f"NAME: benchmarks run from a source checkout of mbdlfast; {BENCHMARKS_DIR} "
                         "has none (clone the repository and install it with pip install -e .)")
    if args.name not in scripts:
        raise ValueError(f"NAME: no benchmark {args.name!r}; available: {', '.join(scripts)}")
    # the script imports the mbdlfast of this checkout, whatever the installed one
    paths = [str(BENCHMARKS_DIR.parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    return subprocess.run([sys.executable, str(scripts[args.name]), *args.args], env=env, check=False).returncode


COMMAND = Command("bench", "run a benchmark script of the source checkout (benchmarks/bench_NAME.py)",
                  add_arguments, run)
