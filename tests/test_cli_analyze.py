"""``emolens analyze`` and ``emolens live`` end to end on the shared media."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import pytest
from helpers import model_path
from typer.testing import CliRunner

from emolens.apps.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture()
def folder(tmp_path, media):
    """Two photos, a video, a broken image and a text file in nested folders."""
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    shutil.copy(media / "pyfeat_multi_face.jpg", d / "group.jpg")
    shutil.copy(media / "face_recognition_obama_and_biden.jpg", d / "sub" / "pair.jpg")
    shutil.copy(media / "pyfeat_single_face.mp4", d / "sub" / "clip.mp4")
    (d / "broken.jpg").write_bytes((media / "pyfeat_multi_face.jpg").read_bytes()[:5000])
    (d / "notes.txt").write_text("ignored: not an image suffix")
    return d


def test_analyze_images_json_csv_annotate(media, tmp_path):
    out = tmp_path / "out"
    r = run("analyze", media / "pyfeat_multi_face.jpg", media / "deepface_couple.jpg", "--model", model_path(),
            "--json", out / "r.json", "--csv", out / "r.csv", "--annotate", out / "ann")
    assert r.exit_code == 0, r.output
    assert "5 face(s)" in r.output and "2 analysed, 0 failed" in r.output
    data = json.loads((out / "r.json").read_text())
    assert [len(e["faces"]) for e in data["results"]] == [5, 2] and data["errors"] == []
    rows = list(csv.DictReader((out / "r.csv").open()))
    assert len(rows) == 7 and rows[0]["kind"] == "image" and float(rows[0]["confidence"]) > 0
    annotated = cv2.imread(str(out / "ann" / "pyfeat_multi_face.jpg"))
    original = cv2.imread(str(media / "pyfeat_multi_face.jpg"))
    assert annotated.shape == original.shape and (annotated != original).any()


def test_analyze_folder_reports_failures_and_continues(folder, tmp_path):
    out = tmp_path / "out"
    r = run("analyze", folder, tmp_path / "missing.png", "--model", model_path(), "--json", out / "r.json",
            "--csv", out / "r.csv", "--annotate", out / "ann", "--detect-every", "3")
    assert r.exit_code == 1, r.output
    assert "3 analysed, 2 failed" in r.output
    data = json.loads((out / "r.json").read_text())
    assert sorted(e["error"].split(":")[0] for e in data["errors"]) == sorted(
        [str(folder / "broken.jpg"), str(tmp_path / "missing.png")])
    kinds = {e["source"].split("/")[-1]: e["kind"] for e in data["results"]}
    assert kinds == {"group.jpg": "image", "pair.jpg": "image", "clip.mp4": "video"}
    video = next(e for e in data["results"] if e["kind"] == "video")
    assert video["frames"] == 72 and {row["face_id"] for row in video["timeline"]} == {0}
    assert video["summary"][0]["dominant"] in video["classes"]
    rows = list(csv.DictReader((out / "r.csv").open()))
    assert sum(r["kind"] == "video" for r in rows) == len(video["timeline"])
    for name in ("group.jpg", "pair.jpg", "clip.mp4", "clip.timeline.csv", "clip.json", "clip.summary.csv",
                 "clip.timeline.png"):
        assert (out / "ann" / name).is_file(), name


def test_analyze_video_outputs_next_to_json(media, tmp_path):
    r = run("analyze", media / "pyfeat_no_face.mp4", "--model", model_path(), "--json", tmp_path / "r.json")
    assert r.exit_code == 0, r.output
    assert "no face found" in r.output
    assert json.loads((tmp_path / "pyfeat_no_face.json").read_text())["timeline"] == []
    assert (tmp_path / "pyfeat_no_face.timeline.png").is_file()


def test_analyze_bad_model_and_detector(media, tmp_path):
    image = media / "pyfeat_multi_face.jpg"
    for args, message in ((("--model", "no-such-model"), "bundled model 'no-such-model'"),
                          (("--model", "mixd8"), "no bundled model 'mixd8': did you mean 'mixed8'?"),
                          (("--model", tmp_path / "x.onnx"), "does not exist"),
                          (("--model", model_path(), "--detector", "nope"), "unknown face detector 'nope'")):
        r = run("analyze", image, *args)
        assert r.exit_code == 2 and message in " ".join(r.output.split()), r.output


@pytest.mark.parametrize("video,faces", [("pyfeat_single_face.mp4", 1), ("pyfeat_no_face.mp4", 0)])
def test_live_headless_writes_video_and_timeline(media, tmp_path, video, faces):
    out = tmp_path / "live"
    r = run("live", "--source", media / video, "--no-window", "--out", out, "--model", model_path(),
            "--detector", "blazeface")
    assert r.exit_code == 0, r.output
    stem = video.removesuffix(".mp4")
    data = json.loads((out / f"{stem}.json").read_text())
    assert len(data["summary"]) == faces and data["processed"] == data["frames"]  # files: no frame dropped
    assert bool(data["timeline"]) == bool(faces)
    assert cv2.VideoCapture(str(out / f"{stem}.mp4")).get(cv2.CAP_PROP_FRAME_COUNT) == data["frames"]
    assert (out / f"{stem}.timeline.png").is_file() and (out / f"{stem}.timeline.csv").is_file()


def test_live_missing_camera_and_no_display(tmp_path, monkeypatch):
    r = run("live", "--source", "99", "--no-window", "--out", tmp_path, "--model", model_path())
    assert r.exit_code == 2 and "camera 99: cannot be opened" in " ".join(r.output.split())
    monkeypatch.delenv("DISPLAY", raising=False)  # headless OpenCV and no screen for tkinter
    r = run("live", "--source", "0", "--model", model_path())
    assert r.exit_code == 2 and "--no-window" in r.output


@pytest.mark.slow
def test_live_window_on_a_virtual_screen(tmp_path, media, monkeypatch):
    """The headless OpenCV build has no GUI: the live window falls back to tkinter."""
    xvfb = shutil.which("Xvfb")
    if not xvfb:
        pytest.skip("Xvfb is not installed (.ci/run installs it)")
    display = ":97"
    screen = subprocess.Popen([xvfb, display, "-screen", "0", "800x600x24"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{display[1:]}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        monkeypatch.setenv("DISPLAY", display)
        r = run("live", "--source", media / "pyfeat_single_face.mp4", "--max-frames", "15",
                "--out", tmp_path, "--model", model_path())
        assert r.exit_code == 0, r.output
        assert "15 of 15 frames analysed" in " ".join(r.output.split())
        assert (tmp_path / "pyfeat_single_face.timeline.csv").is_file()
    finally:
        screen.terminate()
        screen.wait(timeout=10)


def test_annotate_decodes_each_image_once_and_matches_result_annotated(media, tmp_path, monkeypatch):
    """--annotate draws on the image the result carries: one decode per file, the same pixels as
    ``result.annotated()``, and no image outlives its chunk of IMAGES_IN_MEMORY."""
    import gc
    import weakref

    import emolens.images
    from emolens.apps.cli import analyze_steps
    from emolens.inference.annotate import save_image
    from emolens.inference.recognizer import Recognizer

    paths = [media / "pyfeat_multi_face.jpg", media / "deepface_couple.jpg", media / "face_recognition_obama_and_biden.jpg"]
    decode, calls, alive = emolens.images.decode, [], []

    def counting_decode(source, *args, **kwargs):
        gc.collect()
        alive.append(sum(ref() is not None for ref in decoded))
        calls.append(Path(source).name)
        rgb, fmt = decode(source, *args, **kwargs)
        decoded.append(weakref.ref(rgb))
        return rgb, fmt

    decoded: list[weakref.ref] = []
    monkeypatch.setattr(emolens.images, "decode", counting_decode)
    monkeypatch.setattr(analyze_steps, "IMAGES_IN_MEMORY", 1)
    r = run("analyze", *paths, "--model", model_path(), "--annotate", tmp_path / "ann")
    assert r.exit_code == 0, r.output
    assert calls == [p.name for p in paths]  # each file decoded once, annotating included
    assert alive == [0, 0, 0]  # the previous chunk's images are released before the next is decoded
    monkeypatch.setattr(emolens.images, "decode", decode)
    result = Recognizer(model_path()).analyze(paths[0])
    assert result.image is not None and "image" not in result.to_dict()
    mine = save_image(result.annotated(color="bgr"), tmp_path / "mine.jpg")
    assert mine.read_bytes() == (tmp_path / "ann" / "pyfeat_multi_face.jpg").read_bytes()
    assert (result.annotated() == result.annotated(color="bgr")[:, :, ::-1]).all()


def test_a_repeated_input_is_analysed_once_and_costs_no_output(media, tmp_path):
    """The README's pattern, a photo plus the folder that holds it, with --annotate: each file is
    analysed once and every output is written (it used to exit 2 with no JSON or CSV)."""
    folder = tmp_path / "in"
    folder.mkdir()
    photo = shutil.copy(media / "pyfeat_multi_face.jpg", folder / "group.jpg")
    shutil.copy(media / "pyfeat_no_face.mp4", folder / "clip.mp4")
    out = tmp_path / "out"
    r = run("analyze", photo, folder, photo, "--model", model_path(), "--json", out / "r.json",
            "--csv", out / "r.csv", "--annotate", out / "ann")
    assert r.exit_code == 0, r.output
    assert "2 analysed, 0 failed" in r.output
    data = json.loads((out / "r.json").read_text())
    assert [Path(e["source"]).name for e in data["results"]] == ["group.jpg", "clip.mp4"]
    assert sorted(p.name for p in (out / "ann").glob("*.*")) == [
        "clip.json", "clip.mp4", "clip.summary.csv", "clip.timeline.csv", "clip.timeline.png", "group.jpg"]
    assert f"video: {out / 'ann' / 'clip.mp4'}" in r.output.replace("\n", "")  # the annotated video is listed
    header = (out / "r.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["source", "kind", "frame", "time_s", "face_id"] and header[-1].startswith("p_")


def test_a_missing_file_is_one_clear_error(tmp_path):
    r = run("analyze", tmp_path / "missing.jpg", "--model", model_path())
    assert r.exit_code == 1
    assert "missing.jpg: no such file or folder" in r.output and "nothing to analyse" not in r.output
