"""What a video's analysis reports: the timeline plot, the timeline and summary CSVs, the JSON.

Everything is rendered in memory (the web serves it as it is); :func:`write_video_outputs` writes
it to disk, each file atomically.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from emolens.figures import figure_bytes, new_figure, save_figure
from emolens.files import write_text
from emolens.inference.annotate import COLORS
from emolens.inference.results import VideoResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def timeline_figure(result: VideoResult, max_faces: int = 8) -> Figure:
    """One panel per face (the ``max_faces`` seen longest): each class's probability over time."""
    longest = sorted(result.summary(), key=lambda s: -s["frames"])[:max_faces]
    face_ids = sorted(s["face_id"] for s in longest) or [None]
    fig = new_figure(figsize=(9, 2.2 * len(face_ids) + 0.6), layout="constrained")
    axes = fig.subplots(len(face_ids), 1, squeeze=False)[:, 0]
    for ax, face_id in zip(axes, face_ids):
        rows = [r for r in result.timeline if r["face_id"] == face_id]
        t = [r["time_s"] for r in rows]
        for c in result.classes:
            b, g, r_ = COLORS.get(c, (128, 128, 128))
            ax.plot(t, [r[f"p_{c}"] for r in rows], label=c, color=(r_ / 255, g / 255, b / 255), lw=1.4)
        ax.set_ylim(0, 1)
        ax.set_xlim(0, max(result.duration_s, 1e-3))
        ax.set_ylabel("probability")
        ax.set_title(f"face #{face_id}" if rows else "no face found", fontsize=10)
    axes[-1].set_xlabel("time (s)")
    # one legend for every panel, beside them: inside a panel it covers the curves
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="emotion", title_fontsize=8)
    title = Path(result.source).name if not result.source.startswith("camera") else result.source
    fig.suptitle(title.encode("utf-8", "surrogateescape").decode("utf-8", "replace"))  # undecodable bytes → �
    return fig


def timeline_png(result: VideoResult, max_faces: int = 8) -> bytes:
    """:func:`timeline_figure` as PNG bytes."""
    return figure_bytes(timeline_figure(result, max_faces), format="png", dpi=100)


def plot_timeline(result: VideoResult, path: str | Path, max_faces: int = 8) -> Path:
    """:func:`timeline_figure` written to ``path`` as PNG (atomically)."""
    return save_figure(timeline_figure(result, max_faces), path, format="png", dpi=100)


def rows_to_csv(rows: list[dict], columns: list[str] | None = None) -> str:
    """CSV text for flat dict rows (columns: the given ones, else those of all rows in first-seen order)."""
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def timeline_csv(result: VideoResult) -> str:
    """The timeline as CSV text (columns: :meth:`VideoResult.columns`)."""
    return rows_to_csv(result.timeline, result.columns())


def summary_csv(result: VideoResult) -> str:
    """The per-face summary as CSV text: frames, first/last second, dominant emotion, ``median_age``
    (with age estimation) and each class's share of frames."""
    summary_rows = [{"face_id": s["face_id"], "frames": s["frames"], "first_s": s["first_s"], "last_s": s["last_s"],
                     "dominant": s["dominant"], **{k: s[k] for k in ("median_age",) if k in s},
                     **{f"share_{c}": v for c, v in s["share"].items()}}
                    for s in result.summary()]
    age = ["median_age"] if any("median_age" in r for r in summary_rows) else []
    summary_cols = ["face_id", "frames", "first_s", "last_s", "dominant", *age, *(f"share_{c}" for c in result.classes)]
    return rows_to_csv(summary_rows, summary_cols)


def write_video_outputs(result: VideoResult, out_dir: str | Path, stem: str) -> dict[str, Path]:
    """Write ``<stem>.timeline.csv``, ``<stem>.json`` (summary and timeline), ``<stem>.summary.csv``
    and ``<stem>.timeline.png`` into ``out_dir`` (each atomically)."""
    out = Path(out_dir)
    return {
        "timeline_csv": write_text(out / f"{stem}.timeline.csv", timeline_csv(result)),
        "json": write_text(out / f"{stem}.json", json.dumps(result.to_dict(), indent=1)),
        "summary_csv": write_text(out / f"{stem}.summary.csv", summary_csv(result)),
        "plot": plot_timeline(result, out / f"{stem}.timeline.png"),
    }
