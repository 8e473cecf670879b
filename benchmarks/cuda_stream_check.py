"""On a CUDA machine: the stream's batches on the GPU equal the CPU's (same counters, same signals).

Prints one line per spec and writes ``benchmarks/results/cuda-stream-check.json``; exits 1 on a mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from harmonic_forecast import HarmonicStream, SignalSpec

SPECS = {
    "gemm (3,45)": SignalSpec(),
    "noise 0.1": SignalSpec(components=(3, 20), noise=0.1),
    "drift": SignalSpec(components=(3, 20), drift=True),
    "continuous": SignalSpec(periods=(10.0, 100.0), integer_periods=False),
}
TOLERANCE = 1e-5


def main() -> int:
    """Compare CPU and CUDA batches for each spec; returns the exit status."""
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()  # no options: --help says what it does
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    report = {}
    for name, spec in SPECS.items():
        cpu = HarmonicStream(spec, batch_size=4096, seed=3, return_components=True)
        gpu = HarmonicStream(spec, batch_size=4096, seed=3, device="cuda", return_components=True)
        worst = 0.0
        for index in (0, 7):
            (*signals_cpu, count_cpu), (*signals_gpu, count_gpu) = cpu.batch(index), gpu.batch(index)
            assert torch.equal(count_cpu, count_gpu.cpu()), name
            for a, b in zip(signals_cpu, signals_gpu, strict=True):
                worst = max(worst, float((a - b.cpu()).abs().max()))
        report[name] = worst
        print(f"{name:14s} max |cpu - cuda| = {worst:.2e} {'ok' if worst <= TOLERANCE else 'MISMATCH'}")
    output = Path(__file__).resolve().parent / "results" / "cuda-stream-check.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"max_abs_diff": report, "tolerance": TOLERANCE}, indent=2) + "\n")
    return 0 if all(value <= TOLERANCE for value in report.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
