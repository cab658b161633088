"""Evaluation metrics, cross-dataset matching, TTA, and ONNX export checked against PyTorch."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.metrics import classification_report, confusion_matrix, f1_score  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from emolens.apps.cli import app  # noqa: E402
from emolens.data import load_arrays, load_dataset  # noqa: E402
from emolens.evaluation.evaluate import evaluate_model, tta_views  # noqa: E402
from emolens.evaluation.metrics import compute_metrics, expected_calibration_error  # noqa: E402
from emolens.models import create_model  # noqa: E402
from emolens.models.checkpoint import save_checkpoint  # noqa: E402
from emolens.models.export import compare_with_torch, export_onnx, quantize_int8  # noqa: E402
from emolens.preprocess import CropSpec  # noqa: E402

FER = ["anger", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
QUIET = lambda _msg: None  # noqa: E731


def _checkpoint(path, classes, seed=0):
    """A mini-xception checkpoint with BN statistics from random inputs, so outputs vary by face."""
    torch.manual_seed(seed)
    model = create_model("mini-xception", len(classes))
    with torch.no_grad():
        model.train()(torch.randn(64, 1, 48, 48))
    state = {"model": model.state_dict(), "model_name": "mini-xception", "model_kwargs": {},
             "classes": list(classes), "crop": CropSpec().to_dict()}
    save_checkpoint(state, path)
    return path


def test_metrics_equal_scikit_learn():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 5, 300)
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, 5, 300))
    labels = ["neutral", "happy", "sad", "surprise", "anger"]
    m = compute_metrics(y_true, y_pred, labels)
    report = classification_report(y_true, y_pred, output_dict=True, zero_division=0)
    assert m["accuracy"] == pytest.approx(report["accuracy"])
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    for i, name in enumerate(labels):
        for key in ("precision", "recall"):
            assert m["per_class"][name][key] == pytest.approx(report[str(i)][key])
        assert m["per_class"][name]["f1"] == pytest.approx(report[str(i)]["f1-score"])
        assert m["per_class"][name]["support"] == report[str(i)]["support"]
    assert m["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()
    assert np.asarray(m["confusion_matrix"]).sum(axis=1).tolist() == np.bincount(y_true).tolist()  # rows = true
    assert m["labels"] == labels and m["n"] == 300


def test_ece_by_hand():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55]])
    y = np.array([0, 1, 1, 0])
    # bins: 0.9 → correct, 0.8 → wrong, 0.7 → correct, 0.55 → wrong; one sample per bin
    expected = (abs(1 - 0.9) + abs(0 - 0.8) + abs(1 - 0.7) + abs(0 - 0.55)) / 4
    assert expected_calibration_error(probs, y) == pytest.approx(expected)
    assert expected_calibration_error(np.eye(3), np.arange(3)) == 0.0


def test_tta_views_shapes():
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48, 1), dtype=np.uint8)
    assert len(tta_views(faces, "none")) == 1
    flip = tta_views(faces, "flip")
    assert np.array_equal(flip[1][:, :, ::-1], faces)
    ten = tta_views(faces, "tencrop")
    assert len(ten) == 10 and all(v.shape == faces.shape for v in ten)
    with pytest.raises(ValueError, match="tta must be one of"):
        tta_views(faces, "twenty")


def test_evaluate_checkpoint_and_its_onnx_agree(fer_small, tmp_path):
    ckpt = _checkpoint(tmp_path / "m.pt", FER)
    onnx_path, meta = export_onnx(ckpt, tmp_path / "m.onnx")
    cache = tmp_path / "cache"
    a = evaluate_model(ckpt, fer_small, tmp_path / "a", tta="flip", cache_dir=cache, log=QUIET)
    b = evaluate_model(onnx_path, fer_small, tmp_path / "b", tta="flip", cache_dir=cache, log=QUIET)
    assert a["n"] == b["n"] == 56 and a["split"] == "val"
    assert a["confusion_matrix"] == b["confusion_matrix"]
    assert a["accuracy"] == pytest.approx(b["accuracy"]) and "tta_gain" in a
    written = json.loads((tmp_path / "a" / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "weighted_f1", "per_class", "confusion_matrix", "labels", "ece", "n", "skipped"):
        assert key in written
    assert (tmp_path / "a" / "confusion_matrix.png").stat().st_size > 0


def test_cross_dataset_leaves_unknown_classes_out(affectnet_small, tmp_path):
    """A 7-class FER model on AffectNet (8 classes): contempt is reported and left out; a 3-class
    model only ever predicts its own classes."""
    ckpt = _checkpoint(tmp_path / "fer.pt", FER)
    r = evaluate_model(ckpt, affectnet_small, tmp_path / "r", cache_dir=tmp_path / "cache", log=QUIET)
    counts = load_dataset(affectnet_small).split("val").counts()
    assert r["labels"] == [c for c in counts if c != "contempt"]
    assert r["skipped"]["data_classes_unknown_to_model"] == {"contempt": counts["contempt"]}
    assert r["n"] == sum(counts.values()) - counts["contempt"]

    small = _checkpoint(tmp_path / "three.pt", ["happy", "sad", "surprise"])
    r = evaluate_model(small, affectnet_small, tmp_path / "s", cache_dir=tmp_path / "cache", log=QUIET)
    assert r["labels"] == ["happy", "sad", "surprise"]
    assert r["n"] == counts["happy"] + counts["sad"] + counts["surprise"]
    assert set(r["skipped"]["data_classes_unknown_to_model"]) == set(counts) - {"happy", "sad", "surprise"}
    assert np.asarray(r["confusion_matrix"]).sum() == r["n"]


def test_export_matches_pytorch_on_real_faces(fer_small, tmp_path):
    import onnx
    import onnxruntime as ort

    ckpt = _checkpoint(tmp_path / "m.pt", FER)
    path, _ = export_onnx(ckpt, tmp_path / "m.onnx", opset=17)
    proto = onnx.load(path)
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["emolens"])
    assert meta == {"classes": FER, "crop": CropSpec().to_dict(), "model_name": "mini-xception", "temperature": 1.0,
                    "task": "expression", "tta": "none"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"] and [o.name for o in session.get_outputs()] == ["logits"]
    assert isinstance(session.get_inputs()[0].shape[0], str)  # dynamic batch

    faces, labels = load_arrays(load_dataset(fer_small).split("val"), 48, 1, cache_dir=tmp_path / "cache")
    r = compare_with_torch(path, ckpt, faces, labels)
    assert r["n"] == 56 and r["top1_agreement"] == 1.0 and r["max_prob_diff"] < 1e-4

    q = quantize_int8(path, tmp_path / "m.int8.onnx", mode="static", calibration=faces)
    assert json.loads({p.key: p.value for p in onnx.load(q).metadata_props}["emolens"]) == meta
    rq = compare_with_torch(q, ckpt, faces, labels)
    assert rq["max_prob_diff"] < 0.2 and rq["n"] == 56
    # the first convolution reads float pixels and the classifier writes float logits: both stay float
    graph = onnx.load(q).graph
    producers = {o: n.op_type for n in graph.node for o in n.output}  # weights in float: initialisers, no producer
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert producers.get(convs[0].input[1]) is None
    assert all(producers.get(c.input[1]) == "DequantizeLinear" for c in convs[1:])
    assert [producers.get(n.input[1]) for n in graph.node if n.op_type in ("Gemm", "MatMul")][-1] is None


def test_fp16_weights_export(fer_small, tmp_path):
    """``--fp16-weights``: half the file, the same predictions to fp16 rounding, float32 arithmetic."""
    import onnx

    ckpt = _checkpoint(tmp_path / "m.pt", FER)
    full, _ = export_onnx(ckpt, tmp_path / "m.onnx")
    half, _ = export_onnx(ckpt, tmp_path / "m16.onnx", fp16_weights=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    graph = onnx.load(half).graph
    assert {i.data_type for i in graph.initializer if np.prod(i.dims) >= 1024} == {onnx.TensorProto.FLOAT16}
    assert graph.input[0].type.tensor_type.elem_type == graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    faces, labels = load_arrays(load_dataset(fer_small).split("val"), 48, 1, cache_dir=tmp_path / "cache")
    r = compare_with_torch(half, ckpt, faces, labels)
    assert r["top1_agreement"] >= 0.98 and r["max_prob_diff"] < 0.02, r


def test_flip_averaged_export(fer_small, tmp_path):
    """``--tta flip``: the graph averages each face with its mirror image, so a face and its mirror
    get the same prediction; it matches PyTorch through the same wrapper and says so in its metadata."""
    from emolens.inference.classifier import EmotionClassifier

    ckpt = _checkpoint(tmp_path / "m.pt", FER)
    result = CliRunner().invoke(app, ["export", str(ckpt), "--out", str(tmp_path / "flip.onnx"), "--tta", "flip",
                                      "--data", str(fer_small), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "top-1 agreement 1.0000" in result.output
    model = EmotionClassifier(tmp_path / "flip.onnx")
    assert model.tta == "flip"
    faces, _ = load_arrays(load_dataset(fer_small).split("val"), 48, 1, cache_dir=tmp_path / "cache")
    mirrored = np.ascontiguousarray(faces[:, :, ::-1])
    flip_gap = np.abs(model.predict_proba(faces) - model.predict_proba(mirrored)).max()
    plain = EmotionClassifier(export_onnx(ckpt, tmp_path / "plain.onnx")[0])
    plain_gap = np.abs(plain.predict_proba(faces) - plain.predict_proba(mirrored)).max()
    assert flip_gap < 1e-5 and plain_gap > 100 * flip_gap, (flip_gap, plain_gap)
    # evaluate's flip TTA on the plain file computes what the flip graph does: the mean of the logits
    from emolens.evaluation.evaluate import predict_tta

    assert np.abs(predict_tta(plain, faces, "flip") - model.predict_proba(faces)).max() < 1e-5
    with pytest.raises(ValueError, match="tta must be one of"):
        export_onnx(ckpt, tmp_path / "x.onnx", tta="tencrop")


def test_export_and_evaluate_cli(fer_small, tmp_path):
    ckpt = _checkpoint(tmp_path / "m.pt", FER)
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(ckpt), "--out", str(tmp_path / "m.onnx"), "--data", str(fer_small),
                                 "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "top-1 agreement 1.0000" in result.output
    result = runner.invoke(app, ["export", str(ckpt), "--out", str(tmp_path / "bare.onnx")])
    assert result.exit_code == 0 and "no check on real faces" in result.output  # no run config, no --data
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "m.onnx"), "--data", str(fer_small),
                                 "--out", str(tmp_path / "rep"), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "macro F1" in result.output and (tmp_path / "rep" / "metrics.json").exists()
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path / "missing.pt"), "--data", str(fer_small),
                                 "--out", str(tmp_path / "rep")])
    assert result.exit_code == 2 and "missing.pt" in result.output


def test_export_shows_its_steps(fer_small, tmp_path, monkeypatch):
    """``export`` reports each step (graph, int8, the check on real faces) on its progress bar."""
    from emolens.models import export
    from emolens.progress import Bar

    seen: list = []

    class Recorder(Bar):
        def __init__(self, description: str, total: int | None = None, enabled: bool | None = None):
            super().__init__(description, total, enabled=False)
            seen.append((description, total))

        def advance(self, n: int = 1) -> None:
            seen.append(n)

        def note(self, text: str) -> None:
            seen.append(text)

    monkeypatch.setattr(export, "Bar", Recorder)
    report = export.export_checked(_checkpoint(tmp_path / "m.pt", FER), tmp_path / "m.onnx", int8="dynamic",
                                   data=fer_small, samples=50, cache_dir=tmp_path / "cache")
    assert len(report.checks) == 2
    assert seen == [("export m.onnx", 3), "ONNX graph", 1, "int8 (dynamic)", 1, "check against PyTorch on val faces", 1]


def test_detect_counts_photos_without_a_face_as_errors(affectnet_small, tmp_path):
    ckpt = _checkpoint(tmp_path / "m.pt", FER)
    r = evaluate_model(ckpt, affectnet_small, tmp_path / "d", detect=True, log=QUIET)
    missing = r["skipped"]["no_face_found"]
    assert 0 <= missing < r["n"] and r["detect"] is True
    # a photo without a face is a wrong prediction that falls in no column
    assert np.asarray(r["confusion_matrix"]).sum() == r["n"] - missing
    assert r["accuracy"] <= (r["n"] - missing) / r["n"]


def test_evaluate_words_calibration_and_explains_trainings_figure(fer_small, tmp_path):
    """The temperature line cannot read as a contradiction, and a run folder's evaluation says what
    training measured for the same checkpoint and why the two figures differ."""
    run = tmp_path / "run"
    _checkpoint(run / "best.pt", FER)
    (run / "config.json").write_text(json.dumps({"data": str(fer_small), "amp": "bf16"}))
    (run / "history.csv").write_text("epoch,val_loss,val_acc\n1,1.9,0.1812\n2,1.8,0.1995\n3,1.85,0.1901\n")
    result = CliRunner().invoke(app, ["evaluate", "--model", str(run), "--data", str(fer_small), "--out",
                                      str(tmp_path / "rep"), "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "minimises log-loss on this split; ECE at it" in text and "best temperature" not in text
    assert "training recorded validation accuracy 0.1995 at epoch 2" in text and "precision bf16" in text
    assert "in fp32 on split" in text


def test_training_curves_tick_whole_epochs():
    """curves.png: epoch ticks are whole numbers, also for a run of three epochs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from emolens.evaluation.plots import curves_figure

    history = [{"epoch": e, "train_acc": 0.2 + 0.1 * e, "val_acc": 0.2 + 0.08 * e, "train_loss": 2 - 0.3 * e,
                "val_loss": 2.1 - 0.25 * e} for e in (1, 2, 3)]
    fig = curves_figure(history)
    FigureCanvasAgg(fig).draw()
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
