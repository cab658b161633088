"""The live WebSocket protocol: the browser sends JPEG frames, the server answers with faces.

One binary message is one frame; each gets exactly one JSON reply (``ImageResult.to_dict()``
plus ``seq`` and ``server_ms``, or ``{"seq", "error"}``). Clients send the next frame only
after the reply, so at most one frame per client is ever in flight and slow clients drop
frames instead of queueing them. Each connection has its own
:class:`~emolens.inference.stream.StreamAnalyzer` (stable face ids, smoothing, detection every
k frames), the same per-frame path as videos and ``emolens live``.

A client that sends nothing for ``idle_timeout_s`` is closed with code 1000 and the reason "idle",
so idle connections cannot hold every stream slot; a frame the server fails on (a bug) closes
the stream with 1011 (internal error) and logs the traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any

from fastapi import WebSocket, WebSocketDisconnect

from emolens.errors import InputError
from emolens.inference.results import ImageResult
from emolens.inference.stream import StreamAnalyzer

if TYPE_CHECKING:
    import numpy as np

    from emolens.apps.web.server import Settings

#: ``decode(data, max_pixels, name)`` -> (RGB array, format), raising InputError (the server's DecodePool).
Decode = Callable[[bytes, int, str], "tuple[np.ndarray, str]"]

log = logging.getLogger(__name__)
NORMAL_CLOSURE = 1000
INTERNAL_ERROR = 1011


def frame_reply(analyzer: StreamAnalyzer, decode: Decode, seq: int, data: bytes, max_pixels: int, max_bytes: int
                ) -> dict[str, Any]:
    """Decode and analyze frame number ``seq`` (runs in a worker thread) and build its reply; a
    frame over ``max_bytes`` or ``max_pixels``, or not an image, gets an error reply instead."""
    start = time.perf_counter()
    if len(data) > max_bytes:
        return {"seq": seq, "error": f"frame is {len(data)} bytes; the limit is {max_bytes}"}
    try:
        rgb, _ = decode(data, max_pixels, f"frame {seq}")
    except InputError as exc:
        return {"seq": seq, "error": str(exc)}
    reply = ImageResult("stream", rgb.shape[1], rgb.shape[0], analyzer.process(rgb, color="rgb")).to_dict()
    reply.update(seq=seq, server_ms=round((time.perf_counter() - start) * 1000, 1))
    return reply


async def serve_stream(websocket: WebSocket, analyzer: StreamAnalyzer, executor: Executor, decode: Decode,
                       settings: Settings) -> None:
    """Answer frames until the client disconnects or sends nothing for ``settings.stream_idle_s``;
    inference runs in ``executor``."""
    loop = asyncio.get_running_loop()
    idle_timeout_s = settings.stream_idle_s
    seq = 0
    try:
        while True:
            try:
                message = await asyncio.wait_for(websocket.receive(), idle_timeout_s)
            except TimeoutError:
                await websocket.close(NORMAL_CLOSURE, f"idle: no frame for {idle_timeout_s:g} s")
                return
            if message["type"] == "websocket.disconnect":
                return
            seq += 1
            data = message.get("bytes")
            if data is None:
                await websocket.send_json({"seq": seq, "error": "send frames as binary JPEG messages"})
                continue
            try:
                reply = await loop.run_in_executor(executor, frame_reply, analyzer, decode, seq, data,
                                                   settings.max_pixels, settings.max_frame_bytes)
            except Exception:  # noqa: BLE001  (a bug: the client gets a close frame, the log the traceback)
                log.exception("live stream: frame %d failed", seq)
                await websocket.close(INTERNAL_ERROR, f"frame {seq}: internal error")
                return
            await websocket.send_json(reply)
    except WebSocketDisconnect:
        return
