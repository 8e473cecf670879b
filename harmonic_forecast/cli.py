"""The ``harmonic-forecast`` command line.

Exit status: 0 done; 2 bad input (config, file, checkpoint: one line on stderr, nothing on disk
changed); 3 stopped by SIGTERM/SIGUSR1, sent at any time before the last step, after saving a
checkpoint at the first step boundary (requeue with ``--resume auto``); 4 the loss became non-finite
(no checkpoint written from those weights); 5 a checkpoint could not be written (e.g. no space left on
device: one line, the older checkpoints kept).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harmonic_forecast import __version__
from harmonic_forecast.cpu_allocator import keep_freed_memory
from harmonic_forecast.errors import ConfigError, report
from harmonic_forecast.signals import SignalSpec
from harmonic_forecast.stream import SPLITS, HarmonicStream

if TYPE_CHECKING:
    from harmonic_forecast.forecast import HarmonicForecaster

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as a shell reports it


_SIGNAL_DEFAULTS = {"lookback": 100, "horizon": 10, "components": [3, 45], "periods": [10, 100], "noise": 0.0}


def _sample(args: argparse.Namespace) -> int:
    """Write ``count`` signals of the stream (lookback and horizon side by side) to .npy or .csv: of the spec the
    options give, or with ``--config`` of the signals a run config's stage trains on (families, noise levels)."""
    from harmonic_forecast.series_io import check_output, write_table

    if args.count < 1:
        raise ConfigError(f"--count: must be >= 1, got {args.count}")
    given = [name for name in (*_SIGNAL_DEFAULTS, "drift") if getattr(args, name) not in (None, False)]
    if args.config is None and (args.stage is not None or args.set):
        raise ConfigError(f"--{'stage' if args.stage is not None else 'set'}: needs --config")
    if args.config is not None:
        if given:
            raise ConfigError(f"--{given[0]}: not with --config, whose stage gives the signals (use --set)")
        from harmonic_forecast.config import load_run_config

        config = load_run_config(args.config, args.set)
        stage = len(config.stages) - 1 if args.stage is None else args.stage
        if not 0 <= stage < len(config.stages):
            raise ConfigError(f"--stage: the config has {len(config.stages)} stages (0 to {len(config.stages) - 1})")
        spec, seed = config.stage_spec(config.stages[stage]), config.train.seed if args.seed is None else args.seed
    else:
        values = {name: _SIGNAL_DEFAULTS[name] if getattr(args, name) is None else getattr(args, name)
                  for name in _SIGNAL_DEFAULTS}  # fmt: skip
        spec = SignalSpec(
            lookback=values["lookback"],
            horizon=values["horizon"],
            components=tuple(values["components"]),
            periods=tuple(values["periods"]),
            noise=values["noise"],
            drift=args.drift,
        )
        seed = 0 if args.seed is None else args.seed
    output = check_output(args.output)
    stream = HarmonicStream(spec, batch_size=args.count, seed=seed, split=args.split)
    lookback, target = stream.batch(0)
    signals = np.concatenate([lookback.numpy(), target.numpy()], axis=1)
    write_table(output, signals, [f"t{i}" for i in range(spec.length)])
    print(f"wrote {len(signals)} signals of {spec.length} samples (lookback {spec.lookback}) to {output}")
    return 0


def _train(args: argparse.Namespace) -> int:
    """Train the config's curriculum; checkpoints, model and metrics go to ``--output-dir``.

    From the start, SIGTERM, SIGUSR1 and a first Ctrl-C only request a stop, which the loop honours at its first step
    boundary; the main process announces itself in ``trainer.pid`` before the heavy imports, and
    records the exit status in ``trainer.exit`` (:mod:`harmonic_forecast.preemption`).
    """
    from harmonic_forecast.preemption import PID_FILE, StopRequest, is_main_process, write_exit_status

    with StopRequest():
        from harmonic_forecast.config import load_run_config

        config = load_run_config(args.config, args.set)
        if args.max_steps is not None and args.max_steps < 1:
            raise ConfigError(f"--max-steps: must be >= 1, got {args.max_steps}")
        output_dir = Path(args.output_dir or Path("runs") / Path(args.config).stem)
        main_process = is_main_process()
        # only the main process makes (and on a bad config removes) the run directory: two ranks racing to
        # make it would each see the other's files and leave an empty directory behind
        made = _created(output_dir) if main_process else contextlib.nullcontext()
        with made, StopRequest(output_dir / PID_FILE if main_process else None):
            from harmonic_forecast.checkpoint import CheckpointWriteError
            from harmonic_forecast.train import EXIT_DIVERGED, EXIT_PREEMPTED, EXIT_SAVE_FAILED, DivergedError, train

            try:
                result = train(config, output_dir, max_steps=args.max_steps, resume=args.resume)
                status = EXIT_PREEMPTED if result.preempted else 0
            except DivergedError as error:
                report(f"training diverged: {error}")
                status = EXIT_DIVERGED
            except CheckpointWriteError as error:
                report(f"error: {error}")
                status = EXIT_SAVE_FAILED
            except KeyboardInterrupt:  # a second Ctrl-C (the first one saves, see preemption)
                report("stopped at once by a second Ctrl-C: nothing saved since the newest checkpoint")
                status = EXIT_INTERRUPTED
        if main_process:
            with contextlib.suppress(OSError):  # a full disk: the job script then sees no status, so no requeue
                write_exit_status(output_dir, status)
        return status


@contextlib.contextmanager
def _created(directory: Path, option: str = "--output-dir") -> Iterator[None]:
    """Make ``directory`` (a one-line error naming ``option`` if it cannot be); on a ConfigError remove
    what this made (if still empty): nothing on disk changes."""
    from harmonic_forecast.series_io import writable_directory

    made = [path for path in (directory, *directory.parents) if not path.exists()]
    writable_directory(directory, option)
    try:
        yield
    except ConfigError:
        for path in made:
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def _predict(args: argparse.Namespace) -> int:
    """Forecast the next horizon after a series (or after every window with ``--rolling``)."""
    from harmonic_forecast.forecast import check_series, load_forecaster
    from harmonic_forecast.series_io import check_output, read_series, write_table
    from harmonic_forecast.telemetry import make_console

    output = Path(args.output)
    if output.resolve() == Path(args.input).resolve():
        raise ConfigError(f"--output {output}: is the --input file, which the forecast would overwrite; name another")
    with _created(output.parent, "--output"):  # a failed prediction leaves no directory it made
        check_output(output)
        forecaster = load_forecaster(args.checkpoint)
        series = check_series(read_series(args.input, args.column), forecaster.lookback, name=f"--input {args.input}")
    windows = len(series) - forecaster.lookback + 1 if args.rolling else 1
    with make_console().status(f"forecasting {windows:,} window(s)"):  # a spinner on a terminal, silent in a log
        forecast = forecaster.forecast(series, rolling=args.rolling, combine=not args.per_window)
    steps = [f"t+{h + 1}" for h in range(forecaster.horizon)]
    if args.rolling:
        ends = np.arange(forecaster.lookback, len(series) + 1)[:, None]  # forecasts samples end, end+1, ...
        table, header = np.hstack([ends, forecast]), ["first_index", *steps]
    else:
        table, header = forecast[None, :], steps
    write_table(args.output, table, header)
    print(f"wrote {len(table)} forecast(s) of {forecaster.horizon} samples to {args.output}")
    return 0


def _finetune(args: argparse.Namespace) -> int:
    """Fine-tune a model on a real series and report validation MSE before and after."""
    from rich.table import Table

    from harmonic_forecast.finetune import FinetuneSettings, finetune
    from harmonic_forecast.forecast import load_forecaster
    from harmonic_forecast.series_io import read_series
    from harmonic_forecast.telemetry import make_console

    wrong = [
        f"{option}: {rule}, got {value:g}"
        for option, value, rule, holds in (
            ("--lr", args.lr, "must be > 0", args.lr > 0),
            ("--epochs", args.epochs, "must be >= 1", args.epochs >= 1),
            ("--patience", args.patience, "must be >= 1", args.patience >= 1),
            ("--validation-fraction", args.validation_fraction, "must be in (0, 1)", 0 < args.validation_fraction < 1),
        )
        if not holds
    ]
    if wrong:
        raise ConfigError("; ".join(wrong))
    settings = FinetuneSettings(
        validation_fraction=args.validation_fraction, lr=args.lr, max_epochs=args.epochs, patience=args.patience
    )
    forecaster = load_forecaster(args.checkpoint)
    series = read_series(args.input, args.column)
    output_dir = Path(args.output_dir or Path("runs") / f"finetune-{Path(args.input).stem}")
    with _created(output_dir):
        report = finetune(forecaster, series, output_dir, settings)
    table = Table(title=f"Validation MSE on {report['validation_windows']} windows (series units)")
    table.add_column("forecaster")
    table.add_column("MSE", justify="right")
    table.add_row("model alone, before", f"{report['validation_mse_before']:.4g}")
    after = (  # the epoch was chosen on these windows: its figure is optimistic
        f"model alone, after (epoch {report['best_epoch']}, chosen on these windows)"
        if report["best_epoch"]
        else f"model alone, after (no epoch of {report['epochs_run']} improved: weights kept)"
    )
    table.add_row(after, f"{report['validation_mse_after']:.4g}")
    for name, value in report["baselines"].items():
        table.add_row(name, f"{value:.4g}")
    console = make_console()
    console.print(table)
    console.print(f"saved {output_dir}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    """Score a model and the baselines on a suite's test sets or real series; write JSON, markdown and plots."""
    from harmonic_forecast.evaluate import SUITES
    from harmonic_forecast.forecast import load_forecaster, resolve_model_directory

    if args.signals < 1 or args.fit_batches < 1 or args.stride < 1:
        raise ConfigError("--signals, --fit-batches and --stride: must be >= 1")
    if args.suite not in (*SUITES, "real"):
        raise ConfigError(f"--suite: expected one of {', '.join([*SUITES, 'real'])}, got {args.suite!r}")
    source = resolve_model_directory(args.checkpoint)
    forecaster = load_forecaster(source, device=args.device)
    label = "the shipped pretrained model" if args.checkpoint is None else str(source)
    # by default beside the model; the shipped model's directory is inside the installed package: the working one
    name = "evaluation" if args.suite == "synthetic" else f"evaluation-{args.suite}"
    output_dir = Path(args.output_dir or (Path(name) if args.checkpoint is None else source / name))
    with _created(output_dir):
        if args.suite == "real":
            return _evaluate_real(args, forecaster, output_dir, label)
        return _evaluate_suite(args, forecaster, source, output_dir, label)


def _evaluate_suite(
    args: argparse.Namespace, forecaster: HarmonicForecaster, source: Path, output_dir: Path, label: str
) -> int:
    """A synthetic suite (``synthetic`` or ``shift``): tables, JSON, markdown and plots in ``output_dir``."""
    from harmonic_forecast.evaluate import (
        SUITES,
        EvaluationSettings,
        evaluate,
        results_table,
        robustness_table,
        write_results,
    )
    from harmonic_forecast.plots import plot_error_by_step, plot_forecasts
    from harmonic_forecast.stream import HarmonicStream
    from harmonic_forecast.telemetry import make_console

    console = make_console()
    settings = EvaluationSettings(signals=args.signals, fit_batches=args.fit_batches)
    results = evaluate(forecaster, settings, suite=args.suite)
    console.print(results_table(results, f"Test MSE of {source} and the baselines ({args.signals} signals per set)"))
    console.print(robustness_table(results))
    written = write_results(results, output_dir, label)
    per_step = {name: {k: v["mse_per_step"] for k, v in scores.items()} for name, scores in results.items()}
    written.append(plot_error_by_step(per_step, output_dir / "error_by_step.png"))
    spec = SUITES[args.suite](forecaster.lookback, forecaster.horizon)
    spec = spec.get("(3,45) clean", next(iter(spec.values())))
    lookback, target = HarmonicStream(spec, 8, seed=settings.seed, split="test").batch(0)
    written.append(
        plot_forecasts(lookback, target, {"model": forecaster.predict(lookback)}, output_dir / "forecasts.png")
    )
    console.print("wrote " + ", ".join(str(path) for path in written))
    return 0


def _evaluate_real(args: argparse.Namespace, forecaster: HarmonicForecaster, output_dir: Path, label: str) -> int:
    """The ``real`` suite: statsmodels' series, every window at ``--stride``; tables, JSON, markdown, a plot."""
    from rich.table import Table

    from harmonic_forecast.evaluate import results_table, robustness_table
    from harmonic_forecast.plots import plot_series_forecasts
    from harmonic_forecast.real_suite import RealSuiteSettings, evaluate_real, write_real
    from harmonic_forecast.telemetry import make_console

    settings = RealSuiteSettings(stride=args.stride, fit_batches=args.fit_batches)
    report, examples = evaluate_real(forecaster, settings)
    console = make_console()
    results = report["results"]
    console.print(results_table(results, "MSE of windows scaled by their lookback", row_label="series"))
    console.print(results_table(results, "MASE (Hyndman & Koehler 2006)", metric="mase", row_label="series"))
    summary = Table(title="Geometric mean over series, relative to seasonal naive")
    summary.add_column("")
    for name in report["aggregate"]:
        summary.add_column(name, justify="right")
    for metric in ("mse", "mase"):
        values = [scores[f"gmean_relative_{metric}"] for scores in report["aggregate"].values()]
        summary.add_row(f"relative {metric.upper()}", *(f"{value:.3f}" for value in values))
    console.print(summary)
    console.print(robustness_table(results, row_label="series"))
    written = write_real(report, output_dir, label)
    written.append(plot_series_forecasts(examples, output_dir / "forecasts.png", title=f"Forecasts of {label}"))
    console.print("wrote " + ", ".join(str(path) for path in written))
    return 0


def _add_model_and_series(command: argparse.ArgumentParser) -> None:
    """``--checkpoint``, ``--input`` and ``--column``, shared by the commands that read a series."""
    command.add_argument("--checkpoint", default=None, help="model, run or checkpoint directory (default: shipped)")
    command.add_argument("--input", required=True, help="a .csv (one column, or --column) or a 1-D .npy")
    command.add_argument("--column", default=None, help="CSV column: its header name, or a 0-based index without one")


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
    train.set_defaults(run=_train, parser=train)

    predict = commands.add_parser("predict", help="forecast a series from a CSV or NPY file")
    _add_model_and_series(predict)
    predict.add_argument("--output", required=True, help=".csv or .npy")
    predict.add_argument("--rolling", action="store_true", help="a forecast after every window, not just the last")
    predict.add_argument(
        "--per-window",
        action="store_true",
        help="the model's forecast of each window alone, not combined with naive, AR and drift by their past errors",
    )
    predict.set_defaults(run=_predict, parser=predict)

    assess = commands.add_parser("evaluate", help="score a model against the baselines on fixed test sets")
    assess.add_argument("--checkpoint", default=None, help="model, run or checkpoint directory (default: shipped)")
    assess.add_argument("--signals", type=int, default=4096, help="signals per test set (default %(default)s)")
    assess.add_argument(
        "--fit-batches", type=int, default=16, help="4096-signal batches to fit the linear map (default %(default)s)"
    )
    assess.add_argument(
        "--suite",
        default="synthetic",
        help="synthetic (the training distribution), shift (families off it) or real (statsmodels' series)",
    )
    assess.add_argument(
        "--stride", type=int, default=1, help="real suite: samples between window starts (default %(default)s)"
    )
    assess.add_argument(
        "--output-dir",
        default=None,
        help="default: <model directory>/evaluation[-shift|-real]; for the shipped model, evaluation[-...] here",
    )
    assess.add_argument("--device", default="cpu", help="torch device to run the model on, e.g. cuda")
    assess.set_defaults(run=_evaluate, parser=assess)

    tune = commands.add_parser("finetune", help="fine-tune a model on a real series")
    _add_model_and_series(tune)
    tune.add_argument("--output-dir", default=None, help="where the new model goes (default runs/finetune-<input>)")
    tune.add_argument(
        "--validation-fraction", type=float, default=0.2, help="last part of the series held out (default %(default)s)"
    )
    tune.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default %(default)s)")
    tune.add_argument(
        "--epochs", type=int, default=50, help="most passes over the training windows (default %(default)s)"
    )
    tune.add_argument(
        "--patience", type=int, default=5, help="epochs without improvement before stopping (default %(default)s)"
    )
    tune.set_defaults(run=_finetune, parser=tune)

    sample = commands.add_parser("sample", help="write signals of the stream to a .npy or .csv file")
    sample.add_argument("--count", type=int, default=16, help="signals to write (default %(default)s)")
    sample.add_argument("--output", required=True, help=".csv or .npy")
    sample.add_argument("--config", default=None, help="the signals this run config trains on (its stage's families)")
    sample.add_argument("--stage", type=int, default=None, help="with --config: the 0-based stage (default: the last)")
    sample.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="with --config: an override")
    defaults = _SIGNAL_DEFAULTS
    sample.add_argument("--lookback", type=int, default=None, help=f"without --config (default {defaults['lookback']})")
    sample.add_argument("--horizon", type=int, default=None, help=f"without --config (default {defaults['horizon']})")
    for name in ("components", "periods"):
        low, high = defaults[name]
        sample.add_argument(
            f"--{name}", type=int, nargs=2, default=None, metavar=("LOW", "HIGH"), help=f"default {low} {high}"
        )
    sample.add_argument("--noise", type=float, default=None, help="σ (default 0)")
    sample.add_argument("--drift", action="store_true", help="1 -> r -> 1 amplitude drift")
    sample.add_argument("--seed", type=int, default=None, help="default: the config's train.seed, else 0")
    sample.add_argument("--split", choices=SPLITS, default="train")
    sample.set_defaults(run=_sample, parser=sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # the command's own usage, not the top-level one
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    keep_freed_memory()
    try:
        return args.run(args)
    except ConfigError as error:
        report(f"error: {error}")
        return EXIT_BAD_INPUT
    except OSError as error:  # a path the command could not read or write that no check above named
        report(f"error: {error}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        report("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
