"""Age estimation: the UTKFace layout and its duplicate-safe split, the age loss and metrics, a tiny
``train --task age`` run evaluated and exported, the bundled age model, and age in the product
(opt-in, absent and free when off)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emolens.age import (
    AGE_CLASSES,
    age_bin,
    age_metrics,
    decade_counts,
    gaussian_targets,
    parse_utkface_name,
    predicted_age,
)
from emolens.apps.cli import app
from emolens.data import load_dataset, read_image
from emolens.inference.classifier import WEIGHTS, AgeEstimator, list_bundled_models
from emolens.inference.recognizer import Recognizer
from emolens.inference.results import FaceResult, VideoResult
from emolens.inference.tracking import FaceTracker

BUNDLED_AGE = WEIGHTS / "age.onnx"


def _copy_with_duplicates(src: Path, dest: Path, n: int = 150, copies: int = 12) -> dict[str, list[str]]:
    """``n`` real chips into ``dest`` plus byte-identical copies of ``copies`` of them under other
    (validly named, differently aged) names; returns each duplicated file's group of names."""
    dest.mkdir()
    files = sorted(src.iterdir())[:n]
    for f in files:
        shutil.copy(f, dest / f.name)
    groups = {}
    for k, f in enumerate(files[:copies]):
        twin = f"{(k * 7) % 90 + 1}_1_2_2017010{k:02d}000000000.jpg.chip.jpg"
        shutil.copy(f, dest / twin)
        groups[f.name] = [f.name, twin]
    return groups


@pytest.mark.filterwarnings("ignore:.*notes.jpg:UserWarning")  # every reload of the folder warns again
def test_utkface_layout_and_duplicate_safe_split(utkface_small, tmp_path):
    folder = tmp_path / "utk"
    groups = _copy_with_duplicates(utkface_small, folder)
    (folder / "notes.jpg").write_bytes((utkface_small / sorted(p.name for p in utkface_small.iterdir())[0]).read_bytes())
    with pytest.warns(UserWarning, match="notes.jpg"):
        dataset = load_dataset(folder)
    assert dataset.format == "utkface" and dataset.classes == list(AGE_CLASSES)
    train, val = dataset.split("train"), dataset.split("val")
    names = {p.name for s in (train, val) for p in s.paths}
    assert len(train) + len(val) == len(names) == 162  # every named image once, notes.jpg left out
    assert 0.08 <= len(val) / 162 <= 0.14
    side = {p.name: s.name for s in (train, val) for p in s.paths}
    for members in groups.values():  # byte-identical files never straddle the split
        assert len({side[m] for m in members}) == 1
    for s in (train, val):  # the label is the age in the name, clipped to the last bin
        for p, label in zip(s.paths, s.labels):
            assert label == min(parse_utkface_name(p.name)[0], 100)
    again = load_dataset(folder, seed=0).split("val")
    other = load_dataset(folder, seed=1).split("val")
    assert [p.name for p in again.paths] == [p.name for p in val.paths]
    assert [p.name for p in other.paths] != [p.name for p in val.paths]
    whole = load_dataset(folder, format="utkface-eval")
    assert list(whole.splits) == ["eval"] and len(whole.split("eval")) == 162


def test_utkface_names_and_errors(tmp_path):
    assert parse_utkface_name("26_1_2_20170116174525125.jpg.chip.jpg") == (26, "female", "asian")
    assert parse_utkface_name("26_1_7_20170116174525125.jpg") is None  # race 0-4 only
    assert parse_utkface_name("happy_01.jpg") is None
    (tmp_path / "a.jpg").write_bytes(b"x")
    from emolens.errors import DatasetError

    with pytest.raises(DatasetError, match="no UTKFace images"), pytest.warns(UserWarning, match="a.jpg"):
        load_dataset(tmp_path, format="utkface")


def test_age_targets_loss_and_metrics():
    torch = pytest.importorskip("torch")
    from emolens.training.losses import AgeLoss

    t = gaussian_targets(np.array([0, 30, 100]), sigma=2.0)
    assert t.shape == (3, 101) and np.allclose(t.sum(1), 1) and list(t.argmax(1)) == [0, 30, 100]
    assert predicted_age(t[1:2], AGE_CLASSES)[0] == pytest.approx(30, abs=1e-3)
    # the median, each bin spread over its year: a long tail to the right moves it less than the mean
    skewed = np.zeros((1, 101))
    skewed[0, [20, 21, 60]] = 0.4, 0.3, 0.3
    assert predicted_age(skewed, AGE_CLASSES)[0] == pytest.approx(20.5 + 0.1 / 0.3)
    assert (skewed @ np.arange(101))[0] == pytest.approx(32.3)
    assert list(predicted_age(np.eye(101)[[0, 100]], AGE_CLASSES)) == [0, 100]  # clipped to the bins
    assert predicted_age(np.zeros((0, 101)), AGE_CLASSES).shape == (0,)
    assert list(age_bin([0.4, 26.6, 116])) == [0, 27, 100]

    loss = AgeLoss(torch.arange(101, dtype=torch.float32), l1_weight=0.5)
    targets = torch.from_numpy(gaussian_targets(np.array([30]), sigma=2.0))
    right = torch.log(targets + 1e-6)
    wrong = torch.log(torch.from_numpy(gaussian_targets(np.array([60]), sigma=2.0)) + 1e-6)
    assert loss(right, targets) < loss(wrong, targets)
    # the L1 term is 0.5 × |E − 30| years: 15 for a prediction centred on 60
    assert float(loss(wrong, targets)) - float(loss.cross_entropy(wrong, targets)) == pytest.approx(15, abs=0.01)

    m = age_metrics(np.array([5, 15, 30, 50, 70]), np.array([7, 15, 40, 50, 60]),
                    {"gender": np.array(["male", "female", "male", "female", "male"])})
    assert m["mae"] == pytest.approx(22 / 5) and m["cs5"] == pytest.approx(3 / 5) and m["n"] == 5
    assert m["bands"]["0-12"]["mae"] == 2 and m["bands"]["21-40"]["mae"] == 10 and m["bands"]["61+"]["bias"] == -10
    assert m["groups"]["gender"]["female"] == {"n": 2, "mae": 0.0, "cs5": 1.0, "bias": 0.0}
    assert decade_counts({"3": 2, "9": 1, "10": 4, "100": 1}) == {"0-9": 3, "10-19": 4, "100+": 1}


@pytest.mark.slow
def test_train_task_age_evaluate_export(utkface_small, tmp_path):
    """One epoch of ``train --task age`` on real chips, then evaluate (metrics.json, scatter) and
    export (metadata task=age) through the CLI, and the run served by AgeEstimator."""
    runner, run, cache = CliRunner(), tmp_path / "run", str(tmp_path / "cache")
    common = ["--data", str(utkface_small), "--epochs", "1", "--batch-size", "32", "--workers", "1", "--cache-dir", cache]
    wrong = runner.invoke(app, ["train", *common, "--out", str(tmp_path / "x")])
    assert wrong.exit_code == 2 and "--task age" in wrong.output
    result = runner.invoke(app, ["train", "--task", "age", *common, "--out", str(run), "--margin", "0",
                                 "--input-size", "32", "--channels", "3", "--seed", "3", "--precise-bn", "100"])  # --seed leaves the split
    assert result.exit_code == 0, result.output
    assert "BatchNorm statistics recomputed on 100 training images" in result.output
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert float(rows[0]["val_mae"]) > 0 and (run / "curves.png").is_file()

    report_dir = tmp_path / "report"
    result = runner.invoke(app, ["evaluate", "--model", str(run), "--data", str(utkface_small), "--out", str(report_dir),
                                 "--cache-dir", cache])
    assert result.exit_code == 0, result.output
    report = json.loads((report_dir / "metrics.json").read_text())
    assert report["task"] == "age" and report["split"] == "val" and 0 < report["mae"] < 60
    assert 0 <= report["cs5"] <= 1 and set(report["bands"]) == {"0-12", "13-20", "21-40", "41-60", "61+"}
    assert set(report["groups"]) == {"gender", "race"} and sum(g["n"] for g in report["groups"]["gender"].values()) == report["n"]
    assert (report_dir / "age_scatter.png").stat().st_size > 10_000
    # the same faces and ages (none over 100): training validated on the split evaluate reads, whatever --seed
    assert report["mae"] == pytest.approx(float(rows[0]["val_mae"]), abs=0.01)

    onnx_path = tmp_path / "age.onnx"
    result = runner.invoke(app, ["export", str(run), "--out", str(onnx_path), "--cache-dir", cache])
    assert result.exit_code == 0, result.output
    estimator = AgeEstimator.load(onnx_path)
    assert estimator.task == "age" and estimator.crop.margin == 0 and estimator.crop.size == 32
    ages = estimator.predict_ages(np.stack([read_image(p) for p in sorted(utkface_small.iterdir())[:8]]))
    assert ages.shape == (8,) and ((ages >= 0) & (ages <= 100)).all()

    # distillation: the run as a teacher (flip-averaged outputs saved), a student trained on them
    teachers = tmp_path / "teachers.npz"
    result = runner.invoke(app, ["teach", str(run), "--data", str(utkface_small), "--out", str(teachers), "--tta", "flip",
                                 "--cache-dir", cache])
    assert result.exit_code == 0 and "ensemble MAE" in result.output, result.output
    student = ["train", "--task", "age", *common, "--margin", "0", "--input-size", "32", "--channels", "3",
               "--teacher", str(teachers), "--ema", "0.9"]
    too_much = runner.invoke(app, [*student, "--out", str(tmp_path / "s0"), "--distill-weight", "0.8"])
    assert too_much.exit_code == 2 and "--distill-weight ≤ 0.5" in too_much.output
    result = runner.invoke(app, [*student, "--out", str(tmp_path / "s1"), "--distill-weight", "0.5"])
    assert result.exit_code == 0, result.output
    n_train = len(load_dataset(utkface_small).split("train"))
    assert f"teacher outputs: {n_train} of {n_train} " in result.output


@pytest.mark.skipif(not BUNDLED_AGE.is_file(), reason="no bundled age model")
def test_bundled_age_model_gives_plausible_ages(utkface_val_sample):
    """The bundled model on 60 chips of its own validation split (never trained on): a bound that
    catches a broken model, a wrong crop or a wrong colour order (the card gives the measured MAE)."""
    estimator = AgeEstimator.load("age")
    assert "age" not in list_bundled_models() and BUNDLED_AGE.stat().st_size <= 3_000_000
    paths = sorted(utkface_val_sample.iterdir())
    true = np.array([parse_utkface_name(p.name)[0] for p in paths], float)
    pred = estimator.predict_ages(np.stack([read_image(p) for p in paths]))
    assert len(true) >= 60 and np.abs(pred - true).mean() < 7.0
    babies, elders = pred[true <= 5], pred[true >= 65]
    assert babies.size and elders.size and babies.mean() < 12 < 50 < elders.mean()


@pytest.mark.skipif(not BUNDLED_AGE.is_file(), reason="no bundled age model")
def test_analyze_age_writes_age_to_json_and_csv(media, tmp_path):
    out_json, out_csv = tmp_path / "r.json", tmp_path / "r.csv"
    result = CliRunner().invoke(app, ["analyze", str(media / "pyfeat_multi_face.jpg"), "--age",
                                      "--json", str(out_json), "--csv", str(out_csv)])
    assert result.exit_code == 0, result.output
    faces = json.loads(out_json.read_text())["results"][0]["faces"]
    assert len(faces) == 5 and all(10 < f["age"] < 80 for f in faces)  # five adults
    rows = list(csv.DictReader(out_csv.open()))
    assert [float(r["age"]) for r in rows] == [f["age"] for f in faces]
    assert "age" in result.output


def test_age_off_costs_nothing(media, monkeypatch):
    """Without attributes no age model is loaded or run, and results carry no age key."""
    def refuse(*_args, **_kwargs):
        raise AssertionError("an age model was loaded although age is off")

    monkeypatch.setattr(AgeEstimator, "__init__", refuse)
    rec = Recognizer()
    assert rec.age is None
    face = rec.analyze(media / "pyfeat_multi_face.jpg").faces[0]
    assert face.age is None and "age" not in face.to_dict()
    with pytest.raises(ValueError, match="unknown face attribute"):
        Recognizer(attributes=("gender",))


def test_each_runtime_refuses_the_other_tasks_file():
    """The ONNX runtimes carry their task: an age file is no expression classifier and the reverse,
    each refusal naming the way that works; evaluation and export read either (OnnxPredictor)."""
    from emolens.errors import ModelError
    from emolens.inference.classifier import OnnxPredictor, resolve_model

    with pytest.raises(ModelError, match=r"an age model, not an expression model \(age is an attribute"):
        Recognizer(model="age")
    with pytest.raises(ModelError, match=r"an expression model, not an age model \(train one with --task age"):
        AgeEstimator.load("default")
    assert OnnxPredictor(resolve_model("age")).task == "age" and OnnxPredictor(resolve_model("default")).task == "expression"


def test_tracked_ages_are_smoothed_and_summarised():
    """Tracking smooths each face's age like its probabilities; a video summary gives the median."""
    tracker, video = FaceTracker(smoothing=0.5), VideoResult("clip", 100, 100, 10.0, ("happy", "sad"))
    for frame, age in enumerate((30.0, 40.0, 40.0)):
        faces = tracker.update([FaceResult((10, 10, 50, 50), 0.9, {"happy": 0.7, "sad": 0.3}, age=age)])
        video.add_frame(frame, frame / 10, faces)
    assert [r["age"] for r in video.timeline] == [30.0, 35.0, 37.5]
    assert video.summary()[0]["median_age"] == 35.0
    assert "age" in video.columns() and "age" not in VideoResult("c", 1, 1, 1.0, ("happy",)).columns()
