"""The one-line error for bad user input, the small checks of plain function arguments, and the line that reports them.

Each check raises :class:`ConfigError` with one line that names the offending field, so the CLI
can print it and exit with status 2 instead of showing a traceback. The configs (run, model, signal)
are pydantic tables instead (:mod:`harmonic_forecast.tables`), their errors turned into the same one line.
"""

from __future__ import annotations

import numbers
import sys
from typing import Any


class ConfigError(ValueError):
    """Bad user input (config, checkpoint, data); its message is one line naming the field."""


def report(message: str) -> None:
    """Write ``harmonic-forecast: <message>`` on stderr as one line in a single write.

    Ranks of one job share a stderr pipe. ``print`` writes the text and its newline separately when
    Python runs unbuffered (``PYTHONUNBUFFERED=1``, common on clusters and CI), so two ranks' messages
    could run into one line; one ``write`` of under ``PIPE_BUF`` bytes reaches the pipe whole.
    """
    stream = sys.stderr
    if stream is None:  # an interpreter started without one (pythonw, some daemons): nowhere to say it
        return
    stream.write(f"harmonic-forecast: {message}\n")
    stream.flush()


def require_int(field: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an int if it is an integer (Python's or numpy's, not a bool) in ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # numpy's bool is no Integral either
        raise ConfigError(f"{field}: expected an integer, got {value!r}")
    return _within(field, int(value), minimum, maximum)


def require_float(field: str, value: Any, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """Return ``value`` (a Python or numpy number, not a bool) as a finite float within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{field}: expected a number, got {value!r}")
    value = float(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"{field}: must be finite, got {value}")
    return _within(field, value, minimum, maximum)


def _within(field: str, value: Any, minimum: Any, maximum: Any) -> Any:
    if minimum is not None and value < minimum:
        raise ConfigError(f"{field}: must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{field}: must be <= {maximum}, got {value}")
    return value


def require_choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{field}: expected one of {', '.join(choices)}, got {value!r}")
    return value


def require_pair(field: str, value: Any, *, integer: bool) -> tuple[Any, Any]:
    """Return ``value`` as a 2-tuple of numbers (ints when ``integer``)."""
    if isinstance(value, str) or not hasattr(value, "__len__") or len(value) != 2:
        raise ConfigError(f"{field}: expected a pair [low, high], got {value!r}")
    check = require_int if integer else require_float
    return check(f"{field}[0]", value[0]), check(f"{field}[1]", value[1])
