"""The pure-function data stream: batch ``g`` of a run is a function of ``(seed, split, g)`` alone.

Signal ``i`` of the run (``i = g * batch_size + j``) owns the random counters
``(split << 60) | (i << 12) | slot``, so it is the same signal whichever rank, device or batch
makes it. A rank's share of batch ``g`` is a fixed contiguous slice of the batch: the signals act
as virtual shards, and the concatenation of the ranks' shares is the same batch for any world
size that divides the batch. The stream's whole state is the next batch index.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import IterableDataset, get_worker_info

from harmonic_forecast.counter_rng import stream_key
from harmonic_forecast.errors import ConfigError, require_choice, require_int
from harmonic_forecast.hardware import usable_device
from harmonic_forecast.signals import SLOTS_PER_SIGNAL, SignalSpec, synthesize

SPLITS = ("train", "validation", "test")
_SPLIT_SHIFT = 60
_MAX_SIGNALS = (1 << _SPLIT_SHIFT) // SLOTS_PER_SIGNAL

Batch = tuple[torch.Tensor, ...]


def _distributed_rank_and_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class HarmonicStream(IterableDataset):
    """Ready batches ``(lookback [b, lookback], target [b, horizon])`` float32 on ``device``.

    ``batch_size`` is the global batch; each of ``world_size`` ranks gets ``batch_size // world_size``
    rows (``rank`` and ``world_size`` default to torch.distributed's, else 0 and 1). Splits draw
    from disjoint counters, so a validation or test stream never repeats a training signal of the
    same seed. ``num_batches`` makes the stream finite; a finite stream starts over at batch 0
    when iterated again after it ended. With ``return_components`` each batch also carries the
    component count of every row.

    Use it with ``DataLoader(stream, batch_size=None, num_workers=0)`` or iterate it directly. Under
    Accelerate with several processes, iterate it directly on each rank: the stream shards itself,
    and ``accelerator.prepare`` cannot wrap a ``batch_size=None`` loader of an iterable dataset.
    """

    def __init__(
        self,
        spec: SignalSpec,
        batch_size: int,
        seed: int = 0,
        device: str | torch.device = "cpu",
        *,
        split: str = "train",
        rank: int | None = None,
        world_size: int | None = None,
        num_batches: int | None = None,
        return_components: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(spec, SignalSpec):
            raise ConfigError(f"spec: expected a SignalSpec, got {type(spec).__name__}")
        self.spec = spec
        self.batch_size = require_int("stream.batch_size", batch_size, minimum=1)
        self.seed = require_int("stream.seed", seed, minimum=0, maximum=(1 << 64) - 1)
        self.split = require_choice("stream.split", split, SPLITS)
        default_rank, default_size = _distributed_rank_and_size()
        self.world_size = require_int(
            "stream.world_size", default_size if world_size is None else world_size, minimum=1
        )
        self.rank = require_int("stream.rank", default_rank if rank is None else rank, minimum=0)
        if self.rank >= self.world_size:
            raise ConfigError(f"stream.rank: must be < world_size {self.world_size}, got {self.rank}")
        if self.batch_size % self.world_size:
            raise ConfigError(
                f"stream.batch_size: {self.batch_size} is not divisible by the world size {self.world_size}"
            )
        if num_batches is not None:
            num_batches = require_int("stream.num_batches", num_batches, minimum=1)
        self.num_batches = num_batches
        self.device = usable_device("stream.device", device)
        self.return_components = return_components
        self.position = 0
        self._key = stream_key(self.seed)
        self._split_bits = SPLITS.index(self.split) << _SPLIT_SHIFT

    @property
    def local_batch_size(self) -> int:
        """Rows of each batch that this rank receives."""
        return self.batch_size // self.world_size

    def batch(self, index: int) -> Batch:
        """This rank's share of batch ``index`` (a pure function of seed, split and index)."""
        index = require_int("batch index", index, minimum=0)
        first = index * self.batch_size + self.rank * self.local_batch_size
        if first + self.local_batch_size > _MAX_SIGNALS:
            raise ConfigError(f"batch index: {index} is beyond the stream's {_MAX_SIGNALS} signals")
        signal_index = torch.arange(first, first + self.local_batch_size, device=self.device)
        counters = signal_index.mul_(SLOTS_PER_SIGNAL).bitwise_or_(self._split_bits)
        signal, count = synthesize(self.spec, self._key, counters)
        lookback, target = signal[:, : self.spec.lookback], signal[:, self.spec.lookback :]
        return (lookback, target, count) if self.return_components else (lookback, target)

    def __iter__(self) -> Iterator[Batch]:
        worker = get_worker_info()
        if worker is not None:  # a worker's copy would advance its own position, never this stream's state_dict
            raise ConfigError(
                "HarmonicStream: use DataLoader num_workers=0; batches are built on the device in the calling "
                "process, whose state_dict() a worker process would not advance"
            )
        if self.num_batches is not None and self.position >= self.num_batches:
            self.position = 0
        while self.num_batches is None or self.position < self.num_batches:
            batch = self.batch(self.position)
            self.position += 1
            yield batch

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an endless HarmonicStream has no length")
        return self.num_batches

    def state_dict(self) -> dict[str, int]:
        """The stream's position: the index of the next batch."""
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from a saved position."""
        if not isinstance(state, dict) or set(state) != {"position"}:
            raise ConfigError(f"stream state: expected {{'position': int}}, got {state!r}")
        self.position = require_int("stream state.position", state["position"], minimum=0)
