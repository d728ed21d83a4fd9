"""Multi-process training on ``torch.distributed``, as started by ``torchrun``.

``torchrun --nproc_per_node N -m vsekit run spec.toml`` starts N copies of
the trainer; each reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the
environment and joins one process group (gloo on CPU, nccl on CUDA).

**The global batch.** Every rank draws the same epoch of batches (same seed)
and takes a contiguous share of each batch (``np.array_split``: shares differ
by at most one caption). The model is wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`; after the forward pass
the image and caption embeddings of all ranks are gathered, in batch order,
with :func:`gather_rows` (an all-gather whose backward returns each rank its
rows of the summed gradient), and the loss is computed on the whole global
batch, so hinge, max-violation and InfoNCE see exactly the negatives a single
process would see with the same ``batch_size``: ``batch_size`` is the global
batch, not a per-rank one. Every rank computes the same loss; DDP averages the
parameter gradients, which then equal the single-process gradient.

**Who writes.** Rank 0 alone holds the run lock and writes the run folder
(spec, vocabulary, metrics, checkpoints, results). Every rank validates (the
same weights give the same numbers, so early stopping and model selection
agree without messages); only rank 0 evaluates the test split and the others
receive its results. A user error found on any rank before training starts
stops every rank with that message. ``--resume`` works as in one process:
every rank restores the same saved state.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import numpy as np
import torch
import torch.distributed as dist

from vsekit.errors import SpecError, VsekitError


@attrs.frozen
class Dist:
    """This process's place in the job: ``rank`` of ``world_size`` (1 and 0 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when more than one process takes part (``world_size > 1``)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes the run's files."""
        return self.rank == 0

    # -- the global batch ------------------------------------------------------

    def split(self, idx: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """This rank's contiguous share of a global batch, and every rank's share size."""
        if not self.enabled:
            return idx, [len(idx)]
        parts = np.array_split(idx, self.world_size)
        return parts[self.rank], [len(p) for p in parts]

    # -- agreement -------------------------------------------------------------

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (e.g. Ctrl-C seen by one process)."""
        if not self.enabled:
            return flag
        t = torch.tensor([int(flag)], dtype=torch.int32)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_cpu_group())
        return bool(t.item())

    def raise_if_any(self, error: BaseException | None) -> None:
        """Re-raise ``error``; and when another rank failed with a user error, fail here too.

        Called once, after every check and before the first write, so that no
        rank goes on to wait for a peer that has already stopped.
        """
        if self.enabled:
            found: list[Any] = [None] * self.world_size
            dist.all_gather_object(found, None if error is None else f"{error}", group=_cpu_group())
            if error is None or (not self.is_main and found[0] == found[self.rank]):
                for rank, msg in enumerate(found):
                    if msg is not None:
                        raise PeerFailed(f"rank {rank} stopped: {msg}", silent=not self.is_main)
        if error is not None:
            raise error

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=_cpu_group())
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank gets here (nothing to do when not distributed)."""
        if self.enabled:
            dist.barrier(group=_cpu_group())

    @contextlib.contextmanager
    def main_only(self, cm: contextlib.AbstractContextManager) -> Iterator[Any]:
        """Enter ``cm`` on rank 0 only (e.g. the run lock)."""
        if self.is_main:
            with cm as value:
                yield value
        else:
            yield None


class PeerFailed(VsekitError):
    """A rank of a distributed run stopped on a user error; ``silent`` where rank 0 prints the message."""

    def __init__(self, message: str, silent: bool = False) -> None:
        super().__init__(message)
        self.silent = silent


_GATHER_GROUP: Any = None


def _cpu_group() -> Any:
    """A gloo group for small control messages (works whatever the training backend is)."""
    global _GATHER_GROUP
    if _GATHER_GROUP is None:
        _GATHER_GROUP = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    return _GATHER_GROUP


def from_env() -> Dist:
    """The job layout ``torchrun`` set in the environment (one process when it did not)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise SpecError(f"WORLD_SIZE / RANK / LOCAL_RANK must be integers: {exc}") from None
    if world < 1 or not 0 <= rank < world:
        raise SpecError(f"RANK={rank} and WORLD_SIZE={world} do not describe a process of the job")
    return Dist(rank=rank, world_size=world, local_rank=local)


def setup(device: torch.device, where: str = "<spec>") -> tuple[Dist, torch.device]:
    """Join the job's process group (once per process) and pick this rank's device.

    On CUDA, rank ``LOCAL_RANK`` uses ``cuda:LOCAL_RANK`` with nccl; on CPU, gloo.
    """
    d = from_env()
    if not d.enabled:
        return d, device
    if device.type == "cuda":
        n = torch.cuda.device_count()
        if d.local_rank >= n:
            raise SpecError(f"{where}: [train] device: LOCAL_RANK {d.local_rank} needs cuda:{d.local_rank}, but "
                            f"this machine has {n} CUDA device(s); start at most {n} processes per node")
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise SpecError(f"{where}: [train] device: {device.type!r} is not supported for multi-process training; "
                        f"use 'cpu' or 'cuda'")
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
        atexit.register(_shutdown)
    elif dist.get_world_size() != d.world_size or dist.get_rank() != d.rank:
        raise SpecError(f"the process group already set up (rank {dist.get_rank()} of {dist.get_world_size()}) "
                        f"does not match RANK={d.rank}, WORLD_SIZE={d.world_size}")
    return d, device


def _shutdown() -> None:
    global _GATHER_GROUP
    if dist.is_initialized():
        dist.destroy_process_group()
    _GATHER_GROUP = None


class _GatherRows(torch.autograd.Function):
    """All-gather rows of different counts per rank; backward sums every rank's gradient, keeps ours."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sizes: Sequence[int], rank: int) -> torch.Tensor:  # type: ignore[override]
        ctx.sizes, ctx.rank = list(sizes), rank
        most = max(sizes)
        if x.shape[0] < most:
            x = torch.cat([x, x.new_zeros((most - x.shape[0], *x.shape[1:]))])
        parts = [torch.empty_like(x) for _ in sizes]
        dist.all_gather(parts, x.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # every rank's loss depends on every rank's rows
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def gather_rows(x: torch.Tensor, sizes: Sequence[int], rank: int) -> torch.Tensor:
    """The rows of every rank, in rank order (rank r contributes ``sizes[r]`` rows); differentiable."""
    return _GatherRows.apply(x, list(sizes), rank)


class GlobalBatchLoss(torch.nn.Module):
    """Model + loss as one module (what DDP wraps): local forward, gather, the loss on the global batch.

    ``autocast`` (e.g. bf16) covers the encoders only; the embeddings are cast
    to float32 before they are gathered and scored, so the loss is fp32.
    """

    def __init__(self, model: torch.nn.Module, loss_fn: torch.nn.Module, d: Dist,
                 autocast: contextlib.AbstractContextManager | None = None) -> None:
        super().__init__()
        self.model, self.loss_fn, self.d = model, loss_fn, d
        self.autocast = autocast

    def forward(self, batch: Any, feats: torch.Tensor, ids: torch.Tensor, sizes: Sequence[int],
                step: int = 0, epoch: float = 0.0) -> torch.Tensor:
        """The loss on the global batch, a 0-d float32 tensor.

        Encodes the local ``batch`` and ``feats`` (B_local, dim_image), gathers every
        rank's embeddings and ``ids`` (rank r gives ``sizes[r]`` rows) and scores them.
        """
        if self.autocast is not None:
            with self.autocast:
                im, s = self.model(batch, feats)
            im, s = im.float(), s.float()
        else:
            im, s = self.model(batch, feats)
        if self.d.enabled:
            im = gather_rows(im, sizes, self.d.rank)
            s = gather_rows(s, sizes, self.d.rank)
            ids = gather_rows(ids, sizes, self.d.rank)
        return self.loss_fn(im, s, ids, step=step, epoch=epoch)
