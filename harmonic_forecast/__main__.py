"""``python -m harmonic_forecast`` runs the command line."""

import sys

from harmonic_forecast.cli import main

sys.exit(main())
