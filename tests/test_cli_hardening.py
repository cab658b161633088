"""Issue 26 on the command line: ``export-web --force`` never deletes or writes through what is not
its own, ``cache clear`` deletes only the cache's files, OS errors and model-file mistakes are
one line naming the file, ``attributes="age"`` as a string."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from emolens.apps.cli import app as cli

REPO = Path(__file__).resolve().parents[1]


def emolens(*args: object, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emolens", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


# --- 5. export-web --force -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export, copied by the tests that need a folder holding an earlier export."""
    from emolens.apps.web.inpage import export_web

    dest = tmp_path_factory.mktemp("page") / "site"
    export_web(dest, "fer2013-fast")
    return dest


def test_export_carries_a_content_security_policy(page: Path) -> None:
    from emolens.apps.web.inpage import PAGE_CSP

    html = (page / "index.html").read_text()
    assert f'<meta http-equiv="Content-Security-Policy" content="{PAGE_CSP}">' in html
    assert html.index("Content-Security-Policy") < html.index("<script")  # before anything loads
    assert "'unsafe-eval'" not in PAGE_CSP and "'unsafe-inline'" not in PAGE_CSP


def test_force_replaces_an_earlier_export_whole(page: Path, tmp_path: Path) -> None:
    import shutil

    dest = tmp_path / "site"
    shutil.copytree(page, dest)
    run = CliRunner().invoke(cli, ["export-web", str(dest)])
    assert run.exit_code == 2 and "is not empty: it holds an earlier export" in run.output
    run = CliRunner().invoke(cli, ["export-web", str(dest), "--force", "--detector", "blazeface-short"])
    assert run.exit_code == 0, run.output
    assert json.loads((dest / "assets" / "config.json").read_text())["detector"]["name"] == "blazeface-short"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no temporary folder left behind


def test_force_never_deletes_user_files_or_follows_links(page: Path, tmp_path: Path) -> None:
    dest = tmp_path / "site"
    for sub in ("assets", "static/vendor", "static/inpage"):
        (dest / sub).mkdir(parents=True)
        (dest / sub / "mine.txt").write_text("the user's")
    outside = tmp_path / "outside"
    (outside / "inpage").mkdir(parents=True)
    (outside / "inpage" / "keep.txt").write_text("outside")
    (outside / "index.html").write_text("outside")
    (dest / "index.html").symlink_to(outside / "index.html")

    refused = CliRunner().invoke(cli, ["export-web", str(dest)])
    assert refused.exit_code == 2 and "files emolens did not write" in refused.output and "mine.txt" in refused.output
    with pytest.warns(UserWarning, match="kept as it was in"):
        from emolens.apps.web.inpage import export_web

        export_web(dest, "fer2013-fast", force=True)
    kept = tmp_path / "site.previous"
    assert all((kept / sub / "mine.txt").read_text() == "the user's" for sub in ("assets", "static/vendor", "static/inpage"))
    assert (outside / "index.html").read_text() == "outside" and (outside / "inpage" / "keep.txt").exists()
    assert not (dest / "index.html").is_symlink() and "emolens" in (dest / "index.html").read_text()

    linked = tmp_path / "linked"
    linked.symlink_to(outside, target_is_directory=True)
    run = CliRunner().invoke(cli, ["export-web", str(linked), "--force"])
    assert run.exit_code == 2 and "symbolic link" in run.output
    assert sorted(p.name for p in outside.rglob("*")) == ["index.html", "inpage", "keep.txt"]


# --- 6. cache clear --------------------------------------------------------------------------------

def test_cache_clear_deletes_only_the_cache_files(fer_small: Path, tmp_path: Path) -> None:
    from emolens.data import load_arrays, load_dataset
    from emolens.data.cache import cache_path

    cache = tmp_path / "cache"
    split = load_dataset(fer_small).split("val")
    load_arrays(split, 40, 1, cache_dir=cache)
    ours = cache_path(split, 40, 1, cache)
    mine = cache / "my-holiday-2px-3ch-photos.npz"
    np.savez(mine, photos=np.zeros(3))
    folder = cache / "album-2px-3ch-x.npz"
    folder.mkdir()
    (folder / "inside.txt").write_text("x")
    link = cache / "val-40px-1ch-link.npz"
    link.symlink_to(ours)

    info = CliRunner().invoke(cli, ["cache", "info", "--cache-dir", str(cache)])
    assert info.exit_code == 0 and "1 cached split(s)" in info.output, info.output
    clear = CliRunner().invoke(cli, ["cache", "clear", "--cache-dir", str(cache)])
    assert clear.exit_code == 0 and "removed 1 cached split(s)" in clear.output, clear.output
    assert not ours.exists() and mine.exists() and (folder / "inside.txt").exists() and link.is_symlink()


# --- 7. one line for OS errors and model-file mistakes -------------------------------------------

def test_os_errors_are_one_line_naming_the_path(fer_small: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("a file, not a folder")
    checkpoint = tmp_path / "mini.pt"
    subprocess.run([sys.executable, "-c", (
        "import sys, torch; from emolens.models import create_model; from emolens.models.checkpoint import "
        "save_checkpoint; from emolens.preprocess import CropSpec\n"
        "m = create_model('mini-xception', 7)\n"
        "save_checkpoint({'model': m.state_dict(), 'model_name': 'mini-xception', 'model_kwargs': {}, "
        "'classes': ['anger', 'disgust', 'fear', 'happy', 'neutral', 'sad', 'surprise'], "
        "'crop': CropSpec().to_dict()}, sys.argv[1])"), checkpoint], check=True, timeout=120)
    probes = {
        "export-web": ("export-web", "afile/page"),
        "evaluate": ("evaluate", "-m", "fer2013-fast", "--data", fer_small, "--out", "afile/report"),
        "train": ("train", "--data", fer_small, "--out", "afile/run", "--epochs", "1"),
        "export": ("export", checkpoint, "--out", "afile/model.onnx", "--data", fer_small, "--samples", "8"),
    }
    for command, args in probes.items():
        proc = emolens(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, (command, proc.stderr[-2000:])
        assert "afile" in proc.stderr and "Not a directory" in proc.stderr, (command, proc.stderr)

    for option in (("--model", checkpoint), ("--age",)):
        if option == ("--age",):
            proc = subprocess.run([sys.executable, "-c", "import sys; from emolens import Recognizer; "
                                   "Recognizer(attributes=('age',), age_model=sys.argv[1])", checkpoint],
                                  capture_output=True, text=True, timeout=120)
        else:
            proc = emolens("analyze", REPO / "tests", *option)
        assert f"emolens export {checkpoint} --out {checkpoint.with_suffix('.onnx')}" in proc.stderr, proc.stderr[-1000:]


def test_attributes_may_be_one_name() -> None:
    from emolens.inference.recognizer import Recognizer

    assert Recognizer(attributes="age").age is not None
    with pytest.raises(ValueError, match="unknown face attribute"):
        Recognizer(attributes="mood")
