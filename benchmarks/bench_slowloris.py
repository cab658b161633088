"""Slowloris against ``emolens serve``: does /health stay reachable while N sockets hold half-sent
request heads, each reopened soon after the server closes it? (issue 26; numbers in docs/web.md)

    emolens serve --port 8000 &
    python benchmarks/bench_slowloris.py --port 8000 --sockets 300 --seconds 30

Loopback only: it connects to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from webtools import half_open_sockets  # noqa: E402  (the attack tests' own tool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--sockets", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--reopen-after", type=float, default=1.0, help="seconds before a closed socket is reopened")
    args = parser.parse_args()

    stop = threading.Event()
    attacker = threading.Thread(target=half_open_sockets, args=(args.port, args.sockets, args.reopen_after, stop), daemon=True)
    attacker.start()
    time.sleep(2)
    answered, probes, latencies = 0, 0, []
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        probes += 1
        start = time.monotonic()
        try:
            answered += httpx.get(f"http://127.0.0.1:{args.port}/health", timeout=2).status_code == 200
            latencies.append(time.monotonic() - start)
        except httpx.HTTPError:
            pass
        time.sleep(max(0.0, 1 - (time.monotonic() - start)))
    stop.set()
    attacker.join(5)
    median = f"{statistics.median(latencies) * 1000:.0f} ms" if latencies else "-"
    print(f"{args.sockets} half-open sockets: /health answered {answered} of {probes} probes over "
          f"{args.seconds:g} s (median {median})")


if __name__ == "__main__":
    main()
