"""Real series for the ``real`` evaluation suite, all from the data sets that ship inside statsmodels.

Nothing is downloaded: every series is read from ``statsmodels.datasets`` (the ``real`` extra,
``pip install "harmonic_forecast[real]"``). Each series gets a pandas date index with a frequency, and its
seasonal period comes from that frequency by ``statsmodels.tsa.tsatools.freq_to_period`` (monthly 12,
quarterly 4, yearly 1), the convention of Hyndman & Koehler's MASE and of Chronos's benchmark.

The series (samples): sunspots (yearly sunspot numbers 1700-2008, 309); co2 (Mauna Loa CO2, weekly
1958-2001 with 59 missing weeks, resampled to monthly means; the 5 months without any data are filled
by linear interpolation in time, 526); elnino (monthly Niño 1+2 sea surface temperature 1950-2010, the
year-by-month table read row by row, 732); elec_equip (euro-area electrical equipment orders, monthly
1995-2016, 257); and six quarterly US macro series 1959-2009 (203 each): realgdp, realinv, cpi, unemp,
tbilrate, infl.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from harmonic_forecast.errors import ConfigError, require_int

MACRO_COLUMNS = ("realgdp", "realinv", "cpi", "unemp", "tbilrate", "infl")


@dataclass(frozen=True)
class RealSeries:
    """One series: ``values`` float64 ``[T]`` in its own units, finite; ``season`` its seasonal period."""

    name: str
    values: np.ndarray
    season: int
    description: str


def _import(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            'the real suite needs statsmodels: pip install "harmonic_forecast[real]" (or statsmodels>=0.14)'
        ) from None


def _data(name: str):
    """``statsmodels.datasets.<name>``'s data frame (read from the file shipped with statsmodels)."""
    return _import(f"statsmodels.datasets.{name}").load_pandas().data


def _frames() -> dict[str, tuple[object, str]]:
    """Name -> (pandas Series with a frequency, description)."""
    pd = _import("pandas")
    frames: dict[str, tuple[object, str]] = {}
    sunspots = _data("sunspots")
    years = pd.PeriodIndex(sunspots["YEAR"].astype(int).astype(str), freq="Y").to_timestamp()
    frames["sunspots"] = (
        pd.Series(sunspots["SUNACTIVITY"].to_numpy(), index=pd.DatetimeIndex(years, freq="YS")),
        "yearly sunspot number, 1700-2008",
    )
    weekly = _data("co2")["co2"]
    monthly = weekly.resample("MS").mean().interpolate(method="time")
    frames["co2"] = (monthly, "Mauna Loa CO2 (ppm), weekly resampled to monthly means, empty months interpolated")
    elnino = _data("elnino")
    sst = elnino.drop(columns="YEAR").to_numpy().reshape(-1)
    start = f"{int(elnino['YEAR'].iloc[0])}-01-01"
    frames["elnino"] = (
        pd.Series(sst, index=pd.date_range(start, periods=len(sst), freq="MS")),
        "Niño 1+2 sea surface temperature (°C), monthly, 1950-2010",
    )
    orders = _data("elec_equip").iloc[:, 0]
    frames["elec_equip"] = (
        pd.Series(orders.to_numpy(), index=pd.date_range(orders.index[0], periods=len(orders), freq="MS")),
        "euro-area electrical equipment orders index, monthly, 1995-2016",
    )
    macro = _data("macrodata")
    quarters = pd.date_range(f"{int(macro['year'].iloc[0])}-01-01", periods=len(macro), freq="QS")
    for column in MACRO_COLUMNS:
        frames[column] = (
            pd.Series(macro[column].to_numpy(), index=quarters),
            f"US macrodata {column}, quarterly, 1959-2009",
        )
    return frames


def load_real_series(minimum_length: int = 1) -> dict[str, RealSeries]:
    """Every real series by name, in a fixed order; each must hold at least ``minimum_length`` samples.

    Raises :class:`ConfigError` without statsmodels, or if a series is shorter than ``minimum_length``.
    """
    minimum_length = require_int("minimum_length", minimum_length, minimum=1)
    tsatools = _import("statsmodels.tsa.tsatools")
    series = {}
    for name, (frame, description) in _frames().items():
        values = frame.to_numpy(dtype=np.float64)
        if len(values) < minimum_length or not np.isfinite(values).all():
            raise ConfigError(f"real series {name}: {len(values)} samples (need {minimum_length}) or non-finite")
        season = tsatools.freq_to_period(frame.index.freq)
        series[name] = RealSeries(name, values, int(season), description)
    return series
