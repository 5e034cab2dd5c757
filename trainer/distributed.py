"""Where a process stands in a ``torchrun`` launch: its rank, the world size, its local GPU.

Training and the full fine-tune both run as one process or as several under ``torchrun`` (gloo
on CPUs, NCCL on GPUs); both ask this module to join the process group ``torchrun`` set up.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass
class Distributed:
    """Where this process stands in a distributed run (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()


def join_process_group(use_cuda: bool) -> tuple[Distributed, bool]:
    """Join the process group of a ``torchrun`` launch (``WORLD_SIZE`` > 1), NCCL with
    ``use_cuda`` else gloo. Returns where this process stands and whether this call created the
    group (the caller then destroys it when done). Outside ``torchrun``: one process, nothing joined.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Distributed(), False
    import torch.distributed as dist

    created = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        created = True
    info = Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return info, created
