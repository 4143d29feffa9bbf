"""Multi-step time-series forecasting on statsmodels' Mauna Loa CO2 series, with two baselines.

The series: statsmodels' weekly `co2` (1958-2001, read from the csv the package ships without
importing statsmodels), averaged by calendar month (weeks with no reading are skipped; a
month without any is interpolated): 526 months. The last `data.test_months` (120: 1992-2001)
are held out. A forecast origin o sees the `data.window` months before it and predicts the
next `data.horizon` (12). Training origins keep window and horizon inside the training
months; the eval scores every origin whose horizon lies in the held-out months.

Values are scaled per window: x' = (x - x[o-1]) / scale, with `scale` the standard deviation
of 12-month changes in the training months, so the level (which rises every year) does not
matter. Baselines, scored on exactly the same origins and months:
  seasonal naive: y[o+h] = y[o+h-12] (last year's value for the same month), for h < 12;
  ARIMA: statsmodels SARIMAX(1,1,1)(0,1,1)_12, fitted once on the training months; from each
  origin, a dynamic forecast with those parameters from the data before the origin.

With `plots` (config.log.plots), `final_report` draws plots/forecast.png: the held-out months
with the model's and the baselines' 12-month forecasts from one origin a year, and the MAE (ppm)
of every forecaster by months ahead over all the held-out origins.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import os
import warnings
from typing import Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gatedrnn import losses
from gatedrnn.tasks import figures
from gatedrnn.tasks.base import Task
from gatedrnn.tasks.data import TRAIN_STREAM, eval_indices, package_file, stream_rng
from gatedrnn.validation import ConfigError, check_positive

SEASON = 12
FIRST_MONTH = (1958, 3)  # co2_monthly()[0] is March 1958
FORECAST_PNG = "forecast.png"


def month_years(months: np.ndarray) -> np.ndarray:
    """Month indices of `co2_monthly()` -> decimal years at mid-month (index 0: March 1958 = 1958.21)."""
    return FIRST_MONTH[0] + (FIRST_MONTH[1] - 1 + np.asarray(months, np.float64) + 0.5) / 12


@functools.lru_cache(maxsize=1)
def co2_monthly() -> np.ndarray:
    """Monthly mean CO2 (ppm) float64 [526], March 1958 to December 2001."""
    path = package_file("statsmodels", os.path.join("datasets", "co2", "co2.csv"), "CO2 forecasting")
    sums: dict[tuple[int, int], list[float]] = {}
    with open(path) as f:
        for row in csv.DictReader(f):
            key = (int(row["date"][:4]), int(row["date"][4:6]))
            sums.setdefault(key, [])
            if row["co2"]:
                sums[key].append(float(row["co2"]))
    first, last = min(sums), max(sums)
    months = [(y, m) for y in range(first[0], last[0] + 1) for m in range(1, 13) if first <= (y, m) <= last]
    values = np.asarray([np.mean(sums[k]) if sums.get(k) else np.nan for k in months])
    missing = np.isnan(values)
    values[missing] = np.interp(np.flatnonzero(missing), np.flatnonzero(~missing), values[~missing])
    return values


@functools.lru_cache(maxsize=4)
def arima_forecasts(test_months: int, horizon: int) -> np.ndarray:
    """SARIMAX(1,1,1)(0,1,1)_12 forecasts [num_origins, horizon] (ppm) for the eval origins."""
    try:
        from statsmodels.tsa.statespace.sarimax import SARIMAX
    except ImportError:
        package_file("statsmodels", "", "the ARIMA baseline")  # one-line MissingPackageError
        raise
    y = co2_monthly()
    n_train = len(y) - test_months
    with warnings.catch_warnings():  # statsmodels' convergence and frequency notices
        warnings.simplefilter("ignore")
        fitted = SARIMAX(y[:n_train], order=(1, 1, 1), seasonal_order=(0, 1, 1, SEASON)).fit(disp=False)
        full = fitted.apply(y)  # the fitted parameters, filtered through the whole series
        # dynamic=True: the forecast from `origin` uses only y[:origin], like the RNN's
        out = [full.get_prediction(start=origin, end=origin + horizon - 1, dynamic=True).predicted_mean
               for origin in range(n_train, len(y) - horizon + 1)]
    return np.asarray(out)


@dataclasses.dataclass(frozen=True)
class CO2ForecastTask(Task):
    """inputs [b, window, 1] (scaled) -> outputs [b, horizon] (scaled changes from the last value).

    Reports `mae_ppm` (mean absolute error in ppm over all horizons) and, on the same batch,
    `seasonal_naive_mae_ppm` and (eval only, with `arima_baseline`) `arima_mae_ppm`.
    """

    window: int = 36
    horizon: int = 12
    test_months: int = 120
    arima_baseline: bool = True  # fitting SARIMAX takes seconds; the smoke test turns it off
    plots: bool = True  # config.log.plots: final_report draws plots/forecast.png

    input_size = 1
    readout = "last"
    vocab_size = None
    causal = False  # the targets follow the window: a bidirectional encoder of the window reads none of them

    def __post_init__(self):
        for field in ("window", "horizon", "test_months"):
            check_positive(f"data.{field}", getattr(self, field))
        if self.window < SEASON or self.horizon > SEASON:
            raise ConfigError(f"data.window must be >= {SEASON} and data.horizon <= {SEASON} (the seasonal-naive "
                              f"baseline needs last year's values), got window={self.window} horizon={self.horizon}")
        if self.test_months < self.horizon or self.window + self.horizon > len(co2_monthly()) - self.test_months:
            raise ConfigError("data.test_months leaves no room for a training window and horizon")

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "CO2ForecastTask":
        d = config.data
        return cls(window=d.window, horizon=d.horizon, test_months=d.test_months,
                   arima_baseline=d.get("arima_baseline", True), plots=figures.wants_plots(config))

    @property
    def output_size(self) -> int:
        return self.horizon

    @property
    def n_train(self) -> int:
        return len(co2_monthly()) - self.test_months

    @property
    def scale(self) -> float:
        y = co2_monthly()[: self.n_train]
        return float(np.std(y[SEASON:] - y[:-SEASON]))

    def eval_origins(self) -> np.ndarray:
        return np.arange(self.n_train, len(co2_monthly()) - self.horizon + 1)

    def _windows(self, origins: np.ndarray) -> dict[str, np.ndarray]:
        y = co2_monthly()
        past = y[origins[:, None] + np.arange(-self.window, 0)]
        future = y[origins[:, None] + np.arange(self.horizon)]
        last = past[:, -1:]
        return {"inputs": ((past - last) / self.scale)[:, :, None].astype(np.float32),
                "targets": ((future - last) / self.scale).astype(np.float32)}

    def train_origins(self, seed: int, step: int, batch_size: int) -> np.ndarray:
        """Origins [b] of a training batch: window and horizon inside the training months."""
        return stream_rng(seed, TRAIN_STREAM, step).integers(self.window, self.n_train - self.horizon + 1, batch_size)

    def train_batch(self, seed: int, step: int, batch_size: int) -> dict[str, np.ndarray]:
        return {**self._windows(self.train_origins(seed, step, batch_size)), "mask": np.ones(batch_size, np.float32)}

    def eval_batch(self, seed: int, index: int, batch_size: int) -> dict[str, np.ndarray]:
        """The held-out origins in order; eval.batch_size * eval.num_batches >= 109 scores them all."""
        origins = self.eval_origins()
        rows, mask = eval_indices(index, batch_size, len(origins))
        batch = self._windows(origins[rows])
        last = co2_monthly()[origins[rows] - 1][:, None]
        if self.arima_baseline:
            arima = arima_forecasts(self.test_months, self.horizon)[rows]
            batch["arima"] = ((arima - last) / self.scale).astype(np.float32)
        return {**batch, "mask": mask}

    def metrics(self, outputs: jax.Array, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, losses.Sums]:
        targets, mask = batch["targets"], batch["mask"]
        cells = jnp.broadcast_to(mask[:, None], targets.shape)
        loss, sums = losses.regression_metrics(outputs, targets, cells)
        scale = jnp.float32(self.scale)

        def mae_ppm(preds):
            err = jnp.abs(preds - targets) * scale * cells
            return jnp.stack([jnp.sum(err), jnp.sum(cells)])

        sums["mae_ppm"] = mae_ppm(outputs)
        w = self.window
        naive = batch["inputs"][:, w - SEASON: w - SEASON + self.horizon, 0]  # y[o+h-12], scaled like the targets
        sums["seasonal_naive_mae_ppm"] = mae_ppm(naive)
        if "arima" in batch:
            sums["arima_mae_ppm"] = mae_ppm(batch["arima"])
        return loss, sums

    def forecasts_ppm(self, model, origins: np.ndarray) -> dict[str, np.ndarray]:
        """{"model", "seasonal naive", ["ARIMA"]: forecasts [n, horizon] in ppm} from `origins` [n]:
        the model's scaled changes mapped back, y[o-1] + scale * output."""
        y = co2_monthly()
        outputs = np.asarray(self.apply(model, {"inputs": jnp.asarray(self._windows(origins)["inputs"])}, False))
        out = {"model": y[origins - 1][:, None] + self.scale * outputs.astype(np.float64),
               "seasonal naive": y[origins[:, None] + np.arange(self.horizon) - SEASON]}
        if self.arima_baseline:
            out["ARIMA"] = arima_forecasts(self.test_months, self.horizon)[origins - self.n_train]
        return out

    def final_report(self, model, seed: int, workdir: str) -> tuple[str, dict[str, float]]:
        """With `plots`: plots/forecast.png (`plot_forecast`) and each forecaster's MAE over the
        held-out origins in the report; nothing without."""
        del seed
        if not self.plots:
            return "", {}
        origins = self.eval_origins()
        forecasts = self.forecasts_ppm(model, origins)
        actual = co2_monthly()[origins[:, None] + np.arange(self.horizon)]
        plot_forecast(self, origins, forecasts, figures.plots_path(workdir, FORECAST_PNG))
        maes = ", ".join(f"{name} {np.mean(np.abs(f - actual)):.3f}" for name, f in forecasts.items())
        return (f"forecasts from the {len(origins)} held-out origins, MAE (ppm) over {self.horizon} months: {maes}\n"
                f"figure: {figures.PLOTS_DIR}/{FORECAST_PNG}"), {}


def plot_forecast(task: CO2ForecastTask, origins: np.ndarray, forecasts: Mapping[str, np.ndarray], path: str):
    """Two panels; returns the Figure.

    Top: the monthly series (ppm) from 4 years before the held-out months to the end, and every
    forecaster's `horizon`-month forecast from one origin in 12 (non-overlapping paths that tile
    the held-out months). Bottom: MAE (ppm) by months ahead over all `origins`.
    """
    y = co2_monthly()
    actual = y[origins[:, None] + np.arange(task.horizon)]
    fig, axes = figures.new_figure(2, 1, size=(12, 8), height_ratios=(3, 2))
    top, bottom = axes[:, 0]
    shown = np.arange(max(task.n_train - 4 * SEASON, 0), len(y))
    top.plot(month_years(shown), y[shown], color="k", lw=1.0, label="actual (monthly mean)")
    top.axvspan(month_years(task.n_train) - 1 / 24, month_years(len(y) - 1) + 1 / 24, color="0.9",
                label=f"held out ({task.test_months} months)")
    styles = {"model": dict(color="C3", lw=1.8), "seasonal naive": dict(color="C0", ls=":", lw=1.4),
              "ARIMA": dict(color="C2", ls="--", lw=1.4)}
    for name, values in forecasts.items():
        for k, row in enumerate(range(0, len(origins), SEASON)):
            top.plot(month_years(origins[row] + np.arange(task.horizon)), values[row],
                     label=f"{name} forecast" if k == 0 else None, **styles.get(name, {}))
    top.set_xlabel("year")
    top.set_ylabel("CO2 (ppm)")
    top.set_title(f"Mauna Loa CO2: {task.horizon}-month forecasts from one origin a year "
                  f"(window {task.window} months)")
    top.legend(fontsize=8, loc="upper left")
    top.grid(True, alpha=0.3)
    months = np.arange(1, task.horizon + 1)
    for name, values in forecasts.items():
        mae = np.mean(np.abs(values - actual), axis=0)
        style = {k: v for k, v in styles.get(name, {}).items() if k != "lw"}
        bottom.plot(months, mae, marker="o", label=f"{name} (mean {mae.mean():.3f})", **style)
    bottom.set_xlabel("months ahead")
    bottom.set_ylabel("MAE (ppm)")
    bottom.set_xticks(months)
    bottom.set_title(f"mean absolute error over the {len(origins)} held-out origins")
    bottom.legend(fontsize=8)
    bottom.grid(True, alpha=0.3)
    figures.save_figure(fig, path)
    return fig
