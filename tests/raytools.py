"""A real two-node Ray cluster on this machine's loopback, and a small archive of real media, for
tests/test_batch.py (no tests here).

Each node is a ``ray start --block`` in a session of its own: stopping a node kills that process
group (SIGKILL: also how a test makes a node die), and nothing else on the machine. Token
authentication is off for this throwaway cluster (RAY_AUTH_MODE=disabled); docs/batch.md says
how a real cluster keeps it on.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

RAY = str(Path(sys.executable).with_name("ray"))
EMOLENS = str(Path(sys.executable).with_name("emolens"))
HEAD_IP, NODE_IP = "127.0.0.2", "127.0.0.3"


def free_port(host: str = HEAD_IP) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def short_temp_dir() -> Path:
    """A new folder under /tmp: Ray's socket paths inside a temp folder must stay under 108 bytes."""
    return Path(tempfile.mkdtemp(prefix="emolens-ray-", dir="/tmp"))


def ray_env(temp_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of the cluster's processes and its drivers."""
    return {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "RAY_TMPDIR": str(temp_dir),
            "OMP_NUM_THREADS": "1", **extra}


def our_processes(marker: str) -> list[int]:
    """PIDs of live processes whose command line names ``marker`` (the cluster's temp folder)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().decode("utf-8", "replace")
            state = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


class LocalCluster:
    """A head on 127.0.0.2 and a second node on 127.0.0.3, ``cpus`` CPUs each, with a temp folder of its own."""

    def __init__(self, temp_dir: Path, cpus: int = 1, attempts: int = 3):
        self.temp_dir = temp_dir
        self.env = ray_env(temp_dir)
        self.node: subprocess.Popen | None = None
        # A loaded CI machine once saw the head not come up (a port taken between free_port() and Ray's
        # bind is one way): each attempt starts afresh on new ports; the last failure shows the logs.
        for attempt in range(1, attempts + 1):
            try:
                self._start_cluster(cpus, attempt)
                return
            except RuntimeError:
                if attempt == attempts:
                    raise

    def _start_cluster(self, cpus: int, attempt: int) -> None:
        self.port = free_port()
        self.address = f"{HEAD_IP}:{self.port}"
        head = [RAY, "start", "--head", "--block", f"--node-ip-address={HEAD_IP}", f"--port={self.port}",
                f"--num-cpus={cpus}", "--include-dashboard=false", f"--dashboard-port={free_port()}",
                f"--ray-client-server-port={free_port()}", "--disable-usage-stats", f"--temp-dir={self.temp_dir}",
                "--system-config", '{"health_check_period_ms": 1000, "health_check_failure_threshold": 3}']
        self.head = self._start(head, f"head-{attempt}")
        self._wait_for_nodes(1)
        node = [RAY, "start", "--block", f"--address={self.address}", f"--node-ip-address={NODE_IP}",
                f"--num-cpus={cpus}", "--disable-usage-stats"]
        self.node = self._start(node, f"node-{attempt}")
        self._wait_for_nodes(2)

    def _start(self, argv: list[str], name: str) -> subprocess.Popen:
        with open(self.temp_dir / f"{name}.log", "wb") as log:  # the process keeps its own copy of the descriptor
            return subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_for_nodes(self, n: int, timeout_s: float = 120) -> None:
        """Until ``n`` nodes are alive (asked with ``ray status``, a client of the head)."""
        deadline = time.monotonic() + timeout_s
        status = None
        while time.monotonic() < deadline:
            try:  # a head that accepts but never answers must not hang the suite
                status = subprocess.run([RAY, "status", f"--address={self.address}"], env=self.env,
                                        capture_output=True, text=True, timeout=30)
            except subprocess.TimeoutExpired:
                continue
            if status.returncode == 0 and status.stdout.count("node_") >= n:
                return
            if self.head.poll() is not None or (self.node is not None and self.node.poll() is not None):
                break
            time.sleep(1)
        head_exit = self.head.poll()  # None: still running when the wait gave up
        self.stop()
        asked = "" if status is None else f"\nlast `ray status`: {(status.stdout + status.stderr)[-1500:]}"
        raise RuntimeError(f"the Ray test cluster did not come up with {n} node(s) (head exit code "
                           f"{head_exit}){asked}\n{self._log_tails()}")

    def _log_tails(self, lines: int = 15) -> str:
        """The last lines of the nodes' own logs and of Ray's error logs, for a failure message."""
        sessions = [s for s in sorted(self.temp_dir.glob("session_*")) if not s.is_symlink()]  # not session_latest
        logs = sorted(self.temp_dir.glob("*.log")) + [log for s in sessions for log in sorted(s.glob("logs/*.err"))]
        parts = []
        for log in logs:
            text = log.read_text(errors="replace").strip().splitlines()[-lines:]
            if text:
                parts.append(f"--- {log.relative_to(self.temp_dir)}\n" + "\n".join(text))
        return "\n".join(parts)

    def kill_node(self) -> None:
        """The second node dies: its raylet and workers get SIGKILL."""
        _kill_group(self.node)

    def stop(self) -> None:
        """Kill both nodes, then any process of this cluster still alive (found by its temp folder)."""
        for proc in (self.node, self.head):
            if proc is not None:
                _kill_group(proc)
        self.node = None
        for pid in our_processes(str(self.temp_dir)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=30)


def make_archive(folder: Path, media: Path, copies: int = 4, frames_per_clip: int = 24) -> list[Path]:
    """A few dozen real sources: ``copies`` copies of each photo in ``media`` and each video cut
    into clips of ``frames_per_clip`` frames (MPEG-4, written with OpenCV), in sub-folders."""
    made = []
    for i in range(copies):
        sub = folder / f"day{i}"
        sub.mkdir(parents=True, exist_ok=True)
        for photo in sorted(media.glob("*.jpg")):
            made.append(Path(shutil.copy(photo, sub / f"{photo.stem}-{i}.jpg")))
    for video in sorted(media.glob("*.mp4")):
        cap = cv2.VideoCapture(str(video))
        fps = cap.get(cv2.CAP_PROP_FPS)
        clip, writer, n = 0, None, 0
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if writer is None:
                path = folder / "clips" / f"{video.stem}-{clip}.mp4"
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frame.shape[1::-1])
                made.append(path)
            writer.write(frame)
            n += 1
            if n == frames_per_clip:
                writer.release()
                writer, n, clip = None, 0, clip + 1
        if writer is not None:
            writer.release()
        cap.release()
    return made
