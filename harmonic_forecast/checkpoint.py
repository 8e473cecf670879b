"""Checkpoints: directories that are complete or absent.

A checkpoint is written into ``checkpoints/.tmp-step_<N>``, every file fsynced, a ``manifest.json``
of sizes and SHA-256 digests written last, then the directory is renamed to ``step_<N>`` and the
parent fsynced. Loading verifies the manifest, so a truncated or damaged checkpoint is refused;
``--resume auto`` takes the newest one that verifies. Old checkpoints are renamed away before they
are deleted, so a half-deleted one never carries a ``step_`` name.

A ``step_<N>`` always holds the state of the run that now owns the directory. A run that starts at step
``S`` (0 for a fresh run, else the step of the checkpoint it resumes) first moves every ``step_<N>`` with
``N > S`` into ``superseded/<time>-after-step_<S>/``: those belong to another trajectory (an abandoned
branch, or another run's leftovers). They are kept, never rotated, and ``--resume auto`` ignores them.
The run's ``metrics.jsonl`` goes there too when it holds records after ``S`` (every record, for a fresh
run), and only the records up to ``S`` stay in place, so the history and its plot are this trajectory's.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harmonic_forecast.errors import ConfigError

MANIFEST = "manifest.json"
SUPERSEDED = "superseded"  # checkpoints of another trajectory, moved aside by a run that starts earlier
_STEP_NAME = re.compile(r"^step_(\d+)$")


class CheckpointWriteError(RuntimeError):
    """A checkpoint (or the final model) could not be written; the older checkpoints are intact."""


def write_failure(error: BaseException, directory: Path) -> str:
    """One line saying why writing under ``directory`` failed ("no space left on device" when it is full).

    torch.save reports a full disk as a RuntimeError from its zip writer without the errno, so the free
    space of ``directory``'s file system is checked too.
    """
    full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
    try:
        usage = shutil.disk_usage(directory if directory.exists() else directory.parent)
        full = full or usage.free < (1 << 20)
    except OSError:
        pass
    if full:
        return "no space left on device"
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


def _fsync_path(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_steps(root: Path) -> list[tuple[int, Path]]:
    """``(step, directory)`` of every ``step_<N>`` directory under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(match.group(1)), path) for path in root.iterdir() if (match := _STEP_NAME.match(path.name))]
    return sorted(found)


def staging_directory(root: Path, step: int) -> Path:
    """Where the checkpoint of ``step`` is assembled before it is committed."""
    return root / f".tmp-step_{step}"


def begin_checkpoint(root: Path, step: int) -> Path:
    """Create an empty staging directory for ``step`` (replacing a stale one)."""
    root.mkdir(parents=True, exist_ok=True)
    staging = staging_directory(root, step)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    return staging


def commit_checkpoint(root: Path, step: int, keep_last: int) -> Path:
    """Fsync the staged files, write the manifest, rename to ``step_<step>`` and rotate old ones."""
    staging, final = staging_directory(root, step), root / f"step_{step}"
    manifest = {}
    for path in sorted(p for p in staging.rglob("*") if p.is_file()):
        _fsync_path(path)
        manifest[str(path.relative_to(staging))] = {"bytes": path.stat().st_size, "sha256": _digest(path)}
    for directory in sorted((p for p in staging.rglob("*") if p.is_dir()), reverse=True):
        _fsync_path(directory)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    _fsync_path(staging / MANIFEST)
    _fsync_path(staging)
    if final.exists():  # another trajectory's step_<step> (written after this run started): keep it aside
        _move_aside(root, [final], f"replaced-step_{step}")
    os.rename(staging, final)
    _fsync_path(root)
    _rotate(root, keep_last)
    return final


def _move_aside(root: Path, directories: list[Path], label: str) -> Path:
    """Rename ``directories`` into a new ``root/superseded/<UTC time>-<label>/``; returns that folder."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    folder = root / SUPERSEDED / f"{stamp}-{label}"
    folder.mkdir(parents=True)
    for directory in directories:
        os.rename(directory, folder / directory.name)
    _fsync_path(folder)
    _fsync_path(root)
    return folder


def supersede(
    root: Path, step: int, resumed_from: Path | None, history: Path | None = None
) -> tuple[Path | None, list[int], bool]:
    """Move aside everything of another trajectory (see the module docstring): ``(folder, steps moved, whether
    history records were)``.

    Those are the checkpoints ``step_<N>`` with ``N > step``, and ``step_<step>`` itself unless it is
    ``resumed_from``; and in ``history`` (the run's ``metrics.jsonl``) the records after ``step`` of a resumed
    run, every record of a fresh one. The history file as it was goes into the folder, and the records this
    run continues from stay in place. Called by the main process of a run that starts at ``step``, before it
    writes any checkpoint or record.
    """
    ours = resumed_from.resolve() if resumed_from else None
    other = [(n, path) for n, path in checkpoint_steps(root) if n > step or (n == step and path.resolve() != ours)]
    kept = _records_until(history, step if resumed_from else -1) if history else None
    if not other and kept is None:
        return None, [], False
    folder = _move_aside(root, [path for _, path in other], f"after-step_{step}")
    if history and kept is not None:
        os.rename(history, folder / history.name)
        if kept:
            staging = history.with_name(f".{history.name}.tmp")
            staging.write_text(kept)
            os.replace(staging, history)
        _fsync_path(folder)
    return folder, [n for n, _ in other], kept is not None


def _records_until(history: Path, step: int) -> str | None:
    """The lines of ``history`` whose record is at ``step`` or before; None when that is every line (or no file).

    A line that is not a JSON record with a step (one torn by a kill) is not kept.
    """
    try:
        lines = history.read_text().splitlines(keepends=True)
    except FileNotFoundError:
        return None
    kept = []
    for line in lines:
        try:
            record_step = json.loads(line)["step"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(record_step, int) and record_step <= step:
            kept.append(line)
    return None if len(kept) == len(lines) else "".join(kept)


def _rotate(root: Path, keep_last: int) -> None:
    for _, old in checkpoint_steps(root)[:-keep_last]:
        trash = root / f".trash-{old.name}"
        os.rename(old, trash)
        shutil.rmtree(trash)


def clean_leftovers(root: Path) -> None:
    """Remove staging and trash directories that an interrupted run left behind."""
    if root.is_dir():
        for path in root.iterdir():
            if path.name.startswith((".tmp-", ".trash-")):
                shutil.rmtree(path, ignore_errors=True)


def verify_checkpoint(directory: Path) -> None:
    """Raise a one-line :class:`ConfigError` unless every file of the manifest is intact."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        raise ConfigError(f"{directory}: not a complete checkpoint (no readable {MANIFEST})") from None
    if not isinstance(manifest, dict) or not manifest:
        raise ConfigError(f"{directory}: not a complete checkpoint (empty {MANIFEST})")
    for name, expected in manifest.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != expected.get("bytes"):
            raise ConfigError(f"{directory}: checkpoint file {name} is missing or truncated")
        if _digest(path) != expected.get("sha256"):
            raise ConfigError(f"{directory}: checkpoint file {name} is corrupt (checksum mismatch)")


def latest_checkpoint(root: Path, warn: Callable[[str], Any] = print) -> Path | None:
    """The newest checkpoint under ``root`` that verifies; damaged newer ones are reported and skipped."""
    for _, directory in reversed(checkpoint_steps(root)):
        try:
            verify_checkpoint(directory)
        except ConfigError as error:
            warn(f"skipping {error}")
            continue
        return directory
    return None
