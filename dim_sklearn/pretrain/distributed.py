"""Data-parallel pretraining on torch.distributed: the process group, the collectives the loop needs, the launcher.

A run of K processes (ranks) is started by torch's own launcher, ``torchrun``
(``torch.distributed.run``), which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT`` in each process;
[`init_from_env`][dim_sklearn.pretrain.distributed.init_from_env] joins the group
they describe, with the gloo backend on CPU and nccl on CUDA. Outside such a
group every function here is the single-process identity: rank 0 of 1.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from .._utils import resolve_device

__all__ = [
    "all_gather_objects",
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "init_from_env",
    "launch",
    "rank_and_world",
]


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes of the group (0 and 1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: str | torch.device = "auto") -> torch.device:
    """Join the process group described by torchrun's environment variables; returns this rank's device.

    With ``WORLD_SIZE`` unset or 1 no group is made and the device is resolved
    as usual. Otherwise ``"auto"`` gives the GPU ``LOCAL_RANK`` when there are
    GPUs (backend nccl), else the CPU (backend gloo). A group already joined is
    kept.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return resolve_device(device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if str(device) == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return device


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Elementwise sums of ``values`` over all ranks (float64); ``values`` itself without a group."""
    if rank_and_world()[1] == 1:
        return list(values)
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def all_gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (picklable objects; one-element list without a group)."""
    if rank_and_world()[1] == 1:
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (``obj`` itself without a group)."""
    if rank_and_world()[1] == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every rank is here (nothing without a group)."""
    if rank_and_world()[1] > 1:
        dist.barrier()


def launch(module: str, args: Sequence[str], nproc_per_node: int) -> None:
    """Run ``python -m module args`` in ``nproc_per_node`` processes on this machine with torch's launcher.

    The same as ``torchrun --standalone --nproc-per-node K -m module args``:
    torch's elastic agent starts the processes, gives each its rank and a free
    port on localhost, and when one fails stops the others.

    Raises
    ------
    torch.distributed.elastic.multiprocessing.errors.ChildFailedError
        When a process fails.
    """
    from torch.distributed.run import parse_args, run

    run(parse_args(["--standalone", f"--nproc-per-node={int(nproc_per_node)}", "-m", module, *args]))
