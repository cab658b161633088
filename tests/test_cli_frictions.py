"""What a new user hits first: missing extras, version and help, clear messages, safe defaults."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import model_path
from typer.testing import CliRunner

from emolens.apps.cli import app
from emolens.apps.live import WindowLoop
from emolens.inference.capture import iter_frames, open_capture
from emolens.progress import Tracked, progress

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def run(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def one_line(output: str) -> str:
    return " ".join(output.split())


TRAIN_ONLY = ("torch", "onnx", "sklearn", "tensorboard")
NEEDING_EXTRAS = ("emolens.models", "emolens.training", "emolens.evaluation", "emolens.apps.web")


def inference_only(monkeypatch, *hidden: str) -> None:
    """As after an inference-only install: ``hidden`` cannot be imported, and emolens modules that
    import them are loaded again (monkeypatch restores everything afterwards)."""
    submodules = tuple(f"{h}." for h in hidden)
    for name in [m for m in sys.modules if m.startswith(NEEDING_EXTRAS + submodules)]:
        monkeypatch.delitem(sys.modules, name)
    for name in hidden:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("args,extra,module", [
    (("train", "--data", "x", "--out", "y"), "train", "torch"),
    (("evaluate", "--model", "default", "--data", "x", "--out", "y"), "train", "sklearn"),
    (("export", "x", "--out", "y.onnx"), "train", "torch"),
    (("serve",), "web", "fastapi"),
])
def test_missing_extra_is_one_line(monkeypatch, args, extra, module):
    inference_only(monkeypatch, *TRAIN_ONLY, "fastapi", "uvicorn")
    r = run(*args)
    assert r.exit_code == 2
    assert one_line(r.output) == (f"error: emolens {args[0]} needs the [{extra}] extra ({module} is not installed): "
                                  f"pip install 'emolens[{extra}]' (in a clone: make install-all)")


def test_models_lists_bundled_models_and_architectures(monkeypatch):
    r = run("models")
    assert r.exit_code == 0 and "accurate-int8 (default)" in r.output and "mini-xception" in r.output
    assert "train --arch" in r.output
    inference_only(monkeypatch, *TRAIN_ONLY)
    r = run("models")
    assert r.exit_code == 0 and "affectnet8" in r.output
    assert "need the [train] extra (torch is not installed)" in one_line(r.output)


def test_version_and_short_help():
    import emolens

    assert run("--version").output.strip() == f"emolens {emolens.__version__}"
    assert run("-h").exit_code == 0 and "analyze" in run("-h").output
    serve_help = one_line(run("serve", "-h").output)
    assert "blazeface-short" in serve_help and "yunet" in serve_help and "none" in serve_help
    train_help = one_line(run("train", "-h").output)
    assert "--arch" in train_help and train_help.count("(required unless --resume)") == 2


def test_help_flows_its_paragraphs_and_names_value_types():
    """A docstring's hard line breaks are not kept (they came out as ragged lines); options show
    PATH/TEXT/INT rather than Python annotations, flags show no type at all."""
    from emolens.apps.cli.helptext import reflow

    wide = runner.invoke(app, ["analyze", "-h"], env={"COLUMNS": "200"}).output
    assert "probability bars. Each video also writes <stem>.timeline.csv" in wide  # one line, not two
    for name in ("<bool>", "<list[Path]>", "<str>", "<path>", "<int"):
        assert name not in wide, name
    assert [line.split()[1:3] for line in wide.splitlines() if "--json " in line or "--batch-size " in line] == [
        ["--json", "PATH"], ["--batch-size", "INT"]]
    assert [line.split()[1:3] for line in wide.splitlines() if "--age " in line] == [["--age", "also"]]  # a flag
    assert reflow("one\ntwo\n\n- a\n- b\n  more\n\n\bkept\nas is") == "one two\n\n- a\n- b\n  more\n\n\bkept\nas is"


def test_train_refuses_to_overwrite_a_run(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text("{}")
    r = run("train", "--data", tmp_path, "--out", run_dir, "--model", "mini-xception")
    assert r.exit_code == 2
    text = one_line(r.output)
    assert "train --model is deprecated; it is --arch now" in text
    assert f"--out {run_dir} already holds a run: continue it with --resume {run_dir}, or start over with --force" in text


def test_a_cuda_run_resumes_on_a_cpu_with_this_machines_device_and_precision():
    torch = pytest.importorskip("torch")
    from emolens.training.config import TrainConfig
    from emolens.training.run import on_this_machine as _on_this_machine

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    cuda_run = TrainConfig(data="d", out="o", device="cuda:0", amp="fp16").to_dict()
    assert {k: _on_this_machine(cuda_run, {})[k] for k in ("device", "amp")} == {"device": "auto", "amp": "auto"}
    assert _on_this_machine(cuda_run, {"device": "cpu"})["amp"] == "auto"
    cpu_run = TrainConfig(data="d", out="o", device="cpu", amp="bf16").to_dict()
    assert _on_this_machine(cpu_run, {}) == cpu_run  # same machine: resumed exactly as saved


def test_model_messages_name_what_was_given(tmp_path):
    r = run("evaluate", "--model", tmp_path / "runs" / "nope", "--data", tmp_path, "--out", tmp_path / "r")
    assert r.exit_code == 2 and f"model file or folder {tmp_path / 'runs' / 'nope'} does not exist" in one_line(r.output)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "best.pt").write_bytes(b"")
    r = run("analyze", tmp_path, "-m", run_dir)
    assert r.exit_code == 2
    assert f"emolens export {run_dir} --out {run_dir}/model.onnx, then --model {run_dir}/model.onnx" in one_line(r.output)


def test_empty_folder_warns_and_fails(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    r = run("analyze", tmp_path, "--model", model_path())
    assert r.exit_code == 1 and "nothing to analyse: no image or video file in" in one_line(r.output)


def test_pixel_limit_names_the_option(media):
    r = run("analyze", media / "pyfeat_multi_face.jpg", "--model", model_path(), "--max-pixels", "1000")
    assert r.exit_code == 1 and "raise it with --max-pixels" in one_line(r.output)


def test_face_crop_hint_and_whole_image_mode(muxspace_small, tmp_path):
    """A blurry close-up (like the film crops the detectors miss) gets the --detector none hint."""
    image = cv2.imread(str(sorted(muxspace_small.rglob("*.jpg"))[0]))
    blurry = tmp_path / "blurry.png"
    cv2.imwrite(str(blurry), cv2.GaussianBlur(cv2.resize(image, (40, 40)), (0, 0), 3))
    r = run("analyze", blurry, "--model", model_path())
    assert r.exit_code == 0 and "0 face(s)" in one_line(r.output)
    assert "look like face crops" in one_line(r.output) and "--detector none" in one_line(r.output)
    r = run("analyze", blurry, "--model", model_path(), "--detector", "none")
    assert r.exit_code == 0 and "1 face(s)" in one_line(r.output) and "look like face crops" not in r.output


def test_cache_info_and_clear(tmp_path):
    import numpy as np

    arrays = {"images": np.zeros((2, 48, 48, 1), np.uint8), "labels": np.zeros(2), "kept": np.arange(2),
              "skipped": np.asarray([], dtype=str), "emolens_cache": np.asarray(2)}
    np.savez(tmp_path / "train-48px-1ch-abc.npz", **arrays)  # what the cache writes (its marker included)
    np.savez(tmp_path / "my-holiday-2px-3ch-photos.npz", photos=np.zeros(3))  # named alike, not the cache's
    (tmp_path / "keep.txt").write_text("not ours")
    assert "1 cached split(s)" in run("cache", "info", "--cache-dir", tmp_path).output
    assert "removed 1 cached split(s)" in run("cache", "clear", "--cache-dir", tmp_path).output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "my-holiday-2px-3ch-photos.npz"]


def test_clone_folder_does_not_shadow_the_package(tmp_path):
    """Python started in the clone's parent folder, next to a folder named emolens without
    __init__.py (the clone), still imports the installed package."""
    (tmp_path / "emolens").mkdir()
    out = subprocess.run([sys.executable, "-c", "from emolens import Recognizer; print(Recognizer.__name__)"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "Recognizer", out.stderr


def test_license_is_an_spdx_string():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert {"pandas", "video"} <= set(project["optional-dependencies"])


def test_file_plays_at_its_own_rate(media):
    cap = open_capture(media / "pyfeat_single_face.mp4")
    fps = cap.get(cv2.CAP_PROP_FPS)
    start = time.perf_counter()
    frames = [f for _, (i, _, f) in zip(range(16), iter_frames(cap, False, fps, paced=True))]
    assert len(frames) == 16 and time.perf_counter() - start >= 15 / fps * 0.95
    cap.release()


def test_window_keeps_the_last_frame_until_quit(tmp_path):
    class Viewer:
        def __init__(self) -> None:
            self.keys = ["", "", "s", "", "q"]
            self.shown = 0

        def show(self, frame: np.ndarray) -> str:
            self.shown += 1
            return self.keys.pop(0) if self.keys else ""

    viewer = Viewer()
    loop = WindowLoop(viewer, tmp_path, "clip")
    assert loop(np.zeros((8, 8, 3), np.uint8), [], 41) is True
    loop.hold(poll_s=0)
    assert loop.quit and viewer.shown == 5 and (tmp_path / "clip-snapshot-000041.jpg").is_file()


def test_progress_is_quiet_off_a_terminal(capfd, temporary_cache):
    with progress("frames", 3) as advance:
        advance(3)
    assert list(Tracked(range(4), "epoch")) == [0, 1, 2, 3]
    assert capfd.readouterr().err == ""
    from emolens.data.cache import default_cache_dir

    assert default_cache_dir() == temporary_cache  # tests never fill ~/.cache/emolens


def test_user_errors_are_one_error_line_on_stderr(tmp_path, monkeypatch):
    """The CLI's one error boundary: a bad path, option, dataset or model is one ``error:`` line on
    stderr and exit code 2, whatever the command; no traceback. Ctrl-C is one line and exit 130."""
    missing = tmp_path / "nope"
    cases = [
        (("analyze", tmp_path / "photo.jpg", "--model", missing / "x.onnx"), "does not exist"),
        (("analyze", tmp_path / "photo.jpg", "--smoothing", "2"), "smoothing must be in [0, 1)"),
        (("train", "--data", missing, "--out", tmp_path / "run", "--epochs", "1"), str(missing)),
        (("train", "--data", tmp_path), "--data and --out are required"),
        (("evaluate", "--model", missing, "--data", tmp_path, "--out", tmp_path / "r"), "does not exist"),
        (("serve", "--model", "no-such-model"), "no-such-model"),
        (("data", "check", missing), str(missing)),
        (("data", "pack", tmp_path, "--out", tmp_path / "faces.zip"), "expected a .npz file name"),
    ]
    for args, message in cases:
        r = run(*args)
        lines = r.stderr.splitlines()
        assert r.exit_code == 2 and isinstance(r.exception, SystemExit), (args, r.exception, r.output)
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, r.stderr)
        assert "Traceback" not in r.output, (args, r.output)
    # An input that cannot be read is skipped with the same line (exit 1: the others are still analysed).
    r = run("analyze", missing / "photo.jpg", "--model", model_path())
    assert r.exit_code == 1 and r.stderr.splitlines() == [f"error: {missing / 'photo.jpg'}: no such file or folder"]

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("emolens.apps.cli.data_cmds.check_dataset", interrupted)
    r = run("data", "check", tmp_path)
    assert r.exit_code == 130 and r.stderr.strip() == "interrupted"
    proc = subprocess.run([sys.executable, "-m", "emolens", "data", "check", str(missing)], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1
    assert "Traceback" not in proc.stderr
