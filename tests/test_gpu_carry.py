"""scripts/gpu_carry.sh: files cut into parts here come back byte for byte there, in any order."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_carry.sh"


def carry(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60)


@pytest.fixture()
def parts(tmp_path: Path) -> tuple[dict[str, bytes], list[Path]]:
    src = tmp_path / "src"
    src.mkdir()
    files = {"a.npz": os.urandom(2_500_000), "votes.csv": b"image,votes\n" * 1000}
    for name, data in files.items():
        (src / name).write_bytes(data)
    done = carry("split", tmp_path / "out", 1, *(src / n for n in files))
    assert done.returncode == 0, done.stderr
    made = sorted((tmp_path / "out").glob("part-*"))
    assert [p.name for p in made] == ["part-00", "part-01", "part-02"]
    assert all(sum(f.stat().st_size for f in p.glob("chunk.*")) <= 1 << 20 for p in made)
    return files, made


def test_parts_join_in_any_order(tmp_path: Path, parts: tuple[dict[str, bytes], list[Path]]) -> None:
    files, made = parts
    dest = tmp_path / "dest"
    order = made[:]
    random.Random(0).shuffle(order)
    order.insert(1, order[0])  # a part sent twice
    for i, part in enumerate(order[:-1]):
        done = carry("join", part, dest)
        assert done.returncode == 0, done.stderr
        assert "of 3 parts" in done.stdout, (i, done.stdout)
    done = carry("join", order[-1], dest)
    assert done.returncode == 0, done.stderr
    assert {p.name: p.read_bytes() for p in dest.iterdir()} == files


def test_a_damaged_part_is_refused(tmp_path: Path, parts: tuple[dict[str, bytes], list[Path]]) -> None:
    _, made = parts
    chunk = next(made[1].glob("chunk.*"))
    data = bytearray(chunk.read_bytes())
    data[100] ^= 0xFF
    chunk.write_bytes(bytes(data))
    dest = tmp_path / "dest"
    results = [carry("join", part, dest) for part in made]
    assert results[-1].returncode == 1
    assert "do not add up" in results[-1].stderr
    assert not (dest / "a.npz").exists()


def test_bad_arguments_name_what_is_wrong(tmp_path: Path) -> None:
    done = carry("split", tmp_path / "out", 1, tmp_path / "missing.npz")
    assert done.returncode == 2 and "missing.npz is not a file" in done.stderr
    done = carry("join", tmp_path, tmp_path / "dest")
    assert done.returncode == 2 and "not made by gpu_carry.sh split" in done.stderr
