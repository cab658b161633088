"""Input pipeline throughput: cached arrays + ArrayLoader + BatchAugment vs per-image PIL + DataLoader.

Both pipelines produce augmented, normalised 64×1×48×48 float batches of FER2013 train with the
same augmentation (rotation ±15°, zoom 0.8-1.2, shift ±10 %, horizontal flip p=0.5).

    .venv/bin/python benchmarks/bench_input_pipeline.py [PATH] [--batches 200] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from emolens.data import Split, load_arrays, load_dataset
from emolens.data.augment import BatchAugment
from emolens.data.loader import ArrayLoader
from emolens.preprocess import MEAN, STD

SIZE = 48
ROTATION, ZOOM, SHIFT, HFLIP = 15.0, (0.8, 1.2), 0.1, 0.5


class PilImages(torch.utils.data.Dataset):
    """The classic pipeline: open, augment and convert one image at a time with PIL."""

    def __init__(self, split: Split) -> None:
        self.paths = split.paths
        self.labels = split.labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as im:
            image = im.convert("L")
        shift = SHIFT * SIZE
        image = image.rotate(
            random.uniform(-ROTATION, ROTATION),
            Image.Resampling.BILINEAR,
            translate=(random.uniform(-shift, shift), random.uniform(-shift, shift)),
        )
        side = round(SIZE * random.uniform(*ZOOM))
        image = image.resize((side, side), Image.Resampling.BILINEAR)
        off = (side - SIZE) // 2
        image = image.crop((off, off, off + SIZE, off + SIZE))  # centre crop, or pad when zoomed out
        if random.random() < HFLIP:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(image, dtype=np.float32)[None])
        return (x * (1.0 / 255.0) - MEAN) / STD, int(self.labels[i])


def batches_per_second(loader, batches: int, repeats: int) -> float:
    """Best batches/s of ``repeats`` runs of ``batches`` batches (the machine is shared), after a warm-up batch."""
    it = iter(loader)
    next(it)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            try:
                next(it)
            except StopIteration:
                it = iter(loader)
                next(it)
        best = max(best, batches / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, default=Path(".cache/datasets/fer2013"))
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.workers)
    split = load_dataset(args.path).split("train")

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        images, labels = load_arrays(split, SIZE, 1, cache_dir=Path(cache), workers=args.workers)
        decode_s = time.perf_counter() - start
        start = time.perf_counter()
        load_arrays(split, SIZE, 1, cache_dir=Path(cache))
        hit_s = time.perf_counter() - start
    augment = BatchAugment(rotation=ROTATION, zoom=ZOOM, shift=SHIFT, hflip=HFLIP)
    ours = batches_per_second(ArrayLoader(images, labels, args.batch_size, augment=augment), args.batches, args.repeats)

    pil = torch.utils.data.DataLoader(
        PilImages(split),
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
    )
    baseline = batches_per_second(pil, args.batches, args.repeats)

    print(f"dataset: {args.path} train, {len(split)} images, batch {args.batch_size}, {args.workers} workers/threads")
    print(f"load_arrays: first decode {decode_s:.1f} s, cache hit {hit_s:.2f} s")
    print(f"load_arrays + ArrayLoader + BatchAugment: {ours:8.1f} batches/s")
    print(f"PIL per-image + DataLoader:               {baseline:8.1f} batches/s")
    print(f"ratio: {ours / baseline:.1f}x")


if __name__ == "__main__":
    main()
