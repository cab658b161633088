"""Annotation layout on the shared group photos: labels and probability panels cover no face and
no other label or panel, and carry the index that tables, JSON and CSV use."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest
from helpers import model_path

from emolens.inference.annotate import annotate, label_text, layout, save_image
from emolens.inference.recognizer import Recognizer
from emolens.inference.results import FaceResult


def overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.fixture(scope="module")
def rec() -> Recognizer:
    return Recognizer(model=model_path())


@pytest.mark.parametrize("photo,faces", [("pyfeat_multi_face", 5), ("face_recognition_obama_and_biden", 3),
                                         ("deepface_couple", 2)])
def test_labels_and_panels_collide_with_nothing(rec, media, photo, faces):
    result = rec.analyze(media / f"{photo}.jpg")
    assert len(result.faces) == faces
    scale = max(0.6, min(result.width, result.height) / 480)
    placed = layout(result.faces, (result.width, result.height), scale)
    drawn = [r for pair in placed for r in pair]
    for r in drawn:
        assert 0 <= r[0] < r[2] <= result.width and 0 <= r[1] < r[3] <= result.height, r
    for a, b in itertools.combinations(drawn, 2):
        assert not overlap(a, b), (a, b)
    for r in drawn:
        assert not any(overlap(r, f.box) for f in result.faces), r
    assert [label_text(f).split()[0] for f in result.faces] == [f"#{i}" for i in range(faces)]


def test_crowded_small_image_still_places_everything(rec, media):
    """The group photo shrunk to 400 px wide: no free room for every panel, yet each face still
    gets its label and panel inside the image, and labels never cover a face."""
    small = cv2.resize(cv2.imread(str(media / "pyfeat_multi_face.jpg")), (400, 267))
    result = rec.analyze(small, color="bgr")
    placed = layout(result.faces, (400, 267), 0.6)
    assert len(placed) == len(result.faces) >= 4
    for label, panel in placed:
        assert 0 <= panel[0] and panel[2] <= 400 and 0 <= panel[1] and panel[3] <= 267
    annotated = annotate(small, result.faces)
    assert annotated.shape == small.shape and (annotated != small).any()


def test_annotate_draws_no_fps_and_save_image_writes_any_name(tmp_path):
    frame = np.full((240, 320, 3), 90, np.uint8)
    face = FaceResult((100, 60, 180, 150), 0.9, {"happy": 0.8, "neutral": 0.2}, face_id=3)
    out = annotate(frame, [face])
    assert label_text(face) == "#3 happy 80%"
    assert (out[:30, :80] == 90).all()  # the top-left corner stays clean: FPS is drawn only in live windows
    name = tmp_path / "caf\udce9.jpg"  # not valid UTF-8, as some file systems hold
    assert save_image(out, name) == name and cv2.imdecode(np.fromfile(name, np.uint8), cv2.IMREAD_COLOR).shape == out.shape


def test_result_keeps_its_image_and_draws_on_a_copy(rec, media):
    """``ImageResult.image`` is the decoded photo, never serialised; ``annotated()`` draws on a copy."""
    from emolens.images import load_image
    from emolens.inference.results import ImageResult

    result = rec.analyze(media / "deepface_couple.jpg")
    original = load_image(media / "deepface_couple.jpg")
    assert (result.image == original).all() and "image" not in repr(result)
    assert "image" not in result.to_dict() and all("image" not in r for r in result.to_rows())
    bgr = result.annotated(color="bgr", bars=False)
    assert (bgr == annotate(original[:, :, ::-1].copy(), result.faces, bars=False)).all()
    assert (result.image == original).all()  # untouched
    with pytest.raises(ValueError, match="no image"):
        ImageResult("x.jpg", 10, 10).annotated()


def test_every_drawn_text_has_glyphs_in_the_font(monkeypatch):
    """OpenCV's Hershey font draws printable ASCII only (anything else comes out as ``?``, as the
    age labels' ``·`` did): every text the annotator draws, labels with ages included, is ASCII."""
    from emolens.inference import annotate as module
    from emolens.labels import EMOTIONS

    drawn: list[str] = []
    draw = module._text
    monkeypatch.setattr(module, "_text", lambda img, text, *a, **k: (drawn.append(text), draw(img, text, *a, **k)))
    probabilities = {c: 1 / len(EMOTIONS) + (0.01 if c == "happy" else 0) for c in EMOTIONS}
    faces = [FaceResult((40 + 150 * i, 60, 160 + 150 * i, 200), 0.9, probabilities, face_id=i, age=26.4 + i)
             for i in range(3)]
    annotate(np.full((360, 640, 3), 90, np.uint8), faces)
    module.draw_fps(np.zeros((240, 320, 3), np.uint8), 29.7)
    assert "#0 happy 14%, age 26" in drawn and "29.7 FPS" in drawn and set(EMOTIONS) <= set(drawn)
    printable = {chr(c) for c in range(32, 127)}
    assert all(set(text) <= printable for text in drawn), [t for t in drawn if not set(t) <= printable]
