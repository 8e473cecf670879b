"""``python -m harmonic_forecast`` runs the command line.

For ``train``, SIGTERM, SIGUSR1 and Ctrl-C become stop requests before anything heavy is imported (the
package imports lazily): a stop sent while the trainer starts is kept until its first step boundary.
"""

import contextlib
import sys

from harmonic_forecast.preemption import StopRequest

with StopRequest() if sys.argv[1:2] == ["train"] else contextlib.nullcontext():
    from harmonic_forecast.cli import main

    status = main()
sys.exit(status)
