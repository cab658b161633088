"""``emolens data check`` through the CLI: counts, corrupt files, duplicates and leakage, JSON, plot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from emolens.apps.cli import app

runner = CliRunner()


def _small_copy(fer_small: Path, root: Path) -> Path:
    for split, n in (("train", 4), ("validation", 2)):
        for cls in ("happy", "sad"):
            (root / split / cls).mkdir(parents=True)
            for f in sorted((fer_small / split / cls).iterdir())[:n]:
                shutil.copy(f, root / split / cls / f.name)
    return root


def test_check_json_reports_corrupt_and_duplicates(fer_small: Path, tmp_path: Path) -> None:
    root = _small_copy(fer_small, tmp_path / "data")
    happy = sorted((root / "train" / "happy").iterdir())
    shutil.copy(happy[0], root / "train" / "sad" / "copy_of_happy.jpg")  # duplicate within train
    shutil.copy(happy[1], root / "validation" / "happy" / "leaked.jpg")  # duplicate across splits
    corrupt = root / "train" / "sad" / "corrupt.jpg"
    corrupt.write_bytes(happy[2].read_bytes()[:300])  # a truncated JPEG
    plot = tmp_path / "out" / "classes.png"
    result = runner.invoke(app, ["data", "check", str(root), "--json", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["format"] == "split-folders" and report["classes"] == ["happy", "sad"]
    train, val = report["splits"]["train"], report["splits"]["val"]
    assert train["classes"] == {"happy": 4, "sad": 6} and val["classes"] == {"happy": 3, "sad": 2}
    assert [u["file"] for u in train["unreadable"]] == [str(corrupt)]
    assert train["duplicate_groups"] == [[str(happy[0]), str(root / "train" / "sad" / "copy_of_happy.jpg")]]
    assert train["duplicate_files"] == 1 and val["duplicate_files"] == 0
    assert train["sizes"] == {"48x48": 9} and train["modes"] == {"L": 9}
    assert report["cross_split_duplicates"] == [
        {
            "files": [str(happy[1]), str(root / "validation" / "happy" / "leaked.jpg")],
            "splits": ["train", "val"],
            "classes": ["happy", "happy"],
        }
    ]
    assert report["cross_split_files"] == {"train": 1, "val": 1}
    assert report["duplicates_total"] == {"groups": 2, "extra_files": 2}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_check_human_output_and_yolo(affectnet_small: Path) -> None:
    result = runner.invoke(app, ["data", "check", str(affectnet_small)])
    assert result.exit_code == 0, result.output
    assert "(yolo)" in result.output and "images per class" in result.output
    assert "96x96: 160" in result.output and "RGB: 64" in result.output


def test_check_bad_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes").mkdir()
    result = runner.invoke(app, ["data", "check", str(tmp_path)])
    assert result.exit_code == 2
    assert "no known dataset layout" in result.output


def test_check_fer2013_csv(tmp_path: Path) -> None:
    pixels = " ".join(str(v % 256) for v in range(48 * 48))
    rows = [f"3,{pixels},Training", f"3,{pixels},PublicTest", f"0,{' '.join(['7'] * 2304)},Training", "2,1 2,Training"]
    (tmp_path / "fer2013.csv").write_text("emotion,pixels,Usage\n" + "\n".join(rows) + "\n")
    result = runner.invoke(app, ["data", "check", str(tmp_path / "fer2013.csv"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["format"] == "fer2013-csv"
    assert report["splits"]["train"]["classes"]["happy"] == 1 and report["splits"]["train"]["images"] == 2
    assert report["splits"]["train"]["sizes"] == {"48x48": 2} and report["splits"]["val"]["modes"] == {"L": 1}
    assert report["cross_split_duplicates"] == [
        {"files": ["fer2013.csv row 1", "fer2013.csv row 2"], "splits": ["train", "val"], "classes": ["happy", "happy"]}
    ]
    assert len(report["warnings"]) == 1 and "row 4 (2 pixel values" in report["warnings"][0]
