"""Forecasting Mauna Loa CO2 12 months ahead, against seasonal-naive and ARIMA baselines.

  python -m experiments.train --config=configs/co2_forecast.py --workdir=/tmp/co2_forecast

A 32-unit GRU reaches eval MAE 0.459 ppm over the 12 horizons after 2,000 steps, against
1.569 ppm for seasonal naive and 0.481 ppm for SARIMAX(1,1,1)(0,1,1)_12 on the same 109
origins, in 91 s on 2 shared CPU cores (the ARIMA fit included).

`--config=configs/co2_forecast.py:smoke` is a 40-step run of a few seconds (no ARIMA fit), for tests.

Data: statsmodels' weekly co2 series (`pip install -e '.[data]'`) averaged by month, 526
months 1958-2001; the last 120 months (1992-2001) are held out and every one of the 109
origins whose 12-month horizon lies in them is scored (`eval_mae_ppm`, mean absolute error
in ppm over the 12 horizons). On the same origins: `eval_seasonal_naive_mae_ppm` (last
year's value for the same month) and `eval_arima_mae_ppm` (statsmodels SARIMAX(1,1,1)(0,1,1)_12
fitted on the training months; fitting it adds several seconds to the start).
"""

from configs.common import finish
from gatedrnn.train.config import default_config


def get_config(arg: str | None = None):
    config = default_config()
    config.task = "co2_forecast"
    config.data.window = 36
    config.data.horizon = 12
    config.data.test_months = 120
    config.data.arima_baseline = True

    config.model.cell = "gru"
    config.model.hidden_size = 32

    config.train.num_steps = 2000
    config.train.batch_size = 32
    config.train.learning_rate = 3e-3
    config.optim.warmup_steps = 50

    config.eval.every_steps = 250
    config.eval.batch_size = 128
    config.eval.num_batches = 1
    config.log.every_steps = 50
    config.checkpoint.every_steps = 500

    def smoke(config):
        config.data.arima_baseline = False

    return finish(config, arg, "co2_forecast", smoke)
