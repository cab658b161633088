"""Inference on any machine and any input: thread-safe detectors, file names that are not UTF-8,
video frame limits, no telemetry files, and clean CLI errors instead of tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

from emolens.errors import LimitError
from emolens.images import load_image
from emolens.inference.detectors import create_detector, list_detectors
from emolens.inference.recognizer import Recognizer
from emolens.inference.video import analyze_video

REPO = Path(__file__).resolve().parents[1]
EMOLENS = [sys.executable, "-c", "from emolens.apps.cli import main; main()"]
PHOTOS = ("pyfeat_multi_face.jpg", "deepface_couple.jpg", "face_recognition_obama_and_biden.jpg")


def non_utf8(folder: Path, stem: bytes, suffix: str) -> Path:
    """A path in ``folder`` whose file name holds bytes that are not UTF-8."""
    return folder / os.fsdecode(stem + b"-\xff\xfe" + suffix.encode())


def run_cli(*args: object, timeout: float = 180, **kw) -> subprocess.CompletedProcess:
    """``emolens ARGS`` in a subprocess (a crash in native code must not take pytest down)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8:strict", **kw.pop("env", {})}
    return subprocess.run([*EMOLENS, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          errors="replace", timeout=timeout, env=env, **kw)


@pytest.mark.parametrize("name", list_detectors())
def test_detectors_give_the_same_boxes_concurrently(name: str, media: Path) -> None:
    detector = create_detector(name)
    images = [load_image(media / p) for p in PHOTOS]
    sequential = [[d.box for d in detector.detect(image)] for image in images]
    with ThreadPoolExecutor(4) as pool:
        jobs = [(i % 3, pool.submit(detector.detect, images[i % 3])) for i in range(36)]
        concurrent = [(i, [d.box for d in job.result()]) for i, job in jobs]
    wrong = sum(boxes != sequential[i] for i, boxes in concurrent)
    assert wrong == 0, f"{name}: {wrong} of {len(jobs)} concurrent calls gave other boxes"


def test_names_that_are_not_utf8_are_analysed(media: Path, tmp_path: Path) -> None:
    video = non_utf8(tmp_path, b"clip", ".mp4")
    photo = non_utf8(tmp_path, b"photo", ".jpg")
    shutil.copy(media / "pyfeat_single_face.mp4", video)
    shutil.copy(media / PHOTOS[0], photo)
    rec = Recognizer()
    assert len(rec.analyze(photo).faces) == 5
    out = tmp_path / "out"
    proc = run_cli("analyze", tmp_path, "--json", out / "r.json", "--csv", out / "r.csv", "--annotate", out / "ann")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 analysed, 0 failed" in proc.stdout
    results = json.loads((out / "r.json").read_text())["results"]
    assert sorted(r["source"] for r in results) == sorted([str(photo), str(video)])
    assert "\\udcff" in (out / "r.csv").read_text(encoding="utf-8")  # valid UTF-8, escaped name
    assert {p.suffix for p in (out / "ann").iterdir()} >= {".jpg", ".mp4", ".csv", ".png", ".json"}
    live = run_cli("live", "--source", video, "--no-window", "--out", tmp_path / "live", "--max-frames", "5")
    assert live.returncode == 0, live.stderr[-3000:]
    assert any(p.suffix == ".mp4" and p.stat().st_size > 0 for p in (tmp_path / "live").iterdir())


def test_video_frames_have_a_pixel_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (2000, 1500))
    for _ in range(3):
        writer.write(np.zeros((1500, 2000, 3), np.uint8))
    writer.release()
    with pytest.raises(LimitError, match="big.avi .frame size.: 2000x1500"):
        analyze_video(Recognizer(max_pixels=2_000_000), path)
    assert analyze_video(Recognizer(max_pixels=3_000_000), path).frames == 3
    proc = run_cli("analyze", path, "--max-pixels", "1000000")
    assert proc.returncode == 1 and "megapixels is over the limit" in proc.stderr  # the skipped input's error line


def test_no_onnxruntime_telemetry_files(media: Path, tmp_path: Path) -> None:
    home, temp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    code = f"import emolens; print(len(emolens.Recognizer().analyze({str(media / PHOTOS[0])!r}).faces))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HOME": str(home), "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and proc.stdout.strip() == "5", proc.stderr
    left = [p for p in (*home.rglob("*"), *temp.rglob("*"))]
    assert left == [], left  # ONNX Runtime 1.32 wrote ~/.cache/Microsoft/... and $TMPDIR/.ses


def test_onnxruntime_imported_first_gets_no_telemetry_from_emolens(media: Path, tmp_path: Path) -> None:
    """``import onnxruntime`` itself writes its device id, event database and session file (1.32, before
    any emolens code runs: nothing emolens can prevent); every session emolens creates then turns
    the events off, so the database holds no more than that import's own event."""
    import sqlite3

    def events_after(code: str, where: Path) -> int:
        home, temp = where / "home", where / "tmp"
        home.mkdir(parents=True)
        temp.mkdir()
        proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "HOME": str(home), "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 0, proc.stderr
        databases = list(home.rglob("onnxruntime.db"))
        if not databases:
            return 0
        with sqlite3.connect(databases[0]) as db:
            return db.execute("select count(*) from events").fetchone()[0]

    alone = events_after("import onnxruntime", tmp_path / "alone")
    with_emolens = events_after("import onnxruntime\nfrom emolens import Recognizer\n"
                                f"Recognizer(attributes='age').analyze({str(media / PHOTOS[0])!r})", tmp_path / "both")
    assert with_emolens <= alone


def test_cli_errors_are_one_line_and_skip_the_input(media: Path, tmp_path: Path) -> None:
    photo = media / PHOTOS[0]
    long_name = tmp_path / ("a" * 300 + ".jpg")
    folder_as_csv = tmp_path / "csv-folder"
    folder_as_csv.mkdir()
    cases = [
        (("analyze", long_name, photo, "--json", tmp_path / "r.json"), 1, "File name too long"),
        (("analyze", photo, "--csv", folder_as_csv), 2, "is a folder; expected a file path"),
        (("analyze", photo, "--model", REPO / "README.md"), 2, "not a usable ONNX model"),
        (("analyze", photo, "--batch-size", "0"), 2, "--batch-size"),
    ]
    for args, code, message in cases:
        proc = run_cli(*args)
        output = " ".join((proc.stdout + proc.stderr).split())
        assert proc.returncode == code and message in output, (args, proc.returncode, output[-2000:])
        assert "Traceback" not in proc.stderr, proc.stderr
    results = json.loads((tmp_path / "r.json").read_text())
    assert len(results["results"]) == 1 and "File name too long" in results["errors"][0]["error"]
