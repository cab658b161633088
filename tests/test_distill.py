"""Consistent (online) distillation and unlabeled transfer sets: ``train --teacher-model`` and
``--data ...,unlabeled=1``, on real faces with a bundled model as the teacher."""

from __future__ import annotations

import csv
import json
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from emolens.apps.cli import app  # noqa: E402
from emolens.data.augment import BatchAugment  # noqa: E402
from emolens.data.loader import ArrayLoader  # noqa: E402
from emolens.data.sources import SourceSpec, load_source, smooth_targets  # noqa: E402
from emolens.evaluation.predictors import load_predictor  # noqa: E402
from emolens.preprocess import CropSpec, normalize  # noqa: E402
from emolens.training.distill import OnlineTeacher, blend, view  # noqa: E402

EIGHT = ["anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
STUDENT = CropSpec(48, 1, margin=0.0, contrast="equalize")
NAN = math.nan


def test_blend_fills_transfer_faces_and_mixes_within_each_dataset_classes():
    targets = torch.tensor([[NAN, NAN, NAN], [1.0, 0.0, NAN], [0.0, 1.0, 0.0]])
    probs = torch.tensor([[0.2, 0.3, 0.5], [0.2, 0.3, 0.5], [0.5, 0.0, 0.5]])
    out = blend(targets, probs, 0.4)
    assert torch.allclose(out[0], probs[0])  # unlabeled: the teacher's output is the whole target
    assert torch.allclose(out[1, :2], torch.tensor([0.6 + 0.4 * 0.4, 0.4 * 0.6])) and math.isnan(out[1, 2])
    assert torch.allclose(out[2], torch.tensor([0.2, 0.6, 0.2]))
    assert torch.allclose(torch.nansum(out, dim=1), torch.ones(3))
    with warnings.catch_warnings():  # label smoothing passes a transfer-set row through, silently
        warnings.simplefilter("error")
        smoothed = smooth_targets(targets.numpy(), 0.1)
    assert np.isnan(smoothed[0]).all() and np.allclose(smoothed[1, :2], [0.95, 0.05])


def test_online_teacher_labels_the_view_the_student_sees(fer_small):
    predictor = load_predictor("accurate-int8")  # 96 px RGB, margin 0, equalised
    teacher = OnlineTeacher(predictor, EIGHT, 0.5, STUDENT)
    loaded_view = teacher.train_view()
    assert (loaded_view.size, loaded_view.channels) == (96, 3)
    spec = SourceSpec.parse(str(fer_small))
    src = load_source(spec, EIGHT, STUDENT, train_crop=loaded_view)
    assert src.train_view.shape[1:] == (96, 96, 3) and src.train_images.shape[1:] == (48, 48, 1)
    assert np.array_equal(src.train_images, load_source(spec, EIGHT, STUDENT).train_images)
    faces, own = src.train_view[:64], src.train_images[:64]
    flip = BatchAugment(rotation=0.0, zoom=(1.0, 1.0), shift=0.0, hflip=1.0)  # every face mirrored, exactly
    loader = ArrayLoader(faces, np.zeros(64, np.int64), 64, shuffle=False, augment=flip, paired=own)
    (seen, student_seen), _ = next(iter(loader))
    student_x, targets = teacher((seen, student_seen), torch.full((64, 8), NAN))
    # The teacher labelled the mirrored faces (as its own runtime does from uint8 crops), not the originals.
    expected = predictor.predict_proba(np.ascontiguousarray(faces[:, :, ::-1]))
    assert np.allclose(targets.numpy(), expected, atol=1e-4)
    assert not np.allclose(expected, predictor.predict_proba(faces), atol=1e-2)
    # The student trains on its own crops, mirrored alike: exactly what it meets at inference.
    assert torch.equal(student_x, torch.from_numpy(normalize(np.ascontiguousarray(own[:, :, ::-1]))))
    # With every augmentation, one draw moves both views alike: the teacher's view brought down to
    # 48 px gray stays close to the student's (FER2013's faces are 48 px: the 96 px copy is a blur).
    strong = BatchAugment(rotation=15, zoom=(0.8, 1.2), shift=0.1, hflip=0.5, random_crop=8, erasing=0.5)
    torch.manual_seed(0)
    big, small = strong(torch.from_numpy(normalize(faces)), torch.from_numpy(normalize(own)))
    together = (view(big, 48, 1) - small).abs().mean()
    apart = (view(strong(torch.from_numpy(normalize(faces))), 48, 1) - small).abs().mean()
    assert together < 0.1 < apart, (together, apart)
    assert torch.equal(view(big, 96, 3), big) and view(small, 96, 3).shape == (64, 3, 96, 96)


def test_train_distils_online_with_an_unlabeled_transfer_set(fer_small, utkface_small, tmp_path):
    runner = CliRunner()
    common = ["--arch", "mini-xception", "--epochs", "1", "--batch-size", "32", "--workers", "1", "--contrast",
              "equalize", "--margin", "0", "--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(app, ["train", "--data", str(fer_small), "--data", f"{utkface_small},unlabeled=1",
                                 "--teacher-model", "accurate-int8", "--distill-weight", "0.7", "--out",
                                 str(tmp_path / "student"), *common])
    assert result.exit_code == 0, result.output
    assert "online teacher accurate" in result.output and "distill weight 0.7" in result.output
    assert "utkface-64 (unlabeled): train 383" in result.output and "(and at 96px×3 for the teacher)" in result.output
    row = next(csv.DictReader((tmp_path / "student" / "history.csv").open()))
    assert [k for k in row if k.startswith("val_acc_")] == ["val_acc_fer2013-30-8"]  # no validation for the transfer set
    assert 0.0 <= float(row["val_acc"]) <= 1.0 and math.isfinite(float(row["train_loss"]))
    assert json.loads((tmp_path / "student" / "config.json").read_text())["teacher_model"] == "accurate-int8"
    resumed = runner.invoke(app, ["train", "--resume", str(tmp_path / "student"), "--epochs", "2"])
    assert resumed.exit_code == 0, resumed.output
    assert "online teacher accurate" in resumed.output and "epoch 1:" in resumed.output

    alone = runner.invoke(app, ["train", "--data", str(fer_small), "--data", f"{utkface_small},unlabeled=1",
                                "--out", str(tmp_path / "x"), *common])
    assert alone.exit_code == 2 and "an unlabeled source needs --teacher-model" in alone.output
    bad = runner.invoke(app, ["train", "--data", f"{utkface_small},unlabeled=maybe", "--out", str(tmp_path / "y")])
    assert bad.exit_code == 2 and "unlabeled must be 1 or 0" in bad.output
    teach = runner.invoke(app, ["teach", "accurate-int8", "--data", f"{utkface_small},unlabeled=1", "--out",
                                str(tmp_path / "t.npz")])
    assert teach.exit_code == 2 and "labelled while the student trains" in teach.output
    age = runner.invoke(app, ["train", "--task", "age", "--data", str(utkface_small), "--teacher-model", "age",
                              "--out", str(tmp_path / "z")])
    assert age.exit_code == 2 and "trains expression models only" in age.output
