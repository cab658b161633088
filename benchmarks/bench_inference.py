"""Inference speed (and detector quality) on this machine's CPU; prints Markdown tables.

    .venv/bin/python benchmarks/bench_inference.py [--model extra.onnx] [--runs 50] [--json out.json]

* classification: ms per face at batch 1, faces/s at batch 64, for every model in emolens/weights
  (plus any --model); the `fer` package side by side when it is importable;
* detectors: ms per frame at 640×480 and 1280×720 (one face), faces found on the shared photos,
  false positives on the no-face cartoon, smallest face width found (real faces pasted at 20-96 px
  into a 640×480 frame);
* end to end: `emolens live --no-window` frames/s on a 640×480 version of pyfeat_single_face.mp4
  played ``--loops`` times in a row (annotated video and timeline written, as the command does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("EMOLENS_SHARED", REPO.parent / "shared")) / "media"
PHOTOS = {"pyfeat_multi_face": 5, "face_recognition_obama_and_biden": 2, "deepface_couple": 2}
SIZES = ((640, 480), (1280, 720))


def median_ms(fn, runs: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while (item := cap.read())[0]:
        out.append(item[1])
    return out


def bench_classifiers(paths: list[Path], runs: int, frame_bgr: np.ndarray) -> list[dict]:
    from emolens.inference.classifier import OnnxPredictor

    rows = []
    for path in paths:
        clf = OnnxPredictor(path)  # expression and age models alike
        s = clf.crop
        faces = np.random.default_rng(0).integers(0, 256, (64, s.size, s.size, s.channels), dtype=np.uint8)
        one = median_ms(lambda c=clf, f=faces: c.predict_proba(f[:1]), runs)
        batch = median_ms(lambda c=clf, f=faces: c.predict_proba(f), max(5, runs // 5))
        rows.append({"model": path.stem, "input": f"{s.size}x{s.size}x{s.channels}",
                     "ms_per_face_batch1": round(one, 3), "faces_per_s_batch64": round(64 / batch * 1000)})
    try:
        from fer import FER  # the `fer` package, when installed
    except ImportError:
        rows.append({"model": "fer (package)",
                     "note": "not installed here; see /work/shared/notes/peer-classifiers.md"})
    else:  # its public API detects and classifies: timed per 640x480 frame with one face
        fer = FER()
        rows.append({"model": "fer (package)", "note": "detect_emotions(), ms per 640x480 frame incl. its detector",
                     "ms_per_face_batch1": round(median_ms(lambda: fer.detect_emotions(frame_bgr), runs), 3)})
    return rows


def pasted_faces(photos: dict[str, np.ndarray]) -> list[np.ndarray]:
    """The 7 faces of two photos with context (found by BlazeFace), for the minimum-size test."""
    from emolens.inference.detectors import create_detector

    det = create_detector("blazeface")
    crops = []
    for name in ("pyfeat_multi_face", "face_recognition_obama_and_biden"):
        for d in det.detect(photos[name]):
            x1, y1, x2, y2 = d.box
            m = (x2 - x1) // 2
            crops.append((photos[name][max(0, y1 - m):y2 + m, max(0, x1 - m):x2 + m], x2 - x1))
    return crops


def bench_detectors(names: list[str], runs: int) -> list[dict]:
    from emolens.images import load_image
    from emolens.inference.detectors import create_detector

    photos = {name: load_image(MEDIA / f"{name}.jpg") for name in PHOTOS}
    cartoon = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames(MEDIA / "pyfeat_no_face.mp4")]
    face_frame = cv2.cvtColor(frames(MEDIA / "pyfeat_single_face.mp4")[36], cv2.COLOR_BGR2RGB)
    background = cv2.resize(cartoon[0], (640, 480))
    crops = pasted_faces(photos)
    rows = []
    for name in names:
        det = create_detector(name)
        row: dict = {"detector": name}
        for w, h in SIZES:
            frame = cv2.resize(face_frame, (w, h))
            row[f"ms_{w}x{h}"] = round(median_ms(lambda d=det, f=frame: d.detect(f), runs), 2)
        sample = [cv2.resize(f, (640, 480)) for f in cartoon[::10]]
        per_sample = median_ms(lambda d=det, s=sample: [d.detect(f) for f in s], 3, 1)
        row["ms_640x480_no_face"] = round(per_sample / len(sample), 2)
        found = {p: len(det.detect(img)) for p, img in photos.items()}
        row["found"] = f"{sum(min(found[p], n) for p, n in PHOTOS.items())}/{sum(PHOTOS.values())}"
        row["extra_on_photos"] = sum(max(0, found[p] - n) for p, n in PHOTOS.items())
        row["fp_cartoon_frames"] = f"{sum(len(det.detect(f)) for f in cartoon)}/{len(cartoon)}"
        for width in (20, 24, 32, 40, 48, 64):
            hits = 0
            for crop, face_w in crops:
                small = cv2.resize(crop, None, fx=width / face_w, fy=width / face_w, interpolation=cv2.INTER_AREA)
                f = background.copy()
                ch, cw = small.shape[:2]
                f[200:200 + ch, 300:300 + cw] = small
                centres = [((d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2) for d in det.detect(f)]
                hits += any(300 <= x <= 300 + cw and 200 <= y <= 200 + ch for x, y in centres)
            row[f"found_{width}px"] = f"{hits}/{len(crops)}"
        rows.append(row)
    return rows


def bench_live(model: Path, detector: str, tmp: Path, loops: int) -> dict:
    from emolens.apps.live import run_live
    from emolens.inference.recognizer import Recognizer

    src = tmp / "single_640x480.mp4"
    if not src.exists():
        writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
        for _ in range(loops):
            for f in frames(MEDIA / "pyfeat_single_face.mp4"):
                writer.write(cv2.resize(f, (640, 480)))
        writer.release()
    rec = Recognizer(model=model, detector=detector)
    run_live(rec, str(src), out_dir=tmp / "warm", window=False, max_frames=10)
    run = run_live(rec, str(src), out_dir=tmp / "out", window=False)
    return {"model": model.stem, "detector": detector,
            "frames_with": getattr(rec, "stream_detector", rec.detector).name,
            "frames": run.result.processed,
            "fps_end_to_end": round(run.processed_fps, 1), "ms_per_frame": round(1000 / run.processed_fps, 2)}


def table(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", default=[], help="extra .onnx model(s) to time")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--detector", action="append", help="detector(s) to measure (default: all)")
    parser.add_argument("--only", choices=("classification", "detectors", "live"), help="run one part")
    parser.add_argument("--loops", type=int, default=4, help="live: times the 2.4 s clip is played (default 4)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    from emolens.inference.classifier import DEFAULT_MODEL, WEIGHTS
    from emolens.inference.detectors import list_detectors
    from emolens.inference.runtime import cpu_threads

    models = sorted(WEIGHTS.glob("*.onnx")) + args.model
    if not models:
        sys.exit("no model: add emolens/weights/*.onnx or pass --model PATH")
    print(f"CPU: {os.cpu_count()} cores, {cpu_threads()} ONNX Runtime threads; median of {args.runs} runs\n")
    detectors = args.detector or list_detectors()
    results = {}
    if args.only in (None, "classification"):
        frame = cv2.resize(frames(MEDIA / "pyfeat_single_face.mp4")[36], (640, 480))
        results["classification"] = bench_classifiers(models, args.runs, frame)
        print("## Classification\n\n" + table(results["classification"]) + "\n")
    if args.only in (None, "detectors"):
        results["detectors"] = bench_detectors(detectors, args.runs)
        print("## Detectors\n\n" + table(results["detectors"]) + "\n")
    if args.only in (None, "live"):
        with tempfile.TemporaryDirectory() as tmp:
            default = WEIGHTS / f"{DEFAULT_MODEL}.onnx"  # the live loop is timed with the default model
            live_model = default if default.is_file() else models[0]
            results["live"] = [bench_live(live_model, d, Path(tmp), args.loops) for d in detectors]
        print("## live --no-window, 640x480, one face\n\n" + table(results["live"]) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
