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
    big = load_source(spec, EIGHT, STUDENT, train_crop=loaded_view)
    small = load_source(spec, EIGHT, STUDENT)
    assert big.train_images.shape[1:] == (96, 96, 3) and big.val_images.shape[1:] == (48, 48, 1)
    faces = big.train_images[:64]
    x = torch.from_numpy(normalize(faces))
    flip = BatchAugment(rotation=0.0, zoom=(1.0, 1.0), shift=0.0, hflip=1.0)  # every face mirrored, exactly
    seen = flip(x)
    student_x, targets = teacher(seen, torch.full((len(x), 8), NAN))
    # The teacher labelled the mirrored faces (as its own runtime does from uint8 crops), not the originals.
    expected = predictor.predict_proba(np.ascontiguousarray(faces[:, :, ::-1]))
    assert np.allclose(targets.numpy(), expected, atol=1e-4)
    assert not np.allclose(expected, predictor.predict_proba(faces), atol=1e-2)
    # The student's view: the same mirrored faces at 48 px gray, close to the 48 px crops it is
    # evaluated and served on (luma of the equalised RGB crop, area averaging; FER2013's 48 px
    # originals went up to 96 px and back, about 6 of 255 gray levels apart on average).
    assert student_x.shape == (64, 1, 48, 48)
    direct = torch.from_numpy(normalize(np.ascontiguousarray(small.train_images[:64, :, ::-1])))
    assert (student_x - direct).abs().mean() < 0.055
    assert torch.equal(view(x, 96, 3), x) and view(x[:, :1], 96, 3).shape == (64, 3, 96, 96)


def test_train_distils_online_with_an_unlabeled_transfer_set(fer_small, utkface_small, tmp_path):
    runner = CliRunner()
    common = ["--arch", "mini-xception", "--epochs", "1", "--batch-size", "32", "--workers", "1", "--contrast",
              "equalize", "--margin", "0", "--cache-dir", str(tmp_path / "cache")]
    result = runner.invoke(app, ["train", "--data", str(fer_small), "--data", f"{utkface_small},unlabeled=1",
                                 "--teacher-model", "accurate-int8", "--distill-weight", "0.7", "--out",
                                 str(tmp_path / "student"), *common])
    assert result.exit_code == 0, result.output
    assert "online teacher accurate" in result.output and "distill weight 0.7" in result.output
    assert "utkface-64 (unlabeled): train 383" in result.output and "trained from a 96px×3 view" in result.output
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
