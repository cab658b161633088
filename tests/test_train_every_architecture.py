"""Every registered architecture trains on this CPU in fp32 and in bf16, in the memory layout
training uses. Each architecture runs in its own process, so a crash inside a kernel (oneDNN
segfaulted in channels_last fp32 on AVX-512 CPUs) fails the test naming the architecture and
the precision instead of killing the whole suite."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from emolens.models import list_models  # noqa: E402
from emolens.training.precision import memory_format, resolve_amp  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MAX_SIZE = 96  # ImageNet-sized models keep their strided stems (they switch to stride 1 at ≤64 px)
STEP = """
import sys, torch
from torch import nn
from emolens.models import get_model_info, create_model
from emolens.training.precision import memory_format

name, size = sys.argv[1], int(sys.argv[2])
info = get_model_info(name)
cpu = torch.device("cpu")
for amp, dtype in (("off", None), ("bf16", torch.bfloat16)):
    print(f"{amp} started", flush=True)
    torch.manual_seed(0)
    model = create_model(name, 7, size, info.channels).to(cpu, memory_format=memory_format(cpu, amp))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(2, info.channels, size, size).contiguous(memory_format=memory_format(cpu, amp))
    y = torch.tensor([0, 1])
    with torch.autocast("cpu", dtype=dtype, enabled=dtype is not None):
        loss = nn.functional.cross_entropy(model(x).float(), y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss), loss
    assert all(torch.isfinite(p).all() for p in model.parameters())
    print(f"{amp} ok", flush=True)
"""


def test_memory_format_policy() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert memory_format(cpu, "off") == torch.contiguous_format
    assert memory_format(cpu, "bf16") == torch.channels_last
    assert memory_format(cuda, "fp16") == memory_format(cuda, "off") == torch.channels_last


@pytest.mark.parametrize(("native_bf16", "expected"), [(True, "bf16"), (False, "fp16")])
def test_cuda_precision_policy(monkeypatch: pytest.MonkeyPatch, native_bf16: bool, expected: str) -> None:
    """On CUDA, auto is bf16 where the GPU has it (no GradScaler), fp16 with loss scaling elsewhere."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native_bf16)
    assert resolve_amp("auto", torch.device("cuda", 0))[0] == expected
    assert resolve_amp("fp16", torch.device("cuda", 0))[0] == "fp16"


@pytest.mark.parametrize("name", [info.name for info in list_models()])
def test_one_step_in_fp32_and_bf16(name: str) -> None:
    info = next(i for i in list_models() if i.name == name)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", STEP, name, str(min(info.input_size, MAX_SIZE))], cwd=REPO,
                          capture_output=True, text=True, timeout=300, env=env)
    started = [line.split()[0] for line in proc.stdout.splitlines() if line.endswith("started")]
    where = f"{name} in {'fp32' if started[-1:] == ['off'] else 'bf16'}" if started else name
    if proc.returncode < 0:
        pytest.fail(f"{where}: killed by {signal.Signals(-proc.returncode).name}\n{proc.stderr[-2000:]}")
    assert proc.returncode == 0, f"{where}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
    assert proc.stdout.split() == ["off", "started", "off", "ok", "bf16", "started", "bf16", "ok"]
