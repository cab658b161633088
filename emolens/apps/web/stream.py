"""The live WebSocket protocol: the browser sends JPEG frames, the server answers with faces.

One binary message is one frame; each gets exactly one JSON reply (``ImageResult.to_dict()``
plus ``seq`` and ``server_ms``, or ``{"seq", "error"}``). Clients send the next frame only
after the reply, so at most one frame per client is ever in flight and slow clients drop
frames instead of queueing them. Each connection has its own
:class:`~emolens.inference.stream.StreamAnalyzer` (stable face ids, smoothing, detection every
k frames), the same per-frame path as videos and ``emolens live``.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from emolens.errors import InputError
from emolens.images import decode
from emolens.inference.results import ImageResult
from emolens.inference.stream import StreamAnalyzer


def frame_reply(analyzer: StreamAnalyzer, seq: int, data: bytes, max_pixels: int, max_bytes: int) -> dict[str, Any]:
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


async def serve_stream(websocket: WebSocket, analyzer: StreamAnalyzer, executor: Executor, max_pixels: int,
                       max_bytes: int) -> None:
    """Answer frames until the client disconnects; inference runs in ``executor``."""
    loop = asyncio.get_running_loop()
    seq = 0
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            seq += 1
            data = message.get("bytes")
            if data is None:
                await websocket.send_json({"seq": seq, "error": "send frames as binary JPEG messages"})
                continue
            await websocket.send_json(await loop.run_in_executor(executor, frame_reply, analyzer, seq, data,
                                                                 max_pixels, max_bytes))
    except WebSocketDisconnect:
        return
