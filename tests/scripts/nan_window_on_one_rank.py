"""Run the trainer's CLI with one window of one training batch poisoned by a NaN on the last rank only.

Fault injection for the divergence test: ``python tests/scripts/nan_window_on_one_rank.py INDEX SIZE train ...``
(under ``accelerate launch`` or alone) poisons batch INDEX of the training streams of global batch SIZE (the
trainer's, not the skip path's fit). Every other batch, and every other rank, sees the real stream.
"""

from __future__ import annotations

import sys

from harmonic_forecast.cli import main
from harmonic_forecast.stream import HarmonicStream

_real_batch = HarmonicStream.batch


def _poisoned_batch(self: HarmonicStream, index: int):
    lookback, target = _real_batch(self, index)
    last_rank = self.rank == self.world_size - 1
    if self.split == "train" and last_rank and (index, self.batch_size) == (POISONED_INDEX, POISONED_SIZE):
        lookback = lookback.clone()
        lookback[0, 7] = float("nan")
    return lookback, target


if __name__ == "__main__":
    POISONED_INDEX, POISONED_SIZE = int(sys.argv[1]), int(sys.argv[2])
    HarmonicStream.batch = _poisoned_batch
    sys.exit(main(sys.argv[3:]))
