"""Recognizer API, ONNX classifier, tracker, video pipeline and bad inputs, on the shared media."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
import zlib
from contextlib import closing

import cv2
import numpy as np
import pytest
from helpers import (
    FER_CLASSES,
    make_dev_model,
    model_path,
    require_bundled_model,
    video_frames,
)
from PIL import Image

import emolens
from emolens.errors import InputError, ModelError
from emolens.images import load_image
from emolens.inference.capture import Prefetch, iter_frames
from emolens.inference.classifier import EmotionClassifier, list_bundled_models
from emolens.inference.encoding import VideoWriter
from emolens.inference.recognizer import Recognizer
from emolens.inference.report import write_video_outputs
from emolens.inference.results import FaceResult, VideoResult
from emolens.inference.stream import StreamAnalyzer
from emolens.inference.tracking import FaceTracker
from emolens.inference.video import analyze_video


@pytest.fixture(scope="module")
def rec() -> Recognizer:
    return Recognizer(model=model_path())


@pytest.fixture(scope="module")
def group(media):
    return media / "pyfeat_multi_face.jpg"


def boxes(result) -> list[tuple[int, int, int, int]]:
    return [f.box for f in result.faces]


# --- API --------------------------------------------------------------------------------------

def test_analyze_path_array_pil_and_color_order(rec, group):
    by_path = rec.analyze(group)
    assert by_path.source == str(group) and (by_path.width, by_path.height) == (1000, 667)
    assert len(by_path.faces) == 5
    rgb = np.asarray(Image.open(group).convert("RGB"))
    bgr = cv2.imread(str(group))
    for result in (rec.analyze(rgb), rec.analyze(bgr, color="bgr"), rec.analyze(Image.open(group))):
        assert boxes(result) == boxes(by_path)
        for a, b in zip(result.faces, by_path.faces):
            assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)
    swapped = rec.analyze(bgr)  # a BGR frame passed as RGB: same faces, different colours in
    assert len(swapped.faces) >= 4
    with pytest.raises(ValueError, match="color must be"):
        rec.analyze(rgb, color="hsv")


def test_results_convert_to_dict_json_dataframe(rec, group):
    result = rec.analyze(group)
    face = result.faces[0]
    assert set(face.probabilities) == set(rec.classes)
    assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert face.emotion in rec.classes and face.confidence == max(face.probabilities.values())
    d = json.loads(json.dumps(result.to_dict()))
    assert len(d["faces"]) == 5 and d["faces"][0]["box"]["x2"] == face.box[2]
    assert list(d["faces"][0]["landmarks"]) == ["right_eye", "left_eye", "nose_tip", "mouth_right", "mouth_left"]
    assert d["faces"][0]["landmarks"]["nose_tip"] == pytest.approx(face.landmarks[2].tolist(), abs=0.06)
    df = result.to_dataframe()
    assert len(df) == 5 and {"x1", "emotion", "confidence", *(f"p_{c}" for c in rec.classes)} <= set(df.columns)


def test_image_faces_are_indexed_left_to_right(rec, group):
    faces = rec.analyze(group).faces
    assert [f.face_id for f in faces] == [0, 1, 2, 3, 4]
    assert [f.box[0] for f in faces] == sorted(f.box[0] for f in faces)
    assert [r["face_id"] for r in rec.analyze(group).to_rows()] == [0, 1, 2, 3, 4]


def test_to_dataframe_without_pandas_names_the_extra(rec, group, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ModuleNotFoundError, match=r"to_dataframe\(\) needs pandas: pip install 'emolens\[pandas\]'"):
        rec.analyze(group).to_dataframe()


def test_whole_image_mode_and_video_default(media, group):
    crop = load_image(group)[60:190, 210:320]  # one face, cut as tightly as a face-crop dataset would
    whole = Recognizer(model=model_path(), detector=None).analyze(crop)
    assert [f.box for f in whole.faces] == [(0, 0, 110, 130)] and whole.faces[0].landmarks is None
    assert whole.to_dict()["faces"][0]["landmarks"] is None
    rec = Recognizer(model=model_path())
    assert rec.detector.name == "yunet-tiled" and rec.stream_detector.name == "blazeface,yunet-320"
    explicit = Recognizer(model=model_path(), detector="blazeface")
    assert explicit.stream_detector is explicit.detector


def test_analyze_batch_matches_single(rec, media, group):
    paths = [group, media / "face_recognition_obama_and_biden.jpg", media / "deepface_couple.jpg"]
    batch = rec.analyze_batch(paths, batch_size=4)  # 10 faces over 3 batches (the girl at the edge too)
    assert [len(r.faces) for r in batch] == [5, 3, 2]
    for path, result in zip(paths, batch):
        single = rec.analyze(path)
        assert result.source == str(path) and boxes(result) == boxes(single)
        for a, b in zip(result.faces, single.faces):
            assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)
    assert rec.analyze_batch([]) == []


def test_no_face_is_an_empty_result(rec, media):
    frame = video_frames(media / "pyfeat_no_face.mp4")[40]
    result = rec.analyze(frame, color="bgr")
    assert result.faces == [] and result.to_rows() == [] and len(result.to_dataframe()) == 0


def test_recognizer_is_exported_lazily():
    code = ("import sys, emolens; assert 'onnxruntime' not in sys.modules and 'cv2' not in sys.modules; "
            "from emolens import Recognizer; assert 'onnxruntime' in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert emolens.Recognizer is Recognizer


# --- classifier -------------------------------------------------------------------------------

def test_classifier_metadata_and_probabilities(tmp_path):
    clf = EmotionClassifier.load(make_dev_model(tmp_path / "m.onnx", size=32, channels=3))
    assert clf.classes == tuple(FER_CLASSES) and clf.crop.size == 32 and clf.crop.channels == 3
    faces = np.random.default_rng(0).integers(0, 256, (70, 32, 32, 3), dtype=np.uint8)
    p = clf.predict_proba(faces, batch_size=16)
    assert p.shape == (70, 7) and p.dtype == np.float32 and np.allclose(p.sum(1), 1, atol=1e-5)
    assert np.allclose(clf.predict_proba(faces[:5]), p[:5], atol=1e-6)  # batching does not change results
    odd = np.random.default_rng(1).integers(0, 256, (2, 100, 80, 1), dtype=np.uint8)
    assert clf.predict_proba(odd).shape == (2, 7)  # other sizes/channels are converted
    assert clf.predict_proba(np.zeros((0, 32, 32, 3), np.uint8)).shape == (0, 7)
    image = np.random.default_rng(2).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    assert clf.classify_faces(image, [(10, 10, 60, 70), (250, 150, 330, 230)]).shape == (2, 7)


def test_temperature_softens_probabilities(tmp_path):
    import onnx

    path = make_dev_model(tmp_path / "t.onnx")
    model = onnx.load(path)
    meta = json.loads(model.metadata_props[0].value)
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48, 1), dtype=np.uint8)
    sharp = EmotionClassifier(path).predict_proba(faces)
    meta["temperature"] = 4.0
    model.metadata_props[0].value = json.dumps(meta)
    onnx.save(model, tmp_path / "t4.onnx")
    soft = EmotionClassifier(tmp_path / "t4.onnx").predict_proba(faces)
    assert (soft.max(1) < sharp.max(1)).all()


def test_missing_bundled_model_lists_available():
    with pytest.raises(ModelError, match="bundled model 'no-such-model'.*bundled models:"):
        EmotionClassifier.load("no-such-model")
    assert all(isinstance(n, str) for n in list_bundled_models())
    with pytest.raises(ModelError, match="does not exist"):
        EmotionClassifier.load("/nowhere/model.onnx")


def test_bundled_default_model_finds_smiles(group):
    """Model quality: the five people in the group photo are all smiling."""
    require_bundled_model()
    result = Recognizer().analyze(group)
    assert len(result.faces) == 5
    assert sum(f.emotion == "happy" for f in result.faces) >= 4, [f.emotion for f in result.faces]


# --- bad inputs -------------------------------------------------------------------------------

def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width×height but holds almost no data (decompression-bomb shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_bad_files_raise_input_error_naming_them(tmp_path, group, rec):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(group.read_bytes()[:20000])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(10_000, 6_000))
    for path, reason in ((truncated, "not a readable image"), (text, "not a readable image"),
                         (empty, "not a readable image"), (bomb, "megapixels is over the limit"),
                         (tmp_path / "missing.jpg", "no such file")):
        with pytest.raises(InputError, match=reason) as e:
            rec.analyze(path)
        assert str(path) in str(e.value)
    with pytest.raises(InputError, match="over the limit"):
        Recognizer(model=rec.classifier, detector=rec.detector, max_pixels=100_000).analyze(group)
    with pytest.raises(InputError, match="expected an H×W"):
        rec.analyze(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(InputError, match="expected a file path"):
        rec.analyze(12345)


def test_rgba_16bit_grayscale_and_float_images_are_converted(tmp_path, group, rec):
    rgb = np.asarray(Image.open(group).convert("RGB"))
    reference = boxes(rec.analyze(rgb))
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(tmp_path / "rgba.png")
    cv2.imwrite(str(tmp_path / "deep.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    Image.fromarray(rgb).convert("L").save(tmp_path / "gray.png")
    assert boxes(rec.analyze(tmp_path / "rgba.png")) == reference
    deep = load_image(tmp_path / "deep.png")
    assert deep.dtype == np.uint8 and deep.shape == rgb.shape and np.abs(deep.astype(int) - rgb).max() <= 1
    assert boxes(rec.analyze(deep)) == reference
    assert len(rec.analyze(tmp_path / "gray.png").faces) >= 4
    assert boxes(rec.analyze(rgb.astype(np.float32) / 255)) == reference
    assert boxes(rec.analyze(rgb.astype(np.uint16) * 257)) == reference
    assert load_image(rgb[:, :, :1]).shape == rgb.shape  # H×W×1 grayscale array


# --- tracking and video -----------------------------------------------------------------------

def test_tracker_ids_and_smoothing():
    def face(x: int, happy: float) -> FaceResult:
        return FaceResult((x, 10, x + 50, 60), 0.9, {"happy": happy, "sad": 1 - happy})

    tracker = FaceTracker(smoothing=0.5)
    first = tracker.update([face(0, 1.0), face(200, 0.0)])
    assert [f.face_id for f in first] == [0, 1]
    moved = tracker.update([face(212, 0.0), face(8, 0.0)])  # order swapped, both moved a bit
    assert [f.face_id for f in moved] == [1, 0]
    assert moved[1].probabilities["happy"] == pytest.approx(0.5)
    jumped = tracker.update([face(40, 0.0)])  # fast motion: no IoU overlap, centroid within reach
    assert jumped[0].face_id == 0
    assert tracker.update([face(600, 0.0)])[0].face_id == 2
    raw = FaceTracker(smoothing=0).update([face(0, 0.3)])
    assert raw[0].probabilities == {"happy": 0.3, "sad": 0.7}
    with pytest.raises(ValueError):
        FaceTracker(smoothing=1.0)


def test_video_single_face_stable_id_and_outputs(rec, media, tmp_path):
    video = analyze_video(rec, media / "pyfeat_single_face.mp4", annotate_to=tmp_path / "a.mp4", detect_every=2)
    assert video.frames == video.processed == 72 and video.fps == pytest.approx(30, abs=0.5)
    assert {r["face_id"] for r in video.timeline} == {0}
    frame_numbers = [r["frame"] for r in video.timeline]
    assert len(frame_numbers) >= 70 and frame_numbers == sorted(frame_numbers)
    summary = video.summary()
    assert len(summary) == 1 and sum(summary[0]["share"].values()) == pytest.approx(1.0)
    assert video.to_dataframe().shape[0] == len(video.timeline)
    written = write_video_outputs(video, tmp_path, "single")
    assert cv2.imread(str(written["plot"])) is not None
    assert json.loads(written["json"].read_text())["summary"][0]["face_id"] == 0
    cap = cv2.VideoCapture(str(tmp_path / "a.mp4"))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 72
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


@pytest.mark.parametrize("detect_every", [1, 3])
def test_video_pipeline_equals_frame_by_frame_analysis(rec, media, detect_every):
    """analyze_video detects the next frame on a worker thread while it classifies this one: the
    timeline is exactly what StreamAnalyzer.process gives frame by frame."""
    video = analyze_video(rec, media / "pyfeat_single_face.mp4", detect_every=detect_every)
    expected = VideoResult(video.source, video.width, video.height, video.fps, video.classes)
    stream = StreamAnalyzer(rec, detect_every)
    for index, frame in enumerate(video_frames(media / "pyfeat_single_face.mp4")):
        expected.add_frame(index, index / video.fps, stream.process(frame))
    assert len(video.timeline) > 60 and video.timeline == expected.timeline


def test_prefetch_hands_over_errors_and_stops_its_worker():
    def numbers(log):
        try:
            for i in range(1000):
                if i == 5 and log == "fail":
                    raise ValueError("frame 5 is broken")
                yield i
        finally:
            closed.append(log)

    closed = []
    with closing(Prefetch(numbers("fail"), depth=2)) as items, pytest.raises(ValueError, match="frame 5"):
        assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
        next(items)
    with closing(Prefetch(numbers("early"))) as items:
        assert next(items) == 0  # the consumer stops after one item
    assert closed == ["fail", "early"]  # the worker closed the generator both times
    assert list(Prefetch(iter(range(3)))) == [0, 1, 2]


def test_video_writer_raises_an_encoding_error_from_its_thread(tmp_path):
    writer = VideoWriter(tmp_path / "a.mp4", 30.0, (64, 48))
    if writer.codec != "h264":
        pytest.skip("OpenCV's mp4v writer ignores bad frames; PyAV (the [video] extra) raises")
    writer.write(np.zeros((48, 64, 3), np.uint8))
    writer.write(np.zeros((10, 10), np.uint8))  # not a 64×48 BGR frame
    with pytest.raises(ValueError, match="ndim"):
        for _ in range(50):
            writer.write(np.zeros((48, 64, 3), np.uint8))
            time.sleep(0.01)
        writer.close()


def test_video_smoothing_reduces_jitter(media):
    path = media / "pyfeat_single_face.mp4"
    rec = Recognizer(model=model_path())
    rough = analyze_video(rec, path, smoothing=0.0, max_frames=30)
    smooth = analyze_video(rec, path, smoothing=0.8, max_frames=30)
    col = f"p_{rough.classes[0]}"

    def jitter(v):
        return np.abs(np.diff([r[col] for r in v.timeline])).mean()

    assert jitter(smooth) < jitter(rough)


def test_no_face_video_is_an_empty_timeline(rec, media, tmp_path):
    video = analyze_video(rec, media / "pyfeat_no_face.mp4")
    assert video.frames == 95 and video.timeline == [] and video.summary() == []
    assert write_video_outputs(video, tmp_path, "none")["plot"].is_file()


def test_broken_videos_and_missing_camera(rec, tmp_path, media):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    half = tmp_path / "half.mp4"
    half.write_bytes((media / "pyfeat_single_face.mp4").read_bytes()[:3000])
    for path in (empty, half, tmp_path / "missing.mp4"):
        with pytest.raises(InputError, match=str(path)):
            analyze_video(rec, path)
    with pytest.raises(InputError, match="camera 99"):
        analyze_video(rec, 99)


def test_live_reader_drops_frames_for_a_slow_consumer(media):
    """Real-time sources hand over the newest frame only; a file read as a stream stands in for a camera."""
    cap = cv2.VideoCapture(str(media / "pyfeat_single_face.mp4"))
    seen = []
    for index, _, frame in iter_frames(cap, realtime=True, fps=30.0):
        assert frame.shape == (360, 640, 3)
        seen.append(index)
        time.sleep(0.03)  # slower than decoding
    cap.release()
    assert seen == sorted(set(seen)) and len(seen) < 72 and seen[-1] == 71


def test_bundled_default_model_sees_the_smile_grow(media):
    """Model quality: pyfeat_single_face.mp4 goes from neutral to a smile."""
    require_bundled_model()
    video = analyze_video(Recognizer(), media / "pyfeat_single_face.mp4")
    happy = [r["p_happy"] for r in video.timeline]
    assert np.mean(happy[-15:]) > np.mean(happy[:15]) + 0.2
    assert video.summary()[0]["share"]["happy"] > 0


@pytest.mark.parametrize("clip", ["pyfeat_single_face.mp4", "pyfeat_no_face.mp4"])  # MP3 and AAC sound
def test_annotated_video_keeps_the_sources_audio(rec, media, tmp_path, clip):
    """The annotated video carries the source's audio track, cut to the frames written."""
    av = pytest.importorskip("av")
    video = analyze_video(rec, media / clip, annotate_to=tmp_path / "a.mp4", max_frames=30)
    with av.open(str(tmp_path / "a.mp4")) as out, av.open(str(media / clip)) as src:
        assert [s.type for s in out.streams] == ["video", "audio"]
        assert out.streams.audio[0].codec_context.name == src.streams.audio[0].codec_context.name
        video_s = float(out.streams.video[0].duration * out.streams.video[0].time_base)
        audio_s = float(out.streams.audio[0].duration * out.streams.audio[0].time_base)
    assert video_s == pytest.approx(30 / video.fps, abs=0.05) and audio_s == pytest.approx(video_s, abs=0.1)


def test_timeline_legend_sits_beside_the_curves(rec, media):
    """The timeline's legend covers no panel (inside the first panel it hid the curves)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from emolens.inference.report import timeline_figure

    fig = timeline_figure(analyze_video(rec, media / "pyfeat_single_face.mp4", max_frames=20))
    FigureCanvasAgg(fig).draw()
    (legend,) = fig.legends
    box = legend.get_window_extent()
    assert [t.get_text() for t in legend.get_texts()] == list(rec.classes)
    assert fig.axes and not any(box.overlaps(ax.get_window_extent()) for ax in fig.axes)
    assert box.x1 <= fig.bbox.x1 + 1  # and stays inside the picture
