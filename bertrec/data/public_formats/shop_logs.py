"""E-commerce logs with native actions: RetailRocket, Taobao UserBehavior and the Tmall 2014 contest log."""

from __future__ import annotations

import polars as pl

from bertrec.data.public_formats._fields import (
    _LINE,
    PathLike,
    _bad_time,
    _check_values,
    _date_seconds,
    _divide,
    _finish,
    _first_line,
    _header_fields,
    _numbers,
    _pick,
    _read_fields,
    _require,
    _require_header,
)
from bertrec.data.schema import EventDataError

TMALL_DEFAULT_YEAR = 2013  # the public file was committed in March 2014, so its April-August dates are 2013
TMALL_TYPES = {"0": "click", "1": "buy", "2": "fav", "3": "cart"}
TAOBAO_BEHAVIORS = ("pv", "buy", "cart", "fav")
RETAILROCKET_EVENTS = ("view", "addtocart", "transaction")


def read_retailrocket(path: PathLike) -> pl.DataFrame:
    """RetailRocket ``events.csv``: ``timestamp,visitorid,event,itemid,transactionid``.

    Visitors are users, ``event`` (view, addtocart, transaction) is the action, the timestamp is in milliseconds
    and becomes seconds; ``transactionid`` is kept as a column. A folder containing events.csv is accepted.
    """
    path = _pick(path, ("events.csv",), "retailrocket")
    layout = "'timestamp,visitorid,event,itemid,transactionid' (RetailRocket events.csv)"
    header = _header_fields(path, ",", "retailrocket")
    _require_header(path, header, ("timestamp", "visitorid", "event", "itemid"), "retailrocket", layout)
    frame = _read_fields(path, header, separator=",", skip_header=True, reader="retailrocket", layout=layout)
    _require(frame, path, ("timestamp", "visitorid", "event", "itemid"), layout)
    _check_values(frame, path, "event", RETAILROCKET_EVENTS, "Is this RetailRocket's events.csv?")
    milliseconds = _numbers(frame, path, "timestamp", "RetailRocket times are unix milliseconds.")
    events = frame.select(
        _LINE,
        pl.col("visitorid").alias("user_id"),
        pl.col("itemid").alias("item_id"),
        pl.col("event").alias("action"),
        _divide(milliseconds, 1000.0).alias("timestamp"),
        *[pl.col(name) for name in header if name not in ("timestamp", "visitorid", "event", "itemid")],
    )
    return _finish(events, path)


def read_taobao(path: PathLike) -> pl.DataFrame:
    """Taobao ``UserBehavior.csv``: ``user_id,item_id,category_id,behavior_type,timestamp``, no header.

    ``behavior_type`` (pv, cart, fav, buy) is the action as it is; the timestamp is unix seconds, kept as given
    (the public file has some times outside its documented 2017-11-25..12-03 window; filter them if you need
    to); ``category_id`` is kept as a column. A header line starting with ``user_id`` is skipped.
    """
    path = _pick(path, ("UserBehavior.csv",), "taobao")
    layout = "'user_id,item_id,category_id,behavior_type,timestamp' (Taobao UserBehavior.csv)"
    names = ("user_id", "item_id", "category_id", "behavior_type", "timestamp")
    header = _first_line(path, "taobao").split(",")[0].strip().lower() in ("user_id", "userid", "user")
    frame = _read_fields(path, names, separator=",", skip_header=header, reader="taobao", layout=layout)
    _require(frame, path, names, layout)
    _check_values(frame, path, "behavior_type", TAOBAO_BEHAVIORS, "Is this Taobao's UserBehavior.csv?")
    timestamp = _numbers(frame, path, "timestamp", "Taobao times are unix seconds.")
    events = frame.select(
        _LINE, "user_id", "item_id", pl.col("behavior_type").alias("action"), timestamp, "category_id"
    )
    return _finish(events, path)


def read_tmall(path: PathLike, *, year: int = TMALL_DEFAULT_YEAR) -> pl.DataFrame:
    """Tmall 2014 contest log ``t_alibaba_data.csv``: ``user_id,brand_id,type,visit_datetime``.

    Brands are the items; ``type`` 0/1/2/3 becomes click/buy/fav/cart. ``visit_datetime`` is ``M-D`` with no year
    and no time of day: the time is 00:00 UTC of that day in ``year``, 2013 by default (the public file was
    committed in March 2014, so its April-August dates cannot be 2014). Events of one day keep the file order
    through ``event_index``. The header line is optional.
    """
    if isinstance(year, bool) or not isinstance(year, int) or not 1970 <= year <= 2100:
        raise EventDataError(f"year must be an integer year such as 2013, got {year!r}")
    path = _pick(path, ("t_alibaba_data.csv",), "tmall")
    layout = "'user_id,brand_id,type,visit_datetime' with dates as M-D (Tmall t_alibaba_data.csv)"
    names = ("user_id", "brand_id", "type", "visit_datetime")
    header = _first_line(path, "tmall").split(",")[0].strip().lower() in ("user_id", "userid", "user")
    frame = _read_fields(path, names, separator=",", skip_header=header, reader="tmall", layout=layout)
    _require(frame, path, names, layout)
    types = frame["type"].str.strip_chars()
    _check_values(
        frame.with_columns(types), path, "type", list(TMALL_TYPES), "0 click, 1 buy, 2 fav, 3 cart in the Tmall log."
    )
    day = frame["visit_datetime"].str.strip_chars()
    month_day = day.str.contains(r"^\d{1,2}-\d{1,2}$")
    seconds = pl.select(pl.when(month_day).then(_date_seconds(f"{year}-" + day))).to_series()
    _bad_time(frame, path, "visit_datetime", seconds, f"a month-day date such as '6-4' that exists in {year}")
    events = pl.DataFrame(
        [
            frame[_LINE],
            frame["user_id"],
            frame["brand_id"].alias("item_id"),
            types.replace_strict(TMALL_TYPES).alias("action"),
            seconds.alias("timestamp"),
        ]
    )
    return _finish(events, path)
