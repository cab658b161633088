"""Decoding what clients send in child processes, each image within a time budget.

:func:`emolens.images.decode` refuses what it can recognise as costly before decoding (pixel
counts, repeated JPEG scans), but a decoder may still meet an input no check foresaw. The server
therefore decodes in a few child processes: an image that takes longer than ``timeout_s`` is
refused (:class:`~emolens.errors.LimitError`, HTTP 413) and its process is killed and replaced, so
a parser gap costs one worker a bounded time, never the server. Children are plain interpreters
(``python -m emolens.apps.web.decoding``, started on first use; nothing of the parent is
re-imported) talking over their stdin and stdout.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from emolens.errors import InputError, LimitError
from emolens.images import decode

READY = ("ready",)
STARTUP_TIMEOUT_S = 60.0


def serve() -> None:
    """A child's loop: ``(data, max_pixels, name)`` in on stdin, ``("ok", rgb, format)`` or
    ``(error class name, message)`` out on stdout, until the parent closes stdin."""
    requests, replies = Connection(os.dup(0), writable=False), Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # whatever a library prints goes to stderr, not into the replies
    replies.send(READY)
    while True:
        try:
            data, max_pixels, name = requests.recv()
        except (EOFError, OSError):
            return
        try:
            rgb, fmt = decode(data, max_pixels, name)
            replies.send(("ok", rgb, fmt))
        except InputError as e:
            replies.send((type(e).__name__, str(e)))


class _Child:
    """One decoding process and the parent's ends of its pipes."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
        self.requests = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self.replies = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        # the budget is for decoding: wait for the interpreter to start and import the decoder first
        if not self.replies.poll(STARTUP_TIMEOUT_S) or self.replies.recv() != READY:
            self.stop()
            raise RuntimeError(f"the image decoding process did not start within {STARTUP_TIMEOUT_S} s")

    def ask(self, request: tuple[Any, ...], timeout_s: float) -> tuple[Any, ...] | None:
        """The child's reply, or None when none came within ``timeout_s``."""
        self.requests.send(request)
        return self.replies.recv() if self.replies.poll(timeout_s) else None

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
        self.requests.close()
        self.replies.close()


class DecodePool:
    """``workers`` child processes decoding images with at most ``timeout_s`` seconds each."""

    def __init__(self, workers: int, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._idle: queue.Queue[_Child | None] = queue.Queue()
        for _ in range(workers):
            self._idle.put(None)  # started on first use
        self._children: set[_Child] = set()
        self._lock = threading.Lock()

    def decode(self, data: bytes, max_pixels: int, name: str) -> tuple[np.ndarray, str]:
        """:func:`emolens.images.decode` of ``data`` in a child; :class:`LimitError` when it takes
        longer than ``timeout_s``, :class:`InputError` when the decoder crashes (the child is then
        replaced)."""
        child = self._idle.get() or self._start()
        reply: tuple[Any, ...] | None = None
        try:
            reply = child.ask((data, max_pixels, name), self.timeout_s)
        except (EOFError, OSError):  # the child died on this input
            reply = (InputError.__name__, f"{name}: not a readable image: the decoder crashed on it")
            self._retire(child)
            child = None
        finally:
            if reply is None and child is not None:  # over the budget, or interrupted
                self._retire(child)
                child = None
            self._idle.put(child)
        if reply is None:
            raise LimitError(f"{name}: refused: decoding took over {self.timeout_s:g} s "
                             f"(expected an image that decodes in well under a second)")
        if reply[0] == "ok":
            return reply[1], reply[2]
        raise (LimitError if reply[0] == LimitError.__name__ else InputError)(reply[1])

    def _start(self) -> _Child:
        child = _Child()
        with self._lock:
            self._children.add(child)
        return child

    def _retire(self, child: _Child) -> None:
        with self._lock:
            self._children.discard(child)
        child.stop()

    def close(self) -> None:
        """Stop every child (the server's shutdown)."""
        with self._lock:
            children, self._children = list(self._children), set()
        for child in children:
            child.stop()


if __name__ == "__main__":
    serve()
