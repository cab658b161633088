"""Face-detector candidates compared on recall, false positives, speed and the emotions they lead to.

    .venv/bin/python benchmarks/bench_detectors.py [--muxspace DIR] [--limit N] [--runs 30] [--json out.json]

* muxspace-dev (2,324 in-the-wild close-ups, 160×160; unzip ../shared/datasets/muxspace-dev.zip):
  share of images where at least one face is found, ms per image, and the accuracy of the
  bundled default model on the largest face found (shared classes; a miss counts as wrong);
* the three photos of ../shared/media: faces found of 10 hand-marked ones (the girl at the edge of
  the Obama/Biden photo included), detections that match no face ("extra");
* false positives: detections over all 95 frames of pyfeat_no_face.mp4 (a cartoon);
* small faces: the 7 faces of two photos pasted 24-64 px wide into a 640×480 cartoon frame;
* group photos' hard faces: the group photo cropped through its two outer faces (40 % and 30 % of
  them left in the picture: "cut"), and the group photo 0.6× in a corner of a 4000×3000 frame
  (~55 px faces where the first pass sees ~9 px: "small_4000x3000");
* speed: median ms per 640×480 frame with one face (pyfeat_single_face.mp4) and per 640×480
  cartoon frame (no face: where fallback chains pay their second pass). Candidates are timed
  interleaved, so background load hits them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from bench_inference import table  # this folder is on sys.path when a benchmark runs as a script

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOLENS_SHARED", REPO.parent / "shared"))
MEDIA = SHARED / "media"
DEFAULT_MUXSPACE = REPO.parent / "data" / "muxspace-dev"

#: Hand-marked faces (x1, y1, x2, y2) in the shared photos; a detection whose centre falls in one counts.
FACES = {
    "pyfeat_multi_face": [(218, 63, 310, 180), (315, 236, 409, 358), (439, 216, 520, 318), (529, 307, 630, 432),
                          (682, 290, 790, 420)],
    "face_recognition_obama_and_biden": [(740, 380, 950, 650), (1130, 350, 1340, 610), (1620, 1030, 1790, 1240)],
    "deepface_couple": [(330, 480, 1040, 1300), (1380, 270, 2120, 1090)],
}

#: label → ``create_detector`` arguments, or a fallback chain of such (label, arguments) parts.
CANDIDATES: dict[str, tuple[str, dict] | list[tuple[str, dict]]] = {
    "blazeface": ("blazeface", {}),
    "blazeface-short": ("blazeface-short", {}),
    "yunet (max_side 640)": ("yunet", {"max_side": 640}),
    "yunet, max_side 320": ("yunet", {"max_side": 320}),
    "yunet, max_side 1280": ("yunet", {"max_side": 1280}),
    "yunet-tiled (photo default)": ("yunet-tiled", {}),
    "haar": ("haar", {}),
    "blazeface,blazeface-short": [("blazeface", {}), ("blazeface-short", {})],
    "blazeface,yunet (320)": [("blazeface", {}), ("yunet", {"max_side": 320})],
    "blazeface,yunet (640)": [("blazeface", {}), ("yunet", {"max_side": 640})],
    "yunet (640),blazeface": [("yunet", {"max_side": 640}), ("blazeface", {})],
    "none (whole image)": ("none", {}),
}
SMALL_FACES = (24, 32, 40, 48, 64)


class PaddedSecondPass:
    """BlazeFace, then BlazeFace again on the frame shrunk into a ``pad``× larger black canvas."""

    def __init__(self, pad: float = 3.0):
        from emolens.inference.detectors import create_detector

        self.inner = create_detector("blazeface")
        self.pad = pad
        self.name = f"blazeface + padded {pad:g}x pass"

    def detect(self, image_rgb: np.ndarray) -> list:
        from emolens.boxes import clip_box
        from emolens.inference.detectors import Detection

        found = self.inner.detect(image_rgb)
        if found:
            return found
        h, w = image_rgb.shape[:2]
        ch, cw = int(h * self.pad), int(w * self.pad)
        y, x = (ch - h) // 2, (cw - w) // 2
        canvas = np.zeros((ch, cw, 3), np.uint8)
        canvas[y:y + h, x:x + w] = image_rgb
        out = []
        for d in self.inner.detect(canvas):
            box = clip_box((d.box[0] - x, d.box[1] - y, d.box[2] - x, d.box[3] - y), w, h)
            if box is not None:
                out.append(Detection(box, d.score))
        return out


def build(label: str):
    from emolens.inference.detectors import FallbackChain, create_detector

    if label.startswith("blazeface + padded"):
        return PaddedSecondPass()
    spec = CANDIDATES[label]
    if isinstance(spec, list):
        return FallbackChain([create_detector(name, **opts) for name, opts in spec])
    return create_detector(spec[0], **spec[1])


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while (item := cap.read())[0]:
        out.append(cv2.cvtColor(item[1], cv2.COLOR_BGR2RGB))
    cap.release()
    if not out:
        raise SystemExit(f"{path}: no frames could be read (expected the shared media video)")
    return out


def photo_scores(det, photos: dict[str, np.ndarray]) -> tuple[int, int]:
    """(hand-marked faces found, detections matching none of them) over the shared photos."""
    found = extra = 0
    for name, image in photos.items():
        unmatched = list(FACES[name])
        for d in det.detect(image):
            cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
            hit = next((g for g in unmatched if g[0] <= cx <= g[2] and g[1] <= cy <= g[3]), None)
            if hit is None:
                extra += 1
            else:
                unmatched.remove(hit)
                found += 1
    return found, extra


def small_face_scores(det, photos: dict[str, np.ndarray], background: np.ndarray) -> dict[str, str]:
    """Per width: of the 7 faces of two photos (with half a face of context) pasted that wide into
    a 640×480 frame at (300, 200), how many are found there."""
    crops = []
    for name in ("pyfeat_multi_face", "face_recognition_obama_and_biden"):
        for x1, y1, x2, y2 in FACES[name][:5 if name == "pyfeat_multi_face" else 2]:
            m = (x2 - x1) // 2
            crops.append((photos[name][max(0, y1 - m):y2 + m, max(0, x1 - m):x2 + m], x2 - x1))
    out = {}
    for width in SMALL_FACES:
        hits = 0
        for crop, face_w in crops:
            small = cv2.resize(crop, None, fx=width / face_w, fy=width / face_w, interpolation=cv2.INTER_AREA)
            frame = background.copy()
            h, w = small.shape[:2]
            frame[200:200 + h, 300:300 + w] = small
            hits += any(300 <= (d.box[0] + d.box[2]) / 2 <= 300 + w and 200 <= (d.box[1] + d.box[3]) / 2 <= 200 + h
                        for d in det.detect(frame))
        out[f"{width}px"] = f"{hits}/{len(crops)}"
    return out


def group_scores(det, photos: dict[str, np.ndarray], background: np.ndarray) -> dict[str, str]:
    """Faces found (+ detections matching none) in the group photo cut through its outer faces, and
    in the group photo shrunk into a corner of a 4000×3000 frame."""
    group, faces = photos["pyfeat_multi_face"], FACES["pyfeat_multi_face"]

    def score(image: np.ndarray, shown: list[tuple[int, int, int, int]]) -> tuple[int, int]:
        found = det.detect(image)
        hits = sum(any(g[0] <= (d.box[0] + d.box[2]) / 2 <= g[2] and g[1] <= (d.box[1] + d.box[3]) / 2 <= g[3]
                       for d in found) for g in shown)
        return hits, len(found) - hits

    cut = [0, 0]
    for visible in (0.4, 0.3):
        left = int(faces[0][2] - visible * (faces[0][2] - faces[0][0]))
        right = int(faces[4][0] + visible * (faces[4][2] - faces[4][0]))
        hits, extra = score(np.ascontiguousarray(group[:, left:right]),
                            [(max(0, x1 - left), y1, min(right, x2) - left, y2) for x1, y1, x2, y2 in faces])
        cut = [cut[0] + hits, cut[1] + extra]
    frame = cv2.resize(background, (4000, 3000))
    small = cv2.resize(group, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    frame[-h:, -w:] = small
    hits, extra = score(frame, [(4000 - w + int(x1 * 0.6), 3000 - h + int(y1 * 0.6), 4000 - w + int(x2 * 0.6),
                                 3000 - h + int(y2 * 0.6)) for x1, y1, x2, y2 in faces])
    return {"cut": f"{cut[0]}/10+{cut[1]}", "small_4000x3000": f"{hits}/5+{extra}"}


def muxspace_scores(det, images: list[tuple[np.ndarray, str]], classifier) -> dict:
    """Recall (≥ 1 face), images with more than one face, ms per image, and emotion accuracy on the
    largest face (misses are wrong)."""
    hits = correct = scored = 0
    start = time.perf_counter()
    boxes = [det.detect(rgb) for rgb, _ in images]
    elapsed = time.perf_counter() - start
    for (rgb, label), found in zip(images, boxes):
        hits += bool(found)
        if label not in classifier.classes:
            continue
        scored += 1
        if found:
            box = max(found, key=lambda d: d.area).box
            probs = classifier.classify_faces(rgb, [box])[0]
            correct += classifier.classes[int(np.argmax(probs))] == label
    return {"muxspace_recall": round(hits / len(images), 4), "muxspace_multi": sum(len(f) > 1 for f in boxes),
            "muxspace_ms": round(elapsed / len(images) * 1000, 2),
            "muxspace_accuracy": round(correct / max(scored, 1), 4)}


def timed(dets: dict[str, Callable], frames: dict[str, np.ndarray], runs: int) -> dict[str, dict[str, float]]:
    """Median ms per call for every (detector, frame), measured interleaved after 3 warm-up calls."""
    samples: dict[tuple[str, str], list[float]] = {(d, f): [] for d in dets for f in frames}
    for d, det in dets.items():
        for f in frames.values():
            for _ in range(3):
                det.detect(f)
    for _ in range(runs):
        for d, det in dets.items():
            for f, frame in frames.items():
                t = time.perf_counter()
                det.detect(frame)
                samples[(d, f)].append(time.perf_counter() - t)
    return {d: {f: round(statistics.median(samples[(d, f)]) * 1000, 2) for f in frames} for d in dets}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--muxspace", type=Path, default=DEFAULT_MUXSPACE, help="unzipped muxspace-dev folder")
    parser.add_argument("--limit", type=int, help="only the first N muxspace images per class (quick runs)")
    parser.add_argument("--runs", type=int, default=30, help="timed calls per detector and frame")
    parser.add_argument("--only", action="append", help="candidate label(s) to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    from emolens.images import load_image
    from emolens.inference.classifier import EmotionClassifier
    from emolens.labels import canonical

    labels = args.only or [*CANDIDATES, PaddedSecondPass().name]
    if not args.muxspace.is_dir():
        raise SystemExit(f"{args.muxspace}: not found; unzip ../shared/datasets/muxspace-dev.zip there "
                         f"(expected <class>/<name>.jpg) or pass --muxspace DIR")
    files = [f for d in sorted(args.muxspace.iterdir()) if d.is_dir()
             for f in sorted(d.glob("*.jpg"))[: args.limit]]
    muxspace = [(load_image(f), canonical(f.parent.name)) for f in files]
    photos = {name: load_image(MEDIA / f"{name}.jpg") for name in FACES}
    cartoon = read_frames(MEDIA / "pyfeat_no_face.mp4")
    one_face = cv2.resize(read_frames(MEDIA / "pyfeat_single_face.mp4")[36], (640, 480))
    no_face = cv2.resize(cartoon[40], (640, 480))
    classifier = EmotionClassifier.load("default")
    dets = {label: build(label) for label in labels}
    speed = timed(dets, {"one_face": one_face, "no_face": no_face}, args.runs)
    print(f"muxspace-dev: {len(muxspace)} images; photos: {sum(map(len, FACES.values()))} faces; "
          f"cartoon: {len(cartoon)} frames; timing: median of {args.runs} interleaved calls\n")
    rows = []
    for label, det in dets.items():
        found, extra = photo_scores(det, photos)
        rows.append({
            "detector": label,
            **muxspace_scores(det, muxspace, classifier),
            "photos_found": f"{found}/{sum(map(len, FACES.values()))}",
            "photos_extra": extra,
            "cartoon_fp": sum(len(det.detect(f)) for f in cartoon),
            **small_face_scores(det, photos, no_face),
            **group_scores(det, photos, no_face),
            "ms_640x480_one_face": speed[label]["one_face"],
            "ms_640x480_no_face": speed[label]["no_face"],
        })
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    print("\n" + table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
