"""Load test for ``emolens serve``'s live stream: N WebSocket clients send real video frames.

Each client keeps one frame in flight (it sends the next only after the reply), like the page.
Reports processed frames per second, round-trip latency percentiles and errors per client count.

    emolens serve --port 8000 &
    python benchmarks/bench_ws_load.py --url ws://127.0.0.1:8000/api/v1/stream --clients 1 8 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import websockets

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "media" / "pyfeat_single_face.mp4"


def load_frames(video: Path, limit: int, width: int = 640, quality: int = 70) -> list[bytes]:
    """Up to ``limit`` frames, downscaled to ``width`` and JPEG-encoded as the page sends them."""
    cap = cv2.VideoCapture(str(video))
    frames: list[bytes] = []
    while len(frames) < limit:
        ok, frame = cap.read()
        if not ok:
            break
        scale = min(1.0, width / frame.shape[1])
        frame = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    cap.release()
    if not frames:
        raise SystemExit(f"no frames could be read from {video}")
    return frames


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    faces: int = 0
    errors: int = 0


async def client(url: str, frames: list[bytes], offset: int, deadline: float, tally: Tally) -> None:
    """Send frames until ``deadline``, one in flight at a time."""
    try:
        async with websockets.connect(url, max_size=2**22) as ws:
            i = offset
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                await ws.send(frames[i % len(frames)])
                reply = json.loads(await ws.recv())
                if "error" in reply:
                    tally.errors += 1
                else:
                    tally.latencies_ms.append((time.perf_counter() - start) * 1000)
                    tally.faces += len(reply["faces"])
                i += 1
    except (OSError, websockets.WebSocketException):
        tally.errors += 1


async def run(url: str, frames: list[bytes], clients: int, seconds: float) -> dict[str, float]:
    """One load level: ``clients`` concurrent clients for ``seconds``."""
    tally = Tally()
    start = time.perf_counter()
    deadline = start + seconds
    # clients start at different frames so the server does not see N copies of one image
    await asyncio.gather(*(client(url, frames, k * 7, deadline, tally) for k in range(clients)))
    elapsed = time.perf_counter() - start
    lat = np.array(tally.latencies_ms) if tally.latencies_ms else np.array([np.nan])
    done = len(tally.latencies_ms)
    return {
        "clients": clients,
        "frames": done,
        "frames_per_s": round(done / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "faces_per_frame": round(tally.faces / done, 2) if done else 0.0,
        "errors": tally.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8000/api/v1/stream")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object per level")
    args = parser.parse_args()

    frames = load_frames(args.video, limit=150)
    print(f"{len(frames)} frames from {args.video.name}, {args.seconds:g} s per level, {args.url}")
    if not args.json:
        print("| clients | frames/s | p50 ms | p99 ms | faces/frame | errors |\n|---|---|---|---|---|---|")
    for n in args.clients:
        row = asyncio.run(run(args.url, frames, n, args.seconds))
        if args.json:
            print(json.dumps(row))
        else:
            print(f"| {row['clients']} | {row['frames_per_s']} | {row['p50_ms']} | {row['p99_ms']} "
                  f"| {row['faces_per_frame']} | {row['errors']} |")


if __name__ == "__main__":
    main()
