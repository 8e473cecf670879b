"""``expert_gru`` (the default): a non-teacher-forced GRU decoder that combines closed-form experts.

Every window (scaled by its lookback, :mod:`harmonic_forecast.scaling`) is forecast by three experts,
each with its error measured inside the window (float64, no gradient):

- ``naive``: the last value, scored on the last values of the backtest folds (a random walk's best forecast);
- ``ar``: per-window autoregression with a backtested order (:class:`~harmonic_forecast.models.skips.BacktestAR`),
  exact on any clean sum of ``K`` sinusoids with ``2K`` among its orders, whatever the periods, and on trends;
- ``sparse``: the sparse Bayesian fit on the integer period grid ``periods``
  (:class:`~harmonic_forecast.models.skips.PeriodSparseFit`, regularised by the Wiener noise estimate),
  which forecasts clean sums of up to 45 grid harmonics where a recurrence of order 90 cannot be fitted
  to a window of 100; its error is the mean over ``sparse_folds`` rolling-origin folds: fold ``k`` fits
  the first ``L - k H`` samples and is scored on the next ``H``. The oldest fold's fit starts cold
  (``sparse_iterations`` EM updates), each later one from the prior variances of the fold before
  (``fold_iterations``), and the last fold's warm-start the fit on the whole window (``refine_iterations``).
  Outside training, a window whose Wiener noise estimate is below ``clean_noise_variance`` (in its
  lookback-scaled units: a noiseless window) takes ``clean_fold_iterations`` updates in every fold and
  ``clean_refine_iterations`` on the whole window instead: on noiseless windows the EM updates are still
  converging after a few iterations, and the extra ones cost time only on such windows. Training keeps the
  cheaper fits (the gate learns from the experts' errors, which the extra iterations only lower).

Outside training, a noiseless window's AR forecast is that of order ``clean_ar_order`` refitted on the whole
window (its backtest error stays the backtested order's), unless that forecast leaves the safety range below
(an unstable recursion). Without noise there is nothing to overfit, and the backtest cannot try such orders:
its shortest fit (``L - ar_folds H`` samples) holds too few equations. A clean sum of ``K`` sinusoids needs
order ``2K``; for ``K`` above 16 the backtested orders stop short of it. With ``clean_ar_fit =
"forward_backward"`` (the default) that refit also fits the window read backwards, which a sum of sinusoids
obeys too: twice the equations for the same coefficients (:func:`~harmonic_forecast.baselines.autoregressive_float64`).
With ``clean_ar_in_training`` noiseless training windows take that refit too, so the gate learns how far to trust
it (the error it reads is the backtested order's, not the refit's); the sparse expert's longer fits stay outside
training. Off by default: with it on, the gate learns to trust the refit more, which helps on clean off-grid
windows and costs on clean grid windows (the README has the figures).

The decoder's initial state is an MLP of the window, its rfft amplitudes and phases, the log noise
variance of the Wiener estimate, the experts' forecasts and their log backtest errors. At each of the
``H`` steps it is fed its previous forecast (detached) and the experts' forecasts of the step, and emits
the experts' weights and a residual: ``forecast = Σ softmax(-log e + 10·g)_i f_i + r · s``, where ``e`` are
the backtest errors (so an untrained model is the inverse-MSE combination of Bates & Granger, 1969), ``g``
the learned gate and ``s`` the square root of the best expert's backtest error, in whose units the
training loss is taken (clean and noisy windows weigh alike). The head's last layer starts at zero.

With ``trust_earned`` (the default) the gate cannot trust an expert whose backtest error exceeds naive's
beyond the evidence: trust in a forecaster that lost to the last value inside the window is not learned from
synthetic data. With ``trust_cap = "prior"`` (the default) the gate's offset ``10·g`` of such an expert is
capped at 0: its logit never exceeds its inverse-MSE prior, but it still gains weight when the gate lowers
naive's logit (on random walks the shipped model's gate does, and hands the sparse expert about half the
weight at 3.6 times naive's error). With ``trust_cap = "naive"`` the offset is capped at naive's own, so its
weight never exceeds naive's weight times their prior ratio ``e_naive / e``, however far the gate lowers naive.
The README has what each costs on the shipped model.

A regime break in the window's last ``H`` samples is met by an intervention model. When the experts' best
error on the latest backtest fold exceeds ``break_ratio`` times their best mean error on the earlier folds
and ``break_floor`` (scaled units), every expert was validated on a regime the window has left, and its
refit on the whole window extrapolates the break. The AR order that backtested best on the earlier folds is
then fitted on the samples before the latest fold and continued over ``2 H`` steps; if a level shift or a
single outlier (a step or a pulse in its residual on the latest fold, fitted by least squares) leaves at
most ``break_unexplained`` of that residual's energy, the window forecasts the continuation shifted by the
step's height (0 for a pulse): the old regime's pattern at the new regime's level, with the outlier
ignored. These are the level-shift and additive-outlier interventions of Box & Tiao (1975, "Intervention
analysis with applications to economic and environmental problems", *JASA* 70(349)), detected as in Chen &
Liu (1993, "Joint estimation of model parameters and outlier effects in time series", *JASA* 88(421)). A
step on the very last sample cannot be told from a pulse there and is taken as a step. The break test is a
tracking signal in the sense of Trigg (1964, "Monitoring a forecasting system", *Operational Research
Quarterly* 15(3)): a forecaster whose recent errors leave their past range is not trusted.
``break_ratio = 0`` turns the rule off.

Safety by construction: every forecast is clipped to ``lookback mean ± max_excursion × max |lookback −
mean|``, an expert whose fit is singular or not finite gets forecast 0 and error ``1e6``, and a window
holding NaN or inf forecasts NaN (:func:`~harmonic_forecast.models.base.nan_where_nonfinite`).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, StrictBool, ValidationInfo, field_validator
from torch import Tensor, nn

from harmonic_forecast.baselines import AR_RIDGE, autoregressive_float64
from harmonic_forecast.models.base import Family, Forecaster, Loss, ModelConfig, PeriodGrid, nan_where_nonfinite
from harmonic_forecast.models.row_threads import map_row_chunks
from harmonic_forecast.models.skips import BacktestAR, PeriodSparseFit, WienerSkip
from harmonic_forecast.models.windows import WindowSource
from harmonic_forecast.scaling import lookback_bounds
from harmonic_forecast.signals import SignalSpec
from harmonic_forecast.spectral import rfft_features
from harmonic_forecast.tables import Int, Positive

EXPERTS = ("naive", "ar", "sparse")
ERROR_RANGE = (1e-12, 1e6)  # backtest MSEs are clamped to this range (scaled units) before their log is taken
RESIDUAL_UNIT_FLOOR = 1e-4  # the residual's unit s is at least this (an MSE floor of 1e-8 in scaled units)
GATE_GAIN = 10.0  # the learned gate's logits are multiplied by this: a sharp choice is a small output
LOSS_CLIP = 100.0  # the loss clips the error at this many residual units (a window no expert saw coming)


class ExpertGRUConfig(ModelConfig):
    """The ``[model]`` table of ``kind = "expert_gru"``: the shared fields and the experts'."""

    kind: Literal["expert_gru"] = "expert_gru"
    periods: PeriodGrid = (10, 100)  # the sparse expert's integer period grid (half-open)
    sparse_iterations: Positive = 5  # EM updates of the sparse expert's first (oldest) backtest fold
    sparse_folds: Positive = 3  # backtest folds of the sparse expert, each fit warm-started from the one before
    fold_iterations: Positive = 2  # EM updates of each later fold's fit
    refine_iterations: Annotated[Int, Field(ge=0)] = 3  # more EM updates, warm-started, on the whole window
    clean_noise_variance: Annotated[float, Field(ge=0)] = 1e-8  # below it a window is noiseless (scaled units)
    clean_fold_iterations: Positive = 8  # outside training, EM updates of each backtest fold of a noiseless window
    clean_refine_iterations: Positive = 16  # outside training, EM updates of a noiseless window's whole-window fit
    clean_ar_order: Annotated[Int, Field(ge=0)] = 44  # outside training, a noiseless window's AR order (0: off)
    clean_ar_fit: Literal["forward_backward", "forward"] = "forward_backward"  # that refit's least squares
    clean_ar_in_training: StrictBool = False  # that refit in training too (off-grid clean windows gain, grid lose)
    ar_folds: Positive = 3  # backtest folds of the AR expert (declared before ar_orders, whose check reads it)
    ar_orders: tuple[Positive, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
    max_excursion: Annotated[float, Field(gt=0)] = 3.0  # forecasts stay within this many lookback deviations
    trust_earned: StrictBool = True  # an expert that lost to naive in the backtest is not trusted beyond the evidence
    trust_cap: Literal["prior", "naive"] = "prior"  # such an expert's gate offset is at most 0, or at most naive's
    break_ratio: Annotated[float, Field(ge=0)] = 30.0  # latest fold's error over the earlier folds' (0: off)
    break_floor: Annotated[float, Field(ge=0)] = 1e-3  # ... and above this MSE (scaled units): a regime break
    break_unexplained: Annotated[float, Field(ge=0, le=1)] = 0.05  # most of that fold a step or pulse may not explain

    @field_validator("sparse_folds")
    @classmethod
    def _folds_leave_a_window(cls, folds: int, info: ValidationInfo) -> int:
        if not {"lookback", "horizon", "periods"} <= info.data.keys():
            return folds
        shortest = info.data["lookback"] - folds * info.data["horizon"]  # the oldest fold's fit
        if shortest < 2 * info.data["periods"][0]:
            raise ValueError(
                f"{folds} folds leave {shortest} samples (lookback {info.data['lookback']} - {folds} x horizon "
                f"{info.data['horizon']}) for the oldest fold's fit, under two of the grid's shortest period "
                f"({info.data['periods'][0]}); lower sparse_folds or lengthen the lookback"
            )
        return folds

    @field_validator("clean_ar_order")
    @classmethod
    def _clean_order_fits_the_window(cls, order: int, info: ValidationInfo) -> int:
        if "lookback" in info.data and info.data["lookback"] - order < order + 1:
            raise ValueError(
                f"order {order} is too high to fit on the samples of lookback {info.data['lookback']} (it needs "
                f"order + 1 equations); lower clean_ar_order to {(info.data['lookback'] - 1) // 2} or less (0: off)"
            )
        return order

    @field_validator("ar_orders")
    @classmethod
    def _orders_fit_the_backtest(cls, orders: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        if not orders:
            raise ValueError("need at least one order")
        if not {"lookback", "horizon", "ar_folds"} <= info.data.keys():
            return orders  # one of them is invalid and reported on its own
        shortest = info.data["lookback"] - info.data["ar_folds"] * info.data["horizon"]  # the first fold's fit
        if shortest < 2 * max(orders) + 1:
            raise ValueError(
                f"order {max(orders)} is too high for the backtest's fit on {shortest} samples (lookback "
                f"{info.data['lookback']} - ar_folds {info.data['ar_folds']} x horizon {info.data['horizon']}); "
                "lower ar_orders or ar_folds, or lengthen the lookback"
            )
        return orders


def sparse_fits(config: ExpertGRUConfig) -> tuple[list[PeriodSparseFit], PeriodSparseFit]:
    """The sparse expert's backtest fits, oldest fold first (fold ``k`` fits the first ``L - k H`` samples),
    and its fit on the whole window."""
    lookback, horizon = config.lookback, config.horizon
    folds = [
        PeriodSparseFit(
            lookback - fold * horizon,
            horizon,
            config.periods,
            config.sparse_iterations if fold == config.sparse_folds else config.fold_iterations,
            constant=True,
        )
        for fold in range(config.sparse_folds, 0, -1)
    ]
    return folds, PeriodSparseFit(lookback, horizon, config.periods, config.refine_iterations, constant=True)


def intervention_fit(residual: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares fits of a step (0 before some sample, a constant from it on) and of a pulse (one nonzero
    sample before the last: one there is the step there) to each row of ``residual`` ``[R, n]``:
    the share of ``sum r²`` the better one leaves unexplained ``[R]`` and the step's height ``[R]`` (0 where
    the pulse fits strictly better). Float64 in, float64 out."""
    energy = residual.square()
    total = energy.sum(dim=1)
    after = residual.flip(1).cumsum(dim=1).flip(1)  # sum from each sample on
    after_energy = energy.flip(1).cumsum(dim=1).flip(1)
    before_energy = after_energy[:, :1] - after_energy  # sum before each sample
    count = torch.arange(residual.shape[1], 0, -1, dtype=residual.dtype, device=residual.device)
    step, start = (before_energy + after_energy - after.square() / count).min(dim=1)
    pulse = total - (energy[:, :-1].amax(dim=1) if residual.shape[1] > 1 else 0.0)  # one sample: the step
    height = torch.where(step <= pulse, after.gather(1, start[:, None])[:, 0] / count[start], 0.0)
    return torch.minimum(step, pulse).clamp_min(0.0) / total.clamp_min(torch.finfo(total.dtype).tiny), height


def feature_count(config: ExpertGRUConfig) -> int:
    """Inputs of the encoder: the window, its rfft amplitudes and phases, the log noise variance, the
    experts' forecasts and their log errors."""
    experts = len(EXPERTS)
    return config.lookback + 2 * (config.lookback // 2 + 1) + 1 + experts * config.horizon + experts


class ExpertGRUForecaster(Forecaster):
    """See the module docstring. ``forecast_scaled`` ``[B, L] -> [B, H]`` float32; NaN rows for non-finite windows."""

    def __init__(self, config: ExpertGRUConfig) -> None:
        super().__init__(config)
        lookback, horizon, hidden, width = config.lookback, config.horizon, config.hidden, config.encoder_width
        self.wiener = WienerSkip(lookback, horizon)
        folds, self.sparse = sparse_fits(config)
        self.sparse_backtests = nn.ModuleList(folds)
        self.ar = BacktestAR(lookback, horizon, config.ar_orders, config.ar_folds)
        experts, features = len(EXPERTS), feature_count(config)
        self.encoder = nn.Sequential(
            nn.Linear(features, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, hidden)
        )
        self.decoder = nn.GRUCell(1 + experts, hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Linear(hidden // 2, experts + 1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def fit_to_data(self, source: WindowSource, spec: SignalSpec) -> None:
        """Fit the sparse expert's Wiener noise estimate on clean grid signals of ``spec``'s base family."""
        base = spec.replace(families=(), lookback=self.config.lookback, horizon=self.config.horizon, noise=0.0)
        self.wiener.fit(source, base, scaled=True)

    @torch.no_grad()
    @torch.compiler.disable  # float64 fits with data-dependent shapes (the chosen AR orders): left to eager
    def experts(self, lookback: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Experts' forecasts ``[B, E, H]``, backtest MSEs ``[B, E]`` (clamped), noise variance ``[B]`` and the
        forecast of a window that broke regime in its last ``H`` samples ``[B, H]`` (NaN where it did not; see
        the module docstring), float64.

        Rows are fitted independently; on a CPU, in one chunk per torch thread (:func:`map_row_chunks`).
        """
        return map_row_chunks(self._experts, lookback.double())

    def _experts(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        horizon = self.config.horizon
        _, variance, _ = self.wiener(x)
        noiseless = variance < self.config.clean_noise_variance
        clean = None if self.training else noiseless  # the sparse expert's longer fits: outside training
        sparse, sparse_error, sparse_folds = self._sparse_expert(x, variance, clean)
        ar, ar_error, naive_error, ar_folds = self.ar(x)
        refit = not self.training or self.config.clean_ar_in_training
        if refit and self.config.clean_ar_order and noiseless.any():
            ar[noiseless] = self._clean_ar(x[noiseless], ar[noiseless])
        forecasts = torch.stack([x[:, -1:].expand(-1, horizon), ar, sparse], dim=1)
        errors = torch.stack([naive_error, ar_error, sparse_error], dim=1)
        usable = forecasts.isfinite().all(dim=-1) & errors.isfinite()
        forecasts = torch.where(usable[..., None], forecasts, 0.0)
        errors = torch.where(usable, errors, ERROR_RANGE[1]).clamp(*ERROR_RANGE)
        broken = self._regime_break([ar_folds, sparse_folds[:, None]])
        return forecasts, errors, variance, self._break_forecast(x, ar_folds, broken)

    def _clean_ar(self, x: Tensor, ar: Tensor) -> Tensor:
        """Noiseless windows' AR forecasts ``[R, H]``: order ``clean_ar_order`` refitted on each window ``x``
        ``[R, L]``, where its forecast stays inside the safety range (an unstable recursion leaves it); ``ar``
        elsewhere."""
        backward = self.config.clean_ar_fit == "forward_backward"
        refit = autoregressive_float64(x, self.config.horizon, self.config.clean_ar_order, AR_RIDGE, backward)
        low, high = lookback_bounds(x, self.config.max_excursion)
        keep = ((refit >= low) & (refit <= high)).all(dim=1)  # False where not finite
        return torch.where(keep[:, None], refit, ar)

    def _regime_break(self, folds: list[Tensor]) -> Tensor:
        """``[B]`` bool from the backtest MSEs per fold ``[B, forecasters, folds]`` (the latest fold first) of
        naive, every AR order and the sparse fit: the best latest-fold MSE exceeds ``break_ratio`` x the best
        mean MSE over the earlier folds, and ``break_floor``. Forecasters with one fold do not count."""
        usable = [errors.nan_to_num(torch.inf) for errors in folds if errors.shape[2] > 1]
        if not usable or self.config.break_ratio == 0:
            return torch.zeros_like(folds[0][:, 0, 0], dtype=torch.bool)
        latest = torch.cat([errors[:, :, 0] for errors in usable], dim=1).min(dim=1).values
        earlier = torch.cat([errors[:, :, 1:].mean(dim=2) for errors in usable], dim=1).min(dim=1).values
        return (latest > self.config.break_ratio * earlier) & (latest > self.config.break_floor)

    def _break_forecast(self, x: Tensor, ar_folds: Tensor, broken: Tensor) -> Tensor:
        """``[B, H]``: the intervention forecast of each ``broken`` window a step or pulse explains (see the module
        docstring), NaN elsewhere (also where the AR backtest has no earlier fold or the fit is not finite)."""
        length, horizon = x.shape[1], self.config.horizon
        forecast = torch.full_like(x[:, :horizon], torch.nan)
        rows = broken.nonzero()[:, 0]
        if len(rows) == 0 or ar_folds.shape[2] < 2:
            return forecast
        orders = torch.tensor(self.ar.orders, device=x.device)
        chosen = orders[ar_folds[rows, 1:, 1:].mean(dim=2).nan_to_num(torch.inf).argmin(dim=1)]
        continued = x.new_empty(len(rows), 2 * horizon)
        for order in chosen.unique().tolist():
            group = chosen == order  # the old regime, continued over the latest fold and the horizon
            continued[group] = autoregressive_float64(x[rows[group], : length - horizon], 2 * horizon, order, AR_RIDGE)
        unexplained, height = intervention_fit(x[rows, length - horizon :] - continued[:, :horizon])
        accepted = (unexplained <= self.config.break_unexplained) & continued.isfinite().all(dim=1)
        forecast[rows[accepted]] = (continued[:, horizon:] + height[:, None])[accepted]
        return forecast

    def _sparse_expert(self, x: Tensor, variance: Tensor, clean: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """The sparse expert's forecast ``[B, H]``, backtest MSE ``[B]`` and MSE per fold ``[B, sparse_folds]``
        (the latest fold first); the noiseless windows ``clean`` ``[B]`` (None in training) take the clean
        iteration counts (see the module docstring). Each row depends only on itself."""
        if clean is None or not clean.any():
            return self._sparse_fits(x, variance, clean=False)
        if clean.all():
            return self._sparse_fits(x, variance, clean=True)
        forecast, error = x.new_empty(len(x), self.config.horizon), x.new_empty(len(x))
        folds = x.new_empty(len(x), self.config.sparse_folds)
        for rows, is_clean in ((~clean, False), (clean, True)):
            index = rows.nonzero()[:, 0]
            forecast[index], error[index], folds[index] = self._sparse_fits(x[index], variance[index], is_clean)
        return forecast, error, folds

    def _sparse_fits(self, x: Tensor, variance: Tensor, clean: bool) -> tuple[Tensor, Tensor, Tensor]:
        horizon = self.config.horizon
        fold_iterations = self.config.clean_fold_iterations if clean else None  # None: each fit's own
        refine_iterations = self.config.clean_refine_iterations if clean else None
        gamma, error, folds = None, x.new_zeros(len(x)), []
        for fit in self.sparse_backtests:  # oldest fold first; each warm-starts the next
            cut = fit.projection.shape[0]
            backtest, gamma = fit.posterior(x[:, :cut], variance, gamma, fold_iterations)
            folds.append((backtest - x[:, cut : cut + horizon]).square().mean(dim=1))
            error += folds[-1]
        forecast, _ = self.sparse.posterior(x, variance, gamma, refine_iterations)
        return forecast, error / len(self.sparse_backtests), torch.stack(folds[::-1], dim=1)

    def _forecast(self, lookback: Tensor) -> tuple[Tensor, Tensor]:
        """Forecast ``[B, H]`` and residual unit ``s`` ``[B, 1]``, float64."""
        x = lookback.double()
        forecasts, errors, variance, break_forecast = self.experts(x)
        log_error = errors.log()
        unit = errors.min(dim=1).values.sqrt().clamp(RESIDUAL_UNIT_FLOOR, 1.0)[:, None]
        amplitude, phase = rfft_features(x.float())
        bounded = forecasts.float().clamp(-10.0, 10.0)  # features only; the combination uses the float64 ones
        features = [x.float(), amplitude, phase, variance.log().float()[:, None] / 10, bounded.flatten(1)]
        hidden = self.encoder(torch.cat([*features, log_error.float() / 10], dim=-1))
        low, high = lookback_bounds(x, self.config.max_excursion)  # once: the clip of every step
        lost = errors > errors[:, :1] if self.config.trust_earned else None  # [B, E]: worse than naive in-window
        value, outputs = x[:, -1:].float(), []
        for step in range(self.config.horizon):
            hidden = self.decoder(torch.cat([value, bounded[:, :, step]], dim=-1), hidden)
            gate, residual = self.head(hidden).double().split([len(EXPERTS), 1], dim=-1)
            logits = GATE_GAIN * gate - log_error
            if lost is not None:  # a losing expert's gate offset is capped (see the module docstring)
                offset = logits + log_error  # the gate's offset from each expert's prior logit
                cap = offset[:, :1] if self.config.trust_cap == "naive" else torch.zeros_like(offset[:, :1])
                logits = torch.where(lost, torch.minimum(offset, cap) - log_error, logits)
            weights = torch.softmax(logits, dim=-1)
            forecast = (weights * forecasts[:, :, step]).sum(dim=-1, keepdim=True) + residual * unit
            forecast = torch.minimum(torch.maximum(forecast, low), high)
            outputs.append(forecast)
            value = forecast.float().detach() if self.config.detach_feedback else forecast.float()
        override = torch.minimum(torch.maximum(break_forecast, low), high)  # NaN rows: no regime break
        forecast = torch.where(override.isnan(), torch.cat(outputs, dim=-1), override)
        return nan_where_nonfinite(lookback, forecast), unit

    def forecast_scaled(self, lookback: Tensor) -> Tensor:
        return self._forecast(lookback)[0].float()

    def training_loss_scaled(self, lookback: Tensor, target: Tensor, loss: Loss) -> Tensor:
        """``loss`` of the error in units of the best expert's backtest error, clipped at :data:`LOSS_CLIP`."""
        forecast, unit = self._forecast(lookback)
        error = ((forecast - target.double()) / unit).clamp(-LOSS_CLIP, LOSS_CLIP).float()
        return loss(error, torch.zeros_like(error))

    @staticmethod
    def flops_per_sample(config: ExpertGRUConfig, training: bool = True) -> float:
        """The network's matrix-multiply FLOPs (times 3 when training) plus the experts' forward ones.

        The AR expert's refit on the whole window is counted at its highest order (the order each window
        chooses is known only from its data), so the experts' count is an upper bound. It counts the
        regular EM updates and AR fits: a noiseless window outside training takes the ``clean_*_iterations``
        EM updates and one more AR fit, of order ``clean_ar_order``.
        """
        lookback, horizon, hidden, width = config.lookback, config.horizon, config.hidden, config.encoder_width
        experts, features = len(EXPERTS), feature_count(config)
        encoder = 2 * (features * width + width * width + width * hidden)
        head = 2 * (hidden * (hidden // 2) + (hidden // 2) * (experts + 1))
        network = encoder + horizon * (2 * 3 * hidden * (1 + experts + hidden) + head)
        unused_input_gradient = 2 * features * width  # the features carry no gradient
        folds, whole = sparse_fits(config)
        sparse = sum(fit.flops() for fit in folds) + whole.flops()
        folds = range(1, config.ar_folds + 1)
        fits = [(lookback - fold * horizon, order) for fold in folds for order in config.ar_orders]
        fits.append((lookback, max(config.ar_orders)))
        ar = sum(2 * (rows - order) * ((order + 1) ** 2 + order + 1) for rows, order in fits)  # Gram and right side
        wiener = WienerSkip(lookback, horizon).flops()
        return float((3 * network - unused_input_gradient if training else network) + sparse + ar + wiener)


FAMILY = Family(ExpertGRUConfig, ExpertGRUForecaster, ExpertGRUForecaster.flops_per_sample)
