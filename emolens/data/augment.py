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

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return x
        if self.rotation or self.shift or self.zoom != (1.0, 1.0):
            x = self._affine(x)
        elif self.hflip:  # a flip alone is exact without resampling
            flip = torch.rand(x.shape[0], device=x.device) < self.hflip
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        if self.random_crop:
            x = self._pad_crop(x, self.random_crop)
        if self.erasing:
            x = self._erase(x)
        return x

    def _affine(self, x: Tensor) -> Tensor:
        n, dev = x.shape[0], x.device
        angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(self.rotation)
        scale = torch.empty(n, device=dev).uniform_(*self.zoom)
        flip = torch.where(torch.rand(n, device=dev) < self.hflip, -1.0, 1.0)
        shift = (torch.rand(n, 2, device=dev) * 2 - 1) * (2 * self.shift)  # grid coordinates span 2
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        # theta maps output to input coordinates: rotate, shrink by the zoom, mirror x.
        theta = torch.stack(
            (torch.stack((cos * flip, -sin, shift[:, 0]), 1), torch.stack((sin * flip, cos, shift[:, 1]), 1)), 1
        )
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    @staticmethod
    def _pad_crop(x: Tensor, pad: int) -> Tensor:
        n, _, h, w = x.shape
        padded = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device)
        ox = torch.randint(0, 2 * pad + 1, (n, 1), device=x.device)
        rows = (oy + torch.arange(h, device=x.device))[:, :, None]
        cols = (ox + torch.arange(w, device=x.device))[:, None, :]
        # Advanced indexing puts the index dims first: N×H×W×C, back to N×C×H×W.
        return padded.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols].permute(
            0, 3, 1, 2
        )

    def _erase(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        dev = x.device
        area = torch.empty(n, device=dev).uniform_(0.02, 0.33) * h * w
        aspect = torch.exp(torch.empty(n, device=dev).uniform_(math.log(0.3), math.log(3.3)))
        eh = (area * aspect).sqrt().clamp(1, h).floor()
        ew = (area / aspect).sqrt().clamp(1, w).floor()
        y0 = (torch.rand(n, device=dev) * (h - eh + 1)).floor()
        x0 = (torch.rand(n, device=dev) * (w - ew + 1)).floor()
        ys = torch.arange(h, device=dev)[None, :, None]
        xs = torch.arange(w, device=dev)[None, None, :]
        inside = (
            (ys >= y0[:, None, None])
            & (ys < (y0 + eh)[:, None, None])
            & (xs >= x0[:, None, None])
            & (xs < (x0 + ew)[:, None, None])
        )
        apply = (torch.rand(n, device=dev) < self.erasing)[:, None, None]
        return x.masked_fill((inside & apply)[:, None], 0.0)


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

    def forward(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if not self.training or self.alpha == 0:
            return x, y
        if not y.is_floating_point():
            y = F.one_hot(y, self.num_classes).to(x.dtype)
        concentration = torch.tensor(self.alpha, device=x.device)
        lam = torch.distributions.Beta(concentration, concentration).sample()  # on the device: no host sync
        partner = torch.randperm(x.shape[0], device=x.device)
        x = lam * x + (1 - lam) * x[partner]
        y = lam * y + (1 - lam) * y[partner]
        return x, y / torch.nan_to_num(y).sum(dim=1, keepdim=True).clamp_min(1e-12)
