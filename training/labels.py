"""Labels: which send each open, click, visit and conversion is attributed to (within the window)."""

from __future__ import annotations

import polars as pl

from model.domain.aggregate import CLICKED, CONVERTED, OPENED, SENT, VISITED

DAY = 86400.0
OBJECTIVE_EVENT = {"click": "clicked", "visit": "visited", "conversion": "converted", "value": "converted"}


def attribute(tp: pl.DataFrame, window_days: float) -> pl.DataFrame:
    """Per send: attributed opens, clicks, visits, conversions and conversion value (within the window).

    An open, click or visit that quotes the decision of one of the customer's sends goes to that send (ESPs and
    trackers report which message was clicked; with several sends a day, last touch would hand a click on the
    morning's message to the noon one). The others go to the customer's latest send strictly before them (last
    touch). A conversion
    goes to the send of the latest click or visit strictly before it (last click: the send that brought the
    customer to the shop) when that send is within the window, else to the latest send before it (last
    touch). Without the click rule, any send that happens between a click and the conversion it led to (a
    day later, say) would take the conversion: labels would then reward sending to customers who have just
    clicked, and earlier send hours, for no causal reason.
    """
    window = window_days * DAY
    sends = (
        tp.filter(pl.col("ev") == SENT)
        .select("customer_id", pl.col("event_id").alias("send_id"), pl.col("ts").alias("send_ts"), "decision_id")
        .sort("send_ts")
    )

    def last_send(events: pl.DataFrame) -> pl.DataFrame:
        return (
            events.sort("ts")
            .join_asof(
                sends.drop("decision_id"),
                left_on="ts",
                right_on="send_ts",
                by="customer_id",
                strategy="backward",
                allow_exact_matches=False,  # an outcome at the very instant of a send is not caused by it
                check_sortedness=False,
            )
            .filter(pl.col("send_id").is_not_null() & (pl.col("ts") - pl.col("send_ts") <= window))
        )

    events = tp.filter(pl.col("ev").is_in([OPENED, CLICKED, VISITED])).select(
        "event_id", "customer_id", "ts", "ev", "value", "decision_id"
    )
    quoted = (
        events.filter(pl.col("decision_id").is_not_null())
        .join(sends.filter(pl.col("decision_id").is_not_null()), on=["customer_id", "decision_id"], how="inner")
        .filter((pl.col("ts") > pl.col("send_ts")) & (pl.col("ts") - pl.col("send_ts") <= window))
        .sort("send_ts")
        .unique(subset="event_id", keep="last")  # a decision quoted by several sends: the latest before the event
    )
    cols = ["customer_id", "ts", "ev", "value", "send_id", "send_ts"]
    engaged = pl.concat(
        [
            quoted.select(cols),
            last_send(
                events.join(quoted.select("event_id"), on="event_id", how="anti").drop("event_id", "decision_id")
            ).select(cols),
        ]
    )
    clicks = (
        engaged.filter(pl.col("ev").is_in([CLICKED, VISITED]))
        .select("customer_id", pl.col("ts").alias("click_ts"), pl.col("send_id").alias("click_send"), "send_ts")
        .rename({"send_ts": "click_send_ts"})
        .sort("click_ts")
    )
    conversions = (
        last_send(tp.filter(pl.col("ev") == CONVERTED).select("customer_id", "ts", "ev", "value"))
        .join_asof(
            clicks,
            left_on="ts",
            right_on="click_ts",
            by="customer_id",
            strategy="backward",
            allow_exact_matches=False,
            check_sortedness=False,
        )
        .with_columns(
            pl.when(pl.col("click_send").is_not_null() & (pl.col("ts") - pl.col("click_send_ts") <= window))
            .then(pl.col("click_send"))
            .otherwise(pl.col("send_id"))
            .alias("send_id")
        )
        .select(engaged.columns)
    )
    matched = pl.concat([engaged, conversions])
    return matched.group_by("send_id").agg(
        (pl.col("ev") == OPENED).sum().alias("opens"),
        (pl.col("ev") == CLICKED).sum().alias("clicks"),
        (pl.col("ev") == VISITED).sum().alias("visits"),
        (pl.col("ev") == CONVERTED).sum().alias("conversions"),
        pl.when(pl.col("ev") == CONVERTED).then(pl.col("value")).otherwise(0.0).sum().alias("conv_value"),
    )


def window_outcomes(rows: pl.DataFrame, tp: pl.DataFrame, window_days: float) -> pl.DataFrame:
    """Per row (`row_id`, `customer_id`, `start`): the customer's conversions and their value in
    (start, start + window], whoever or whatever caused them.

    These are the labels of incremental learning: a send's row and a "don't contact" decision's row see the
    same outcome definition, so p(x, a) - p(x, none) is the contact's lift, not conversions that would have
    happened anyway and were attributed to the last message.
    """
    conv = (
        tp.filter(pl.col("ev") == CONVERTED)
        .select("customer_id", "ts", "value")
        .sort("customer_id", "ts")
        .with_columns(
            pl.int_range(1, pl.len() + 1).over("customer_id").cast(pl.Float64).alias("cum_n"),
            pl.col("value").cum_sum().over("customer_id").alias("cum_v"),
        )
        .select("customer_id", "ts", "cum_n", "cum_v")
        .sort("ts")
    )
    probes = rows.select("row_id", "customer_id", "start", (pl.col("start") + window_days * DAY).alias("stop"))

    def cumulative_at(col: str) -> pl.DataFrame:
        """Conversions (count, value) of the customer at or before each row's `col` instant."""
        probe = probes.select("row_id", "customer_id", pl.col(col).alias("ts")).sort("ts")
        joined = probe.join_asof(conv, on="ts", by="customer_id", strategy="backward", check_sortedness=False)
        return joined.select("row_id", pl.col("cum_n").fill_null(0.0), pl.col("cum_v").fill_null(0.0))

    return (
        cumulative_at("stop")
        .join(cumulative_at("start"), on="row_id", suffix="_start")
        .select(
            "row_id",
            (pl.col("cum_n") - pl.col("cum_n_start")).cast(pl.Int64).alias("conversions"),
            (pl.col("cum_v") - pl.col("cum_v_start")).alias("conv_value"),
        )
    )
