"""The events pipeline's `events_by_day` in polars, written by delta-rs' Python
package: raw events (a Delta table) with a user, without internal event types, typed,
joined to the countries, the run day and the 29 days before it, partitioned by day.

Usage: repartition_polars.py RAW_DELTA COUNTRIES_CSV OUT_DELTA FIRST_DAY LAST_DAY
An existing OUT_DELTA has the window's days replaced (an overwrite with a predicate,
which polars has to be told: it does not derive it from the rows); a new one is
created.
"""

import datetime
import os
import sys

import polars as pl

raw, countries, out, first, last = sys.argv[1:]
first_day = datetime.date.fromisoformat(first)
last_day = datetime.date.fromisoformat(last)
events = (
    pl.scan_delta(raw)
    .filter(
        pl.col("user_id").is_not_null()
        & (pl.col("user_id") != "")
        & ~pl.col("event_type").is_in(["debug", "heartbeat"])
    )
    .with_columns(pl.col("event_ts").str.to_datetime(time_unit="us"))
    .join(
        pl.scan_csv(countries).select("country_code", "country_name"),
        on="country_code",
        how="left",
    )
    .with_columns(
        pl.col("country_name").fill_null("unknown").alias("country"),
        pl.col("event_ts").dt.date().alias("event_date"),
    )
    .filter(pl.col("event_date").is_between(first_day, last_day))
    .select("event_id", "user_id", "event_type", "event_ts", "country", "event_date")
)
options = {"partition_by": ["event_date"]}
if os.path.exists(os.path.join(out, "_delta_log")):
    options["predicate"] = f"event_date >= '{first}' AND event_date <= '{last}'"
    events.sink_delta(out, mode="overwrite", delta_write_options=options)
else:
    events.sink_delta(out, mode="append", delta_write_options=options)
