"""scripts/gpu_lease.sh: a teacher lease started in the background, waited for and collected,
here on the CPU (DEVICE=cpu) with a cross-fitted teacher on a small FER2013 subset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_lease.sh"


def lease(*args: str | Path, timeout: int = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEVICE": "cpu", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # gpu_teachers.sh runs python3
    return subprocess.run(["bash", str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=env)


def test_usage_errors():
    assert lease("fly").returncode == 2
    assert "expected WORK BUDGET_S" in lease("start", "/tmp/x", "10").stderr
    assert lease("wait", "/tmp/x").returncode == 2


def test_start_wait_collect(fer_small: Path, tmp_path: Path):
    work, out = tmp_path / "work", tmp_path / "out"
    teacher = "a|mini-xception --holdout 0/2 --workers 1 --batch-size 32"
    # the budget covers a slow machine: the two-epoch timing run and torch's start-up come out of it
    started = lease("start", work, 20, fer_small, fer_small, teacher, timeout=10)  # returns at once
    assert started.returncode == 0, started.stderr
    again = lease("start", work, 20, fer_small, fer_small, teacher)
    assert again.returncode == 1 and "already running" in again.stderr
    waited = lease("wait", work, 240, timeout=300)
    assert "teacher outputs written" in waited.stdout, waited.stdout + (work / "lease.log").read_text()
    collected = lease("collect", work, out)
    assert collected.returncode == 0, collected.stderr
    report = json.loads((out / "teacher.json").read_text())
    assert report["holdout"] == ["0/2"] and report["val"]["fer2013-30-8"]["n"] == 56
    with np.load(out / "teacher.npz") as z:
        held = ~np.isnan(z["probs"][0, :, 0])
    assert held.sum() == report["train"]["fer2013-30-8"]["ensemble"]["n"] + 56  # its held-out fold and validation
    with tarfile.open(out / "runs.tgz") as tar:
        names = set(tar.getnames())
    assert {"lease.log", "out/commands.txt", "out/runs/a.log", "out/runs/a/history.csv"} <= names
    assert not any(n.endswith(".pt") for n in names)  # no checkpoints (optimiser states, pickles) come back
    weights = out / "a.onnx"  # the teacher itself, as float16-weight ONNX, small enough for one device call
    assert weights.is_file() and weights.stat().st_size < 16 << 20
    from emolens.inference.classifier import EmotionClassifier

    assert EmotionClassifier(weights).model_name == "mini-xception"
