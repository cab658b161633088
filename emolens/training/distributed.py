"""torchrun integration: process group set-up from the environment torchrun provides."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched_by_torchrun() -> bool:
    """True inside a torchrun launch of more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def from_environment() -> DistInfo:
    """This process's place among those torchrun started (one process of one when not started by it)."""
    if not launched_by_torchrun():
        return DistInfo()
    return DistInfo(
        rank=int(os.environ["RANK"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )


def setup(device: torch.device) -> DistInfo:
    """Join the process group when started by torchrun (``nccl`` on CUDA, ``gloo`` on CPU)."""
    info = from_environment()
    if not info.enabled:
        return info
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info


def barrier() -> None:
    """Wait for every process of a distributed run (no-op otherwise)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def teardown() -> None:
    """End the distributed process group, if one was started."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
