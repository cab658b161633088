"""Files and folders without permission (issue 10, defect 13): ``emolens analyze`` and the Python
API report a folder they cannot list, a file they cannot read and an output folder they cannot
write in one line each, analyse everything else and never show a traceback.

Root may read and write anything, so as root the commands run as ``nobody`` (uid 65534)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534
API = """
import sys
from emolens.errors import InputError
from emolens.inference.recognizer import Recognizer
try:
    Recognizer().analyze(sys.argv[1])
except InputError as e:
    print(f"InputError: {e}")
"""


def unprivileged() -> list[str]:
    """The command prefix that runs a child as ``nobody`` when we are root (nothing otherwise)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot test permissions")
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture
def world(media: Path) -> Iterator[Path]:
    """in/ok.jpg (readable), in/no-read.jpg (mode 000), in/locked/ (mode 000, a photo inside),
    read-only/ (mode 555) and home/. Not under pytest's tmp_path: that folder is private to its owner."""
    base = Path(tempfile.mkdtemp(prefix="emolens-permissions-"))
    base.chmod(0o777)
    (base / "in" / "locked").mkdir(parents=True)
    (base / "home").mkdir()
    (base / "read-only").mkdir()
    photo = media / "pyfeat_multi_face.jpg"
    for dest in ("in/ok.jpg", "in/no-read.jpg", "in/locked/inside.jpg"):
        shutil.copy(photo, base / dest)
        (base / dest).chmod(0o644)
    for folder in ("in", "home"):
        (base / folder).chmod(0o777)
    (base / "in" / "no-read.jpg").chmod(0)
    (base / "in" / "locked").chmod(0)
    (base / "read-only").chmod(0o555)
    try:
        probe = subprocess.run([*unprivileged(), sys.executable, "-c", "import emolens.apps.cli"], cwd=base,
                               capture_output=True, timeout=60)
        if probe.returncode != 0:
            pytest.skip(f"emolens cannot be imported as an unprivileged user here: {probe.stderr[-300:]!r}")
        yield base
    finally:
        for p in (base / "in" / "locked", base / "in" / "no-read.jpg", base / "read-only"):
            p.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def run(world: Path, *args: object) -> tuple[subprocess.CompletedProcess, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(world / "home"),
           "EMOLENS_CACHE": str(world / "home" / "cache"), "PYTHONIOENCODING": "utf-8"}
    proc = subprocess.run([*unprivileged(), sys.executable, *map(str, args)], cwd=world, capture_output=True,
                          text=True, errors="replace", timeout=180, env=env)
    return proc, " ".join((proc.stdout + proc.stderr).split())


def test_unreadable_inputs_are_reported_and_skipped(world: Path) -> None:
    cli = ("-c", "from emolens.apps.cli import main; main()", "analyze")
    proc, output = run(world, *cli, world / "in", "--json", world / "home" / "r.json")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1, output[-2000:]
    assert f"{world / 'in' / 'locked'}: cannot be read: Permission denied" in output
    assert f"{world / 'in' / 'no-read.jpg'}: cannot be read: Permission denied" in output
    report = json.loads((world / "home" / "r.json").read_text())
    assert [r["source"] for r in report["results"]] == [str(world / "in" / "ok.jpg")]
    assert len(report["results"][0]["faces"]) == 5
    assert sorted(e["source"] for e in report["errors"]) == [str(world / "in" / n) for n in ("locked", "no-read.jpg")]
    assert all("Permission denied" in e["error"] and "\n" not in e["error"] for e in report["errors"])

    api, output = run(world, "-c", API, world / "in" / "no-read.jpg")
    assert api.returncode == 0 and "Traceback" not in api.stderr, api.stderr[-3000:]
    assert f"InputError: {world / 'in' / 'no-read.jpg'}: cannot be read: Permission denied" in output


def test_outputs_that_cannot_be_written_are_one_line(world: Path) -> None:
    cli = ("-c", "from emolens.apps.cli import main; main()", "analyze", world / "in" / "ok.jpg")
    proc, output = run(world, *cli, "--json", world / "read-only" / "r.json")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode in (1, 2) and "cannot write the results" in output and "Permission denied" in output, output

    proc, output = run(world, *cli, "--annotate", world / "read-only" / "annotated")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1 and "Permission denied" in output, output[-2000:]
    assert "1 analysed" in output  # the faces were still found and reported


def test_export_web_into_a_folder_without_permission_is_one_line(world: Path) -> None:
    """Issue 26: export-web printed a PermissionError traceback (any OSError is one line now)."""
    proc, output = run(world, "-c", "from emolens.apps.cli import main; main()", "export-web", world / "read-only" / "page")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "Permission denied" in output and str(world / "read-only") in output, output[-1000:]
    assert not any((world / "read-only").iterdir())
