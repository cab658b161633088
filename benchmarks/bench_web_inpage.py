"""In-browser recognition speed and first-load size, per bundled detector/model pair.

    python benchmarks/bench_web_inpage.py [--seconds 10] [--iterations 60] [--threads N] [--model NAME ...]

Each pair is exported with ``emolens export-web`` and served by ``python -m http.server``; Debian
Chromium (headless, fake camera playing ``pyfeat_single_face.mp4`` at 640×480, 30 fps) opens it
and reports: the bytes the first load transfers (and what gzip would make of them), the time until
the page is ready (runtime compiled, both models loaded and warmed up), the live frame rate the
page shows (each camera frame is analysed at most once, so at most 30), and the engine alone:
``analyze`` (detect + crop + classify + track) back to back on one frame, median and 90th
percentile ms, and the frame rate that allows. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from emolens.apps.web.inpage import BROWSER_DETECTORS, export_web
from emolens.inference.classifier import list_bundled_models

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from webtools import chrome_driver, free_port, write_y4m  # noqa: E402  (the browser tests' own tools)

VIDEO = REPO.parent / "shared" / "media" / "pyfeat_single_face.mp4"

ENGINE_LOOP = """
const [iterations, done] = [arguments[0], arguments[arguments.length - 1]];
(async () => {
  const { fromRGBA } = await import('./static/inpage/imageops.mjs');
  const video = document.getElementById('video');
  const canvas = document.createElement('canvas');
  [canvas.width, canvas.height] = [video.videoWidth, video.videoHeight];
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, 0, 0);
  const engine = window.emolens.engine;
  const tracker = engine.tracker();
  const times = [];
  for (let i = 0; i < iterations; i++) {
    const start = performance.now();
    const img = fromRGBA(ctx.getImageData(0, 0, canvas.width, canvas.height).data, canvas.width, canvas.height);
    await engine.analyze(img, tracker);
    times.push(performance.now() - start);
  }
  return { times, threads: engine.backend.threads, width: canvas.width };
})().then(done, (e) => done({ error: String(e) }));
"""


def first_load(driver, site: Path) -> tuple[int, int, int]:
    """Transferred bytes and requests of the page load (from the DevTools log), and the gzip size
    of the same files (what a compressing static host would send)."""
    events = [json.loads(e["message"])["message"] for e in driver.get_log("performance")]
    urls = {e["params"]["requestId"]: e["params"]["request"]["url"] for e in events
            if e["method"] == "Network.requestWillBeSent" and e["params"]["request"]["url"].startswith("http")}
    done = {e["params"]["requestId"]: e["params"]["encodedDataLength"] for e in events
            if e["method"] == "Network.loadingFinished" and e["params"]["requestId"] in urls}
    gz = 0
    for rid in done:
        rest = urlsplit(urls[rid]).path.split("/", 2)[2]  # /<site>/<file>
        gz += len(gzip.compress((site / (rest or "index.html")).read_bytes(), 6))
    return sum(done.values()), len(done), gz


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="live measurement per pair")
    parser.add_argument("--iterations", type=int, default=60, help="back-to-back engine runs per pair")
    parser.add_argument("--threads", type=int, default=0, help="WebAssembly threads (needs cross-origin isolation; "
                                                              "http.server is not, so the page uses 1)")
    parser.add_argument("--model", nargs="+", default=None, help="only these bundled models (default: every one)")
    args = parser.parse_args()
    pairs = [(d, m) for d in BROWSER_DETECTORS for m in args.model or list_bundled_models()]
    with tempfile.TemporaryDirectory(prefix="emolens-bench-web-") as tmp:
        root = Path(tmp) / "sites"
        for detector, model in pairs:
            export_web(root / f"{detector}--{model}", model, detector)
        camera = write_y4m(VIDEO, Path(tmp) / "camera.y4m", seconds=20.0)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d",
                                   str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        rows = []
        try:
            for detector, model in pairs:
                driver = chrome_driver(camera, Path(tmp) / f"profile-{detector}-{model}", logs=True)
                driver.set_script_timeout(600)
                try:
                    query = f"?threads={args.threads}" if args.threads else ""
                    start = time.perf_counter()
                    driver.get(f"http://127.0.0.1:{port}/{detector}--{model}/{query}")
                    while not driver.execute_script("return window.emolens.mode || window.emolens.error"):
                        time.sleep(0.02)
                    ready = time.perf_counter() - start
                    error = driver.execute_script("return window.emolens.error")
                    if error:
                        raise SystemExit(f"{detector} + {model}: {error}")
                    size, requests, gz = first_load(driver, root / f"{detector}--{model}")
                    driver.find_element("id", "start").click()
                    while driver.execute_script("return window.emolens.frames") < 3:
                        time.sleep(0.05)
                    f0, t0 = driver.execute_script("return window.emolens.frames"), time.perf_counter()
                    time.sleep(args.seconds)
                    live_fps = (driver.execute_script("return window.emolens.frames") - f0) / (time.perf_counter() - t0)
                    driver.find_element("id", "stop").click()
                    engine = driver.execute_async_script(ENGINE_LOOP, args.iterations)
                    if "error" in engine:
                        raise SystemExit(f"{detector} + {model}: {engine['error']}")
                    times = np.array(engine["times"][5:])
                    rows.append((detector, model, size, gz, requests, ready, live_fps, float(np.median(times)),
                                 float(np.percentile(times, 90)), engine["threads"]))
                    print(f"{detector} + {model}: {rows[-1]}", file=sys.stderr)
                finally:
                    driver.quit()
        finally:
            server.terminate()
            server.wait()
    print("| detector | model | first load | gzip | requests | ready | live FPS (camera 30) | ms/frame median | p90 | "
          "engine FPS | threads |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for detector, model, size, gz, requests, ready, live_fps, median, p90, threads in rows:
        print(f"| {detector} | {model} | {size / 1e6:.1f} MB | {gz / 1e6:.1f} MB | {requests} | {ready:.1f} s | "
              f"{live_fps:.1f} | {median:.1f} | {p90:.1f} | {1000 / median:.0f} | {threads} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
