"""torch.distributed set-up for training launched by ``torchrun`` (or as one plain process).

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK (plus MASTER_ADDR/PORT); with WORLD_SIZE > 1 a
process group is created (NCCL on CUDA, gloo on CPU) and each rank drives one device. Without those
variables, or with WORLD_SIZE = 1, everything runs in this process and the collectives are no-ops.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as err:
        raise ValueError(f"{name}: expected an integer in the environment, got {value!r}") from err


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``"auto"``: this rank's GPU when CUDA is available, else the CPU; ``"cuda"``: this rank's GPU."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {preference!r} requested but CUDA is not available (CPU-only torch or no GPU)")
    if preference == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(preference)


@dataclass
class DistributedContext:
    """This process's place in the job: rank, world size, its device and whether it is rank 0."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls, device: str = "auto") -> "DistributedContext":
        """Read torchrun's variables; with WORLD_SIZE > 1, initialise the default process group."""
        rank, world_size, local_rank = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0)
        context = cls(rank, world_size, local_rank, resolve_device(device, local_rank))
        if context.distributed and not dist.is_initialized():
            backend = "nccl" if context.device.type == "cuda" else "gloo"
            if context.device.type == "cuda":
                torch.cuda.set_device(context.device)
            dist.init_process_group(backend=backend)
            logger.info("rank %d/%d joined the %s process group on %s", rank, world_size, backend, context.device)
        return context

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over all ranks (in place, returned)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_gather(self, tensor: torch.Tensor) -> list[torch.Tensor]:
        if not self.distributed:
            return [tensor]
        gathered = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(gathered, tensor)
        return gathered

    def close(self) -> None:
        """Destroy the process group (if this job created one)."""
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()
