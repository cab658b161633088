"""Atomic writes: a killed writer's temporary file is cleaned up when the folder is next written."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from emolens.files import STALE_AFTER_S, TEMP_MARK, atomic_path, clean_stale_temps, write_text

REPO = Path(__file__).resolve().parents[1]
KILLED_WRITER = """
import sys, time
from emolens.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a checkpoint")
    print(tmp, flush=True)
    time.sleep(600)
"""


def test_a_killed_writers_temp_file_is_removed_on_the_next_write(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(tmp_path / "last.pt")], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
    leftover = Path(proc.stdout.readline().strip())
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert leftover.exists() and TEMP_MARK in leftover.name
    write_text(tmp_path / "history.csv", "epoch\n0\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv"]


def test_live_writers_and_other_files_are_left_alone(tmp_path: Path) -> None:
    (tmp_path / ".hidden").write_text("not ours")
    with atomic_path(tmp_path / "a.txt") as mine:
        mine.write_text("in progress")
        other_host = tmp_path / f".b{TEMP_MARK}1@another-host~x.txt"
        other_host.write_text("another machine's write in progress")
        assert clean_stale_temps(tmp_path) == []  # this process is alive; the other host may be
        old = time.time() - STALE_AFTER_S - 60
        os.utime(other_host, (old, old))
        assert clean_stale_temps(tmp_path) == [other_host]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "a.txt"]
