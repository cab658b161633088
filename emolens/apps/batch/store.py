"""The batch folder: Parquet tables per source, written atomically, and the ledger that makes reruns resume.

Layout (the schema is in docs/batch.md)::

    DIR/batch.json            options and classes of the batch (a rerun must match them)
    DIR/ledger.jsonl          one line per finished source: done or failed (the last line wins)
    DIR/faces/<id>.parquet    one row per face per analysed frame
    DIR/tracks/<id>.parquet   one row per face track (a photo's faces: one each)
    DIR/sources/<id>.parquet  one row per source: its summary, or its error

A source's files are written faces, tracks, then sources, each into ``DIR/.tmp`` and renamed into
place, and only then is it added to the ledger: a run killed at any point leaves whole files only, and the rerun
redoes (and overwrites) any source the ledger does not list as done, so each source is in the
dataset once.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from emolens.apps.batch.analysis import ItemResult
from emolens.apps.batch.inputs import Source
from emolens.errors import ConfigError
from emolens.files import write_json
from emolens.inference.results import VideoResult

SCHEMA_VERSION = 1
TABLES = ("faces", "tracks", "sources")


def faces_schema(classes: tuple[str, ...], age: bool) -> pa.Schema:
    return pa.schema([("source_id", pa.string()), ("source", pa.string()), ("kind", pa.string()),
                      ("frame", pa.int64()), ("time_s", pa.float64()), ("face_id", pa.int64()),
                      *((c, pa.int32()) for c in ("x1", "y1", "x2", "y2")), ("score", pa.float64()),
                      ("emotion", pa.string()), ("confidence", pa.float64()), *([("age", pa.float64())] if age else []),
                      *((f"p_{c}", pa.float64()) for c in classes)])


def tracks_schema(classes: tuple[str, ...], age: bool) -> pa.Schema:
    return pa.schema([("source_id", pa.string()), ("source", pa.string()), ("face_id", pa.int64()),
                      ("frames", pa.int64()), ("first_s", pa.float64()), ("last_s", pa.float64()),
                      ("dominant", pa.string()), *([("median_age", pa.float64())] if age else []),
                      *((f"share_{c}", pa.float64()) for c in classes),
                      *((f"mean_p_{c}", pa.float64()) for c in classes)])


def sources_schema(classes: tuple[str, ...]) -> pa.Schema:
    return pa.schema([("source_id", pa.string()), ("source", pa.string()), ("kind", pa.string()),
                      ("status", pa.string()), ("error", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
                      ("fps", pa.float64()), ("duration_s", pa.float64()), ("frames", pa.int64()),
                      ("sampled_frames", pa.int64()), ("faces", pa.int64()), ("tracks", pa.int64()),
                      ("dominant", pa.string()), *((f"mean_p_{c}", pa.float64()) for c in classes),
                      ("elapsed_s", pa.float64()), ("node", pa.string()), ("peak_rss_mb", pa.float64())])


def _text(value: str) -> str:
    """``value`` as valid UTF-8 for Parquet: the undecodable bytes of a file name (``os.fsdecode``
    surrogates) as backslash escapes."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class BatchFolder:
    """The output folder of one batch; held (an exclusive lock) while a run writes into it."""

    def __init__(self, root: str | Path, settings: dict[str, Any]):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--out {self.root}: is a file; expected a folder")
        for name in (*TABLES, ".tmp"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self._lock = open(self.root / ".lock", "a")  # noqa: SIM115  (held until close)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise ConfigError(f"{self.root}: another emolens batch is writing into this folder") from None
        for stale in (self.root / ".tmp").iterdir():  # what a killed run was writing
            stale.unlink()
        self.settings = {"schema_version": SCHEMA_VERSION, **settings}
        self.classes = tuple(settings["classes"])
        self.age = bool(settings["options"]["age"])
        path = self.root / "batch.json"
        if path.exists():
            before = json.loads(path.read_text(encoding="utf-8"))
            if before != self.settings:
                changed = sorted(k for k in {**before, **self.settings} if before.get(k) != self.settings.get(k))
                raise ConfigError(f"{self.root}: holds a batch made with other settings ({', '.join(changed)}: "
                                 f"{before.get(changed[0])!r} there); rerun with the same options or choose another --out")
        else:
            write_json(path, self.settings)

    def close(self) -> None:
        self._lock.close()

    def ledger(self) -> dict[str, dict[str, Any]]:
        """The last ledger entry of each source id (a line cut short by a kill is ignored)."""
        entries: dict[str, dict[str, Any]] = {}
        try:
            lines = (self.root / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return entries
        for line in lines:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            entries[entry["source_id"]] = entry
        return entries

    @staticmethod
    def is_done(entry: dict[str, Any] | None, source: Source) -> bool:
        """Whether a ledger entry says ``source`` is finished as it is now (same size and time)."""
        return entry is not None and entry["status"] == "done" and \
            (entry["size"], entry["mtime_ns"]) == (source.size, source.mtime_ns)

    def save(self, source: Source, video: VideoResult | None, total: ItemResult) -> dict[str, Any]:
        """Write a source's tables (its error only, when it failed), then add it to the ledger."""
        ids = {"source_id": source.source_id, "source": _text(source.path)}
        summary = video.summary() if video is not None and total.error is None else []
        if total.error is None and video is not None:
            self._write("faces", source, pa.Table.from_pylist(
                [{**ids, "kind": source.kind, **r} for r in video.timeline], faces_schema(self.classes, self.age)))
            tracks = [{**ids, **{k: v for k, v in s.items() if k not in ("share", "mean_probabilities")},
                       **{f"share_{c}": v for c, v in s["share"].items()},
                       **{f"mean_p_{c}": v for c, v in s["mean_probabilities"].items()}} for s in summary]
            self._write("tracks", source, pa.Table.from_pylist(tracks, tracks_schema(self.classes, self.age)))
        else:
            for name in ("faces", "tracks"):
                (self.root / name / f"{source.source_id}.parquet").unlink(missing_ok=True)
        rows = video.timeline if summary else []
        means = {c: round(sum(r[f"p_{c}"] for r in rows) / len(rows), 4) if rows else None for c in self.classes}
        error = _text(total.error) if total.error else None
        row = {**ids, "kind": source.kind, "status": "failed" if error else "done", "error": error,
               "width": total.width or None, "height": total.height or None, "fps": round(total.fps, 3) or None,
               "duration_s": round(total.frames / total.fps, 3) if total.fps else None, "frames": total.frames,
               "sampled_frames": total.sampled, "faces": len(rows), "tracks": len(summary),
               "dominant": max(means, key=lambda c: means[c]) if rows else None,
               **{f"mean_p_{c}": v for c, v in means.items()},
               "elapsed_s": total.elapsed_s, "node": total.node, "peak_rss_mb": total.peak_rss_mb}
        self._write("sources", source, pa.Table.from_pylist([row], sources_schema(self.classes)))
        entry = {**ids, "status": row["status"], "error": error, "size": source.size,
                 "mtime_ns": source.mtime_ns, "node": total.node, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with open(self.root / "ledger.jsonl", "a", encoding="utf-8", errors="backslashreplace") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return entry

    def _write(self, table: str, source: Source, data: pa.Table) -> None:
        """Write into ``DIR/.tmp`` and rename into the table's folder: readers that glob the folder
        (DuckDB reads hidden files too) never see a partial file."""
        tmp = self.root / ".tmp" / f"{table}-{source.source_id}.parquet"
        pq.write_table(data, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.root / table / f"{source.source_id}.parquet")
