"""Stop requests (SIGTERM, SIGUSR1, Ctrl-C), the PID file a job script signals, and the exit-status file.

The flag is process-wide: ``python -m harmonic_forecast train`` catches the signals before it imports
torch, so a stop requested while the trainer imports, fits its model or starts is kept; the training
loop reads it at every step boundary (the ranks agree on it), saves one checkpoint and the command
exits with status 3. A stop that arrives after the last step is ignored: the run finishes.

Ctrl-C (SIGINT) is the same request, announced in one line. A second Ctrl-C, a second or more after the
first, stops at once without saving (``KeyboardInterrupt``); one sooner is the same interrupt, since
``accelerate launch`` passes the terminal's SIGINT on to the ranks, which the terminal signalled too.

``OUTPUT/trainer.pid`` (:data:`PID_FILE`), written by the main process once its handlers are installed
and removed when a stop can no longer take effect, reads ``PID START HOST``: START is field 22 of
``/proc/PID/stat`` (clock ticks after boot). ``launch/slurm/trainer_signal.sh`` signals PID only while
``/proc/PID/stat`` shows that start time on that host, so a file left by a killed trainer never makes
it signal a process that reused the PID. ``OUTPUT/trainer.exit`` (:data:`EXIT_FILE`) holds the train
command's exit status, since ``accelerate launch`` reports every failure as 1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
from pathlib import Path
from types import FrameType
from typing import Any, ClassVar

from harmonic_forecast.errors import report

PID_FILE = "trainer.pid"
EXIT_FILE = "trainer.exit"
SECOND_INTERRUPT = 1.0  # seconds after the first Ctrl-C from which another one stops at once


def process_start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/PID/stat`` (the start time, in clock ticks after boot); None without it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # fields 3, 4, ...: the command name (2) may hold anything
    return fields[19] if len(fields) > 19 else None


def is_main_process() -> bool:
    """Whether this is the launch's global rank 0 (``RANK`` as torchrun sets it; a lone process is)."""
    return os.environ.get("RANK", "0") == "0"


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_pid_file(path: Path) -> None:
    """Announce this process in ``path`` (replacing any file there), as ``PID START HOST``."""
    _write_atomically(path, f"{os.getpid()} {process_start_time(os.getpid()) or '-'} {socket.gethostname()}\n")


def remove_pid_file(path: Path) -> None:
    """Remove ``path`` if it still names this process."""
    with contextlib.suppress(OSError):
        if path.read_text().split()[:1] == [str(os.getpid())]:
            path.unlink()


def write_exit_status(directory: Path, status: int) -> None:
    """Record the train command's exit status in ``directory/trainer.exit`` for the job script."""
    _write_atomically(directory / EXIT_FILE, f"{status}\n")


class StopRequest(contextlib.AbstractContextManager):
    """While active, SIGTERM, SIGUSR1 and a first Ctrl-C set ``requested`` instead of killing the process.

    Nested requests share the flag, which the outermost one clears on entry. With ``pid_file`` the
    process announces itself there meanwhile (:func:`write_pid_file`), so a job script can signal it.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
    _active: ClassVar[int] = 0
    _requested: ClassVar[bool] = False
    _interrupted_at: ClassVar[float | None] = None  # monotonic time of the first Ctrl-C

    def __init__(self, pid_file: Path | None = None) -> None:
        self.pid_file = pid_file
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        """Whether a stop signal has arrived since the outermost request began."""
        return StopRequest._requested

    @staticmethod
    def _handle(signum: int, frame: FrameType | None) -> None:
        if signum != signal.SIGINT:
            StopRequest._requested = True
            return
        now, first = time.monotonic(), StopRequest._interrupted_at
        if first is None:
            StopRequest._interrupted_at, StopRequest._requested = now, True
            if is_main_process():
                report("interrupted: saving a checkpoint at the next step boundary, then exit status 3 (resume with "
                       "--resume auto); Ctrl-C again to stop at once without saving")  # fmt: skip
        elif now - first >= SECOND_INTERRUPT:
            raise KeyboardInterrupt

    def __enter__(self) -> StopRequest:
        if StopRequest._active == 0:
            StopRequest._requested, StopRequest._interrupted_at = False, None
        self._previous = {sig: signal.signal(sig, StopRequest._handle) for sig in self.SIGNALS}
        StopRequest._active += 1
        if self.pid_file:
            write_pid_file(self.pid_file)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pid_file:
            remove_pid_file(self.pid_file)
        StopRequest._active -= 1
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class StopVote:
    """The ranks' agreement on a stop request, once per step, that costs the step no wait.

    :meth:`start`, when a step begins, starts an asynchronous all-reduce (MAX) of this rank's flag, which
    overlaps the step's compute; :meth:`agreed`, when it ends, reads it: whether any rank had been asked
    to stop when the step began, the same answer on every rank. A lone process just reads its flag then.
    ``accelerator`` is Accelerate's (its ``device`` and ``num_processes``); torch is imported only when
    the ranks vote, so this module stays importable before torch is.
    """

    def __init__(self, stop: StopRequest, accelerator: Any) -> None:
        self.stop = stop
        self.accelerator = accelerator
        self._vote: tuple[Any, Any] | None = None

    def start(self) -> None:
        """Start the all-reduce of this rank's flag (nothing with one process)."""
        if self.accelerator.num_processes == 1:
            return
        import torch

        flag = torch.tensor(float(self.stop.requested), device=self.accelerator.device)
        self._vote = flag, torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, async_op=True)

    def agreed(self) -> bool:
        """Whether any rank had been asked to stop when the vote started."""
        if self._vote is None:
            return self.stop.requested
        (flag, work), self._vote = self._vote, None
        work.wait()
        return bool(flag)
