"""Data-parallel training across processes started by ``accelerate launch --num_processes N``.

Every process holds the whole (small or sharded-by-FSDP-later) policy. A step's prompts are
split across processes; each samples, grades and back-propagates its share; the gradients are
averaged with one all-reduce, so every process takes the same optimizer step and the replicas
stay identical. Evaluation tasks are split the same way and the per-task counts gathered.
Only the main process talks to MLflow: it logs, writes checkpoints and makes the controller's
decisions, and tells the others the next campaign's plan.

A single process (no ``accelerate launch``) gets ``SINGLE``, whose every method is the
identity: the single-process code path does no collective and stays bit-for-bit as before.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's share: items rank, rank + world, ... (whole groups stay together)."""
        return list(items[self.rank::self.world])

    def average_gradients(self, params) -> None:
        """All-reduce the gradients (one flat buffer, one collective) and divide by the world size."""
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def mean(self, metrics: dict[str, float]) -> dict[str, float]:
        """The mean of each metric over processes (the same keys on every process)."""
        if self.world == 1:
            return metrics
        keys = sorted(metrics)
        values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
        torch.distributed.all_reduce(values)
        return {k: float(v) / self.world for k, v in zip(keys, values)}

    def gather(self, obj: Any) -> list[Any]:
        """Every process's ``obj``, in rank order, on every process."""
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        torch.distributed.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any = None) -> Any:
        """The main process's ``obj``, on every process."""
        if self.world == 1:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]


SINGLE = Dist()


def current() -> Dist:
    """This process's Dist: from accelerate's launch environment, else a single process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return SINGLE
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())   # gloo on CPU, nccl on GPUs
    return Dist(state.process_index, state.num_processes)
