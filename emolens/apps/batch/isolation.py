"""The embedded Ray in a private network namespace, so that nothing it opens is reachable from the network.

Ray 2.60's gRPC servers (GCS, raylet, workers) listen on every interface whatever the node
address. On Linux an embedded batch therefore runs its driver, and with it every Ray process, in
a new user + network namespace (``unshare --user --map-root-user --net``) whose only interface is
its own loopback: the ports exist only there. Where the system refuses user namespaces (some
hardened kernels, containers without the permission, other systems), the batch runs as before,
with Ray's token authentication on, and the report says so (docs/batch.md).
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emolens import errors

#: Set in the driver process that runs inside the namespace.
INSIDE_ENV = "EMOLENS_BATCH_NETNS"
_UNSHARE = ["--user", "--map-root-user", "--net"]
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1
_PR_SET_PDEATHSIG = 1


def inside() -> bool:
    """Whether this process is a batch driver in its private network namespace."""
    return os.environ.get(INSIDE_ENV) == "1"


@functools.cache
def available() -> bool:
    """Whether this system lets an unprivileged process make a user + network namespace."""
    tool = shutil.which("unshare")
    if not sys.platform.startswith("linux") or tool is None:
        return False
    try:
        return subprocess.run([tool, *_UNSHARE, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def loopback_up() -> None:
    """Bring up the new namespace's loopback interface (it starts down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, _SIOCGIFFLAGS, struct.pack("16sH14x", b"lo", 0)))[1]
        fcntl.ioctl(s, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def _interrupt_when_parent_dies() -> None:
    """In the child before it runs: SIGINT (a clean, resumable stop) when its parent dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


def run_inside(job: dict[str, Any], driver: str) -> dict[str, Any]:
    """Run ``job`` (JSON-ready arguments) in a driver process in a private network namespace, where
    ``driver`` ("module:function", the function calling :func:`serve`) runs it; returns its
    report. The driver's errors are raised here as the same emolens error; a Ctrl-C here is passed
    on to it."""
    with tempfile.TemporaryDirectory(prefix="emolens-batch-") as tmp:
        result = Path(tmp) / "report.json"
        module, function = driver.split(":")
        code = f"import sys; from {module} import {function}; {function}(sys.argv[1])"
        cmd = [shutil.which("unshare") or "unshare", *_UNSHARE, "--", sys.executable, "-c", code, str(result)]
        # Its own process group, so a Ctrl-C at the terminal reaches the driver once, from here
        # (twice would cut its clean-up short); it also gets SIGINT should this process die.
        child = subprocess.Popen(cmd, stdin=subprocess.PIPE, env={**os.environ, INSIDE_ENV: "1"}, process_group=0,
                                 preexec_fn=_interrupt_when_parent_dies)
        try:
            child.communicate(json.dumps(job).encode())
        except KeyboardInterrupt:
            child.send_signal(signal.SIGINT)
            child.wait()
        if not result.is_file():
            raise RuntimeError(f"the batch driver stopped without a report (exit code {child.returncode})")
        out = json.loads(result.read_text())
    if "error" in out:
        name = out["error"]["type"]
        kind = {"KeyboardInterrupt": KeyboardInterrupt, "OSError": OSError}.get(name) or getattr(errors, name, None)
        raise (kind if isinstance(kind, type) and issubclass(kind, BaseException) else RuntimeError)(
            out["error"]["message"])
    return out


def serve(result: str, work: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """In the namespace: bring up its loopback, run ``work`` on the job from stdin, and write its
    report (or the error that stopped it) to the file ``result``."""
    job = json.loads(sys.stdin.read())
    try:
        loopback_up()
        out = work(job)
    except (errors.EmolensError, KeyboardInterrupt, OSError) as e:
        out = {"error": {"type": "OSError" if isinstance(e, OSError) else type(e).__name__, "message": str(e)}}
    tmp = Path(result).with_suffix(".part")
    tmp.write_text(json.dumps(out))
    tmp.replace(result)
