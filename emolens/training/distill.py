"""Consistent distillation (Beyer et al., 2022, "Knowledge distillation: A good teacher is patient
and consistent"): an online teacher labels every augmented batch exactly as the student sees it,
instead of outputs saved once for the clean images (``train --teacher FILE``).

When the teacher takes a larger input (96 px RGB for a 48 px gray student), the training faces are
cut twice, at each spec, and every batch pairs the two views, augmented with the same draw of
rotation, zoom, shift, flip, crop and erasing (in fractions of the size): the student trains on its
own crops, exactly what it meets at inference, and the teacher labels the same augmented face from
its own. (Resizing one view into the other instead blurs faces stored at the student's size, such
as FER2013's 48 px: a student trained on the blurred copies lost 4 points on the sharp originals.) Faces of transfer sets (``--data
...,unlabeled=1``, all-NaN targets) take the teacher's probabilities as their whole target; the
others get ``(1 − weight) × their target + weight × the teacher's`` over their dataset's classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from emolens.errors import ConfigError
from emolens.predictor import Predictor, softmax
from emolens.preprocess import CropSpec

# ITU-R BT.601 luma, as OpenCV's RGB2GRAY (the crops' gray conversion); the inputs' normalisation is
# one scalar mean and scale, so the weighted sum of normalised channels is the normalised luma.
LUMA = (0.299, 0.587, 0.114)


def view(x: Tensor, size: int, channels: int) -> Tensor:
    """A normalised N×C×H×W batch at ``size`` × ``size`` with ``channels`` (1 or 3): area averaging
    down (as the crops' INTER_AREA), bilinear up, gray repeated to RGB, RGB reduced to luma."""
    if x.shape[-1] > size:
        x = F.interpolate(x, size=(size, size), mode="area")
    elif x.shape[-1] < size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    if x.shape[1] == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1)
    return (x * x.new_tensor(LUMA)[None, :, None, None]).sum(dim=1, keepdim=True)


def blend(targets: Tensor, probs: Tensor, weight: float) -> Tensor:
    """Targets with the teacher's ``probs`` mixed in: rows that define no class (transfer-set faces)
    become ``probs``; the others ``(1 − weight) × target + weight × probs`` renormalised over the
    classes the row defines (NaN elsewhere stays NaN)."""
    defined = ~torch.isnan(targets)
    unlabeled = ~defined.any(dim=1)
    defined |= unlabeled[:, None]
    probs = probs * defined
    probs = probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-12)
    w = torch.where(unlabeled, 1.0, weight).to(probs.dtype)[:, None]
    out = (1 - w) * torch.nan_to_num(targets) + w * probs
    return out.masked_fill(~defined, float("nan"))


class OnlineTeacher:
    """A trained model (run folder, checkpoint, .onnx or bundled name) that labels each augmented
    batch: ``teacher(x, targets)`` → (the student's view of ``x``, the blended targets). Its
    probabilities use its own temperature (an exported model's calibrated one)."""

    def __init__(self, predictor: Predictor, classes: Sequence[str], weight: float, student: CropSpec) -> None:
        if not 0.0 <= weight <= 1.0:
            raise ConfigError(f"--distill-weight must be in [0, 1], got {weight}")
        missing = [c for c in classes if c not in predictor.classes]
        if len(missing) == len(classes):
            raise ConfigError(f"--teacher-model {predictor.model_name}: none of its classes "
                              f"({', '.join(predictor.classes)}) is among the run's ({', '.join(classes)})")
        self.predictor = predictor
        self.weight = weight
        self.student = student
        self.missing = missing
        # run class j ← teacher column columns[j]; classes the teacher lacks get probability 0
        self.columns = np.array([predictor.classes.index(c) if c in predictor.classes else -1 for c in classes])

    @property
    def crop(self) -> CropSpec:
        """The teacher's input spec (size, channels, margin, contrast)."""
        return self.predictor.crop

    def train_view(self) -> CropSpec:
        """The spec the teacher's view of the training faces is cut at: the student's framing and
        contrast at the larger size and channel count of the two (resized down for the teacher when
        it is the student's own)."""
        size = max(self.student.size, self.crop.size)
        return CropSpec(size=size, channels=max(self.student.channels, self.crop.channels),
                        margin=self.student.margin, contrast=self.student.contrast)

    def describe(self) -> str:
        """One log line: what teaches, at which view, and any mismatch worth knowing."""
        notes = []
        if (self.crop.margin, self.crop.contrast) != (self.student.margin, self.student.contrast):
            notes.append(f"trained at margin {self.crop.margin:g}, contrast {self.crop.contrast}; it sees the "
                         f"student's margin {self.student.margin:g}, contrast {self.student.contrast}")
        if self.missing:
            notes.append(f"lacks {', '.join(self.missing)} (probability 0)")
        t = self.crop
        return (f"{self.predictor.model_name} at {t.size}px×{t.channels}, temperature {self.predictor.temperature:g}, "
                f"distill weight {self.weight:g}" + "".join(f"; {n}" for n in notes))

    @torch.no_grad()
    def probabilities(self, x: Tensor) -> Tensor:
        """The teacher's probabilities over the run's classes for a normalised batch (any view)."""
        t = self.crop
        batch = view(x, t.size, t.channels).float().cpu().numpy()
        p = softmax(self.predictor.logits(np.ascontiguousarray(batch)), self.predictor.temperature)
        out = np.where(self.columns >= 0, p[:, np.maximum(self.columns, 0)], 0.0).astype(np.float32)
        return torch.from_numpy(out).to(x.device)

    def __call__(self, x: Tensor | tuple[Tensor, Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
        """The student's batch and its targets, from one augmented batch or a pair of augmented
        views (the teacher's larger one, the student's own crop)."""
        if not targets.is_floating_point():
            raise ConfigError("an online teacher needs soft targets (the expression task's)")
        seen, student = x if isinstance(x, tuple) else (x, view(x, self.student.size, self.student.channels))
        return student.contiguous(), blend(targets, self.probabilities(seen), self.weight)
