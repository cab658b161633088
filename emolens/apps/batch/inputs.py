"""What a batch analyses: folders, globs and manifests expanded into sources, and sources into work items.

A source is one file, named by its absolute path and identified by a hash of it (``source_id``,
the name of its output files). A long video is split into frame ranges when there are fewer
sources than workers, so every worker has something to do.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from emolens.errors import InputError
from emolens.images import IMAGE_SUFFIXES
from emolens.inference.capture import VIDEO_SUFFIXES

MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
MANIFEST_SUFFIXES = frozenset({".txt", ".lst", ".csv", ".parquet"})
#: A range shorter than this is not worth a task of its own (seconds of video).
MIN_RANGE_S = 10.0


@dataclass(frozen=True)
class Source:
    """One file to analyse; ``size`` and ``mtime_ns`` tell a rerun whether it changed."""

    path: str
    source_id: str
    kind: str  # "video" or "image"
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class WorkItem:
    """Frames ``[start, stop)`` of a source (``stop`` None: to the end), part ``part`` of ``parts``."""

    source: Source
    start: int = 0
    stop: int | None = None
    part: int = 0
    parts: int = 1


def source_id(path: str) -> str:
    """A stable id for an absolute path: 16 hex digits of its SHA-1."""
    return hashlib.sha1(os.fsencode(path)).hexdigest()[:16]


def make_source(path: str | Path) -> Source:
    """The :class:`Source` for a file; one that cannot be read gets size and time -1 (its
    analysis then fails with the reason, recorded like any failure)."""
    absolute = os.path.abspath(path)
    try:
        st = os.stat(absolute)
        size, mtime_ns = st.st_size, st.st_mtime_ns
    except OSError:
        size = mtime_ns = -1
    kind = "video" if Path(absolute).suffix.lower() in VIDEO_SUFFIXES else "image"
    return Source(absolute, source_id(absolute), kind, size, mtime_ns)


def read_manifest(path: Path) -> list[str]:
    """Paths listed in a manifest: one per line (.txt/.lst, ``#`` comments), or the ``path`` column
    of a CSV or Parquet file. Relative paths are taken from the manifest's folder."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "path" not in table.column_names:
            raise InputError(f"{path}: a manifest needs a 'path' column (found {', '.join(table.column_names)})")
        listed = [p for p in table.column("path").to_pylist() if p]
    elif suffix == ".csv":
        import csv

        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if "path" not in (reader.fieldnames or []):
                raise InputError(f"{path}: a CSV manifest needs a 'path' column (found {reader.fieldnames})")
            listed = [row["path"] for row in reader if row["path"]]
    else:
        lines = path.read_text(encoding="utf-8").splitlines()
        listed = [s for line in lines if (s := line.strip()) and not s.startswith("#")]
    return [str(path.parent / p) if not os.path.isabs(p) else p for p in listed]


def expand(inputs: list[str | Path]) -> tuple[list[Source], list[tuple[str, str]]]:
    """Sources named by ``inputs`` (folders searched recursively for photos and videos, glob
    patterns, manifests, files), each once and in a stable order, and (input, error) for inputs
    that name nothing. A file a manifest lists is a source even when it is missing (it fails)."""
    paths: list[str] = []
    errors: list[tuple[str, str]] = []
    for raw in map(str, inputs):
        if os.path.isdir(raw):
            paths += sorted(os.path.join(root, n) for root, _, names in os.walk(raw)
                            for n in names if Path(n).suffix.lower() in MEDIA_SUFFIXES)
        elif os.path.isfile(raw):
            suffix = Path(raw).suffix.lower()
            paths += read_manifest(Path(raw)) if suffix in MANIFEST_SUFFIXES else [raw]
        elif glob.has_magic(raw):
            matched = sorted(p for p in glob.glob(raw, recursive=True)
                             if os.path.isfile(p) and Path(p).suffix.lower() in MEDIA_SUFFIXES)
            paths += matched
            if not matched:
                errors.append((raw, f"{raw}: the pattern matches no photo or video"))
        else:
            errors.append((raw, f"{raw}: no such file, folder or pattern"))
    sources: dict[str, Source] = {}
    for src in map(make_source, paths):
        sources.setdefault(src.source_id, src)
    return list(sources.values()), errors


def plan(sources: list[Source], workers: int, videos: dict[str, tuple[int, int]]) -> list[WorkItem]:
    """One work item per source; when there are fewer sources than ``workers``, the videos in
    ``videos`` (source id → (frames, sampling step)) are split into up to ``workers`` frame ranges,
    each a multiple of the step long (so the sampled frames are those of the whole video) and at
    least :data:`MIN_RANGE_S` long at 30 fps."""
    if len(sources) >= workers:
        return [WorkItem(s) for s in sources]
    items = []
    for s in sources:
        frames, step = videos.get(s.source_id, (0, 1))
        parts = max(1, min(workers, int(frames // (MIN_RANGE_S * 30))))
        if parts == 1:
            items.append(WorkItem(s))
            continue
        length = -(-frames // parts)  # ceil
        length = -(-length // step) * step
        bounds = list(range(0, frames, length))
        items += [WorkItem(s, a, None if i == len(bounds) - 1 else a + length, i, len(bounds))
                  for i, a in enumerate(bounds)]
    return items
