"""Amazon reviews (2014 / 2018 / 2023 releases: JSON lines or ratings-only CSV) as canonical events."""

from __future__ import annotations

import ast
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from bertrec.data.public_formats._fields import (
    _LINE,
    _READER_HINT,
    PathLike,
    _divide,
    _existing,
    _fail,
    _finish,
    _first_line,
    _header_fields,
    _numbers,
    _read_fields,
    _require,
    _require_header,
    _show,
)
from bertrec.data.public_formats._ratings import _check_rating_options, _rating_actions
from bertrec.data.schema import EventDataError

logger = logging.getLogger("bertrec")

AMAZON_CSV_LAYOUTS = ("auto", "user_item", "item_user")
_ASIN = r"^[0-9A-Z]{10}$"  # Amazon item ids are 10 characters; reviewer ids are longer (12 to 28)


def read_amazon(
    path: PathLike,
    *,
    rating_actions: str = "rate",
    like_threshold: float = 4.0,
    item_field: str = "parent_asin",
    csv_layout: str = "auto",
) -> pl.DataFrame:
    """Amazon reviews, 2014 / 2018 / 2023 releases; every review is an event, the action comes from its rating.

    - JSON lines (``.json``, ``.jsonl``, optionally ``.gz``): 2014 and 2018 reviews (``reviewerID``, ``asin``,
      ``overall``, ``unixReviewTime`` in seconds; 2018's ``verified`` is kept), or 2023 reviews (``user_id``,
      ``parent_asin``/``asin``, ``rating``, ``timestamp`` in MILLISECONDS; ``verified_purchase`` is kept). The
      2023 item is ``item_field`` (``parent_asin`` by default, the product rather than its variant; ``"asin"``
      for variants, the other one is kept as a column). Old files written as Python dicts (single quotes) are
      parsed line by line with ``ast.literal_eval`` (slower, logged).
    - Ratings-only CSV without a header: 2014 is ``user,item,rating,timestamp``, 2018 is ``item,user,rating,
      timestamp``. ``csv_layout`` ("user_item", "item_user") says which; "auto" takes the column whose values look
      like 10-character ASINs as the item. 2023 benchmark CSVs with the header ``user_id,parent_asin,rating,
      timestamp`` (milliseconds) are read by name.

    ``rating_actions`` / ``like_threshold`` work as in ``read_movielens``; the rating is kept as ``rating``.
    """
    _check_rating_options(rating_actions, like_threshold)
    if csv_layout not in AMAZON_CSV_LAYOUTS:
        raise EventDataError(f"csv_layout must be one of {list(AMAZON_CSV_LAYOUTS)}, got {csv_layout!r}")
    if item_field not in ("parent_asin", "asin"):
        raise EventDataError(f"item_field must be 'parent_asin' or 'asin', got {item_field!r}")
    path = _existing(path)
    if path.is_dir():
        raise EventDataError(f"{path}: reader='amazon' reads one file; pass the reviews or ratings file itself")
    first = _first_line(path, "amazon").strip()
    if first.startswith("{"):
        frame, unit, native = _amazon_json(path, first, item_field)
    else:
        frame, unit, native = _amazon_csv(path, first, item_field, csv_layout)
    hint = "Amazon ratings are numbers from 1 to 5; check that this is an Amazon reviews or ratings file."
    rating = _numbers(frame, path, native["rating"], hint)
    timestamp = _numbers(frame, path, native["timestamp"], "Amazon review times are unix numbers.")
    extras = [frame[name] for name in frame.columns if name not in (_LINE, *native.values())]
    events = pl.DataFrame(
        [
            frame[_LINE],
            frame[native["user_id"]].alias("user_id"),
            frame[native["item_id"]].alias("item_id"),
            _rating_actions(rating, rating_actions, like_threshold),
            timestamp.alias("timestamp"),
            rating.alias("rating"),
            *extras,
        ]
    )
    if unit == "ms":
        events = events.with_columns(_divide(events["timestamp"], 1000.0))
    return _finish(events, path)


def _amazon_json(path: Path, first: str, item_field: str) -> tuple[pl.DataFrame, str, dict[str, str]]:
    """The review lines' fields as strings under their own names, the time unit, and canonical -> field name."""
    record, python_style = _parse_record(first)
    if not isinstance(record, dict):
        raise _fail(path, 1, None, f"is not a JSON object; expected one Amazon review per line. {_READER_HINT}")
    if "reviewerID" in record:  # 2014 and 2018
        native = {"user_id": "reviewerID", "item_id": "asin", "rating": "overall", "timestamp": "unixReviewTime"}
        fields = [*native.values(), *(["verified"] if "verified" in record else [])]
        unit, layout = "s", "a 2014/2018 Amazon review (reviewerID, asin, overall, unixReviewTime)"
    elif "user_id" in record and ("parent_asin" in record or "asin" in record):  # 2023
        other = "asin" if item_field == "parent_asin" else "parent_asin"
        native = {"user_id": "user_id", "item_id": item_field, "rating": "rating", "timestamp": "timestamp"}
        fields = [*native.values(), *(name for name in (other, "verified_purchase") if name in record)]
        unit, layout = "ms", f"a 2023 Amazon review (user_id, {item_field}, rating, timestamp in ms)"
    else:
        raise _fail(
            path,
            1,
            None,
            f"a JSON object with keys {sorted(record)[:12]} is not an Amazon review (2014/2018: reviewerID, asin, "
            f"overall, unixReviewTime; 2023: user_id, parent_asin, rating, timestamp). {_READER_HINT}",
        )
    lines = _read_fields(path, ("line",), separator="\x00", skip_header=False, reader="amazon", layout="JSON lines")
    decoded = None
    if not python_style:
        try:
            decoded = lines["line"].str.json_decode(pl.Struct({name: pl.String for name in fields})).struct.unnest()
        except pl.exceptions.PolarsError:
            python_style = _find_bad_json(path, lines, fields)  # raises for a broken line; True for dict style
    if decoded is None:
        logger.warning("%s: Python-dict style lines (single quotes): parsing them one by one, which is slow", path)
        decoded = _literal_records(path, lines, fields)
    frame = pl.DataFrame([lines[_LINE], *(decoded[name] for name in fields)])
    _require(frame, path, list(native.values()), layout)
    for name in ("verified", "verified_purchase"):
        if name in frame.columns:
            flag = pl.col(name).str.to_lowercase()
            frame = frame.with_columns(pl.when(flag == "true").then(True).when(flag == "false").then(False).alias(name))
    return frame, unit, native


def _parse_record(text: str) -> tuple[Any, bool]:
    """One review line: JSON, or a Python dict literal (old Amazon files); the flag says which."""
    try:
        return json.loads(text), False
    except ValueError:
        pass
    try:
        return ast.literal_eval(text.strip()), True
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None, False


def _find_bad_json(path: Path, lines: pl.DataFrame, fields: Sequence[str]) -> bool:
    """After polars refused the lines: the first broken line (an error) or True when all are Python dicts."""
    python_style = False
    for line_number, text in zip(lines[_LINE], lines["line"]):
        record, literal = _parse_record(text)
        if not isinstance(record, dict):
            raise _fail(
                path,
                line_number,
                None,
                f"{_show(text)} is not a JSON object (nor a Python dict); each line must be one review. "
                "The file may be truncated or not an Amazon reviews file.",
            )
        python_style = python_style or literal
        for name in fields:
            if isinstance(record.get(name), (dict, list)):
                raise _fail(path, line_number, name, f"{_show(record[name])} is not a single value; {_READER_HINT}")
    if not python_style:  # every line is valid JSON with scalar fields, yet polars failed: report, do not guess
        raise EventDataError(f"{path}: polars could not decode the JSON lines; check the file encoding and format")
    return True


def _literal_records(path: Path, lines: pl.DataFrame, fields: Sequence[str]) -> pl.DataFrame:
    values: dict[str, list[str | None]] = {name: [] for name in fields}
    for line_number, text in zip(lines[_LINE], lines["line"]):
        record, _ = _parse_record(text)
        if not isinstance(record, dict):
            raise _fail(path, line_number, None, f"{_show(text)} is not a Python dict or JSON object")
        for name in fields:
            value = record.get(name)
            values[name].append(
                None if value is None else str(value).lower() if isinstance(value, bool) else str(value)
            )
    return pl.DataFrame(values, schema={name: pl.String for name in fields})


def _amazon_csv(path: Path, first: str, item_field: str, csv_layout: str) -> tuple[pl.DataFrame, str, dict[str, str]]:
    if first.lower().startswith("user_id,"):  # 2023 benchmark files: header, times in milliseconds
        header = _header_fields(path, ",", "amazon")
        layout = f"the 2023 header 'user_id,{item_field},rating,timestamp'"
        _require_header(path, header, ("user_id", item_field, "rating", "timestamp"), "amazon", layout)
        frame = _read_fields(path, header, separator=",", skip_header=True, reader="amazon", layout=layout, quote='"')
        native = {"user_id": "user_id", "item_id": item_field, "rating": "rating", "timestamp": "timestamp"}
        _require(frame, path, list(native.values()), layout)
        return frame, "ms", native
    layout = "an Amazon ratings-only CSV (4 fields: user,item,rating,timestamp or item,user,rating,timestamp)"
    names = ("field_1", "field_2", "rating", "timestamp")
    frame = _read_fields(path, names, separator=",", skip_header=False, reader="amazon", layout=layout, quote='"')
    _require(frame, path, names, layout)
    if csv_layout == "auto":
        sample = frame.head(10_000)
        first_score = sample["field_1"].str.contains(_ASIN).mean()
        second_score = sample["field_2"].str.contains(_ASIN).mean()
        if abs(first_score - second_score) < 0.5:
            raise _fail(
                path,
                None,
                None,
                "cannot tell which of the first two columns is the item (ASINs are 10 characters); pass "
                "csv_layout='user_item' (2014 ratings_*.csv) or 'item_user' (2018 ratings-only .csv)",
            )
        csv_layout = "item_user" if first_score > second_score else "user_item"
    user, item = ("field_1", "field_2") if csv_layout == "user_item" else ("field_2", "field_1")
    return frame, "s", {"user_id": user, "item_id": item, "rating": "rating", "timestamp": "timestamp"}
