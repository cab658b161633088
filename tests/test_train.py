"""emolens train: run folder contents, resume, atomic checkpoints, CLI errors, DDP (gloo)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from emolens.apps.cli import app  # noqa: E402
from emolens.models.checkpoint import load_checkpoint, load_model, save_checkpoint  # noqa: E402
from emolens.training.config import TrainConfig  # noqa: E402
from emolens.training.train import fit  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUIET = lambda _msg: None  # noqa: E731


def _cfg(data: Path, out: Path, cache: Path, **kw) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), cache_dir=str(cache), batch_size=32, workers=1, **kw)


def test_train_cli_writes_a_complete_run(fer_small, tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["train", "--data", str(fer_small), "--out", str(out), "--epochs", "2", "--batch-size", "32",
         "--cache-dir", str(tmp_path / "cache"), "--workers", "1", "--drop", "disgust"],
    )
    assert result.exit_code == 0, result.output
    assert {"last.pt", "best.pt", "config.json", "history.csv", "curves.png", "tb"} <= {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["amp"] in ("bf16", "off") and config["device"] == "cpu"
    assert (config["input_size"], config["channels"], config["arch"]) == (48, 1, "mini-xception")
    rows = list(csv.DictReader((out / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    model, meta = load_model(out)
    assert meta["classes"] == ["anger", "fear", "happy", "neutral", "sad", "surprise"]
    assert meta["crop"] == {"size": 48, "channels": 1, "margin": 0.1, "square": True, "contrast": "none"}
    assert meta["epoch"] == meta["best_epoch"]
    assert meta["best_val_acc"] == pytest.approx(max(float(r["val_acc"]) for r in rows), abs=1e-5)
    assert model(torch.zeros(1, 1, 48, 48)).shape == (1, 6)
    assert any((out / "tb").iterdir())


@pytest.mark.parametrize("extra", [{}, {"ema": 0.9}, {"precise_bn": 64}], ids=["plain", "ema", "precise-bn"])
def test_resume_continues_exactly(fer_small, tmp_path, extra):
    """1 epoch + resume for 1 more equals 2 epochs straight: weights (and their moving average),
    BatchNorm statistics, optimiser state, history."""
    cache = tmp_path / "cache"
    common = dict(amp="off", augment="default", **extra)
    fit(_cfg(fer_small, tmp_path / "straight", cache, epochs=2, **common), log=QUIET)
    fit(_cfg(fer_small, tmp_path / "split", cache, epochs=1, **common), log=QUIET)
    first = load_checkpoint(tmp_path / "split" / "last.pt")
    assert first["epoch"] == 0
    resumed_cfg = TrainConfig.load(tmp_path / "split" / "config.json")
    resumed_cfg.epochs = 2
    fit(resumed_cfg, resume=True, log=QUIET)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "last.pt")
    assert a["epoch"] == b["epoch"] == 1
    for key, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][key].float(), atol=1e-6), key
    for pa, pb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.allclose(pa["exp_avg"], pb["exp_avg"], atol=1e-6)
        assert int(pa["step"]) == int(pb["step"])
    assert a["scheduler"] == b["scheduler"]
    assert [r["val_acc"] for r in a["history"]] == [r["val_acc"] for r in b["history"]]
    if extra.get("ema"):  # "model" holds the average (validated, exported), "trained_model" what the optimiser trains
        for key, value in a["trained_model"].items():
            assert torch.allclose(value.float(), b["trained_model"][key].float(), atol=1e-6), key
        assert a["ema_steps"] == b["ema_steps"] > 0
        assert any(not torch.equal(a["model"][k], a["trained_model"][k]) for k in a["model"])


def _killed_at_last(monkeypatch, at_epoch: int, after: bool) -> None:
    """Make the run die right before (or after) it writes last.pt of ``at_epoch``."""
    import emolens.training.run as run_module

    real = run_module.save_checkpoint

    def dying(state, path):
        kill = Path(path).name == "last.pt" and state["epoch"] == at_epoch
        if kill and not after:
            raise KeyboardInterrupt
        real(state, path)
        if kill:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "save_checkpoint", dying)


def test_kill_between_checkpoints_keeps_best_and_scalars(fer_small, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    """Killed right after last.pt of the final epoch: best.pt and the scalars are already there."""
    run = tmp_path / "run"
    _killed_at_last(monkeypatch, at_epoch=1, after=True)
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(fer_small, run, tmp_path / "cache", epochs=2, amp="off"), log=QUIET)
    monkeypatch.undo()
    fit(TrainConfig.load(run / "config.json"), resume=True, log=QUIET)
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    assert last["epoch"] == 1 and best["epoch"] == last["best_epoch"]
    events = EventAccumulator(str(run / "tb"))
    events.Reload()
    assert [e.step for e in events.Scalars("val/acc")] == [0, 1]  # epoch 1's scalars not lost


def test_resume_after_a_stop_in_the_first_epoch(fer_small, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _killed_at_last(monkeypatch, at_epoch=0, after=False)
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(fer_small, run, tmp_path / "cache", epochs=1, amp="off"), log=QUIET)
    monkeypatch.undo()
    assert not (run / "last.pt").exists()
    result = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(run / "last.pt")["epoch"] == 0


def test_a_stop_in_the_first_epoch_keeps_the_init_weights(fer_small, tmp_path, monkeypatch):
    fit(_cfg(fer_small, tmp_path / "first", tmp_path / "cache", epochs=1, amp="off"), log=QUIET)
    run = tmp_path / "run"
    _killed_at_last(monkeypatch, at_epoch=0, after=False)
    with pytest.raises(KeyboardInterrupt):
        fit(_cfg(fer_small, run, tmp_path / "cache", epochs=1, amp="off", init=str(tmp_path / "first" / "best.pt")), log=QUIET)
    monkeypatch.undo()
    lines: list[str] = []
    fit(TrainConfig.load(run / "config.json"), resume=True, log=lines.append)
    assert any(line.startswith("init from ") for line in lines), lines
    # the precision was resolved when the run started; a resume does not claim it was asked for
    assert any("precision off (as the run has trained, recorded in its config.json)" in line for line in lines), lines


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)

    def crash(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"epoch": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.load(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_killed_writer_never_leaves_a_corrupt_checkpoint(tmp_path):
    path = tmp_path / "last.pt"
    code = (
        "import sys, torch; from emolens.models.checkpoint import save_checkpoint\n"
        "i = 0\n"
        "while True:\n"
        "    save_checkpoint({'epoch': i, 'w': torch.full((4_000_000,), float(i))}, sys.argv[1]); i += 1\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO)
    deadline = time.time() + 60
    while not path.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(path)
    assert torch.all(state["w"] == state["epoch"])


def test_cli_errors_are_clear(fer_small, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--data", str(fer_small), "--out", str(tmp_path), "--model", "nope"])
    assert result.exit_code == 2 and "unknown model 'nope'" in result.output
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 2 and "not a run folder" in result.output
    result = runner.invoke(app, ["train", "--data", str(fer_small), "--out", str(tmp_path), "--optimizer", "lion"])
    assert result.exit_code == 2 and "optimizer must be one of adam, adamw, sgd" in result.output


@pytest.mark.slow
def test_distributed_two_gloo_processes(fer_small, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "emolens", "train", "--data", str(fer_small), "--out", str(out), "--epochs", "1",
        "--batch-size", "16", "--cache-dir", str(tmp_path / "cache"), "--workers", "1",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=240)
    finally:  # a hung rendezvous must not leave workers behind
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, output[-3000:]
    assert "× 2 processes" in output
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    ckpt = load_checkpoint(out / "last.pt")
    # 210 training faces, 2 ranks × 16 per batch, drop_last: 6 batches per rank per epoch.
    assert int(next(iter(ckpt["optimizer"]["state"].values()))["step"]) == 6


def test_cli_imports_without_torch():
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'sklearn', 'onnx'): raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import emolens.apps.cli, emolens.training.config, emolens.evaluation.plots\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_precise_batchnorm_statistics_are_those_of_the_data():
    """recompute_batchnorm replaces stale running statistics by the mean and variance of the
    BatchNorm's input over every batch of the loader."""
    from emolens.training.engine import recompute_batchnorm

    torch.manual_seed(0)
    conv, bn = torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4)
    model = torch.nn.Sequential(conv, bn).eval()
    bn.running_mean.fill_(100.0)
    bn.running_var.fill_(1e-3)
    batches = [(torch.randn(8, 1, 12, 12) * 3 + 1, torch.zeros(8)) for _ in range(4)]
    recompute_batchnorm(model, batches, torch.device("cpu"))
    with torch.no_grad():
        features = conv(torch.cat([x for x, _ in batches]))
    assert not model.training and bn.momentum == 0.1  # left as it was found
    assert torch.allclose(bn.running_mean, features.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, features.var((0, 2, 3)), rtol=0.02)


def test_recalibrate_recomputes_only_the_batchnorm_statistics(fer_small, tmp_path):
    fit(_cfg(fer_small, tmp_path / "run", tmp_path / "cache", epochs=1, amp="off"), log=QUIET)
    runner = CliRunner()
    out = tmp_path / "recalibrated.pt"
    result = runner.invoke(app, ["recalibrate", str(tmp_path / "run"), "--out", str(out), "--images", "96",
                                 "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "recomputed on 96 training images of 1 source" in result.output
    before, after = load_checkpoint(tmp_path / "run" / "best.pt"), load_checkpoint(out)
    assert after["precise_bn"] == {"images": 96, "data": [str(fer_small)], "seed": 0}
    for key, value in before["model"].items():
        same = torch.equal(value, after["model"][key])
        assert same != key.endswith(("running_mean", "running_var", "num_batches_tracked")), key
    load_model(out)  # export and evaluate read it like any checkpoint
    missing = runner.invoke(app, ["recalibrate", str(tmp_path / "run"), "--out", str(out), "--data", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "nope: dataset not found" in missing.output


def test_configs_written_before_arch_was_named_so_still_load():
    """Run folders from before the rename: their config.json says "model" for the architecture."""
    assert TrainConfig.from_dict({"data": ["d"], "out": "o", "model": "vgg48"}).arch == "vgg48"
    assert TrainConfig.from_dict({"data": ["d"], "out": "o", "arch": "resnet18", "model": "vgg48"}).arch == "resnet18"
