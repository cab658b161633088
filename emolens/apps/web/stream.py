"""The live WebSocket protocol: the browser sends JPEG frames, the server answers with faces.

One binary message is one frame; each gets exactly one JSON reply (``ImageResult.to_dict()``
plus ``seq`` and ``server_ms``, or ``{"seq", "error"}``). Clients send the next frame only
after the reply, so at most one frame per client is ever in flight and slow clients drop
frames instead of queueing them. Each connection has its own tracker (stable face ids and
smoothed probabilities).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Executor
from typing import Any

from fastapi import HTTPException, WebSocket, WebSocketDisconnect

from emolens.apps.web.uploads import decode_image
from emolens.inference.recognizer import Recognizer
from emolens.inference.tracking import FaceTracker


class StreamSession:
    """One connection's state: the recognizer it shares, its own tracker, a frame counter."""

    def __init__(self, recognizer: Recognizer, tracker: FaceTracker, max_pixels: int, max_bytes: int) -> None:
        self.recognizer = recognizer
        self.tracker = tracker
        self.max_pixels = max_pixels
        self.max_bytes = max_bytes
        self.seq = 0

    def process(self, data: bytes) -> dict[str, Any]:
        """Analyze one frame (runs in a worker thread) and build its reply."""
        self.seq += 1
        start = time.perf_counter()
        try:
            if len(data) > self.max_bytes:
                raise HTTPException(413, f"frame is {len(data)} bytes; the limit is {self.max_bytes}")
            rgb, _ = decode_image(data, self.max_pixels, f"frame {self.seq}")
        except HTTPException as exc:
            return {"seq": self.seq, "error": exc.detail}
        result = self.recognizer.analyze(rgb, color="rgb", stream=True)
        result.source = "stream"
        result.faces = self.tracker.update(result.faces)
        reply = result.to_dict()
        reply.update(seq=self.seq, server_ms=round((time.perf_counter() - start) * 1000, 1))
        return reply


async def serve_stream(websocket: WebSocket, session: StreamSession, executor: Executor) -> None:
    """Answer frames until the client disconnects; inference runs in ``executor``."""
    loop = asyncio.get_running_loop()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                session.seq += 1
                await websocket.send_json({"seq": session.seq, "error": "send frames as binary JPEG messages"})
                continue
            await websocket.send_json(await loop.run_in_executor(executor, session.process, data))
    except WebSocketDisconnect:
        return
