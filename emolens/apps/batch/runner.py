"""``run_batch``: a folder, glob or manifest of photos and videos analysed on Ray into a Parquet dataset."""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2

from emolens.apps.batch.analysis import BatchOptions, ItemResult, frame_step, merge
from emolens.apps.batch.cluster import TASK_RETRIES, connect, disconnect, submit
from emolens.apps.batch.inputs import Source, WorkItem, expand, plan
from emolens.apps.batch.isolation import available, inside, run_inside, serve
from emolens.apps.batch.store import BatchFolder
from emolens.errors import InputError
from emolens.inference.capture import capture_fps, open_capture
from emolens.progress import Bar


@dataclass
class BatchReport:
    """What a run did: sources finished now (``done``, ``failed``), found finished before
    (``skipped``), and (input or source, error) for every failure and for inputs naming nothing;
    ``analysis_s``: wall time from the cluster's start to the last source saved; ``isolated``:
    whether the embedded Ray ran in a private network namespace (:mod:`.isolation`)."""

    out: Path
    workers: int = 0
    done: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)
    analysis_s: float = 0.0
    isolated: bool = False

    def to_dict(self) -> dict:
        return {**asdict(self), "out": str(self.out)}


def _video_plan(sources: list[Source], options: BatchOptions) -> dict[str, tuple[int, int]]:
    """(frames its header declares, sampling step) of each readable video, for splitting."""
    out = {}
    for s in sources:
        if s.kind != "video":
            continue
        try:
            cap = open_capture(s.path)
        except InputError:
            continue  # its task reports why
        try:
            frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            out[s.source_id] = (max(frames, 0), frame_step(capture_fps(cap), options.fps))
        finally:
            cap.release()
    return out


def run_batch(inputs: list[str | Path], out: str | Path, options: BatchOptions = BatchOptions(), *,
              workers: int | None = None, address: str | None = None, cpus_per_worker: int = 1,
              progress: bool | None = None) -> BatchReport:
    """Analyse every photo and video that ``inputs`` name (folders, glob patterns, manifests:
    one path a line, or a CSV/Parquet ``path`` column) into the Parquet dataset ``out``.

    ``address``: a Ray cluster's head (``host:port``); default: Ray started embedded on this
    machine with ``workers`` workers (default: one per core), on Linux in a private network
    namespace (:mod:`.isolation`). Each worker gets ``cpus_per_worker`` cores. A rerun into the
    same ``out`` skips the sources finished before and retries the failed ones; Ctrl-C keeps every
    finished source. A bad option or model raises before any work.
    """
    options.check()
    if address is None and not inside() and available():
        job = {"inputs": [str(i) for i in inputs], "out": str(out), "options": options.to_dict(), "workers": workers,
               "cpus_per_worker": cpus_per_worker, "progress": progress}
        got = run_inside(job, f"{__name__}:driver_main")
        return BatchReport(**{**got, "out": Path(got["out"]), "errors": [tuple(e) for e in got["errors"]]})
    recognizer = options.recognizer()  # a bad model or detector fails here, before Ray starts
    sources, input_errors = expand(inputs)
    if not sources:
        raise InputError("; ".join(e for _, e in input_errors) if input_errors else
                         f"nothing to analyse: no photo or video in {', '.join(map(str, inputs))}")
    folder = BatchFolder(out, {"options": options.to_dict(), "classes": list(recognizer.classes)})
    report = BatchReport(folder.root, errors=list(input_errors), isolated=inside())
    try:
        ledger = folder.ledger()
        todo = [s for s in sources if not folder.is_done(ledger.get(s.source_id), s)]
        report.skipped = len(sources) - len(todo)
        if not todo:
            return report
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        embedded_workers = workers or max(1, cores // cpus_per_worker)
        resources = connect(address, embedded_workers * cpus_per_worker)
        report.workers = workers or max(1, int(resources.get("CPU", 1) // cpus_per_worker))
        started = time.perf_counter()
        videos = _video_plan(todo, options) if len(todo) < report.workers else {}
        _run(plan(todo, report.workers, videos), folder, options, cpus_per_worker, report, progress)
        report.analysis_s = round(time.perf_counter() - started, 3)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(f"{report.done + report.failed + report.skipped} sources are finished in "
                                f"{folder.root}; rerun the same command to go on") from None
    finally:
        folder.close()
        disconnect()
    return report


def driver_main(result: str) -> None:
    """The embedded batch's driver in its private network namespace (:func:`.isolation.run_inside`)."""
    serve(result, lambda job: run_batch(**{**job, "options": BatchOptions(**job["options"])}).to_dict())


def _run(items: list[WorkItem], folder: BatchFolder, options: BatchOptions, cpus: int, report: BatchReport,
         progress: bool | None) -> None:
    """Keep ``report.workers`` items in flight; save each source once all its parts are back."""
    import ray
    from ray.exceptions import RayError

    queue = deque(items)
    pending: dict[ray.ObjectRef, WorkItem] = {}
    parts: dict[str, list[ItemResult]] = {}
    with Bar("sources", len({i.source.source_id for i in items}), progress) as bar:
        while queue or pending:
            while queue and len(pending) < report.workers:
                item = queue.popleft()
                pending[submit(item, options, cpus)] = item
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
            for ref in ready:
                item = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except RayError as e:  # its worker or node died on every attempt
                    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                    result = ItemResult(item, error=f"{item.source.path}: analysis failed "
                                                    f"{TASK_RETRIES + 1} times ({first})")
                got = parts.setdefault(item.source.source_id, [])
                got.append(result)
                if len(got) < item.parts:
                    continue
                video, total = merge(parts.pop(item.source.source_id), folder.classes)
                folder.save(item.source, video, total)
                if total.error:
                    report.failed += 1
                    report.errors.append((item.source.path, total.error))
                else:
                    report.done += 1
                bar.advance()
                bar.note(f"{report.failed} failed" if report.failed else "")
