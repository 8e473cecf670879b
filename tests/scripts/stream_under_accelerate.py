"""Run under ``accelerate launch``: each rank reads its share of the stream; rank 0 checks the whole.

Writes ``{"world_size", "batches_equal", "rank_rows"}`` as JSON to the path given as argument 1.
"""

from __future__ import annotations

import json
import sys

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from torch.utils.data import DataLoader

from harmonic_forecast import HarmonicStream, SignalSpec


def main(output: str) -> None:
    accelerator = Accelerator(cpu=True, dataloader_config=DataLoaderConfiguration(dispatch_batches=False))
    spec = SignalSpec(components=(3, 20), noise=0.05)
    stream = HarmonicStream(spec, batch_size=64, seed=5, device=accelerator.device)
    assert stream.world_size == accelerator.num_processes and stream.rank == accelerator.process_index
    loader = DataLoader(stream, batch_size=None, num_workers=0)
    equal = []
    for index, (lookback, target) in zip(range(3), loader, strict=False):
        whole = accelerator.gather(torch.cat([lookback, target], dim=1))
        reference = HarmonicStream(spec, batch_size=64, seed=5, rank=0, world_size=1).batch(index)
        equal.append(torch.equal(whole, torch.cat(reference, dim=1)))
    rows = accelerator.gather(torch.tensor([len(lookback)])).tolist()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with open(output, "w") as handle:
            json.dump({"world_size": accelerator.num_processes, "batches_equal": equal, "rank_rows": rows}, handle)
    accelerator.end_training()


if __name__ == "__main__":
    main(sys.argv[1])
