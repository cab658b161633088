"""``emolens recalibrate``: a trained checkpoint's BatchNorm statistics recomputed on clean
training images (precise BN, as ``train --precise-bn`` does before each validation), written as a
new checkpoint that ``export`` and ``evaluate`` take like any other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from emolens.data.sources import SourceSpec, load_source
from emolens.errors import ConfigError, DatasetError
from emolens.models.checkpoint import load_model, save_checkpoint
from emolens.preprocess import CropSpec
from emolens.training.engine import recompute_batchnorm
from emolens.training.train import precise_bn_loader


def recalibrate_checkpoint(
    checkpoint: str | Path, out: str | Path, *, data: list[str] | None = None, images: int = 4096,
    batch_size: int = 256, seed: int = 0, cache_dir: Path | None = None, log: Callable[[str], None] = print,
) -> Path:
    """Recompute every BatchNorm's statistics of ``checkpoint`` (run folder or .pt) on ``images``
    training images (a seeded random subset, no augmentation) of ``data`` (``train --data``
    specs; default: the run's own sources, as its config records them) and write the checkpoint,
    otherwise unchanged, to ``out`` (.pt). ValueError when a source cannot be read."""
    if images < 1:
        raise ConfigError(f"--images must be at least 1, got {images}")
    model, meta = load_model(checkpoint)
    specs = data or meta.get("config", {}).get("data") or []
    if not specs:
        raise ConfigError(f"{checkpoint}: the checkpoint records no training data; give --data")
    crop = CropSpec.from_dict(meta["crop"])
    pools = []
    for text in specs:
        spec = SourceSpec.parse(text)
        if not Path(spec.path).exists():
            raise DatasetError(f"{spec.path}: dataset not found (recorded by the run); give --data")
        pools.append(load_source(spec, list(meta["classes"]), crop, cache_dir=cache_dir).train_images)
    loader = precise_bn_loader(np.concatenate(pools), images, batch_size, seed=seed)
    recompute_batchnorm(model, loader, torch.device("cpu"))
    save_checkpoint({**meta, "model": model.state_dict(),
                     "precise_bn": {"images": loader.n, "data": list(specs), "seed": seed}}, out)
    log(f"BatchNorm statistics recomputed on {loader.n} training images of {len(specs)} source(s); wrote {out}")
    return Path(out)
