"""Several datasets in one run: source specs, class masks, FER+ vote targets, the masked loss,
packed datasets, teacher outputs and distillation, and crop parity between training and inference."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from emolens.apps.cli import app  # noqa: E402
from emolens.data import DatasetError, load_arrays, load_dataset, read_image  # noqa: E402
from emolens.data.pack import pack_dataset  # noqa: E402
from emolens.data.sources import (  # noqa: E402
    SourceSpec,
    epoch_indices,
    in_fold,
    load_source,
    mix_targets,
    parse_holdout,
    plurality,
    smooth_targets,
    source_classes,
    union_classes,
)
from emolens.evaluation.predictors import load_predictor  # noqa: E402
from emolens.models.checkpoint import load_model  # noqa: E402
from emolens.preprocess import CropSpec, crop_face  # noqa: E402
from emolens.training.config import TrainConfig  # noqa: E402
from emolens.training.losses import SoftTargetCrossEntropy  # noqa: E402
from emolens.training.teach import load_teacher_outputs, mean_of_members  # noqa: E402

EIGHT = ["anger", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


@pytest.fixture(scope="module")
def votes(shared: Path) -> Path:
    path = shared / "datasets" / "ferplus-votes.csv"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return path


def test_source_spec_parse():
    spec = SourceSpec.parse("data/fer,votes=v.csv,label_mix=0.25,weight=2,keep=anger+happy,name=fer")
    assert (spec.path, spec.votes, spec.label_mix, spec.weight, spec.keep, spec.name) == (
        "data/fer", "v.csv", 0.25, 2.0, "anger,happy", "fer")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        SourceSpec.parse("data/fer,colour=red")
    with pytest.raises(ValueError, match="weight must be a number"):
        SourceSpec.parse("data/fer,weight=lots")
    with pytest.raises(ValueError, match="label_mix"):
        SourceSpec.parse("data/fer,label_mix=2")
    assert SourceSpec.parse("data/aff,margin=-0.095").margin == -0.095 and SourceSpec.parse("data/aff").margin is None
    with pytest.raises(ValueError, match="margin must be in"):
        SourceSpec.parse("data/aff,margin=-0.6")


def test_vote_targets_and_masks(fer_small, votes, tmp_path):
    spec = SourceSpec.parse(f"{fer_small},votes={votes},label_mix=0.5")
    classes = union_classes([source_classes(spec), EIGHT])
    assert classes == EIGHT
    crop = CropSpec(48, 1, contrast="equalize")
    src = load_source(spec, classes, crop, cache_dir=tmp_path)
    assert src.mask.all()  # the votes bring contempt to FER2013's seven classes
    t = src.train_targets
    assert np.allclose(t.sum(axis=1), 1.0, atol=1e-5)
    folder = np.array([classes.index(k.split("/")[1].replace("angry", "anger")) for k in src.train_keys])
    assert (t[np.arange(len(t)), folder] >= 0.5 - 1e-6).all()  # half the target is the folder label
    assert (t.max(axis=1) < 1.0).mean() > 0.3  # and votes often disagree with it
    assert set(np.unique(src.val_vote_labels)) <= set(range(-1, 8))
    plain = load_source(SourceSpec.parse(str(fer_small)), classes, crop, cache_dir=tmp_path)
    assert np.isnan(plain.train_targets[:, classes.index("contempt")]).all()
    assert np.array_equal(np.nanargmax(plain.train_targets, axis=1), folder)


def test_plurality_ties_and_mixing():
    counts = np.array([[5, 3, 0], [4, 4, 2], [np.nan] * 3], np.float32)
    assert plurality(counts).tolist() == [0, -1, -1]
    t = np.array([[1.0, 0.0, np.nan], [0.0, 1.0, np.nan]], np.float32)
    teacher = np.array([[0.2, 0.2, 0.6], [np.nan] * 3], np.float32)
    mixed = mix_targets(t, teacher, 0.5)
    assert np.allclose(mixed[0, :2], [0.75, 0.25]) and np.isnan(mixed[0, 2])  # renormalised over defined classes
    assert np.array_equal(mixed[1], t[1], equal_nan=True)  # no teacher output: unchanged
    smoothed = smooth_targets(t, 0.1)
    assert np.allclose(smoothed[0, :2], [0.95, 0.05]) and np.isnan(smoothed[0, 2])


def test_epoch_indices_follow_weights():
    rng = np.random.default_rng(0)
    order = epoch_indices([10, 20], [2.0, 0.5], rng)
    assert len(order) == 30
    assert np.bincount(order[order < 10], minlength=10).tolist() == [2] * 10
    second = order[order >= 10]
    assert len(second) == 10 and len(set(second.tolist())) == 10


def test_masked_loss_is_cross_entropy_over_defined_classes():
    torch.manual_seed(0)
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, 2, 1, 2, 0])
    targets = torch.nn.functional.one_hot(labels, 4).float()
    targets[:, 3] = float("nan")
    expected = torch.nn.functional.cross_entropy(logits[:, :3], labels)
    assert torch.allclose(SoftTargetCrossEntropy()(logits, targets), expected, atol=1e-6)
    weight = torch.tensor([1.0, 2.0, 3.0, 4.0])
    expected_w = torch.nn.functional.cross_entropy(logits[:, :3], labels, weight=weight[:3])
    assert torch.allclose(SoftTargetCrossEntropy(weight)(logits, targets), expected_w, atol=1e-6)


def test_pack_keeps_faces_and_keys(fer_small, tmp_path):
    out = tmp_path / "fer.npz"
    result = CliRunner().invoke(app, ["data", "pack", str(fer_small), "--out", str(out), "--size", "48"])
    assert result.exit_code == 0, result.output
    packed, folder = load_dataset(out), load_dataset(fer_small)
    assert packed.format == "packed" and packed.name == folder.name and packed.classes == folder.classes
    for split in ("train", "val"):
        a = load_arrays(packed.split(split), 48, 1, cache_dir=tmp_path, contrast="equalize", with_keys=True)
        b = load_arrays(folder.split(split), 48, 1, cache_dir=tmp_path, contrast="equalize", with_keys=True)
        for x, y in zip(a, b):
            assert np.array_equal(x, y)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz: cannot read packed dataset"):
        load_dataset(bad)


def test_packs_refuse_another_margin(affectnet_small, fer_small, tmp_path):
    """A pack of a box dataset keeps the margin its faces were cut with; a run asking for another is refused."""
    boxed, plain = tmp_path / "aff.npz", tmp_path / "fer.npz"
    pack_dataset(affectnet_small, boxed, 48, 1, margin=0.1, cache_dir=tmp_path)
    pack_dataset(fer_small, plain, 48, 1, margin=0.1, cache_dir=tmp_path)
    load_dataset(boxed, crop=CropSpec(48, 1, margin=0.1))
    load_dataset(plain, crop=CropSpec(48, 1, margin=0.0))  # no boxes: the margin cut nothing
    load_dataset(boxed)  # no crop spec asked for: the faces as packed (e.g. to read the class names)
    with pytest.raises(DatasetError, match="aff.npz: faces were cut from their boxes with margin 0.1, but the crop spec asks for 0"):
        load_dataset(boxed, crop=CropSpec(48, 1, margin=0.0))
    run = CliRunner().invoke(app, ["train", "--data", str(boxed), "--margin", "0", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert run.exit_code == 2 and "repack with `emolens data pack … --margin 0`" in run.output, run.output


def test_crop_parity_between_training_and_inference(affectnet_small, tmp_path):
    """A face cut at inference (crop_face on the full photo) equals the face training decoded."""
    spec = CropSpec(48, 1, margin=0.1, contrast="equalize")
    split = load_dataset(affectnet_small, box_margin=spec.margin).split("train")
    faces, _ = load_arrays(split, spec.size, spec.channels, cache_dir=tmp_path, contrast=spec.contrast)
    for i in range(0, len(faces), 40):
        image = read_image(split.paths[i])
        h, w = image.shape[:2]
        xc, yc, bw, bh = split.boxes[i]
        box = ((xc - bw / 2) * w, (yc - bh / 2) * h, (xc + bw / 2) * w, (yc + bh / 2) * h)
        assert np.array_equal(crop_face(image, box, spec), faces[i])


def test_multi_dataset_run_teach_and_distil(fer_small, affectnet_small, votes, tmp_path):
    runner = CliRunner()
    cache = str(tmp_path / "cache")
    fer = f"{fer_small},votes={votes},label_mix=0.5"
    common = ["--epochs", "1", "--batch-size", "32", "--workers", "1", "--cache-dir", cache, "--contrast", "equalize"]
    result = runner.invoke(app, ["train", "--data", fer, "--data", f"{affectnet_small},weight=0.5", "--out",
                                 str(tmp_path / "teacher"), *common])
    assert result.exit_code == 0, result.output
    model, meta = load_model(tmp_path / "teacher")
    assert meta["classes"] == EIGHT and meta["crop"]["contrast"] == "equalize"
    row = next(csv.DictReader((tmp_path / "teacher" / "history.csv").open()))
    fer_acc, aff_acc = float(row["val_acc_fer2013-30-8"]), float(row["val_acc_affectnet-yolo"])
    assert float(row["val_acc"]) == pytest.approx((fer_acc + aff_acc) / 2, abs=1e-4)
    assert 0.0 <= float(row["val_votes_acc_fer2013-30-8"]) <= 1.0

    outputs = tmp_path / "teacher.npz"
    result = runner.invoke(app, ["teach", str(tmp_path / "teacher"), "--data", fer, "--data", str(affectnet_small),
                                 "--out", str(outputs), "--tta", "flip", "--cache-dir", cache])
    assert result.exit_code == 0, result.output
    report = json.loads(outputs.with_suffix(".json").read_text())
    assert set(report["val"]) == {"fer2013-30-8", "affectnet-yolo"}
    assert report["val"]["fer2013-30-8"]["ensemble"]["acc"] == pytest.approx(fer_acc, abs=0.05)  # flip TTA moves it a little
    teacher = load_teacher_outputs(outputs, EIGHT)
    src = load_source(SourceSpec.parse(str(affectnet_small)), EIGHT, CropSpec(48, 1, contrast="equalize"),
                      cache_dir=Path(cache))
    probs = teacher.lookup("affectnet-yolo", src.train_keys)
    assert not np.isnan(probs).any() and np.allclose(probs.sum(axis=1), 1.0, atol=1e-2)

    fer_only = tmp_path / "fer-teacher.npz"  # a second file for one source: averaged where both hold an image
    result = runner.invoke(app, ["teach", str(tmp_path / "teacher"), "--data", fer, "--out", str(fer_only),
                                 "--tta", "none", "--cache-dir", cache])
    assert result.exit_code == 0, result.output
    # A second copy of AffectNet cut tighter (its own margin, renamed) finds the teacher outputs of its dataset.
    tight = load_source(SourceSpec.parse(f"{affectnet_small},margin=-0.1,name=aff-tight"), EIGHT,
                        CropSpec(48, 1, contrast="equalize"), cache_dir=Path(cache))
    assert (tight.name, tight.dataset_name) == ("aff-tight", "affectnet-yolo")
    assert np.array_equal(tight.train_keys, src.train_keys) and not np.array_equal(tight.train_images, src.train_images)
    tight_out = tmp_path / "tight-teacher.npz"  # `teach` cuts the copy at its own margin too
    result = runner.invoke(app, ["teach", str(tmp_path / "teacher"), "--data", f"{affectnet_small},margin=-0.1,name=aff-tight",
                                 "--out", str(tight_out), "--tta", "none", "--cache-dir", cache])
    assert result.exit_code == 0, result.output
    expected = load_predictor(tmp_path / "teacher").predict_proba(tight.train_images)
    assert np.allclose(load_teacher_outputs(tight_out, EIGHT).lookup("aff-tight", tight.train_keys), expected, atol=2e-3)
    result = runner.invoke(app, ["train", "--data", fer, "--data", str(affectnet_small), "--data",
                                 f"{affectnet_small},margin=-0.1,name=aff-tight", "--teacher", str(outputs),
                                 "--teacher", str(fer_only), "--distill-weight", "0.7", "--out",
                                 str(tmp_path / "student"), *common])
    assert result.exit_code == 0, result.output
    assert "160 of 160 affectnet-yolo training images matched" in result.output
    assert "160 of 160 aff-tight training images matched" in result.output
    assert json.loads((tmp_path / "student" / "config.json").read_text())["teacher"] == [str(outputs), str(fer_only)]
    with pytest.raises(ValueError, match="teacher members"):
        load_teacher_outputs(outputs, EIGHT, members="3")

    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "teacher"), "--data", str(fer_small), "--split",
                                 "val", "--votes", str(votes), "--out", str(tmp_path / "report"), "--cache-dir", cache])
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(fer_acc, abs=0.03)  # fp32 here, bf16 autocast in training
    assert metrics["votes_accuracy"] == pytest.approx(float(row["val_votes_acc_fer2013-30-8"]), abs=0.05)
    assert 0.5 <= metrics["temperature_fit"]["temperature"] <= 3.0
    grid = metrics["temperature_fit"]["ece_by_temperature"]  # the model's own temperature is the grid's 1.00
    assert len(grid) == 21 and grid["1.00"] == pytest.approx(metrics["ece"], abs=1e-6)


def test_holdout_folds_follow_keys():
    assert parse_holdout("1/3") == (1, 3) and parse_holdout(None) is None
    for bad in ("2/2", "0/1", "a/b", "1", "-1/2"):
        with pytest.raises(ValueError, match="holdout must be K/N"):
            parse_holdout(bad)
    keys = np.array([f"train/{c}/{i:05d}.png" for c in EIGHT for i in range(400)])
    folds = np.stack([in_fold(keys, k, 3) for k in range(3)])
    assert (folds.sum(axis=0) == 1).all()  # every image in exactly one fold
    assert all(abs(f.mean() - 1 / 3) < 0.03 for f in folds)
    shuffled = np.random.default_rng(0).permutation(len(keys))
    assert np.array_equal(in_fold(keys[shuffled], 1, 3), folds[1][shuffled])  # by key, not position
    probs = np.full((2, 3, 2), np.nan, np.float32)
    probs[0, 0], probs[1, 0], probs[1, 1] = (0.2, 0.8), (0.6, 0.4), (1.0, 0.0)
    mean = mean_of_members(probs)
    assert np.allclose(mean[:2], [(0.4, 0.6), (1.0, 0.0)]) and np.isnan(mean[2]).all()


def test_cross_fitted_teachers_label_only_what_they_did_not_see(fer_small, votes, tmp_path):
    """Two teachers, each trained without one half (with mixup, as the published teacher recipes):
    `teach` gives every training image the outputs of the teacher that left it out, every
    validation image both."""
    runner = CliRunner()
    cache = str(tmp_path / "cache")
    fer = f"{fer_small},votes={votes},label_mix=0.5"
    common = ["--epochs", "1", "--batch-size", "32", "--workers", "1", "--cache-dir", cache, "--contrast", "equalize"]
    for k in (0, 1):
        result = runner.invoke(app, ["train", "--data", fer, "--holdout", f"{k}/2", "--mixup", "1.0",
                                     "--out", str(tmp_path / f"t{k}"), *common])
        assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "t1" / "config.json").read_text())
    assert (config["holdout"], config["mixup"]) == ("1/2", 1.0)
    with pytest.raises(ValueError, match="without --mixup"):
        TrainConfig(data="d", out="o", task="age", mixup=1.0)
    src = load_source(SourceSpec.parse(fer), EIGHT, CropSpec(48, 1, contrast="equalize"), cache_dir=Path(cache))
    fold0 = in_fold(src.train_keys, 0, 2)
    assert f"fold 1/2 held out: trains on {fold0.sum()} of {len(fold0)}" in result.output  # the last run's
    result = runner.invoke(app, ["train", "--data", fer, "--holdout", "2/2", "--out", str(tmp_path / "bad"), *common])
    assert result.exit_code != 0 and "holdout must be K/N" in result.output

    outputs = tmp_path / "crossfit.npz"
    result = runner.invoke(app, ["teach", str(tmp_path / "t0"), str(tmp_path / "t1"), "--data", fer,
                                 "--out", str(outputs), "--tta", "none", "--cache-dir", cache])
    assert result.exit_code == 0, result.output
    with np.load(outputs) as z:
        keys, probs = [str(k) for k in z["keys"]], z["probs"].astype(np.float32)
    row = {k: i for i, k in enumerate(keys)}
    train_rows = np.array([row[f"fer2013-30-8/{k}"] for k in src.train_keys])
    held = ~np.isnan(probs[:, train_rows, 0])
    assert np.array_equal(held[0], fold0) and np.array_equal(held[1], ~fold0)
    assert not np.isnan(probs[:, sorted(set(range(len(keys))) - set(train_rows.tolist()))]).any()  # validation: both
    report = json.loads(outputs.with_suffix(".json").read_text())
    assert report["holdout"] == ["0/2", "1/2"]
    train_report = report["train"]["fer2013-30-8"]
    assert [train_report[str(tmp_path / f"t{k}")]["n"] for k in (0, 1)] == [fold0.sum(), (~fold0).sum()]
    assert train_report["ensemble"]["n"] == len(fold0) and 0.0 <= train_report["ensemble"]["acc"] <= 1.0
    teacher = load_teacher_outputs(outputs, EIGHT).lookup("fer2013-30-8", src.train_keys)
    assert not np.isnan(teacher).any() and np.allclose(teacher[fold0], probs[0, train_rows[fold0]], atol=1e-6)


def test_level_eyes_rotates_a_tilted_face_upright(media):
    """A face rotated by 20° and cut with its (rotated) eye positions matches the upright cut."""
    import cv2

    image = read_image(media / "face_recognition_obama_and_biden.jpg")
    h, w = image.shape[:2]
    box = (w * 0.3, h * 0.3, w * 0.5, h * 0.6)
    eyes = np.array([[w * 0.36, h * 0.4], [w * 0.44, h * 0.4]])  # level
    spec = CropSpec(48, 1, margin=0.1)
    upright = crop_face(image, box, spec).astype(float)
    centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    turn = cv2.getRotationMatrix2D(centre, -20, 1.0)  # tilt the whole photo by 20° about the face
    tilted = cv2.warpAffine(image, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    tilted_eyes = np.c_[eyes, np.ones(2)] @ turn.T
    aligned = crop_face(tilted, box, spec, eyes=tilted_eyes).astype(float)
    naive = crop_face(tilted, box, spec).astype(float)
    assert np.abs(aligned - upright).mean() < 0.4 * np.abs(naive - upright).mean()
    assert np.array_equal(crop_face(image, box, spec, eyes=eyes), crop_face(image, box, spec))  # level: unchanged
