"""Data-parallel training across processes, as launched by ``torchrun``.

``torchrun --nproc-per-node N -m nnatlas train ...`` starts N copies of the program with ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment;
:func:`init_distributed` turns those into a process group (NCCL on GPUs, gloo on CPUs). Each process
reads its own shard of every epoch (:class:`EpochSampler`), and ``DistributedDataParallel`` averages the
gradients, so N processes with batch ``b`` take the same step as one process with batch ``N * b``
(Goyal et al. 2017, "Accurate, Large Minibatch SGD").
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """More than one process takes part (``world_size > 1``)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """This process is rank 0 (the one that writes files and logs in a multi-process run)."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when ``torchrun`` (or another launcher setting ``WORLD_SIZE`` > 1) started this process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def dist_info() -> DistInfo:
    """The current process's place in the process group (rank 0 of 1 without one)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group described by torchrun's environment variables; a no-op for one process.

    ``device`` ``auto`` or ``cuda`` on a machine with GPUs gives NCCL and pins this process to GPU
    ``LOCAL_RANK``; otherwise gloo on the CPU.
    """
    if not launched_by_torchrun():
        return DistInfo()
    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; cannot train on several processes")
    if dist.is_initialized():
        return dist_info()
    for key in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        if key not in os.environ:
            raise ValueError(f"WORLD_SIZE is set but {key} is not; launch with torchrun")
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = device != "cpu" and torch.cuda.is_available()
    if use_cuda:
        torch.cuda.set_device(local_rank)
    backend = "nccl" if use_cuda else "gloo"
    dist.init_process_group(backend=backend)
    info = dist_info()
    log.info("process %d of %d joined (%s)", info.rank, info.world_size, backend)
    return info


def destroy_distributed() -> None:
    """Leave the process group cleanly: wait for every process, then destroy it.

    Drop the ``DistributedDataParallel`` model (the trainer) first: gloo's worker threads must not outlive
    the group, or the process may abort at exit ("terminate called without an active exception").
    """
    if dist.is_available() and dist.is_initialized():
        import gc

        gc.collect()
        try:
            dist.barrier()
        except RuntimeError as e:  # a peer is already gone: nothing to wait for
            log.warning("barrier before leaving the process group failed: %s", e)
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum a few numbers over every process (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def any_process(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on at least one process, so every process takes the same branch."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def broadcast_object(obj: object) -> object:
    """Rank 0's ``obj`` on every process."""
    if not (dist.is_available() and dist.is_initialized()):
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class EpochSampler(Sampler[int]):
    """Indices of one epoch for one process, reproducible from ``(seed, epoch)`` and resumable mid-epoch.

    With ``shuffle`` the epoch's order is ``torch.randperm(n)`` drawn from a generator seeded with
    ``seed + epoch``, padded by wrapping around to a multiple of ``num_replicas`` and dealt out as
    ``order[rank::num_replicas]``: exactly ``torch.utils.data.DistributedSampler``'s order. So the
    union of the processes' ``k``-th batches of size ``b`` is the single process's ``k``-th batch of size
    ``num_replicas * b``. ``pad=False`` (validation) deals out the unpadded order, so no sample is
    counted twice. ``set_position(epoch, start)`` skips the first ``start`` samples of this process's share
    without reading them, which is how a resumed run continues in the middle of an epoch.

    Five samples over two processes, in order: the order is padded to six by wrapping around, and rank 1
    takes every second index from 1:

    >>> list(EpochSampler(5, shuffle=False, num_replicas=2, rank=1))
    [1, 3, 0]
    >>> sampler = EpochSampler(5, shuffle=False)
    >>> sampler.set_position(epoch=0, start=3)
    >>> list(sampler)
    [3, 4]
    """

    def __init__(
        self,
        length: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        pad: bool = True,
    ) -> None:
        if length < 1:
            raise ValueError(f"the data set is empty; need at least one sample, got length {length}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}); got {rank}")
        self.length, self.shuffle, self.seed = length, shuffle, seed
        self.num_replicas, self.rank, self.pad = num_replicas, rank, pad
        self.epoch, self.start = 0, 0

    @property
    def shard_size(self) -> int:
        """Samples this process reads in a whole epoch."""
        if self.pad:
            return math.ceil(self.length / self.num_replicas)
        return len(range(self.rank, self.length, self.num_replicas))

    def set_position(self, epoch: int, start: int = 0) -> None:
        """Iterate over ``epoch``'s order from this process's ``start``-th sample (``0 <= start <=
        shard_size``, ``ValueError`` otherwise)."""
        if not 0 <= start <= self.shard_size:
            raise ValueError(f"start must be in [0, {self.shard_size}]; got {start}")
        self.epoch, self.start = epoch, start

    def set_epoch(self, epoch: int) -> None:
        """Iterate over the whole of ``epoch``'s order (``set_position(epoch, 0)``)."""
        self.set_position(epoch, 0)

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=g).tolist()
        else:
            order = list(range(self.length))
        if self.pad:
            total = self.shard_size * self.num_replicas
            while len(order) < total:
                order += order[: total - len(order)]
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.start :])

    def __len__(self) -> int:
        return self.shard_size - self.start


class EpochKeys(Sampler[tuple[int, int]]):
    """``sampler``'s indices as ``(epoch, index)`` keys, for :class:`SeededSamples`."""

    def __init__(self, sampler: EpochSampler) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def _mix(*numbers: int) -> int:
    """A 63-bit seed from whole numbers (SplitMix64's finaliser after each), unrelated for nearby inputs."""
    z = 0
    for n in numbers:
        z = (z + (n % (1 << 64)) + 0x9E3779B97F4A7C15) % (1 << 64)
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % (1 << 64)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % (1 << 64)
        z ^= z >> 31
    return z & ((1 << 63) - 1)


class SeededSamples(Dataset):
    """``dataset`` read under random generators seeded from the run's seed, the epoch and the samples.

    A batch (what one ``DataLoader`` fetch reads, through :meth:`__getitems__`) is read under generators
    seeded from ``(seed, epoch, its indices)``; a single key through :meth:`__getitem__` from
    ``(seed, epoch, index)``. The random augmentation of a training batch is then the same in the main
    process and in any data-loader worker, with any number of workers, and after a resume in the middle of
    an epoch (where a worker's generator would otherwise start afresh instead of where the uninterrupted
    run's had got to). torch's CPU, Python's and NumPy's global generators are seeded for the read and
    restored after it, so the caller's streams are untouched. Keys are the ``(epoch, index)`` pairs of
    :class:`EpochKeys`.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        with self._seeded(_mix(self.seed, epoch, index)):
            return self.dataset[index]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[Any]:
        epoch = keys[0][0] if keys else 0
        indices = [index for _, index in keys]
        with self._seeded(_mix(self.seed, epoch, len(indices), *indices)):
            return [self.dataset[i] for i in indices]

    @staticmethod
    @contextlib.contextmanager
    def _seeded(z: int) -> Iterator[None]:
        torch_state, py_state, np_state = torch.get_rng_state(), random.getstate(), np.random.get_state()
        torch.default_generator.manual_seed(z)
        random.seed(z)
        np.random.seed(z % (1 << 32))
        try:
            yield
        finally:
            torch.set_rng_state(torch_state)
            random.setstate(py_state)
            np.random.set_state(np_state)
