"""What recognition returns: one record per face, convertible to dicts, JSON and DataFrames."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from emolens.errors import ConfigError, InputError

if TYPE_CHECKING:
    from emolens.images import Color


def _pandas() -> Any:
    try:
        import pandas
    except ModuleNotFoundError:
        raise ModuleNotFoundError("to_dataframe() needs pandas: pip install 'emolens[pandas]' "
                                  "(or use to_rows(), which needs nothing)", name="pandas") from None
    return pandas


@dataclass
class FaceResult:
    """One face: pixel box (x1, y1, x2, y2), detection score, emotion probabilities, an id (the
    face's index in a still image, its track id in a video), and the detector's landmarks when it
    gives them (K×2 pixel x, y named by ``landmark_names``; see ``emolens.inference.detectors``),
    and the apparent age in years when age estimation is on (None otherwise)."""

    box: tuple[int, int, int, int]
    score: float
    probabilities: dict[str, float]
    face_id: int | None = None
    landmarks: np.ndarray | None = field(default=None, repr=False)
    landmark_names: tuple[str, ...] = ()
    age: float | None = None

    @property
    def emotion(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)

    @property
    def confidence(self) -> float:
        return self.probabilities[self.emotion]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``landmarks`` maps each landmark name to [x, y] (null without landmarks);
        ``age`` (years, one decimal) only when age estimation is on."""
        x1, y1, x2, y2 = self.box
        landmarks = None
        if self.landmarks is not None:
            landmarks = {n: [round(float(x), 1), round(float(y), 1)]
                         for n, (x, y) in zip(self.landmark_names, self.landmarks, strict=True)}
        out = {
            "face_id": self.face_id,
            "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
            "score": round(float(self.score), 4),
            "emotion": self.emotion,
            "confidence": round(float(self.confidence), 4),
            "probabilities": {k: round(float(v), 4) for k, v in self.probabilities.items()},
            "landmarks": landmarks,
        }
        if self.age is not None:
            out["age"] = round(float(self.age), 1)
        return out

    def to_row(self) -> dict[str, Any]:
        """One flat row (for CSV and DataFrames) in the order of :meth:`columns`."""
        d = self.to_dict()
        return {"face_id": d["face_id"], **d["box"], "score": d["score"], "emotion": d["emotion"],
                "confidence": d["confidence"], **({"age": d["age"]} if "age" in d else {}),
                **{f"p_{k}": v for k, v in d["probabilities"].items()}}

    @staticmethod
    def columns(classes: tuple[str, ...] | list[str], age: bool = False) -> list[str]:
        """The columns of :meth:`to_row` for faces over ``classes`` (``age`` when it was estimated)."""
        return ["face_id", "x1", "y1", "x2", "y2", "score", "emotion", "confidence", *(["age"] if age else []),
                *(f"p_{c}" for c in classes)]


@dataclass
class ImageResult:
    """All faces found in one image (an empty list when there are none).

    ``image``: the uint8 H×W×3 RGB array the faces were found in (set by ``Recognizer.analyze`` and
    ``analyze_batch``; the caller's own array when it already was one, not a copy), so that
    :meth:`annotated` needs no second decode. It lives as long as the result does and is never
    serialised (:meth:`to_dict`, :meth:`to_rows`); set it to None to keep only the faces.
    """

    source: str
    width: int
    height: int
    faces: list[FaceResult] = field(default_factory=list)
    image: np.ndarray | None = field(default=None, repr=False, compare=False)

    def annotated(self, bars: bool = True, color: Color = "rgb") -> np.ndarray:
        """A new copy of :attr:`image` with the faces drawn on it (boxes, labels and, with ``bars``,
        probability panels: :func:`emolens.inference.annotate.annotate`), channels ordered as
        ``color`` says ("bgr" for OpenCV, e.g. ``save_image``). ValueError when the image was not kept."""
        import cv2

        from emolens.inference.annotate import annotate

        if color not in ("rgb", "bgr"):
            raise ConfigError(f"color must be 'rgb' or 'bgr', got {color!r}")
        if self.image is None:
            raise InputError(f"{self.source}: the result holds no image to draw on (image is None)")
        bgr = annotate(cv2.cvtColor(self.image, cv2.COLOR_RGB2BGR), self.faces, bars=bars, copy=False)
        return bgr if color == "bgr" else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "width": self.width,
            "height": self.height,
            "faces": [f.to_dict() for f in self.faces],
        }

    def to_rows(self) -> list[dict[str, Any]]:
        """One flat row per face (for CSV and DataFrames): ``source`` and :meth:`FaceResult.to_row`."""
        return [{"source": self.source, **f.to_row()} for f in self.faces]

    def to_dataframe(self) -> Any:
        """:meth:`to_rows` as a pandas DataFrame (the ``[pandas]`` extra)."""
        return _pandas().DataFrame(self.to_rows())


@dataclass
class VideoResult:
    """A video or camera stream: one timeline row per face per analysed frame.

    Timeline rows are flat dicts: ``time_s``, ``frame``, ``face_id``, box ``x1..y2``, ``score``,
    ``emotion``, ``confidence``, ``age`` (when age estimation is on) and ``p_<class>`` for every class.
    """

    source: str
    width: int
    height: int
    fps: float
    classes: tuple[str, ...]
    frames: int = 0  # frames the source delivered (up to the last analysed one)
    processed: int = 0  # frames analysed (fewer than ``frames`` when a live source dropped some)
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps else 0.0

    def add_frame(self, frame: int, time_s: float, faces: list[FaceResult]) -> None:
        """Record one analysed frame."""
        self.frames = max(self.frames, frame + 1)
        self.processed += 1
        self.timeline += [{"time_s": round(time_s, 4), "frame": frame, **f.to_row()} for f in faces]

    def summary(self) -> list[dict[str, Any]]:
        """Per face: frames seen, seconds, share of frames in each top emotion, dominant emotion,
        mean probabilities, and (with age estimation) ``median_age`` over its frames."""
        out = []
        for face_id in sorted({r["face_id"] for r in self.timeline}, key=lambda v: (v is None, v)):
            rows = [r for r in self.timeline if r["face_id"] == face_id]
            share = {c: sum(r["emotion"] == c for r in rows) / len(rows) for c in self.classes}
            out.append({
                "face_id": face_id,
                "frames": len(rows),
                "first_s": rows[0]["time_s"],
                "last_s": rows[-1]["time_s"],
                "dominant": max(share, key=share.__getitem__),
                "share": {c: round(v, 4) for c, v in share.items()},
                "mean_probabilities": {c: round(sum(r[f"p_{c}"] for r in rows) / len(rows), 4) for c in self.classes},
            })
            ages = [r["age"] for r in rows if "age" in r]
            if ages:
                out[-1]["median_age"] = round(float(np.median(ages)), 1)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "kind": "video", "width": self.width, "height": self.height,
            "fps": round(self.fps, 3), "frames": self.frames, "processed": self.processed,
            "duration_s": round(self.duration_s, 3),
            "classes": list(self.classes), "summary": self.summary(), "timeline": self.timeline,
        }

    def to_dataframe(self) -> Any:
        """The timeline as a pandas DataFrame (the ``[pandas]`` extra)."""
        return _pandas().DataFrame(self.timeline, columns=self.columns())

    def columns(self) -> list[str]:
        """The timeline's columns in order (``age`` only when the rows carry it)."""
        return ["time_s", "frame", *FaceResult.columns(self.classes, any("age" in r for r in self.timeline))]
