"""mbdlfast.outputs: atomic writes, stale temporaries of killed writers, output folders of failed runs."""
import json
import os
import signal
import subprocess
import sys

import pytest

from mbdlfast.outputs import (
    atomic_path,
    atomic_write,
    output_file,
    output_folder,
    remove_stale_temporaries,
    write_json,
)


def temporaries(folder):
    return sorted(path.name for path in folder.glob(".mbdlfast-tmp.*"))


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as handle:
            handle.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and not temporaries(tmp_path)
    with atomic_write(target, "w") as handle:
        handle.write("new")
    assert target.read_text() == "new" and not temporaries(tmp_path)


def test_atomic_path_keeps_the_suffix_for_format_guessing_writers(tmp_path):
    with atomic_path(tmp_path / "figure.png") as temporary:
        assert temporary.suffix == ".png" and temporary.parent == tmp_path
        temporary.write_bytes(b"png")
    assert (tmp_path / "figure.png").read_bytes() == b"png"


def test_write_json_turns_non_finite_numbers_into_null(tmp_path):
    path = write_json(tmp_path / "r.json", {"psnr": float("nan"), "rows": [1.5, float("inf")]})
    assert json.loads(path.read_text()) == {"psnr": None, "rows": [1.5, None]}


WRITER = """
import sys, time
from mbdlfast.outputs import atomic_write
with atomic_write(sys.argv[1]) as handle:
    handle.write(b"partial")
    handle.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_writer_killed_with_sigkill_leaves_a_temporary_that_the_next_start_removes(tmp_path):
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "checkpoint.pt")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "writing"
        live = temporaries(tmp_path)
        assert len(live) == 1
        assert remove_stale_temporaries(tmp_path) == []  # its writer is alive: kept
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert temporaries(tmp_path) == live and not (tmp_path / "checkpoint.pt").exists()
    removed = remove_stale_temporaries(tmp_path)
    assert [path.name for path in removed] == live and not temporaries(tmp_path)


def test_output_folder_created_for_a_failed_run_is_removed(tmp_path):
    out = tmp_path / "runs" / "new"
    with pytest.raises(ValueError, match="boom"):
        with output_folder(out):
            assert out.is_dir()
            raise ValueError("boom")
    assert not (tmp_path / "runs").exists()


def test_output_folder_keeps_what_existed_and_what_was_written(tmp_path):
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(ValueError):
        with output_folder(existing):
            raise ValueError("boom")
    assert existing.is_dir()
    out = tmp_path / "new"
    with pytest.raises(ValueError):
        with output_folder(out):
            (out / "first.h5").write_text("done")
            raise ValueError("the second volume failed")
    assert (out / "first.h5").is_file()


DYING_WRITER = """
import os, sys
from mbdlfast.outputs import atomic_write
with atomic_write(sys.argv[1]) as handle:
    handle.write(b"partial")
    os._exit(1)  # no clean-up runs, as after kill -9
"""


def test_output_folder_cleans_stale_temporaries_at_start(tmp_path):
    subprocess.run([sys.executable, "-c", DYING_WRITER, str(tmp_path / "x.h5")], check=False)
    assert len(temporaries(tmp_path)) == 1
    with output_folder(tmp_path):
        pass
    assert not temporaries(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to read-only folders")
def test_unwritable_folder_is_refused_before_any_work(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="out: cannot write"):
            with output_folder(locked / "sub"):
                pytest.fail("the body must not run")
    finally:
        locked.chmod(0o700)


def test_output_file_refuses_a_folder_and_a_file_as_folder(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        with output_file(tmp_path):
            pass
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        with output_file(tmp_path / "file" / "pruned.pt"):
            pass


def test_stale_removal_ignores_other_hosts_and_other_files(tmp_path):
    other_host = tmp_path / ".mbdlfast-tmp.otherhost-1.abc.x.pt"
    mine = tmp_path / "result.h5"
    for path in (other_host, mine):
        path.write_text("x")
    remove_stale_temporaries(tmp_path)
    assert other_host.exists() and mine.exists()
