"""What recognition returns: one record per face, convertible to dicts, JSON and DataFrames."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FaceResult:
    """One face: pixel box (x1, y1, x2, y2), detection score, emotion probabilities."""

    box: tuple[int, int, int, int]
    score: float
    probabilities: dict[str, float]
    face_id: int | None = None

    @property
    def emotion(self) -> str:
        return max(self.probabilities, key=self.probabilities.__getitem__)

    @property
    def confidence(self) -> float:
        return self.probabilities[self.emotion]

    def to_dict(self) -> dict[str, Any]:
        x1, y1, x2, y2 = self.box
        return {
            "face_id": self.face_id,
            "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
            "score": round(float(self.score), 4),
            "emotion": self.emotion,
            "confidence": round(float(self.confidence), 4),
            "probabilities": {k: round(float(v), 4) for k, v in self.probabilities.items()},
        }


@dataclass
class ImageResult:
    """All faces found in one image (an empty list when there are none)."""

    source: str
    width: int
    height: int
    faces: list[FaceResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "width": self.width,
            "height": self.height,
            "faces": [f.to_dict() for f in self.faces],
        }

    def to_rows(self) -> list[dict[str, Any]]:
        """One flat row per face (for CSV and DataFrames)."""
        rows = []
        for f in self.faces:
            d = f.to_dict()
            row = {"source": self.source, "face_id": d["face_id"], **d["box"], "score": d["score"],
                   "emotion": d["emotion"], "confidence": d["confidence"]}
            row.update({f"p_{k}": v for k, v in d["probabilities"].items()})
            rows.append(row)
        return rows

    def to_dataframe(self) -> Any:
        import pandas as pd  # optional dependency

        return pd.DataFrame(self.to_rows())
