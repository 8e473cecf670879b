"""Reading a user's series from CSV or NPY, and writing forecasts, with one-line errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from harmonic_forecast.errors import ConfigError

SUFFIXES = (".csv", ".npy")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_series(path: str | Path, column: str | None = None) -> np.ndarray:
    """One column of a CSV (by header name; the only column when there is one) or a 1-D NPY array.

    Empty or non-numeric cells become NaN, so the caller's finiteness check names their index.
    """
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ConfigError(f"--input {path}: expected a .csv or .npy file")
    try:
        if path.suffix == ".npy":
            if column is not None:
                raise ConfigError("--column: only for CSV files")
            return np.load(path, allow_pickle=False)
        with path.open(newline="") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ConfigError(f"--input {path}: cannot read ({error})") from None
    if not rows:
        raise ConfigError(f"--input {path}: the file is empty")
    header = None if all(_is_number(cell) for cell in rows[0]) else [cell.strip() for cell in rows[0]]
    body = rows if header is None else rows[1:]
    if column is not None:
        if header is None or column not in header:
            raise ConfigError(f"--column {column}: not among the columns ({', '.join(header or ['no header'])})")
        index = header.index(column)
    elif len(rows[0]) == 1:
        index = 0
    else:
        raise ConfigError(f"--column: the file has {len(rows[0])} columns ({', '.join(header or [])}); name one")
    return np.array([float(row[index]) if index < len(row) and _is_number(row[index]) else np.nan for row in body])


def write_table(path: str | Path, values: np.ndarray, header: list[str]) -> Path:
    """Write a 2-D array as CSV (with ``header``) or NPY, by the file's suffix."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ConfigError(f"--output {path}: expected a .csv or .npy file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, values)
    else:
        np.savetxt(path, values, delimiter=",", header=",".join(header), comments="", fmt="%.9g")
    return path
