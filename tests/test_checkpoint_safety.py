"""Checkpoints are data, never code: a crafted .pt is refused by every command that reads one,
and the checkpoints training really writes (RNG states with numpy arrays) still load."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from emolens.apps.cli import app  # noqa: E402
from emolens.models import create_model  # noqa: E402
from emolens.models.checkpoint import init_from, load_checkpoint, load_model, save_checkpoint  # noqa: E402
from emolens.training.config import TrainConfig  # noqa: E402
from emolens.training.run import rng_state  # noqa: E402


class TouchMarker:
    """Unpickling this creates ``path``: what a malicious checkpoint would run instead."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def malicious(path: Path, marker: Path, legacy: bool = False) -> Path:
    """A .pt whose 'model' entry runs code when unpickled (torch's zip format, or a bare pickle)."""
    payload = {"model": TouchMarker(marker), "model_name": "mini-xception", "classes": ["happy"], "crop": {}}
    if legacy:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    else:
        torch.save(payload, path)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
def test_a_malicious_checkpoint_is_refused_before_it_runs(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "pwned"
    evil = malicious(tmp_path / "evil.pt", marker, legacy)
    for load in (load_checkpoint, load_model, lambda p: init_from(create_model("mini-xception", 7), p)):
        with pytest.raises(ValueError, match="refused") as info:
            load(evil)
        assert str(evil) in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_every_command_refuses_it_cleanly(tmp_path: Path, fer_small: Path) -> None:
    marker = tmp_path / "pwned"
    evil = malicious(tmp_path / "evil.pt", marker)
    run = tmp_path / "run"
    run.mkdir()
    malicious(run / "last.pt", marker)
    TrainConfig(data=str(fer_small), out=str(run), cache_dir=str(tmp_path / "cache"), epochs=2, batch_size=32,
                workers=1).save(run / "config.json")
    common = ["--cache-dir", str(tmp_path / "cache")]
    commands = {
        "train --init": ["train", "--data", str(fer_small), "--out", str(tmp_path / "new"), "--init", str(evil),
                         "--epochs", "1", "--batch-size", "32", "--workers", "1", *common],
        "train --resume": ["train", "--resume", str(run)],
        "evaluate --model": ["evaluate", "--model", str(evil), "--data", str(fer_small), "--out", str(tmp_path / "r"),
                             *common],
        "export": ["export", str(evil), "--out", str(tmp_path / "m.onnx")],
    }
    runner = CliRunner()
    for command, args in commands.items():
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (command, result.output, result.exception)
        assert isinstance(result.exception, SystemExit), (command, result.exception)  # no traceback
        errors = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "refused" in errors[0] and ".pt" in errors[0], (command, result.output)
        assert not marker.exists(), command


def test_what_training_writes_still_loads(tmp_path: Path) -> None:
    """RNG states (numpy arrays and dtypes), optimiser, every scheduler, scaler, numpy scalars."""
    model = create_model("mini-xception", 3)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 1, 48, 48)).sum().backward()
    optimizer.step()
    random.seed(1)
    np.random.seed(1)
    schedulers = {
        "plateau": torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max"),
        "cosine": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3),
        "onecycle": torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=10),
    }
    for name, scheduler in schedulers.items():
        state = {"model": model.state_dict(), "model_name": "mini-xception", "model_kwargs": {},
                 "classes": ["anger", "happy", "sad"], "crop": {"size": 48, "channels": 1, "margin": 0.1},
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "scaler": torch.amp.GradScaler("cpu", enabled=False).state_dict(), "rng": rng_state(),
                 "best_val_acc": np.float64(0.5), "history": [{"epoch": 0, "val_acc": 0.5}]}
        save_checkpoint(state, tmp_path / f"{name}.pt")
        loaded = load_checkpoint(tmp_path / f"{name}.pt")
        kind, keys, *rest = loaded["rng"]["numpy"]
        assert kind == "MT19937" and np.array_equal(keys, np.random.get_state()[1]), name
        np.random.set_state(loaded["rng"]["numpy"])
        assert loaded["scheduler"] == scheduler.state_dict() and loaded["best_val_acc"] == 0.5
        rebuilt, _ = load_model(tmp_path / f"{name}.pt")
        assert all(torch.equal(a, b) for a, b in zip(rebuilt.state_dict().values(), model.state_dict().values()))


def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path: Path) -> None:
    for name, data in (("text.pt", b"hello"), ("empty.pt", b""), ("zip.pt", b"PK\x03\x04" + bytes(40))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match=name) as info:
            load_checkpoint(tmp_path / name)
        assert "\n" not in str(info.value)
