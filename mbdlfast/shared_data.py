"""Where the real data of tests, benchmarks and examples live: one rule for every command and test.

``$MBDLFAST_SHARED_DATA`` if it is set, else ``../shared/data`` beside the repository (the folder
that holds this source checkout). The data are never part of the package (their licences forbid
redistribution); a missing folder or file gives :data:`MISSING` with the path that was looked for.
"""
from __future__ import annotations

import os
from pathlib import Path

ENVIRONMENT_VARIABLE = "MBDLFAST_SHARED_DATA"
MISSING = ("real data not found at {path} (set {variable} to the shared data folder, the one holding "
           "mri/ and images/; default: ../shared/data beside the repository)")


def shared_data_dir() -> Path:
    """``$MBDLFAST_SHARED_DATA``, else ``<repository>/../shared/data``; it may not exist."""
    if os.environ.get(ENVIRONMENT_VARIABLE):
        return Path(os.environ[ENVIRONMENT_VARIABLE])
    return Path(__file__).resolve().parents[2] / "shared" / "data"


def missing_message(path) -> str:
    """The one message every command and test gives when shared data are absent."""
    return MISSING.format(path=path, variable=ENVIRONMENT_VARIABLE)


def shared_data_path(*parts: str, must_exist: bool = True) -> Path:
    """``shared_data_dir() / parts...``; FileNotFoundError with :func:`missing_message` when absent."""
    path = shared_data_dir().joinpath(*parts)
    if must_exist and not (path.exists() or path.with_name(path.name + ".cfl").exists()):
        raise FileNotFoundError(missing_message(path))
    return path
