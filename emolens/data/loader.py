"""Batches for training and evaluation from in-memory uint8 arrays.

The loaders shuffle deterministically per epoch (``seed`` + ``set_epoch``), shard across DDP
ranks like ``DistributedSampler`` (every rank gets the same number of batches), normalise exactly
like :func:`emolens.preprocess.normalize` and augment whole batches on ``device``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor

from emolens.data.augment import Mixup
from emolens.data.sources import epoch_indices
from emolens.errors import ConfigError
from emolens.preprocess import MEAN, STD


class _BatchLoader:
    """Epoch-seeded index batches, sharding, and the uint8 → normalised float step."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        augment: torch.nn.Module | None,
        device: str | torch.device,
        seed: int,
        rank: int,
        world_size: int,
        mix: tuple[list[int], list[float]] | None = None,
        mixup: Mixup | None = None,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be positive, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.mix = mix
        self.n = sum(int(round(w * k)) for k, w in zip(*mix)) if mix else n
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.augment = augment
        self.mixup = mixup
        self.device = torch.device(device)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose shuffle order the next iteration uses."""
        self.epoch = epoch

    def _shard_size(self) -> int:
        return -(-self.n // self.world_size)

    def __len__(self) -> int:
        per_rank = self._shard_size()
        return per_rank // self.batch_size if self.drop_last else -(-per_rank // self.batch_size)

    def _batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch))
        if self.mix:
            order = epoch_indices(*self.mix, rng)
        else:
            order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        if self.world_size > 1:  # pad by wrapping around so every rank gets the same count
            order = np.resize(order, self._shard_size() * self.world_size)[self.rank :: self.world_size]
        return [order[i : i + self.batch_size] for i in range(0, len(self) * self.batch_size, self.batch_size)]

    def _finish(self, images: Tensor, labels: Tensor, paired: Tensor | None = None) -> tuple[Tensor | tuple[Tensor, Tensor], Tensor]:
        """uint8 N×H×W×C (any device) → augmented float32 N×C×H×W on ``device``, labels or targets
        (float N×K targets after mixup). With ``paired`` (the same faces at another spec), the
        batch is the pair of views, augmented and mixed alike."""
        non_blocking = self.device.type == "cuda"

        def floats(batch: Tensor) -> Tensor:
            x = batch.to(self.device, non_blocking=non_blocking).permute(0, 3, 1, 2).float()
            return (x * (1.0 / 255.0) - MEAN) / STD

        x = floats(images) if paired is None else (floats(images), floats(paired))
        labels = labels.to(self.device, non_blocking=non_blocking)
        if self.augment is not None:
            x = self.augment(x) if paired is None else self.augment(*x)
        if self.mixup is not None:
            x, labels = self.mixup(x, labels)
        return (x.contiguous() if paired is None else (x[0].contiguous(), x[1].contiguous())), labels


class ArrayLoader(_BatchLoader):
    """Batches from in-memory uint8 N×H×W×C images (kept on ``device`` once) and int labels or
    float N×K soft targets; ``mix`` = (source sizes, sampling weights) of concatenated sources;
    ``mixup`` blends each augmented batch with itself (training); ``paired``: the same faces at
    another spec (a student's, beside a teacher's larger view): each batch is then the pair
    (images, paired), augmented and mixed alike."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        shuffle: bool = True,
        drop_last: bool = False,
        augment: torch.nn.Module | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        mix: tuple[list[int], list[float]] | None = None,
        mixup: Mixup | None = None,
        paired: np.ndarray | None = None,
    ) -> None:
        if paired is not None and (paired.dtype != np.uint8 or paired.ndim != 4 or len(paired) != len(images)):
            raise ValueError(f"paired views must be uint8 N×H×W×C for each of the {len(images)} images, got {paired.shape}")
        if images.ndim != 4 or images.dtype != np.uint8 or len(images) != len(labels):
            raise ValueError(
                f"expected uint8 N×H×W×C images and as many labels, got {images.dtype} {images.shape}, {len(labels)} labels"
            )
        if mix is not None and sum(mix[0]) != len(images):
            raise ValueError(f"mix sizes {mix[0]} do not add up to {len(images)} images")
        super().__init__(len(images), batch_size, shuffle, drop_last, augment, device, seed, rank, world_size, mix, mixup)
        self._images = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        self._paired = None if paired is None else torch.from_numpy(np.ascontiguousarray(paired)).to(self.device)
        labels = np.asarray(labels)
        dtype = np.float32 if labels.dtype.kind == "f" else np.int64
        self._labels = torch.from_numpy(np.ascontiguousarray(labels, dtype=dtype)).to(self.device)

    def __iter__(self) -> Iterator[tuple[Tensor | tuple[Tensor, Tensor], Tensor]]:
        batches = self._batches()
        if not batches:
            return
        # One host→device copy of the epoch's order: a copy per batch would wait for the GPU each time.
        order = torch.from_numpy(np.concatenate(batches)).to(self.device)
        for index in order.split([len(b) for b in batches]):
            yield self._finish(self._images[index], self._labels[index],
                               None if self._paired is None else self._paired[index])
