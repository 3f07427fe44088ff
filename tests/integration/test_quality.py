"""The quality rules (crypto_lambda.quality): each rule's pandas and Spark forms agree row by row, and the two
completeness rules differ exactly where they say they do."""

from __future__ import annotations

import math

import pandas as pd

from crypto_lambda.quality import (
    COMPLETE_DAY_MINUTES,
    FULL_DAY_MINUTES,
    bar_violations,
    complete_day_col,
    is_complete_day,
    is_full_day,
    ohlc_consistent,
    ohlc_consistent_col,
)

BARS = pd.DataFrame({  # open, high, low, close: good, low above open, high below close, NaN open, NaN low
    "open": [2.0, 2.0, 2.0, math.nan, 2.0], "high": [3.0, 3.0, 2.5, 3.0, 3.0],
    "low": [1.0, 2.5, 1.0, 1.0, math.nan], "close": [2.5, 2.5, 2.8, 2.5, 2.5], "volume": [1.0, 1.0, 1.0, 1.0, 1.0]})


def test_complete_is_99_percent_and_full_is_every_minute():
    assert COMPLETE_DAY_MINUTES == 1426 and FULL_DAY_MINUTES == 1440
    assert not is_complete_day(1425) and is_complete_day(1426) and not is_full_day(1439) and is_full_day(1440)
    assert is_complete_day(pd.Series([1425.0, 1426.0, math.nan])).tolist() == [False, True, False]


def test_ohlc_rule_pandas_and_spark_agree(spark):
    from pyspark.sql import functions as F

    pandas_form = ohlc_consistent(BARS).tolist()
    assert pandas_form == [True, False, False, True, False]  # a NaN open is skipped like pandas' min/max do
    rows = [(i, *(None if math.isnan(v) else v for v in r)) for i, r in enumerate(BARS.itertuples(index=False))]
    frame = spark.createDataFrame(rows, "i int, open double, high double, low double, close double, volume double")
    ok = ohlc_consistent_col(F.col("open"), F.col("high"), F.col("low"), F.col("close")).alias("ok")
    spark_form = [bool(r["ok"]) for r in frame.select("i", ok).orderBy("i").collect()]
    assert spark_form == pandas_form  # a null low is unknown, i.e. not consistent, like pandas' NaN
    minutes = spark.createDataFrame([(0, 1425), (1, 1426), (2, None)], "i int, m int")
    flags = minutes.select("i", complete_day_col(F.col("m")).alias("c")).orderBy("i").collect()
    complete = [bool(r["c"]) for r in flags]
    assert complete == is_complete_day(pd.Series([1425, 1426, math.nan])).tolist() == [False, True, False]


def test_bar_violations_add_negative_volume_and_nan():
    bars = BARS.assign(volume=[1.0, 1.0, 1.0, 1.0, -1.0])
    assert bar_violations(bars).index.tolist() == [1, 2, 3, 4] and bar_violations(bars.iloc[:0]).empty
