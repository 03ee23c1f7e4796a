"""Writing results without losing or half-writing files: atomic writes, output folders checked first.

- :func:`atomic_write` writes to a temporary file beside the target (flushed to disk) and renames it
  over the target with ``os.replace``: readers see the old file or the whole new one, never a part.
- Temporary files are named ``.mbdlfast-tmp.<host>-<pid>.<random>.<target name>`` (the target's
  suffix last, for writers that infer the format from it). A process killed in
  the middle of a write (``kill -9``) leaves one behind; :func:`remove_stale_temporaries` deletes
  those of this host whose process is gone, and every command calls it on its output folder at start.
- :func:`output_folder` checks that a folder can be written *before* the work, and removes it again
  if it created it and the work fails before anything was written (no empty folders from a failed
  run). :func:`output_file` does the same for a single output file's folder.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import tempfile
from pathlib import Path
from typing import IO, Iterator

TEMPORARY_PREFIX = ".mbdlfast-tmp."
_TEMPORARY = re.compile(r"^" + re.escape(TEMPORARY_PREFIX) + r"(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]+\..+$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _temporary_beside(path: Path) -> tuple[int, str]:
    return tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{_host()}-{os.getpid()}.", suffix=f".{path.name}",
                            dir=path.parent)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing (``mode`` "wb" or "w"); on a clean exit it is
    flushed, synced and renamed over ``path``; on an error it is deleted and ``path`` is untouched."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb', got {mode!r}")
    path = Path(path)
    descriptor, temporary = _temporary_beside(path)
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        with os.fdopen(descriptor, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that take a file name (h5py, matplotlib); renamed
    over ``path`` on a clean exit, deleted on an error."""
    path = Path(path)
    descriptor, temporary = _temporary_beside(path)
    os.close(descriptor)
    try:
        os.chmod(temporary, 0o666 & ~_umask())
        yield Path(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def write_json(path, payload: dict) -> Path:
    """``payload`` as indented JSON at ``path``, atomically. Non-finite floats become null (JSON has
    no NaN); numpy and 0-d torch scalars become numbers, paths strings."""
    with atomic_write(path, "w") as handle:
        json.dump(_plain(payload), handle, indent=1, allow_nan=False)
        handle.write("\n")
    return Path(path)


def _plain(value):
    """``value`` with JSON's types only (see :func:`write_json`)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # numpy or torch scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise TypeError(f"write_json: {type(value).__name__} is not JSON serialisable")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete the temporary files in ``folder`` left by killed writers of this host; returns them."""
    folder, host, removed = Path(folder), _host(), []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match and match["host"] == host and not _process_alive(int(match["pid"])) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (what mkdir -p would create)."""
    missing = None
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def check_writable(folder, role: str = "out") -> Path:
    """Create ``folder`` if needed and check that a file can be written in it; ValueError naming
    ``role`` otherwise."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{role}: {folder} is a file, expected a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ValueError(f"{role}: cannot write to {folder}: {err.strerror or err}") from err
    return folder


def _remove_if_empty(created: Path | None, folder: Path) -> None:
    """Remove ``folder`` and its parents up to ``created`` while they are empty."""
    if created is None:
        return
    for candidate in (folder, *folder.parents):
        try:
            candidate.rmdir()
        except OSError:
            return
        if candidate == created:
            return


@contextlib.contextmanager
def output_folder(folder, role: str = "out") -> Iterator[Path]:
    """The checked output ``folder`` (see :func:`check_writable`), its stale temporaries removed; if
    the body fails and the folder was created here, it is removed again while still empty."""
    folder = Path(folder)
    created = _first_missing(folder.resolve())
    check_writable(folder, role)
    remove_stale_temporaries(folder)
    try:
        yield folder
    except BaseException:
        _remove_if_empty(created, folder.resolve())
        raise


@contextlib.contextmanager
def output_file(path, role: str = "out") -> Iterator[Path]:
    """The checked output file ``path``: its folder as in :func:`output_folder`, and not a folder itself."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{role}: {path} is a folder, expected a file name")
    with output_folder(path.parent, role):
        yield path


def read_tagged_payload(path, role: str, tag: str, kind: str) -> dict:
    """The dict a torch file at ``path`` holds, written with ``"format": tag`` (a ticket, a GAN
    checkpoint): read on CPU with ``weights_only``; ValueError naming ``role`` and the file when it
    is missing, corrupt or not a ``kind``."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{role}: {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for corrupt or foreign files
        raise ValueError(f"{role}: {path} could not be read ({' '.join(str(err).split())[:160]})") from err
    if not isinstance(payload, dict) or payload.get("format") != tag:
        raise ValueError(f"{role}: {path} is not {kind}")
    return payload
