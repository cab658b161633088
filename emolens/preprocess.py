"""How a face becomes model input — the one place shared by training and inference.

Images inside emolens are uint8 RGB (H×W×3) or grayscale (H×W×1) numpy arrays. Only numpy and
OpenCV are used here, so inference needs no torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from emolens.errors import ConfigError, InputError

#: Inputs are scaled to [-1, 1]: (x / 255 - MEAN) / STD, for every channel.
MEAN = 0.5
STD = 0.5

#: Contrast normalisations of a resized face: ``none``, or ``equalize`` — global histogram
#: equalisation (of the luma for RGB), which is how the FER2013 release's pixels were made.
CONTRASTS: tuple[str, ...] = ("none", "equalize")


@dataclass(frozen=True)
class CropSpec:
    """How faces are cut and sized for a model.

    ``margin`` widens a detected box by that fraction of its size on each side before the crop;
    ``square`` makes the crop square around the box centre (faces are not distorted);
    ``contrast`` is applied to the resized face (see :data:`CONTRASTS`).
    """

    size: int = 48
    channels: int = 1
    margin: float = 0.1
    square: bool = True
    contrast: str = "none"

    def __post_init__(self) -> None:
        if self.contrast not in CONTRASTS:
            raise ConfigError(f"contrast must be one of {', '.join(CONTRASTS)}, got {self.contrast!r}")
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        if self.size < 8:
            raise ConfigError(f"input size must be at least 8 px, got {self.size}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CropSpec:
        return cls(**{k: d[k] for k in ("size", "channels", "margin", "square", "contrast") if k in d})


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Convert an RGB or grayscale uint8 image to ``channels`` (1 or 3), always H×W×C."""
    if image.ndim == 2:
        image = image[:, :, None]
    have = image.shape[2]
    if have == 4:
        image = image[:, :, :3]
        have = 3
    if have == channels:
        return image
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[:, :, None]
    return np.repeat(image, 3, axis=2)


def equalize(image: np.ndarray) -> np.ndarray:
    """Histogram-equalise a uint8 H×W×1 face, or the luma of an H×W×3 RGB face."""
    if image.shape[2] == 1:
        return cv2.equalizeHist(np.ascontiguousarray(image[:, :, 0]))[:, :, None]
    ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    ycrcb[:, :, 0] = cv2.equalizeHist(np.ascontiguousarray(ycrcb[:, :, 0]))
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def resize_to(image: np.ndarray, size: int, channels: int, contrast: str = "none") -> np.ndarray:
    """Resize an already-cropped face to size×size, convert its colour mode and normalise its contrast."""
    h, w = image.shape[:2]
    if (h, w) != (size, size):
        interp = cv2.INTER_AREA if min(h, w) > size else cv2.INTER_LINEAR
        image = cv2.resize(image, (size, size), interpolation=interp)
    image = to_channels(image, channels)
    return equalize(image) if contrast == "equalize" else image


def prepare(face: np.ndarray, spec: CropSpec) -> np.ndarray:
    """An already-cropped face as ``spec``'s model input (uint8 size×size×channels)."""
    return resize_to(face, spec.size, spec.channels, spec.contrast)


def expand_box(
    box: tuple[float, float, float, float], margin: float, square: bool
) -> tuple[float, float, float, float]:
    """Widen an (x1, y1, x2, y2) box by ``margin`` per side, optionally squared about its centre."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx, cy = x1 + w / 2, y1 + h / 2
    if square:
        w = h = max(w, h)
    w, h = w * (1 + 2 * margin), h * (1 + 2 * margin)
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def crop_box(
    image: np.ndarray, box: tuple[float, float, float, float], margin: float = 0.0, square: bool = False
) -> np.ndarray:
    """Cut pixel box (x1, y1, x2, y2), widened by ``margin`` (see :func:`expand_box`), out of an image.

    Parts of the widened box outside the image are filled by replicating the border, so a
    face at the edge keeps its position and scale. The crop keeps its size and channels.
    """
    x1, y1, x2, y2 = (int(round(v)) for v in expand_box(box, margin, square))
    if x2 <= x1 or y2 <= y1:
        raise InputError(f"empty face box {box}")
    h, w = image.shape[:2]
    pad = max(0, -x1, -y1, x2 - w, y2 - h)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        if image.ndim == 2:  # copyMakeBorder drops a single channel axis
            image = image[:, :, None]
        x1, y1, x2, y2 = x1 + pad, y1 + pad, x2 + pad, y2 + pad
    return image[y1:y2, x1:x2]


def level_eyes(
    image: np.ndarray, box: tuple[float, float, float, float], eyes: np.ndarray, margin: float
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Rotate the region around a face about the box centre so that its eyes are level.

    ``eyes`` is 2×2 pixel (x, y): the person's right eye (image left) then left eye. Returns the
    rotated region, big enough for the box widened by ``margin`` at any angle, and the face box in
    it. A tilt under 1° returns the image and box unchanged.
    """
    (rx, ry), (lx, ly) = np.asarray(eyes, np.float64)
    angle = float(np.degrees(np.arctan2(ly - ry, lx - rx)))
    if abs(angle) < 1.0:
        return image, box
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = int(np.ceil(max(x2 - x1, y2 - y1) * (1 + 2 * margin) * 0.75)) + 1  # ≥ √2/2 of the widened side
    region = crop_box(image, (cx - half, cy - half, cx + half, cy + half))
    rotation = cv2.getRotationMatrix2D((half, half), angle, 1.0)
    rotated = cv2.warpAffine(region, rotation, (2 * half, 2 * half), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if rotated.ndim == 2:
        rotated = rotated[:, :, None]
    w, h = x2 - x1, y2 - y1
    return rotated, (half - w / 2, half - h / 2, half + w / 2, half + h / 2)


def crop_face(
    image: np.ndarray, box: tuple[float, float, float, float], spec: CropSpec, eyes: np.ndarray | None = None
) -> np.ndarray:
    """Cut the face in pixel box (x1, y1, x2, y2) out of an RGB image as the model expects; with
    ``eyes`` (see :func:`level_eyes`) the face is first rotated upright."""
    if eyes is not None:
        image, box = level_eyes(image, box, eyes, spec.margin)
    return prepare(crop_box(image, box, spec.margin, spec.square), spec)


def normalize(batch: np.ndarray) -> np.ndarray:
    """uint8 N×H×W×C faces → float32 N×C×H×W model input."""
    if batch.ndim == 3:
        batch = batch[None]
    x = batch.astype(np.float32).transpose(0, 3, 1, 2)
    return (x * (1.0 / 255.0) - MEAN) / STD
