"""Memory layout for training, chosen per device and precision.

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
