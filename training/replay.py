"""The point-in-time replay: the SAME fold the online aggregator applies, once per touchpoint, in time order.

Each send's feature row is taken at its decision instant, from the state just before it, as serving scores a
candidate at request time: events that share that instant are folded only after the row is taken, so a row never
reflects anything at or after its decision (and so nothing at or after its send). Decision
markers hand the state at each evaluated decision to the context builder (training/ope/contexts.py).

Customers are independent, so a large stream is cut at customer boundaries into one range per worker process.
Workers are forked: they inherit the columns (never pickled) and send back only their rows and contexts.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable
from itertools import pairwise
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import polars as pl

from model.domain.aggregate import Aggregate, FoldEvent, fold
from model.domain.catalogue import catalogue
from model.domain.decide import scoring_history
from model.domain.features import FeatureLayout, no_contact_row, row
from model.domain.schemas import Profile
from training.ope.contexts import ContextBuilder

MARKER = -1  # a decision instant in the replay stream (not a touchpoint)
NO_CONTACT = -2  # a logged "don't contact" decision's training row (not a touchpoint, never folded)
ROW = -3  # a send's training row, at its decision instant (not a touchpoint, never folded; the send itself is)
PARALLEL_MIN_EVENTS = 200_000
COLUMNS = ("customer_id", "ts", "event_id", "ch", "ev", "value", "row", "message_id", "ctx", "slot")
Progress = Callable[[int, int], None]
Put = Callable[[int, list[float]], None]


def replay(
    stream: pl.DataFrame,
    matrix: np.ndarray,
    builder: ContextBuilder,
    profiles: dict[str, Profile],
    layout: FeatureLayout,
    messages: list[str],
    progress: Progress | None,
    workers: int | None = None,
) -> None:
    """Fill `matrix` (one row per send) and the builder's contexts from the sorted event stream."""
    cols = [stream[c].to_list() for c in COLUMNS]
    total = len(cols[0])
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if total >= PARALLEL_MIN_EVENTS else 1
    if workers <= 1 or "fork" not in mp.get_all_start_methods():

        def put(out: int, values: list[float]) -> None:
            matrix[out] = values

        replay_range(cols, 0, total, put, builder, profiles, layout, messages, progress=progress, total=total)
        if progress is not None:
            progress(total, total)
        return
    bounds = [0]
    for k in range(1, workers):
        i = max(bounds[-1], k * total // workers)
        while 0 < i < total and cols[0][i] == cols[0][i - 1]:
            i += 1
        bounds.append(i)
    bounds.append(total)
    ctx = mp.get_context("fork")
    jobs: list[tuple[Any, Connection, int]] = []
    for lo, hi in pairwise(bounds):
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_replay_part, args=(send, cols, lo, hi, builder.fresh(), profiles, layout, messages))
        proc.start()
        send.close()
        jobs.append((proc, receive, hi))
    try:
        for proc, receive, hi in jobs:
            result = receive.recv()
            if isinstance(result, BaseException):
                raise RuntimeError("a replay worker failed") from result
            index, values, ids, parts = result
            if len(index):
                matrix[index] = values
            builder.merge(ids, parts)
            if progress is not None:
                progress(hi, total)
            proc.join()
    finally:
        for proc, receive, _ in jobs:
            receive.close()
            if proc.is_alive():
                proc.kill()
                proc.join()


def _replay_part(
    send: Connection,
    cols: list[list[Any]],
    lo: int,
    hi: int,
    builder: ContextBuilder,
    profiles: dict[str, Profile],
    layout: FeatureLayout,
    messages: list[str],
) -> None:
    """One worker's customers (a forked process): rows and decision grids, sent back to the parent."""
    try:
        index: list[int] = []
        values: list[list[float]] = []

        def put(out: int, row_values: list[float]) -> None:
            index.append(out)
            values.append(row_values)

        replay_range(cols, lo, hi, put, builder, profiles, layout, messages)
        width = len(layout.names)
        send.send(
            (np.array(index, np.int64), np.array(values, np.float32).reshape(-1, width), builder.ids, builder.parts)
        )
    except BaseException as exc:  # the parent re-raises it
        send.send(exc)
    finally:
        send.close()


def replay_range(
    cols: list[list[Any]],
    lo: int,
    hi: int,
    put: Put,
    builder: ContextBuilder,
    profiles: dict[str, Profile],
    layout: FeatureLayout,
    messages: list[str],
    progress: Progress | None = None,
    total: int = 0,
) -> None:
    """Replay stream positions [lo, hi) (whole customers): fold, take rows at sends, grids at decisions."""
    n_ch = len(catalogue())
    cur: str | None = None
    agg = Aggregate(n_ch)
    pending: list[FoldEvent] = []
    prev = 0.0
    profile = Profile()
    zone = profile.zone()
    step = max(1, (hi - lo) // 200)
    rows = zip(*(c[lo:hi] for c in cols), strict=True)
    for i, (cid, ts, eid, ch, ev, value, out, msg, ctx, slot) in enumerate(rows, start=lo):
        if cid != cur:
            cur, agg, pending, prev = cid, Aggregate(n_ch), [], ts
            profile = profiles.get(cid) or Profile()
            zone = profile.zone()
        elif ts != prev:
            for pe in pending:
                fold(agg, pe)
            pending.clear()
            prev = ts
        if ev == MARKER:
            builder.add(ctx, agg, profile, ts)
            continue
        if ev == NO_CONTACT:
            put(out, no_contact_row(scoring_history(agg), profile.attributes, layout, ts, zone))
            continue
        if ev == ROW:  # what serving scores: a cold start's history is none (decide.scoring_history)
            put(out, row(scoring_history(agg), profile.attributes, layout, ch, slot, zone, msg, messages, now=ts))
            continue
        pending.append(FoldEvent(eid, ch, ev, ts, value))
        if progress is not None and i % step == 0:
            progress(i, total)
