"""Session datasets, where the sessions are the users: YooChoose (RecSys Challenge 2015) and Diginetica."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from bertrec.data.public_formats._fields import (
    _LINE,
    _READER_HINT,
    PathLike,
    _bad_time,
    _date_seconds,
    _divide,
    _fail,
    _first_line,
    _header_fields,
    _numbers,
    _read_each,
    _read_fields,
    _require,
    _require_header,
    _show,
)


def read_yoochoose(paths: PathLike | Sequence[PathLike]) -> pl.DataFrame:
    """YooChoose (RecSys Challenge 2015): sessions are users.

    Reads ``yoochoose-clicks.dat`` (``session,timestamp,item,category``, ISO times, action ``click``, category
    kept), ``yoochoose-buys.dat`` (``session,timestamp,item,price,quantity``, action ``buy``, price and quantity
    kept as text) and session-rec's prepared TSV (header ``SessionId<TAB>ItemId<TAB>Time``, Time in unix seconds
    with a fraction, action ``click``; further columns kept). Pass one file, a list of files (e.g. clicks and
    buys; rows keep the order given) or a folder holding yoochoose-clicks.dat and/or yoochoose-buys.dat.
    """
    return _read_each(paths, ("yoochoose-clicks.dat", "yoochoose-buys.dat"), _yoochoose_file)


def _yoochoose_file(path: Path) -> pl.DataFrame:
    first = _first_line(path, "yoochoose")
    if first.startswith("SessionId"):
        layout = "session-rec's prepared 'SessionId<TAB>ItemId<TAB>Time'"
        header = _header_fields(path, "\t", "yoochoose")
        _require_header(path, header, ("SessionId", "ItemId", "Time"), "yoochoose", layout)
        frame = _read_fields(path, header, separator="\t", skip_header=True, reader="yoochoose", layout=layout)
        _require(frame, path, ("SessionId", "ItemId", "Time"), layout)
        seconds = _numbers(frame, path, "Time", "session-rec Time is unix seconds, e.g. 1396437466.94.")
        return frame.select(
            _LINE,
            pl.col("SessionId").alias("user_id"),
            pl.col("ItemId").alias("item_id"),
            pl.lit("click").alias("action"),
            seconds.alias("timestamp"),
            *[pl.col(name) for name in header if name not in ("SessionId", "ItemId", "Time")],
        )
    fields = first.count(",") + 1
    if fields == 4:
        layout, action = "'session,timestamp,item,category' (yoochoose-clicks.dat)", "click"
        names, extras = ("session", "timestamp", "item", "category"), ["category"]
    elif fields == 5:
        layout, action = "'session,timestamp,item,price,quantity' (yoochoose-buys.dat)", "buy"
        names, extras = ("session", "timestamp", "item", "price", "quantity"), ["price", "quantity"]
    else:
        raise _fail(
            path,
            1,
            None,
            f"{_show(first)} has {fields} comma-separated fields; YooChoose clicks have 4 (session,timestamp,item,"
            f"category) and buys 5 (session,timestamp,item,price,quantity). {_READER_HINT}",
        )
    frame = _read_fields(path, names, separator=",", skip_header=False, reader="yoochoose", layout=layout)
    _require(frame, path, ("session", "timestamp", "item"), layout)
    parsed = (
        frame["timestamp"]
        .str.strip_chars()
        .str.to_datetime("%Y-%m-%dT%H:%M:%S%.fZ", strict=False, time_unit="us", time_zone="UTC")
    )
    seconds = _divide(parsed.dt.epoch("us").cast(pl.Float64), 1e6)
    _bad_time(frame, path, "timestamp", seconds, "an ISO time such as '2014-04-07T10:51:09.277Z'")
    return frame.select(
        _LINE,
        pl.col("session").alias("user_id"),
        pl.col("item").alias("item_id"),
        pl.lit(action).alias("action"),
        seconds.alias("timestamp"),
        *extras,
    )


def read_diginetica(paths: PathLike | Sequence[PathLike]) -> pl.DataFrame:
    """Diginetica (CIKM Cup 2016): ``train-item-views.csv`` and optionally ``train-purchases.csv``, ';'-separated.

    Sessions are users (``sessionId``; the mostly empty ``userId`` is kept as a column). Views
    (``sessionId;userId;itemId;timeframe;eventdate``) get the action ``view``, purchases
    (``sessionId;userId;timeframe;eventdate;ordernumber;itemId``) the action ``buy`` (``ordernumber`` kept). The
    time is ``eventdate`` at 00:00 UTC plus ``timeframe`` milliseconds (the time since the session started), so
    events of a session are ordered by timeframe. Pass one file, a list, or a folder holding them.
    """
    return _read_each(paths, ("train-item-views.csv", "train-purchases.csv"), _diginetica_file)


def _diginetica_file(path: Path) -> pl.DataFrame:
    header = _header_fields(path, ";", "diginetica")
    if "ordernumber" in header:
        layout, action = "'sessionId;userId;timeframe;eventdate;ordernumber;itemId' (train-purchases.csv)", "buy"
        required = ("sessionId", "userId", "timeframe", "eventdate", "ordernumber", "itemId")
    else:
        layout, action = "'sessionId;userId;itemId;timeframe;eventdate' (train-item-views.csv)", "view"
        required = ("sessionId", "userId", "itemId", "timeframe", "eventdate")
    _require_header(path, header, required, "diginetica", layout)
    frame = _read_fields(path, header, separator=";", skip_header=True, reader="diginetica", layout=layout)
    _require(frame, path, [name for name in required if name not in ("userId", "ordernumber")], layout)
    offset = _numbers(frame, path, "timeframe", "timeframe is milliseconds since the session started.")
    day = _date_seconds(frame["eventdate"])
    _bad_time(frame, path, "eventdate", day, "a date such as '2016-05-09'")
    extras = [name for name in ("userId", "ordernumber") if name in header]
    return frame.select(
        _LINE,
        pl.col("sessionId").alias("user_id"),
        pl.col("itemId").alias("item_id"),
        pl.lit(action).alias("action"),
        (day + _divide(offset, 1000.0)).alias("timestamp"),
        *extras,
    )
