"""The ``harmonic-forecast`` command line.

Exit status: 0 done; 2 bad input (config, file, checkpoint: one line on stderr, nothing on disk
changed); 3 stopped by SIGTERM/SIGUSR1 after saving a checkpoint (requeue with ``--resume auto``);
4 the loss became non-finite (no checkpoint written from those weights).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from harmonic_forecast import __version__
from harmonic_forecast.config import ConfigError
from harmonic_forecast.cpu_allocator import keep_freed_memory
from harmonic_forecast.signals import SignalSpec
from harmonic_forecast.stream import SPLITS, HarmonicStream

EXIT_BAD_INPUT = 2


def _sample(args: argparse.Namespace) -> int:
    """Write ``count`` signals of the stream (lookback and horizon side by side) to .npy or .csv."""
    spec = SignalSpec(
        lookback=args.lookback,
        horizon=args.horizon,
        components=tuple(args.components),
        periods=tuple(args.periods),
        noise=args.noise,
        drift=args.drift,
    )
    stream = HarmonicStream(spec, batch_size=args.count, seed=args.seed, split=args.split)
    lookback, target = stream.batch(0)
    signals = np.concatenate([lookback.numpy(), target.numpy()], axis=1)
    output = Path(args.output)
    if output.suffix not in (".npy", ".csv"):
        raise ConfigError(f"--output: expected a .npy or .csv file name, got {output.name!r}")
    output.parent.mkdir(parents=True, exist_ok=True)
    if output.suffix == ".npy":
        np.save(output, signals)
    else:
        header = ",".join(f"t{i}" for i in range(spec.length))
        np.savetxt(output, signals, delimiter=",", header=header, comments="", fmt="%.7g")
    print(f"wrote {len(signals)} signals of {spec.length} samples (lookback {spec.lookback}) to {output}")
    return 0


def _train(args: argparse.Namespace) -> int:
    """Train the config's curriculum; checkpoints, model and metrics go to ``--output-dir``."""
    from harmonic_forecast.run_config import load_run_config
    from harmonic_forecast.train import EXIT_DIVERGED, EXIT_PREEMPTED, DivergedError, train

    config = load_run_config(args.config, args.set)
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps: must be >= 1, got {args.max_steps}")
    output_dir = Path(args.output_dir or Path("runs") / Path(args.config).stem)
    try:
        result = train(config, output_dir, max_steps=args.max_steps, resume=args.resume)
    except DivergedError as error:
        print(f"harmonic-forecast: training diverged: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    return EXIT_PREEMPTED if result.preempted else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with all subcommands."""
    parser = argparse.ArgumentParser(prog="harmonic-forecast", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a forecaster through a curriculum config")
    train.add_argument("--config", required=True, help="TOML run config, e.g. configs/quickstart.toml")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. train.lr=1e-3")
    train.add_argument("--output-dir", default=None, help="default: runs/<config name>")
    train.add_argument("--max-steps", type=int, default=None, help="stop at this global step (a checkpoint is saved)")
    train.add_argument("--resume", default=None, metavar="auto|PATH", help="auto: newest complete checkpoint, if any")
    train.set_defaults(run=_train)

    sample = commands.add_parser("sample", help="write signals of the stream to a .npy or .csv file")
    sample.add_argument("--count", type=int, default=16)
    sample.add_argument("--lookback", type=int, default=100)
    sample.add_argument("--horizon", type=int, default=10)
    sample.add_argument("--components", type=int, nargs=2, default=[3, 45], metavar=("LOW", "HIGH"))
    sample.add_argument("--periods", type=int, nargs=2, default=[10, 100], metavar=("LOW", "HIGH"))
    sample.add_argument("--noise", type=float, default=0.0)
    sample.add_argument("--drift", action="store_true")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--split", choices=SPLITS, default="train")
    sample.add_argument("--output", required=True)
    sample.set_defaults(run=_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    keep_freed_memory()
    try:
        return args.run(args)
    except ConfigError as error:
        print(f"harmonic-forecast: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
