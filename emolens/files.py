"""Atomic file writes, shared by every layer (torch-free).

A file is written to a temporary sibling and moved over its target with ``os.replace``: a killed
process leaves either the previous file or the new one, never a partial file. The temporary
files a killed process leaves behind (``.NAME.emolens-tmp-PID@HOST~*``) are removed when emolens
next writes into that folder, once their process is gone (or after a day, for other hosts).
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()  # mkstemp creates 0600 files; outputs are ordinary files
TEMP_MARK = ".emolens-tmp-"
_HOST = socket.gethostname()
_TEMP_NAME = re.compile(r"^\..*" + re.escape(TEMP_MARK) + r"(\d+)@(.*?)~")
#: A temp file this old is stale even if its process id lives again (ids are reused) or it
#: comes from another host sharing the folder.
STALE_AFTER_S = 24 * 3600
_cleaned: set[str] = set()  # folders already cleaned by this process


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def clean_stale_temps(folder: str | Path) -> list[Path]:
    """Remove temporary files of atomic writes whose process on this host is gone (killed
    mid-write) or that are older than ``STALE_AFTER_S``; returns what was removed."""
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        found = _TEMP_NAME.match(entry.name)
        if found is None:
            continue
        try:
            gone = found.group(2) == _HOST and not _alive(int(found.group(1)))
            stale = gone or now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue  # removed meanwhile by another writer, or not ours to remove
    return removed


def make_folder(folder: str | Path) -> Path:
    """``mkdir -p folder``, failing with NotADirectoryError (not FileExistsError) when a file
    stands where a folder is asked for."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(folder)) from None
    return folder


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` (same suffix, so writers that pick a format by
    extension still work); on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    make_folder(path.parent)
    if str(path.parent) not in _cleaned:
        clean_stale_temps(path.parent)
        _cleaned.add(str(path.parent))
    prefix = f".{path.stem[:64]}{TEMP_MARK}{os.getpid()}@{_HOST}~"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _FILE_MODE)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: str | Path, write: Callable[[str], Any]) -> Path:
    """Call ``write(tmp_path)``, then move the result over ``path``."""
    with atomic_path(path) as tmp:
        write(str(tmp))
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; file names that are not valid UTF-8 (lone
    surrogates from ``os.fsdecode``) are written with backslash escapes."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8", errors="backslashreplace"))


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2) + "\n")
