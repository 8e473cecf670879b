"""Classical forecasters: the methods a forecaster would try instead of the network.

Each maps lookback windows ``[N, L]`` (a float tensor on any device) to forecasts ``[N, H]`` float32 on the
same device, batched over rows. On clean integer-period signals the linear ones (per-window autoregression,
the fitted linear map, the period dictionary) are strong, so report them beside the network. This module
only takes tensors; :mod:`harmonic_forecast.baseline_fits` draws the windows that fit them from the stream.

Every least-squares problem is a ridge regression in float64 with ``lambda = ridge * trace(G) / k``,
relative to the mean diagonal of the ``k x k`` Gram matrix ``G = X^T X`` of its design ``X``. The windows
are nearly band-limited, so ``G`` is nearly singular and the exact solutions have huge coefficients that
amplify the float32 rounding of the inputs; a ridge at that rounding level (``(2**-24)**2 / 12 ~ 1e-15``)
tames them. Larger ridges cost accuracy on clean signals and help on noisy ones, so
:func:`~harmonic_forecast.baseline_fits.fit_baselines` chooses the dictionary's ridge on validation signals.

The fitted linear map is solved by QR of its design stacked on ``sqrt(lambda) I``, never by forming and
solving ``G + lambda I``: with ``lambda`` near ``1e-15`` that matrix has a condition number near
``1 / eps`` of float64, so its solution would be decided by the BLAS build's rounding and differ from
machine to machine. The QR route works with the square root of that condition number (Golub & Van Loan,
*Matrix Computations*, 4th ed., §5.3) and gives the same forecasts on every machine to ~1e-9 relative.
The per-window AR fits, thousands of tiny problems, keep the normal equations (see
:func:`_normal_equations_solve` for what that costs).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor

from harmonic_forecast.errors import ConfigError, require_float, require_int, require_pair
from harmonic_forecast.scaling import scale_windows, unscale
from harmonic_forecast.spectral import dft_forecast

Forecaster = Callable[[Tensor], Tensor]

DEFAULT_AR_ORDERS = tuple(range(2, 42, 2))
DICTIONARY_RIDGES = tuple(10.0**exponent for exponent in range(-15, 1))
LINEAR_MAP_RIDGE = 1e-15
AR_RIDGE = 1e-14  # fits of 60 samples: 1e-15 lets some AR(40) recursions diverge


def _check_lookback(lookback: Tensor, minimum: int = 1) -> int:
    """Return ``L`` of a float ``[N, L]`` tensor with ``L >= minimum``."""
    if not isinstance(lookback, Tensor):
        raise ConfigError(f"lookback: expected a float tensor [N, L], got {type(lookback).__name__}")
    if lookback.dim() != 2 or not lookback.is_floating_point():
        raise ConfigError(f"lookback: expected a float tensor [N, L], got {lookback.dtype} {tuple(lookback.shape)}")
    if lookback.shape[1] < minimum:
        raise ConfigError(f"lookback: needs at least {minimum} samples per window, got {lookback.shape[1]}")
    return lookback.shape[1]


def _check_ridge(ridge: float) -> float:
    ridge = require_float("ridge", ridge, minimum=0.0)
    if ridge == 0:
        raise ConfigError("ridge: must be > 0 (the Gram matrices are nearly singular)")
    return ridge


def ridge_lstsq(design: Tensor, rhs: Tensor, ridge: float) -> Tensor:
    """``argmin_w |X w - Y|² + lambda |w|²`` with ``lambda = ridge * |X|_F² / k``, batched over leading dimensions.

    ``design`` ``X`` is ``[..., n, k]`` and ``rhs`` ``Y`` ``[..., n, m]``, float64; returns ``w`` ``[..., k, m]``.
    Solved from the triangular factor of ``[[X, Y], [sqrt(lambda) I, 0]]`` (see the module docstring): its
    top-left block is ``R`` and its top-right block ``Q^T [Y; 0]``, so ``Q`` is never formed (batched CPU QR
    that forms ``Q`` is two to three orders of magnitude slower).
    """
    k, m = design.shape[-1], rhs.shape[-1]
    batch = design.shape[:-2]
    scale = (ridge * design.square().sum(dim=(-2, -1)) / k).sqrt()[..., None, None]
    eye = torch.eye(k, dtype=design.dtype, device=design.device).expand(*batch, k, k)
    top = torch.cat([design, rhs], dim=-1)
    bottom = torch.cat([scale * eye, design.new_zeros(*batch, k, m)], dim=-1)
    factor = torch.linalg.qr(torch.cat([top, bottom], dim=-2), mode="r").R
    return torch.linalg.solve_triangular(factor[..., :k, :k], factor[..., :k, k:], upper=True)


def _normal_equations_solve(design: Tensor, rhs: Tensor, ridge: float) -> Tensor:
    """The same ridge problem as :func:`ridge_lstsq` through ``(X^T X + lambda I) w = X^T Y``, batched LU.

    For the many tiny per-window fits (AR over each window), where batched QR on a CPU costs ~100x more.
    Their rounding is not well-posed: one window's forecast may move by ~1e-3 with the summation order,
    while the MSE over a test set moves by ~1%; :class:`LinearMap`, one large fit, uses :func:`ridge_lstsq`.
    A singular system (an all-zero window) gives NaN for its batch entry, not an exception.
    """
    gram = design.mT @ design
    diagonal = gram.diagonal(dim1=-2, dim2=-1)
    diagonal.add_(ridge * diagonal.mean(dim=-1, keepdim=True))
    solution, info = torch.linalg.solve_ex(gram, design.mT @ rhs)
    return torch.where((info == 0).view(-1, *([1] * (solution.dim() - 1))), solution, torch.nan)


def mse(forecast: Tensor, target: Tensor) -> float:
    """Mean squared error, accumulated in float64."""
    return float((forecast.double() - target.double()).square().mean())


def naive(lookback: Tensor, horizon: int) -> Tensor:
    """Repeat the last sample: ``[N, L] -> [N, horizon]`` float32, on the lookback's device (the random walk's
    forecast). A lookback that is not ``[N, L]`` or a horizon below 1 raises :class:`ConfigError`."""
    _check_lookback(lookback)
    horizon = require_int("horizon", horizon, minimum=1)
    return lookback[:, -1:].float().expand(-1, horizon).contiguous()


def drift(lookback: Tensor, horizon: int) -> Tensor:
    """The drift method: the last sample plus ``h`` mean steps of the lookback, ``[N, H]`` float32.

    ``forecast[h - 1] = x[L - 1] + h (x[L - 1] - x[0]) / (L - 1)`` for ``h = 1 .. H``: a random walk with
    drift, the straight line through the window's first and last samples continued (Hyndman & Athanasopoulos,
    *Forecasting: Principles and Practice*, 3rd ed., 2021, §5.2). Computed in float64. Raises
    :class:`ConfigError` for a lookback of fewer than 2 samples.
    """
    length = _check_lookback(lookback, minimum=2)
    horizon = require_int("horizon", horizon, minimum=1)
    x = lookback.double()
    step = (x[:, -1:] - x[:, :1]) / (length - 1)
    ahead = torch.arange(1, horizon + 1, device=lookback.device, dtype=torch.float64)
    return (x[:, -1:] + step * ahead).float()


def seasonal_period(lookback: Tensor, min_period: int = 2) -> Tensor:
    """Per row, the lag in ``[min_period, L // 2]`` of highest autocorrelation of the mean-removed window, ``[N]``.

    The autocorrelation at lag ``k`` is ``sum_t x_t x_{t+k} / (L - k)`` (unbiased), computed by FFT.
    """
    length = _check_lookback(lookback, minimum=2)
    min_period = require_int("min_period", min_period, minimum=1)
    if min_period > length // 2:
        raise ConfigError(
            f"seasonal period: a lookback of {length} samples holds lags up to {length // 2}, under min_period "
            f"{min_period}; pass period= or a longer lookback"
        )
    x = lookback.double()
    x = x - x.mean(dim=1, keepdim=True)
    spectrum = torch.fft.rfft(x, n=2 * length)
    lags = torch.arange(min_period, length // 2 + 1, device=x.device)
    autocorrelation = torch.fft.irfft(spectrum.abs().square(), n=2 * length)[:, lags] / (length - lags)
    return lags[autocorrelation.argmax(dim=1)]


def seasonal_naive(lookback: Tensor, horizon: int, min_period: int = 2, period: int | None = None) -> Tensor:
    """Repeat the last ``p`` samples: ``forecast[h] = x[L - p + h mod p]``, ``[N, H]`` float32.

    ``p`` is ``period`` when given (the same for every row, e.g. 12 for monthly data; 1 is :func:`naive`),
    otherwise per row from :func:`seasonal_period`. Raises :class:`ConfigError` for ``period`` outside ``[1, L]``.
    """
    horizon = require_int("horizon", horizon, minimum=1)
    if period is None:
        period = seasonal_period(lookback, min_period)[:, None]
    else:
        period = require_int("period", period, minimum=1, maximum=_check_lookback(lookback))
    steps = torch.arange(horizon, device=lookback.device)
    index = (lookback.shape[1] - period + steps % period).expand(lookback.shape[0], horizon)
    return lookback.gather(1, index).float()


def dft_extrapolation(lookback: Tensor, horizon: int) -> Tensor:
    """The seed notebook's DFT extrapolation (the window repeated with period ``L``)."""
    _check_lookback(lookback, minimum=2)
    return dft_forecast(lookback, horizon).float()


def autoregressive(lookback: Tensor, horizon: int, order: int, ridge: float = AR_RIDGE) -> Tensor:
    """Fit ``x_t = c + sum_i a_i x_{t-i}`` (``i = 1 .. order``) to each window by ridge least squares, then iterate it.

    The fit uses the window's own ``L - order`` lagged samples; a sinusoid obeys an exact AR(2) recursion, a
    sum of ``K`` sinusoids an AR(2K).
    """
    length = _check_lookback(lookback, minimum=2)
    horizon = require_int("horizon", horizon, minimum=1)
    order = require_int("order", order, minimum=1, maximum=length - 1)
    return autoregressive_float64(lookback, horizon, order, _check_ridge(ridge)).float()


def autoregressive_float64(
    lookback: Tensor, horizon: int, order: int, ridge: float = AR_RIDGE, forward_backward: bool = False
) -> Tensor:
    """:func:`autoregressive`'s fit and recursion in float64, ``[N, L] -> [N, horizon]``, arguments unchecked.

    For callers that need the digits (a model's expert). A window whose normal equations are singular
    (e.g. all zeros) gets a NaN row instead of an exception for the batch.

    ``forward_backward`` also fits the same coefficients to the window read backwards (each sample from the
    ``order`` after it): the forward-backward, or modified covariance, least squares of Ulrych & Clayton
    (1976, "Time series modelling and maximum entropy", *Phys. Earth Planet. Inter.* 12) and Marple (1980, "A
    new autoregressive spectrum analysis algorithm", *IEEE Trans. ASSP* 28(4)). A sum of undamped sinusoids,
    a level and a linear trend obeys the recurrence both ways (its characteristic polynomial is
    palindromic), so the fit has twice the equations for the same unknowns; a series that grows or decays
    does not, so it suits noiseless harmonic windows, not every series.
    """
    length = lookback.shape[1]
    x = lookback.double()
    lagged = x.unfold(1, order + 1, 1)  # [N, L - order, order + 1]: x_{t - order} .. x_t
    if forward_backward:
        lagged = torch.cat([lagged, lagged.flip(-1)], dim=1)  # and x_{t + order} .. x_t
    design = torch.cat([lagged[..., :order], torch.ones_like(lagged[..., :1])], dim=-1)
    coefficients = _normal_equations_solve(design, lagged[..., order:], ridge)[..., 0]
    weights, intercept = coefficients[:, :order], coefficients[:, order]
    series = torch.cat([x[:, length - order :], x.new_zeros(x.shape[0], horizon)], dim=1)
    for step in range(horizon):
        series[:, order + step] = (series[:, step : step + order] * weights).sum(dim=1) + intercept
    return series[:, order:]


def choose_ar_order(
    lookback: Tensor, target: Tensor, orders: Sequence[int] = DEFAULT_AR_ORDERS, ridge: float = AR_RIDGE
) -> int:
    """The order in ``orders`` whose :func:`autoregressive` forecast of ``lookback`` best matches ``target`` (MSE)."""
    _check_lookback(lookback)
    if not isinstance(target, Tensor) or target.dim() != 2 or target.shape[0] != lookback.shape[0]:
        raise ConfigError(
            f"target: expected a tensor [{lookback.shape[0]}, H], got {tuple(getattr(target, 'shape', ()))}"
        )
    if len(orders) == 0:
        raise ConfigError("orders: need at least one AR order")
    errors = {order: mse(autoregressive(lookback, target.shape[1], order, ridge), target) for order in orders}
    return min(errors, key=errors.__getitem__)


BACKTEST_AR_ORDERS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
BACKTEST_FOLDS = 3


def backtest_ar_orders(
    lookback: Tensor,
    horizon: int,
    orders: Sequence[int] = BACKTEST_AR_ORDERS,
    folds: int = BACKTEST_FOLDS,
    ridge: float = AR_RIDGE,
) -> Tensor:
    """Per window, the order in ``orders`` whose AR forecast best backtests inside the lookback, ``[N]`` int64.

    A rolling-origin backtest inside each window ``[N, L]`` (Hyndman & Athanasopoulos, *Forecasting:
    Principles and Practice*, 3rd ed., §5.10): for ``k = 1 .. folds`` and every candidate order,
    :func:`autoregressive` is fitted on the first ``L - k * horizon`` samples and scored (squared error) on
    forecasting the next ``horizon``; the order of least total error wins, ties to the lower order, and a
    non-finite backtest loses. ``folds = 1`` scores only the last ``horizon`` samples of the lookback, which
    on a random walk picks nearly any order; three folds favour the low orders. Batched over windows (one
    fit per order and fold). Raises :class:`ConfigError` for no orders, or an order too high for the
    shortest fit (``L - folds * horizon - order < order + 1`` equations).
    """
    length = _check_lookback(lookback, minimum=2)
    horizon = require_int("horizon", horizon, minimum=1)
    folds = require_int("folds", folds, minimum=1)
    orders = sorted({require_int("orders", order, minimum=1) for order in orders})
    if not orders:
        raise ConfigError("orders: need at least one AR order")
    shortest = length - folds * horizon
    if shortest - orders[-1] < orders[-1] + 1:
        raise ConfigError(f"orders: order {orders[-1]} is too high to fit on {shortest} samples")
    errors = ar_backtest_errors(lookback, horizon, orders, folds, ridge, precise=False).sum(dim=2)
    return torch.tensor(orders, device=lookback.device)[errors.argmin(dim=1)]


def ar_backtest_errors(
    lookback: Tensor, horizon: int, orders: Sequence[int], folds: int, ridge: float = AR_RIDGE, precise: bool = True
) -> Tensor:
    """The rolling-origin backtest of :func:`backtest_ar_orders`, arguments unchecked: ``[N, len(orders), folds]``
    float64.

    Entry ``(n, i, k - 1)`` is the squared error of ``orders[i]`` summed over the ``horizon`` steps of fold ``k``
    (fitted on the first ``L - k * horizon`` samples: the latest fold first), ``inf`` where not finite.
    ``precise`` keeps the forecasts in float64 (a model's expert); otherwise they are rounded to float32
    first, as :func:`autoregressive` returns them.
    """
    x = lookback.double()
    errors = x.new_zeros(x.shape[0], len(orders), folds)
    for fold in range(1, folds + 1):
        cut = x.shape[1] - fold * horizon
        truth = x[:, cut : cut + horizon]
        for column, order in enumerate(orders):
            forecast = autoregressive_float64(x[:, :cut], horizon, order, ridge)
            forecast = forecast if precise else forecast.float().double()
            errors[:, column, fold - 1] = (forecast - truth).square().sum(dim=1)
    return torch.where(errors.isfinite(), errors, torch.inf)


def ar_refit(lookback: Tensor, horizon: int, chosen: Tensor, ridge: float = AR_RIDGE) -> Tensor:
    """Each window's AR forecast ``[N, horizon]`` float64 at its own order ``chosen`` ``[N]``, fitted on the window."""
    forecast = lookback.new_zeros(lookback.shape[0], horizon, dtype=torch.float64)
    for order in chosen.unique().tolist():
        rows = chosen == order
        forecast[rows] = autoregressive_float64(lookback[rows], horizon, order, ridge)
    return forecast


def backtest_autoregressive(
    lookback: Tensor,
    horizon: int,
    orders: Sequence[int] = BACKTEST_AR_ORDERS,
    folds: int = BACKTEST_FOLDS,
    ridge: float = AR_RIDGE,
) -> Tensor:
    """Per-window AR with the order chosen by :func:`backtest_ar_orders`, refitted on the whole lookback.

    ``lookback`` ``[N, L]`` (float, any device) -> ``[N, horizon]`` float32 on the same device. Exact on a sum
    of ``K`` sinusoids when ``2K`` is among ``orders``. Raises :class:`ConfigError` as :func:`backtest_ar_orders`.
    """
    return ar_refit(lookback, horizon, backtest_ar_orders(lookback, horizon, orders, folds, ridge), ridge).float()


class _LinearForecaster:
    """``forecast = x @ weights + bias`` in float64, for windows of ``weights.shape[0]`` samples."""

    def __init__(self, weights: Tensor, bias: Tensor) -> None:
        if weights.dim() != 2 or bias.shape != weights.shape[1:]:
            raise ConfigError(f"weights/bias: expected [L, H] and [H], got {tuple(weights.shape)}, {tuple(bias.shape)}")
        self.weights = weights.double()
        self.bias = bias.to(self.weights)

    def __call__(self, lookback: Tensor) -> Tensor:
        length = _check_lookback(lookback)
        if length != self.weights.shape[0]:
            raise ConfigError(f"lookback: expected windows of {self.weights.shape[0]} samples, got {length}")
        weights, bias = self.weights.to(lookback.device), self.bias.to(lookback.device)
        return torch.addmm(bias, lookback.double(), weights).float()


class LinearMap(_LinearForecaster):
    """The least-squares linear map (with intercept) from lookback to horizon, fitted on example windows.

    Each batch's ``[design | target]`` is folded into the triangular factor of a running QR decomposition
    in float64 (the same factor as one QR of all batches stacked), and the ridge problem is solved from it
    (:func:`ridge_lstsq`). The default ridge, ``1e-15``, stands for the float32 rounding of the inputs;
    on clean (3,45) signals ``1e-13`` already costs accuracy.
    """

    @classmethod
    def fit(cls, lookback: Tensor, target: Tensor, ridge: float = LINEAR_MAP_RIDGE) -> LinearMap:
        """Fit on one batch of windows ``[N, L]`` and their continuations ``[N, H]``."""
        return cls.fit_batches([(lookback, target)], ridge)

    @classmethod
    def fit_batches(cls, batches: Iterable[Sequence[Tensor]], ridge: float = LINEAR_MAP_RIDGE) -> LinearMap:
        """Fit on batches ``(lookback, target, ...)``, e.g. a finite :class:`HarmonicStream`; extras are ignored.

        Raises :class:`ConfigError` on no batches, or batches whose shapes differ.
        """
        ridge = _check_ridge(ridge)
        factor, shape = None, None
        for lookback, target, *_ in batches:
            length = _check_lookback(lookback)
            if target.dim() != 2 or target.shape[0] != lookback.shape[0]:
                raise ConfigError(f"target: expected [{lookback.shape[0]}, H], got {tuple(target.shape)}")
            if shape is not None and (length, target.shape[1]) != shape:
                raise ConfigError(f"batches: shapes {(length, target.shape[1])} differ from the first batch's")
            shape = (length, target.shape[1])
            ones = lookback.new_ones(lookback.shape[0], 1, dtype=torch.float64)
            rows = torch.cat([lookback.double(), ones, target.double()], dim=1)  # [design | target]
            stacked = rows if factor is None else torch.cat([factor, rows])
            factor = torch.linalg.qr(stacked, mode="r").R
        if factor is None or shape is None:
            raise ConfigError("batches: nothing to fit")
        k = shape[0] + 1
        if factor.shape[0] < k:  # fewer windows than unknowns: the missing rows of R are zeros
            factor = torch.cat([factor, factor.new_zeros(k - factor.shape[0], factor.shape[1])])
        solution = ridge_lstsq(factor[:k, :k], factor[:k, k:], ridge)
        return cls(solution[:-1], solution[-1])


class ScaledLinearMap:
    """:class:`LinearMap` fitted on windows scaled by their own lookback (:mod:`harmonic_forecast.scaling`) and
    mapped back: ``forecast(a·x + b) = a·forecast(x) + b`` (``a > 0``), like the models.

    The stream normalises every signal to peak 1 over lookback and horizon together, so a :class:`LinearMap`
    fitted on its windows in their own units also learns that scale: something a user's series, in any
    units, does not carry. This is the linear map an affine-equivariant forecaster can be compared with.
    ``lookback`` ``[N, L]`` -> ``[N, H]`` float32; a constant lookback forecasts its constant. For float64
    windows the equivariance holds to the float32 rounding of the output; the map's nearly singular weights
    (ridge 1e-15) amplify the float32 rounding of a float32 window, so pass float64 windows.
    """

    def __init__(self, scaled: LinearMap) -> None:
        self.scaled = scaled

    @classmethod
    def fit_batches(cls, batches: Iterable[Sequence[Tensor]], ridge: float = LINEAR_MAP_RIDGE) -> ScaledLinearMap:
        """Fit on batches ``(lookback, target, ...)`` as :meth:`LinearMap.fit_batches` does (same errors)."""
        return cls(LinearMap.fit_batches((scale_windows(lookback, target) for lookback, target, *_ in batches), ridge))

    def __call__(self, lookback: Tensor) -> Tensor:
        scaled = scale_windows(lookback)[0]
        return unscale(self.scaled(scaled), lookback).float()


class PeriodDictionary(_LinearForecaster):
    """Per-window ridge fit of the integer-period dictionary, evaluated at ``t = L .. L + H - 1``.

    Columns are ``sin(2 pi t / p)`` and ``cos(2 pi t / p)`` for integer ``p`` in ``[periods[0], periods[1])``
    (plus a constant with ``constant``), ``t = 0 .. L - 1``. The dictionary is overcomplete and nearly
    band-limited, hence the ridge; it spreads even a pure sinusoid over neighbouring periods, so the full
    ``(10, 100)`` dictionary is accurate but not exact on one. Fit and evaluation are linear in the window,
    so they fold into one ``[L, H]`` map, built once in float64 from the SVD of the design.
    """

    def __init__(
        self,
        lookback: int,
        horizon: int,
        periods: tuple[int, int] = (10, 100),
        ridge: float = 1e-14,
        constant: bool = False,
    ) -> None:
        lookback = require_int("lookback", lookback, minimum=1)
        horizon = require_int("horizon", horizon, minimum=1)
        p_lo, p_hi = require_pair("periods", periods, integer=True)
        if not 2 <= p_lo < p_hi:
            raise ConfigError(f"periods: need 2 <= low < high (half-open), got ({p_lo}, {p_hi})")
        self.ridge = _check_ridge(ridge)
        t = torch.arange(lookback + horizon, dtype=torch.float64)
        period = torch.arange(p_lo, p_hi, dtype=torch.float64)[:, None]
        angle = torch.remainder(t, period) * (2 * math.pi) / period
        columns = [angle.sin(), angle.cos()] + ([torch.ones_like(t)[None]] if constant else [])
        basis = torch.cat(columns).mT  # [L + H, columns]
        u, s, vh = torch.linalg.svd(basis[:lookback], full_matrices=False)
        shrink = s / (s.square() + self.ridge * s.square().sum() / basis.shape[1])
        coefficients = (vh.mT * shrink) @ u.mT  # [columns, L]: the ridge solution operator
        super().__init__((basis[lookback:] @ coefficients).mT, torch.zeros(horizon, dtype=torch.float64))
