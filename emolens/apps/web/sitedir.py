"""A folder written whole (``emolens export-web``): built in a temporary sibling, then swapped in.

Nothing is written through the destination: a symbolic link as the destination is refused, the
new folder is complete before it takes the destination's name, and an earlier folder is moved
aside by renaming it (links inside it are never followed). A manifest (``.emolens-export.json``)
lists the files emolens wrote, so a later ``--force`` knows an earlier export from a folder that
holds someone's files: an earlier export is replaced, anything else is refused, or with ``--force``
kept whole beside the new folder (``DEST.previous``), never deleted.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emolens.files import make_folder

MANIFEST = ".emolens-export.json"


def _foreign(dest: Path) -> list[str]:
    """Entries of ``dest`` its manifest does not list (links always count), as relative paths."""
    try:
        listed = set(json.loads((dest / MANIFEST).read_text(encoding="utf-8"))["files"])
    except (OSError, ValueError, KeyError, TypeError):
        listed = set()
    if (dest / MANIFEST).is_symlink():
        listed = set()
    foreign = []
    for root, dirs, files in os.walk(dest):  # does not descend into links
        for name in sorted(dirs + files):
            path = Path(root, name)
            rel = path.relative_to(dest).as_posix()
            if path.is_symlink() or (name in files and rel not in listed and rel != MANIFEST):
                foreign.append(rel)
    return foreign


def _aside(dest: Path) -> Path:
    """A free sibling name for the destination's previous contents."""
    n = 1
    while (candidate := dest.with_name(f"{dest.name}.previous{'' if n == 1 else f'-{n}'}")).exists():
        n += 1
    return candidate


def _check(dest: Path, force: bool) -> str:
    """What ``dest`` holds: ``absent``, ``empty``, ``ours`` (an earlier export) or ``foreign``;
    FileExistsError when it may not be replaced."""
    if dest.is_symlink():
        raise FileExistsError(f"{dest} is a symbolic link; give the folder itself (emolens never writes through links)")
    if not dest.exists():
        return "absent"
    if not dest.is_dir():
        raise FileExistsError(f"{dest} is a file; expected a folder to write the page into")
    if not any(dest.iterdir()):
        return "empty"
    foreign = _foreign(dest)
    if not foreign:
        if not force:
            raise FileExistsError(f"{dest} is not empty: it holds an earlier export; pass --force to replace it")
        return "ours"
    if not force:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise FileExistsError(f"{dest} is not empty: it holds files emolens did not write ({shown}); choose an "
                              f"empty folder, or pass --force to write the page there and keep the folder's "
                              f"contents as they are in {_aside(dest).name}")
    return "foreign"


@contextmanager
def fresh_folder(dest: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty folder beside ``dest`` to write into. When the block succeeds it becomes
    ``dest`` (previous contents that are not an earlier export are kept beside it, with a warning
    naming where); when it fails nothing of ``dest`` has changed."""
    dest = Path(dest)
    kind = _check(dest, force)
    make_folder(dest.parent)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.emolens-tmp-", dir=dest.parent))
    try:
        yield tmp
        files = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
        (tmp / MANIFEST).write_text(json.dumps({"files": files}, indent=1) + "\n", encoding="utf-8")
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the page is an ordinary folder
        if kind == "empty":
            dest.rmdir()
        elif kind == "foreign":
            aside = _aside(dest)
            dest.rename(aside)
            warnings.warn(f"{dest} held files emolens did not write: the folder is kept as it was in {aside}",
                          UserWarning, stacklevel=3)
        elif kind == "ours":
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.emolens-old-", dir=dest.parent))
            dest.rename(old / dest.name)
        tmp.rename(dest)
        if kind == "ours":
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
