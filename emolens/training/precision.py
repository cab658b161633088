"""Training precision: the autocast mode per device, and the memory layout per device and precision.

channels_last (NHWC) is what CUDA tensor cores and oneDNN's bf16 kernels want, but on CPUs with
AVX-512 torch 2.13's oneDNN (3.12) segfaults in the backward pass of a 1×1 stride-2 convolution
in channels_last at fp32 (mini-Xception's residual shortcut; the process dies with SIGSEGV). fp32
on a CPU therefore trains in the default contiguous (NCHW) layout.
"""

from __future__ import annotations

import torch


def memory_format(device: torch.device, amp: str) -> torch.memory_format:
    """channels_last on CUDA and for bf16 autocast on CPU; contiguous for fp32 (``amp="off"``) on CPU.

    ``amp`` is the resolved precision: ``fp16``, ``bf16`` or ``off``.
    """
    if device.type == "cuda" or amp == "bf16":
        return torch.channels_last
    return torch.contiguous_format


AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "off": None}


def resolve_amp(mode: str, device: torch.device) -> tuple[str, str]:
    """Pick the autocast precision; returns (fp16|bf16|off, why).

    ``auto``: on CUDA bf16 where the GPU has it (Ampere and newer; no loss scaling, whose inf
    check makes the CPU wait for the GPU at every step), else fp16 with a GradScaler; on CPUs bf16
    only where oneDNN runs it natively (AVX512-BF16/AMX — measured 1.4–2.2× faster training
    here), fp32 elsewhere, where bf16 is emulated and slower.
    """
    if mode != "auto":
        return mode, "as requested"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "bf16", "CUDA with native bf16: bf16 autocast, no loss scaling"
        return "fp16", "CUDA without native bf16: fp16 autocast with GradScaler"
    if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bf16", "CPU with native bf16 support: bf16 autocast"
    return "off", "CPU without native bf16: bf16 autocast would be slower, training in fp32"
