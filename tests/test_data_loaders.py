"""BatchAugment, Mixup and the loaders: shapes, range, flips, identity, mixing, normalisation, epochs and sharding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emolens.data import load_arrays, load_dataset
from emolens.data.augment import BatchAugment, Mixup
from emolens.data.loader import ArrayLoader
from emolens.preprocess import normalize


@pytest.fixture(scope="module")
def fer_val(fer_small: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    split = load_dataset(fer_small).split("val")
    return load_arrays(split, 48, 1, cache_dir=tmp_path_factory.mktemp("cache"))


def _batch(fer_val: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(normalize(fer_val[0][:16]))


def test_augment_shapes_and_range(fer_val: tuple[np.ndarray, np.ndarray]) -> None:
    torch.manual_seed(0)
    x = _batch(fer_val)
    aug = BatchAugment(rotation=20, zoom=(0.8, 1.2), shift=0.1, hflip=0.5, random_crop=4, erasing=1.0)
    y = aug(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert y.min() >= -1.0 - 1e-5 and y.max() <= 1.0 + 1e-5
    assert not torch.allclose(y, x)
    assert ((y == 0).flatten(1).sum(1) > 0).all()  # every sample has an erased patch
    rgb = torch.rand(4, 3, 32, 40) * 2 - 1
    assert aug(rgb).shape == (4, 3, 32, 40)


def test_augment_flip_and_identity(fer_val: tuple[np.ndarray, np.ndarray]) -> None:
    x = _batch(fer_val)
    torch.testing.assert_close(BatchAugment(rotation=0, zoom=(1, 1), shift=0, hflip=1.0)(x), x.flip(-1))
    # the flip folded into the affine warp (a tiny rotation bound keeps the grid_sample path)
    warped = BatchAugment(rotation=1e-9, zoom=(1, 1), shift=0, hflip=1.0)(x)
    torch.testing.assert_close(warped, x.flip(-1), atol=1e-4, rtol=0)
    off = BatchAugment(rotation=0, zoom=(1, 1), shift=0, hflip=0, random_crop=None, erasing=0)
    assert torch.equal(off(x), x)
    assert torch.equal(BatchAugment().eval()(x), x)
    shifted = BatchAugment(rotation=0, zoom=(1, 1), shift=0, hflip=0, random_crop=3)(x)
    assert shifted.shape == x.shape and not torch.equal(shifted, x)


def test_mixup_blends_images_and_targets_alike(fer_val: tuple[np.ndarray, np.ndarray]) -> None:
    torch.manual_seed(0)
    n = 16
    x, y = Mixup(1.0, n)(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4), torch.arange(n))
    assert y.shape == (n, n) and torch.allclose(y.sum(1), torch.ones(n))
    lam = y[torch.arange(n), torch.arange(n)]  # each sample's own share; the rest went to its partner
    partner = torch.where(lam < 1, (y - torch.diag(lam)).argmax(1), torch.arange(n))
    torch.testing.assert_close(x[:, 0, 0, 0], lam * torch.arange(n) + (1 - lam) * partner)
    assert torch.allclose(lam[lam < 1], lam[lam < 1][0])  # one λ per batch
    # a class either partner's dataset leaves undefined stays undefined; the rest sums to 1
    soft = torch.tensor([[0.5, 0.5, float("nan")], [0.2, 0.2, 0.6]])
    crossed = 0
    for _ in range(20):  # the partner is random: sometimes each sample is its own
        _, t = Mixup(1.0, 3)(torch.zeros(2, 1, 2, 2), soft)
        assert torch.allclose(torch.nan_to_num(t).sum(1), torch.ones(2)) and torch.isnan(t[0, 2])
        crossed += bool(torch.isnan(t[1, 2]))
    assert crossed > 0
    images, labels = fer_val
    batch, targets = next(iter(ArrayLoader(images, labels, batch_size=32, shuffle=False, mixup=Mixup(1.0, 7))))
    assert batch.shape == (32, 1, 48, 48) and targets.shape == (32, 7) and torch.allclose(targets.sum(1), torch.ones(32))
    clean = torch.from_numpy(normalize(images[:8]))
    same_x, same_y = Mixup(1.0, 7).eval()(clean, torch.from_numpy(labels[:8]))
    assert same_x is clean and torch.equal(same_y, torch.from_numpy(labels[:8]))
    with pytest.raises(ValueError, match="non-negative"):
        Mixup(-1.0, 7)


def test_array_loader_normalises_and_batches(fer_val: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = fer_val
    loader = ArrayLoader(images, labels, batch_size=10, shuffle=False)
    batches = list(loader)
    assert len(loader) == len(batches) == 6 and len(batches[-1][1]) == 6
    x, y = batches[0]
    assert x.dtype == torch.float32 and x.shape == (10, 1, 48, 48) and y.dtype == torch.int64
    np.testing.assert_array_equal(x.numpy(), normalize(images[:10]))
    np.testing.assert_array_equal(y.numpy(), labels[:10])
    assert len(ArrayLoader(images, labels, batch_size=10, drop_last=True)) == 5


def test_array_loader_epochs_and_sharding(fer_val: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = fer_val
    ids = np.arange(len(labels))  # labels carry the sample index to follow the order

    def order(loader: ArrayLoader, epoch: int) -> list[int]:
        loader.set_epoch(epoch)
        return [int(i) for _, y in loader for i in y]

    a, b = ArrayLoader(images, ids, 8, seed=1), ArrayLoader(images, ids, 8, seed=1)
    assert order(a, 0) == order(b, 0) and sorted(order(a, 0)) == ids.tolist()
    assert order(a, 1) != order(a, 0) and order(a, 1) == order(b, 1)
    shards = [ArrayLoader(images, ids, 8, seed=1, rank=r, world_size=3) for r in range(3)]
    seen = [order(s, 2) for s in shards]
    assert len({len(s) for s in shards}) == 1 and all(len(s) == 19 for s in seen)  # 56 samples padded to 57
    assert set().union(*map(set, seen)) == set(ids.tolist())
