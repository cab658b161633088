"""Batch augmentation on whatever device the batch lives on: one affine warp per batch, and mixup."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from emolens.errors import ConfigError


class BatchAugment(torch.nn.Module):
    """Random per-sample rotation, zoom, shift, horizontal flip, pad+crop and erasing of a float N×C×H×W batch.

    ``rotation`` in degrees (±), ``zoom`` a (min, max) scale (>1 enlarges the face), ``shift`` a
    fraction of the size (±), ``hflip`` a probability, ``random_crop`` the padding in pixels of a
    pad-and-crop-back, ``erasing`` the probability of blanking a random rectangle (to 0, the mean
    of normalised input). Geometric changes are one ``affine_grid`` + ``grid_sample``; borders
    repeat edge pixels. In ``eval()`` mode the batch passes through unchanged.
    """

    def __init__(
        self,
        rotation: float = 15.0,
        zoom: tuple[float, float] = (0.8, 1.2),
        shift: float = 0.1,
        hflip: float = 0.5,
        random_crop: int | None = None,
        erasing: float = 0.0,
    ) -> None:
        super().__init__()
        if zoom[0] <= 0 or zoom[1] < zoom[0]:
            raise ConfigError(f"zoom must be (min, max) with 0 < min <= max, got {zoom}")
        self.rotation = float(rotation)
        self.zoom = (float(zoom[0]), float(zoom[1]))
        self.shift = float(shift)
        self.hflip = float(hflip)
        self.random_crop = random_crop or 0
        self.erasing = float(erasing)

    def forward(self, x: Tensor, paired: Tensor | None = None) -> Tensor | tuple[Tensor, Tensor]:
        """The augmented batch; with ``paired`` (the same faces at another size or channel count),
        both, changed alike: one draw of every random parameter, in fractions of the size."""
        views = [x] if paired is None else [x, paired]
        if self.training:
            views = self._apply(views)
        return views[0] if paired is None else (views[0], views[1])

    def _apply(self, views: list[Tensor]) -> list[Tensor]:
        n, dev = views[0].shape[0], views[0].device
        if self.rotation or self.shift or self.zoom != (1.0, 1.0):
            theta = self._theta(n, dev)
            views = [self._affine(v, theta) for v in views]
        elif self.hflip:  # a flip alone is exact without resampling
            flip = (torch.rand(n, device=dev) < self.hflip)[:, None, None, None]
            views = [torch.where(flip, v.flip(-1), v) for v in views]
        if self.random_crop:
            offsets = torch.rand(n, 2, device=dev)  # where in the padded frame, as a fraction of the slack
            size = views[0].shape[-1]
            views = [self._pad_crop(v, max(1, round(self.random_crop * v.shape[-1] / size)), offsets) for v in views]
        if self.erasing:
            rect = self._rectangle(n, dev)
            views = [self._erase(v, rect) for v in views]
        return views

    def _theta(self, n: int, dev: torch.device) -> Tensor:
        """Per-sample affine maps from output to input grid coordinates: rotate, shrink by the zoom, mirror x, shift."""
        angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(self.rotation)
        scale = torch.empty(n, device=dev).uniform_(*self.zoom)
        flip = torch.where(torch.rand(n, device=dev) < self.hflip, -1.0, 1.0)
        shift = (torch.rand(n, 2, device=dev) * 2 - 1) * (2 * self.shift)  # grid coordinates span 2
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        return torch.stack(
            (torch.stack((cos * flip, -sin, shift[:, 0]), 1), torch.stack((sin * flip, cos, shift[:, 1]), 1)), 1
        )

    @staticmethod
    def _affine(x: Tensor, theta: Tensor) -> Tensor:
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    @staticmethod
    def _pad_crop(x: Tensor, pad: int, offsets: Tensor) -> Tensor:
        n, _, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        oy, ox = (offsets * (2 * pad + 1)).long().clamp_max(2 * pad).split(1, dim=1)
        rows = (oy + torch.arange(h, device=x.device))[:, :, None]
        cols = (ox + torch.arange(w, device=x.device))[:, None, :]
        # Advanced indexing puts the index dims first: N×H×W×C, back to N×C×H×W.
        return padded.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols].permute(
            0, 3, 1, 2
        )

    def _rectangle(self, n: int, dev: torch.device) -> Tensor:
        """Per sample: (top, left, height, width) of the erased rectangle in fractions of the size,
        and whether to erase (1/0)."""
        area = torch.empty(n, device=dev).uniform_(0.02, 0.33)
        aspect = torch.exp(torch.empty(n, device=dev).uniform_(math.log(0.3), math.log(3.3)))
        eh = (area * aspect).sqrt().clamp(max=1.0)
        ew = (area / aspect).sqrt().clamp(max=1.0)
        y0 = torch.rand(n, device=dev) * (1 - eh)
        x0 = torch.rand(n, device=dev) * (1 - ew)
        apply = (torch.rand(n, device=dev) < self.erasing).to(eh.dtype)
        return torch.stack((y0, x0, eh, ew, apply), 1)

    @staticmethod
    def _erase(x: Tensor, rect: Tensor) -> Tensor:
        _, _, h, w = x.shape
        y0, x0, eh, ew, apply = (rect[:, i, None, None] for i in range(5))
        top, left = (y0 * h).floor(), (x0 * w).floor()
        bottom, right = top + (eh * h).round().clamp_min(1), left + (ew * w).round().clamp_min(1)
        ys = torch.arange(h, device=x.device)[None, :, None]
        xs = torch.arange(w, device=x.device)[None, None, :]
        inside = (ys >= top) & (ys < bottom) & (xs >= left) & (xs < right) & (apply > 0)
        return x.masked_fill(inside[:, None], 0.0)


class Mixup(torch.nn.Module):
    """Mixup (Zhang et al., 2018) of a batch and its targets: one λ ~ Beta(α, α) per batch, every
    sample blended with another of the same batch, x = λ·x_i + (1 − λ)·x_j and the targets alike.

    Integer labels become one-hot targets over ``num_classes``. A class either partner's dataset
    leaves undefined (NaN) stays undefined, and the target is renormalised over the rest. In
    ``eval()`` mode, or with α = 0, the batch passes through unchanged.
    """

    def __init__(self, alpha: float, num_classes: int) -> None:
        super().__init__()
        if alpha < 0:
            raise ConfigError(f"mixup alpha must be non-negative, got {alpha}")
        self.alpha = float(alpha)
        self.num_classes = num_classes

    def forward(self, x: Tensor | tuple[Tensor, ...], y: Tensor) -> tuple[Tensor | tuple[Tensor, ...], Tensor]:
        """Mixed batch and targets; ``x`` may be a tuple of views of the same faces (mixed alike)."""
        if not self.training or self.alpha == 0:
            return x, y
        first = x[0] if isinstance(x, tuple) else x
        if not y.is_floating_point():
            y = F.one_hot(y, self.num_classes).to(first.dtype)
        concentration = torch.tensor(self.alpha, device=first.device)
        lam = torch.distributions.Beta(concentration, concentration).sample()  # on the device: no host sync
        partner = torch.randperm(first.shape[0], device=first.device)
        mixed = tuple(lam * v + (1 - lam) * v[partner] for v in (x if isinstance(x, tuple) else (x,)))
        y = lam * y + (1 - lam) * y[partner]
        return mixed if isinstance(x, tuple) else mixed[0], y / torch.nan_to_num(y).sum(dim=1, keepdim=True).clamp_min(1e-12)
