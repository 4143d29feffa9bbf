"""CO2 forecasting: the monthly series, the split, the scaling, and both baselines on the same origins."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gatedrnn import losses
from gatedrnn.tasks.forecast import CO2ForecastTask, arima_forecasts, co2_monthly

if importlib.util.find_spec("statsmodels") is None:
    pytest.skip("DATA-MISSING: CO2 forecasting needs statsmodels: pip install -e '.[data]'", allow_module_level=True)


def scores(task, outputs, batch):
    _, sums = task.metrics(jnp.asarray(outputs), {k: jnp.asarray(v) for k, v in batch.items()})
    return losses.normalize(jax.device_get(sums))


def test_the_monthly_series():
    y = co2_monthly()
    assert y.shape == (526,) and np.isfinite(y).all()  # March 1958 to December 2001
    assert y[0] == pytest.approx(316.1) and 360 < y[-1] < 375
    assert (y[12:] - y[:-12] > 0).mean() > 0.95  # it rises every year


def test_windows_scale_and_split():
    task = CO2ForecastTask(arima_baseline=False)
    y = co2_monthly()
    assert task.n_train == 406 and len(task.eval_origins()) == 109
    b = task.train_batch(0, 4, 64)
    assert b["inputs"].shape == (64, 36, 1) and b["targets"].shape == (64, 12)
    np.testing.assert_array_equal(b["inputs"][:, -1, 0], 0.0)  # relative to the last value seen
    e = task.eval_batch(0, 0, 128)
    assert e["mask"].sum() == 109
    o = task.eval_origins()[5]
    np.testing.assert_allclose(e["targets"][5] * task.scale + y[o - 1], y[o:o + 12], rtol=1e-6)
    origins = np.concatenate([task.train_origins(0, s, 256) for s in range(20)])
    assert origins.min() == 36 and origins.max() == 406 - 12  # no target in the held-out months


def test_seasonal_naive_is_last_years_value():
    task = CO2ForecastTask(arima_baseline=False)
    y = co2_monthly()
    e = task.eval_batch(0, 0, 128)
    origins = task.eval_origins()
    naive = np.stack([y[o - 12:o] for o in origins])
    expect = np.mean(np.abs(naive - np.stack([y[o:o + 12] for o in origins])))
    out = scores(task, np.zeros((128, 12), np.float32), e)
    assert out["seasonal_naive_mae_ppm"] == pytest.approx(expect, rel=1e-4)
    perfect = scores(task, e["targets"], e)
    assert perfect["mae_ppm"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_arima_forecasts_use_only_the_past():
    """The dynamic forecast from each origin equals refitting nothing and forecasting from y[:origin]."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    task = CO2ForecastTask()
    forecasts = arima_forecasts(120, 12)
    assert forecasts.shape == (109, 12)
    y = co2_monthly()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = SARIMAX(y[:406], order=(1, 1, 1), seasonal_order=(0, 1, 1, 12)).fit(disp=False)
        for k in (0, 50, 108):
            o = task.eval_origins()[k]
            np.testing.assert_allclose(forecasts[k], fitted.apply(y[:o]).forecast(12), rtol=1e-6)
    out = scores(task, np.zeros((128, 12), np.float32), task.eval_batch(0, 0, 128))
    assert out["arima_mae_ppm"] < out["seasonal_naive_mae_ppm"]
