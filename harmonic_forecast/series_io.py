"""Reading a user's series from CSV or NPY, and writing forecasts, with one-line errors."""

from __future__ import annotations

import contextlib
import csv
import os
import tempfile
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


def _suffix(path: Path, option: str, what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ConfigError(f"{option} {path}: expected a .csv or .npy {what}")
    return suffix


def read_series(path: str | Path, column: str | None = None) -> np.ndarray:
    """One column of a CSV, or a 1-D NPY array, as float64 ``[T]``.

    The column is named by its header (the only column when there is one); in a CSV without a header
    ``column`` is a 0-based index. The first row is a header when none of its cells is a number. A UTF-8
    byte order mark is skipped. Every row is a time step: an empty cell (a blank line included) or a
    cell that is not a number raises :class:`ConfigError` naming its index and line, since dropping it
    would shift every later sample in time (blank lines after the last sample are dropped: nothing follows
    them). ``nan`` and ``inf`` cells parse, for the caller's finiteness check to report. Raises
    :class:`ConfigError` for an unreadable, empty or wrongly named file.
    """
    path = Path(path)
    suffix = _suffix(path, "--input", "file")
    try:
        if suffix == ".npy":
            if column is not None:
                raise ConfigError("--column: only for CSV files")
            with path.open("rb") as handle:
                if handle.read(6) != b"\x93NUMPY":  # else numpy calls any other file pickled data
                    raise ConfigError(f"--input {path}: not a .npy file (no NumPy header)")
            return np.load(path, allow_pickle=False)
        with path.open(newline="", encoding="utf-8-sig") as handle:  # a BOM (Excel's "CSV UTF-8") is not data
            rows = list(csv.reader(handle))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise ConfigError(f"--input {path}: cannot read ({error})") from None
    while rows and not any(cell.strip() for cell in rows[-1]):  # blank lines after the last sample shift nothing
        rows.pop()
    if not rows:
        raise ConfigError(f"--input {path}: the file is empty")
    # a header names columns: a first row holding a number is data (a date beside a value does not make it one)
    header = None if any(_is_number(cell) for cell in rows[0]) else [cell.strip() for cell in rows[0]]
    index = _column_index(path, rows[0], header, column)
    skipped = 0 if header is None else 1  # lines before the first sample
    values = np.empty(len(rows) - skipped)
    for step, row in enumerate(rows[skipped:]):
        cell = row[index].strip() if index < len(row) else ""
        try:
            values[step] = float(cell)
        except ValueError:
            where = f"index {step} (line {step + skipped + 1})"
            if not cell:
                raise ConfigError(
                    f"--input {path}: empty cell at {where}; a series needs a value at every step"
                ) from None
            hint = "; the file must be comma-separated" if ";" in cell or "\t" in cell else ""
            if not hint and "," in cell and _is_number(cell.replace(",", "")):
                hint = "; remove the thousands separators"
            raise ConfigError(f"--input {path}: {cell!r} at {where} is not a number{hint}") from None
    return values


def _column_index(path: Path, first: list[str], header: list[str] | None, column: str | None) -> int:
    """The index of the series' column: by name (under a header) or by 0-based index (a name comes first)."""
    if column is None:
        if len(first) == 1:
            return 0
        if header is None:
            raise ConfigError(f"--column: the file has {len(first)} columns and no header; give a 0-based index")
        raise ConfigError(f"--column: the file has {len(first)} columns ({', '.join(header)}); name one")
    if header is not None:
        if column not in header and column.isdigit() and int(column) < len(header):
            return int(column)  # no column has that name: the index
        if column not in header:
            separated = any(";" in name or "\t" in name for name in header)
            hint = "; the file must be comma-separated" if separated else ""
            raise ConfigError(f"--column {column}: not among the columns ({', '.join(header)}){hint}")
        if header.count(column) > 1:
            places = [str(place) for place, name in enumerate(header) if name == column]
            raise ConfigError(f"--column {column}: names {len(places)} columns ({', '.join(places)}); rename one")
        return header.index(column)
    if not column.isdigit() or int(column) >= len(first):
        raise ConfigError(f"--column {column}: the file has no header, so a 0-based index below {len(first)}")
    return int(column)


def writable_directory(directory: str | Path, option: str) -> Path:
    """``directory``, made if missing, or a one-line :class:`ConfigError` naming ``option`` if it cannot be written."""
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"{option} {directory}: cannot create it ({error.strerror or error})") from None
    try:  # a file made and removed: permissions alone miss a read-only mount, and root passes any access check
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise ConfigError(f"{option} {directory}: not writable ({error.strerror or error})") from None
    return directory


def check_output(path: str | Path, option: str = "--output") -> Path:
    """An output file name ending in .csv or .npy whose directory exists or can be made, else :class:`ConfigError`.

    Called before the work that produces the file, so a bad path fails at once.
    """
    path = Path(path)
    _suffix(path, option, "file name")
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory")
    writable_directory(path.parent, option)
    return path


def write_table(path: str | Path, values: np.ndarray, header: list[str], option: str = "--output") -> Path:
    """Write a 2-D array as CSV (with ``header``) or NPY, by the file's suffix.

    The file is written beside its destination and renamed over it, so a failed write leaves an
    existing file as it was. Raises :class:`ConfigError` (naming ``option``) if it cannot be written.
    """
    path = check_output(path, option)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with temporary.open("wb") as handle:
            if path.suffix.lower() == ".npy":
                np.save(handle, values)
            else:
                np.savetxt(handle, values, delimiter=",", header=",".join(header), comments="", fmt="%.17g")
        os.replace(temporary, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise ConfigError(f"{option} {path}: cannot write it ({error.strerror or error})") from None
    return path
