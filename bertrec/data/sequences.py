"""Per-user event sequences.

A sequence row holds one user's events as parallel list columns (``item_id``, ``action``, ``timestamp``,
``event_index``), ordered by time with the input order as a stable tie-break, so two events logged in the same
second keep the order in which the log wrote them.
"""

from __future__ import annotations

import polars as pl

SEQUENCE_LIST_COLUMNS = ("item_id", "action", "timestamp", "event_index")


def add_sessions(events: pl.DataFrame, gap_seconds: float) -> pl.DataFrame:
    """Add a ``session_id`` column: a user's session ends after ``gap_seconds`` of inactivity.

    Session ids are ``"<user_id>#<n>"`` with ``n`` counting from 0 in time order, so sessions can stand in for
    users (``build_sequences(events, key="session_id")``) on logs without user ids or for session-based tasks.
    """
    if gap_seconds <= 0:
        raise ValueError(f"session gap must be positive seconds, got {gap_seconds!r}")
    if events["timestamp"].null_count() == events.height and events.height:
        raise ValueError("sessions need timestamps, but this log has none; drop the session gap option")
    ordered = events.sort(["user_id", "timestamp", "event_index"])
    gap = pl.col("timestamp").diff().over("user_id")
    session_number = (gap > gap_seconds).fill_null(False).cast(pl.Int64).cum_sum().over("user_id")
    return ordered.with_columns(session_id=pl.col("user_id") + pl.lit("#") + session_number.cast(pl.String)).sort(
        "event_index"
    )


def build_sequences(events: pl.DataFrame, *, key: str = "user_id", max_events: int | None = None) -> pl.DataFrame:
    """Group events into one time-ordered row per ``key`` (a user, or a session).

    ``max_events`` keeps only the most recent events of each sequence; use it to bound memory on logs with
    very long histories (the model input is truncated again, per example, at encoding time).
    """
    if max_events is not None and max_events < 1:
        raise ValueError(f"max_events must be at least 1, got {max_events}")
    # a numeric sort of the whole log, then a hash group-by (which keeps each group's rows in frame order) and a
    # sort of the far fewer sequence rows by key: about twice as fast as sorting every event by its key string
    ordered = events.sort(["timestamp", "event_index"], nulls_last=False)
    aggregations = [pl.col(c) for c in SEQUENCE_LIST_COLUMNS]
    sequences = ordered.group_by(key).agg(aggregations).sort(key)
    if max_events is not None:
        sequences = sequences.with_columns([pl.col(c).list.tail(max_events) for c in SEQUENCE_LIST_COLUMNS])
    if key != "user_id":
        sequences = sequences.rename({key: "user_id"})
    return sequences.select(["user_id", *SEQUENCE_LIST_COLUMNS])
