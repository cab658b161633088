"""``emolens batch`` throughput on this machine: frames per second per core, 1 vs 2 workers
(scaling efficiency), memory per worker; prints a Markdown table (docs/batch.md quotes it).

    .venv/bin/python benchmarks/bench_batch.py [--copies 8] [--loops 5] [--fps 5] [--json out.json]

The archive: ``--copies`` copies of pyfeat_single_face.mp4 (640×360, 30 fps, one face) played
``--loops`` times in a row each, analysed at ``--fps`` sampled frames per second (the skipped
frames are still demuxed and decoded by the container, as in a real archive). Ray runs embedded
(127.0.0.2), one core and one ONNX Runtime thread per worker. "analysis" excludes Ray's start
(a few seconds once per run); frames/s per core is sampled frames / analysis time / workers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import cv2
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MEDIA = Path(os.environ.get("EMOLENS_SHARED", REPO.parent / "shared")) / "media"


def make_videos(folder: Path, copies: int, loops: int) -> float:
    """``copies`` videos of the clip played ``loops`` times; returns one video's duration in seconds."""
    cap = cv2.VideoCapture(str(MEDIA / "pyfeat_single_face.mp4"))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while (item := cap.read())[0]:
        frames.append(item[1])
    cap.release()
    first = folder / "clip-0.mp4"
    writer = cv2.VideoWriter(str(first), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames[0].shape[1::-1])
    for _ in range(loops):
        for f in frames:
            writer.write(f)
    writer.release()
    for i in range(1, copies):
        os.link(first, folder / f"clip-{i}.mp4")  # a hard link: another source with the same content
    return len(frames) * loops / fps


def run(archive: Path, out: Path, workers: int, fps: float) -> dict:
    from emolens.apps.batch import BatchOptions, run_batch

    report = run_batch([archive], out, BatchOptions(fps=fps), workers=workers, progress=False)
    sources = pd.read_parquet(out / "sources")
    assert report.done == len(sources) and not report.errors, report.errors
    sampled = int(sources["sampled_frames"].sum())
    return {"workers": workers, "sources": len(sources), "sampled_frames": sampled, "analysis_s": report.analysis_s,
            "frames_per_s": round(sampled / report.analysis_s, 2),
            "frames_per_s_per_core": round(sampled / report.analysis_s / workers, 2),
            "task_frames_per_s": round(sampled / sources["elapsed_s"].sum(), 2),
            "peak_rss_mb_per_worker": float(sources["peak_rss_mb"].max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--loops", type=int, default=5)
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="emolens-bench-batch-") as tmp:
        archive = Path(tmp) / "archive"
        archive.mkdir()
        seconds = make_videos(archive, args.copies, args.loops)
        load = os.getloadavg()[0]
        rows = [run(archive, Path(tmp) / f"out-{w}", w, args.fps) for w in (1, 2)]
    efficiency = rows[1]["frames_per_s"] / (2 * rows[0]["frames_per_s"])
    print(f"{args.copies} videos × {seconds:.1f} s (640×360, 30 fps) at --fps {args.fps:g}; "
          f"{len(os.sched_getaffinity(0))} cores, load average {load:.2f} before the runs\n")
    print("| workers | sampled frames | analysis (s) | frames/s | frames/s per core | frames/s inside tasks | peak RSS per worker (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['workers']} | {r['sampled_frames']} | {r['analysis_s']:.1f} | {r['frames_per_s']:.1f} | "
              f"{r['frames_per_s_per_core']:.1f} | {r['task_frames_per_s']:.1f} | {r['peak_rss_mb_per_worker']:.0f} |")
    print(f"\nscaling efficiency 1 → 2 workers: {efficiency:.0%}")
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "efficiency": efficiency, "load": load}, indent=1))


if __name__ == "__main__":
    main()
