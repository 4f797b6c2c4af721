"""Readers for the native files of public recommendation datasets, each giving the canonical events table.

Every reader maps the dataset's own signals onto ``user_id``, ``item_id``, ``action`` and ``timestamp`` (see
``bertrec.data.schema``) and then goes through the same canonicalisation as ``read_events``, so ids are exact
strings, ``event_index`` is the order of the rows in the file(s) (the stable tie-break for equal times) and the
validation is shared. Files are read by polars as text, whole columns at a time; a line that does not fit the
format raises ``EventDataError`` naming the file, the 1-based line (header counted) and the column, with the fix.

``read_public(path, reader=...)`` dispatches by name; each reader is also a public function. What each one does
with its dataset (which file, which column becomes what, which assumptions) is documented in docs/datasets.md.
"""

from __future__ import annotations

import ast
import difflib
import gzip
import inspect
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from bertrec.data.readers import _canonicalize, read_events
from bertrec.data.schema import DEFAULT_ACTION, ColumnMapping, EventDataError

logger = logging.getLogger("bertrec")

READERS = (
    "movielens",
    "recbole",
    "sequence_text",
    "amazon",
    "retailrocket",
    "taobao",
    "tmall",
    "yoochoose",
    "diginetica",
)
RATING_ACTIONS = ("rate", "like", "none")
TMALL_DEFAULT_YEAR = 2013  # the public file was committed in March 2014, so its April-August dates are 2013
TMALL_TYPES = {"0": "click", "1": "buy", "2": "fav", "3": "cart"}
TAOBAO_BEHAVIORS = ("pv", "buy", "cart", "fav")
RETAILROCKET_EVENTS = ("view", "addtocart", "transaction")
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")
AMAZON_CSV_LAYOUTS = ("auto", "user_item", "item_user")

_LINE = "__line"  # the 1-based line of each row, carried through validation and dropped before canonicalising
_EXTRA = "__extra"  # catches fields beyond the expected ones, so a wrong file fails instead of being truncated
_ASIN = r"^[0-9A-Z]{10}$"  # Amazon item ids are 10 characters; reviewer ids are longer (12 to 28)
PathLike = str | os.PathLike


# ----------------------------------------------------------------------------------------------------------------
# shared helpers


def _fail(path: PathLike, line: int | None, column: str | None, message: str) -> EventDataError:
    """The error for one place in a file: ``file: line N, column 'c': message`` (parts left out when unknown)."""
    place = str(path)
    if line is not None:
        place += f": line {line}"
    if column is not None:
        place += f", column {column!r}" if line is not None else f": column {column!r}"
    return EventDataError(f"{place}: {message}")


def _show(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _existing(path: PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return path


def _pick(path: PathLike, names: Sequence[str], reader: str) -> Path:
    """The file itself, or the first of ``names`` (or ``name.gz``) inside a folder."""
    path = _existing(path)
    if not path.is_dir():
        return path
    for name in names:
        for candidate in (path / name, path / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise EventDataError(
        f"{path}: this folder has none of {list(names)}, the files reader={reader!r} reads; pass the file itself"
    )


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else path.open("rb")


def _first_line(path: Path, reader: str) -> str:
    """The first non-blank line (decoded leniently: it is only inspected, never turned into ids)."""
    if path.is_file() and path.stat().st_size == 0:
        raise EventDataError(f"{path}: the file is empty, so it has no events. Check the path.")
    try:
        with _open_binary(path) as handle:
            for raw in handle:
                line = raw.decode("utf-8", errors="replace").strip("\r\n")
                if line.strip():
                    return line
    except (OSError, EOFError) as error:
        raise EventDataError(f"{path}: cannot read it ({error}); check that it is a complete {reader} file") from error
    raise EventDataError(f"{path}: the file has only blank lines, so it has no events. Check the path.")


def _read_fields(
    path: Path,
    names: Sequence[str],
    *,
    separator: str,
    skip_header: bool,
    reader: str,
    layout: str,
    quote: str | None = None,
) -> pl.DataFrame:
    """A delimited text file as string columns ``names`` plus ``_LINE``; blank lines dropped, extra fields refused.

    Missing trailing fields read as null (callers check the columns they need); a line with more fields than
    ``names`` raises, because a file with a different layout must not be read as a truncated version of this one.
    """
    schema = {name: pl.String for name in (*names, _EXTRA)}
    try:
        frame = pl.read_csv(
            path,
            has_header=False,
            skip_rows=1 if skip_header else 0,
            schema=schema,
            separator=separator,
            quote_char=quote,
            truncate_ragged_lines=True,
            missing_columns="insert",
            encoding="utf8",
        )
    except (pl.exceptions.PolarsError, OSError, UnicodeError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "utf-8" in detail.lower() or "utf8" in detail.lower():
            detail = "it is not valid UTF-8; re-encode it, e.g. iconv -f latin1 -t utf-8"
        raise EventDataError(
            f"{path}: cannot read it as {layout} ({detail}); check that this is a {reader} file"
        ) from error
    first = 2 if skip_header else 1
    frame = frame.with_columns(pl.int_range(first, first + frame.height, dtype=pl.Int64).alias(_LINE))
    frame = frame.filter(~pl.all_horizontal(pl.col(name).is_null() for name in (*names, _EXTRA)))
    extra = frame[_EXTRA].is_not_null()
    if extra.any():
        row = int(extra.arg_true()[0])
        raise _fail(
            path,
            int(frame[_LINE][row]),
            None,
            f"has more than the {len(names)} {_separator_name(separator)}-separated fields of {layout}; "
            f"this is not a {reader} file in that layout. {_READER_HINT}",
        )
    return frame.drop(_EXTRA)


def _separator_name(separator: str) -> str:
    return {"\t": "tab", ",": "comma", ";": "semicolon", ":": "'::'", " ": "space"}.get(separator, repr(separator))


_READER_HINT = (
    "Pick the reader for the file (docs/datasets.md lists them), or use the generic reader (read_events, or no "
    "--reader) for your own csv/tsv/parquet/jsonl logs."
)


def _header_fields(path: Path, separator: str, reader: str) -> list[str]:
    fields = [name.strip().strip('"').lstrip("\ufeff") for name in _first_line(path, reader).split(separator)]
    if len(set(fields)) != len(fields):
        raise _fail(path, 1, None, f"the header {fields} repeats a column name; fix the header")
    return fields


def _require_header(path: Path, fields: Sequence[str], required: Sequence[str], reader: str, layout: str) -> None:
    missing = [name for name in required if name not in fields]
    if missing:
        close = {name: difflib.get_close_matches(name, list(fields), n=1, cutoff=0.6) for name in missing}
        guesses = "; ".join(f"did you mean {match[0]!r} for {name!r}?" for name, match in close.items() if match)
        others = [sep for sep in ("\t", ";", ",") if len(fields) == 1 and sep in fields[0]]
        if others:
            guesses = f"The header is one field, so the file looks {_separator_name(others[0])}-separated."
        raise _fail(
            path,
            1,
            missing[0],
            f"the header {list(fields)} lacks {missing}; reader={reader!r} expects {layout}. "
            f"{guesses + ' ' if guesses else ''}{_READER_HINT}",
        )


def _require(frame: pl.DataFrame, path: Path, columns: Sequence[str], layout: str) -> None:
    """Every row has a value in each of ``columns``; else the first gap is an error with the expected layout."""
    for name in columns:
        missing = frame[name].is_null()
        if missing.any():
            row = int(missing.arg_true()[0])
            raise _fail(
                path,
                int(frame[_LINE][row]),
                name,
                f"missing value ({int(missing.sum())} row(s) like this); every line must be {layout}. "
                "Check the separator, or whether this is the right file for the reader.",
            )


def _numbers(frame: pl.DataFrame, path: Path, column: str, hint: str) -> pl.Series:
    """A string column as finite Float64 (nulls stay null); a value that is not a number names its line."""
    text = frame[column]
    values = text.str.strip_chars().cast(pl.Float64, strict=False)
    bad = text.is_not_null() & (values.is_null() | ~values.is_finite().fill_null(True))
    if bad.any():
        row = int(bad.arg_true()[0])
        raise _fail(
            path,
            int(frame[_LINE][row]),
            column,
            f"{_show(text[row])} is not a number ({int(bad.sum())} row(s) like this); {hint}",
        )
    return values.alias(column)


def _check_values(frame: pl.DataFrame, path: Path, column: str, allowed: Sequence[str], hint: str) -> None:
    bad = frame[column].is_not_null() & ~frame[column].is_in(list(allowed))
    if bad.any():
        row = int(bad.arg_true()[0])
        raise _fail(
            path,
            int(frame[_LINE][row]),
            column,
            f"unknown value {_show(frame[column][row])} ({int(bad.sum())} row(s) like this); expected one of "
            f"{list(allowed)}. {hint}",
        )


def _check_rating_options(rating_actions: str, like_threshold: float) -> None:
    if rating_actions not in RATING_ACTIONS:
        raise EventDataError(f"rating_actions must be one of {list(RATING_ACTIONS)}, got {rating_actions!r}")
    if isinstance(like_threshold, bool) or not isinstance(like_threshold, (int, float)) or math.isnan(like_threshold):
        raise EventDataError(f"like_threshold must be a number (e.g. 4.0), got {like_threshold!r}")


def _rating_actions(rating: pl.Series, mode: str, threshold: float) -> pl.Series:
    """Actions from ratings: ``rate_<value>`` ("rate": rate_4, rate_3.5), like/dislike ("like"), or one action."""
    if mode == "none":
        return pl.repeat(DEFAULT_ACTION, rating.len(), dtype=pl.String, eager=True).alias("action")
    if mode == "like":
        liked = pl.when(rating >= threshold).then(pl.lit("like")).otherwise(pl.lit("dislike"))
        return pl.select(liked.alias("action")).to_series()
    whole = rating.round(0)
    text = pl.select(
        pl.when(rating == whole).then(whole.cast(pl.Int64).cast(pl.String)).otherwise(rating.cast(pl.String))
    ).to_series()
    return ("rate_" + text).alias("action")


def _finish(frame: pl.DataFrame, path: Path | str, *, has_time: bool = True, unit: str = "s") -> pl.DataFrame:
    """The reader's frame (user_id, item_id, action, timestamp in seconds, extras) through read_events' path."""
    if frame.height == 0:
        raise EventDataError(f"{path}: the file has no events (0 data lines). Check that this is the right file.")
    frame = frame.drop(_LINE, strict=False)
    mapping = ColumnMapping(
        user="user_id", item="item_id", action="action", timestamp="timestamp" if has_time else None
    )
    return _canonicalize(frame, mapping, str(path), unit)


def _divide(values: pl.Series, by: float) -> pl.Series:
    """``values / by`` correctly rounded (a Series divided by a Python float multiplies by the reciprocal, which
    can be one unit in the last place off: 1433221999827 ms would become 1433221999.8270001 s)."""
    divisor = pl.repeat(by, values.len(), dtype=pl.Float64, eager=True)  # element-wise division is exact
    return (values.cast(pl.Float64) / divisor).alias(values.name)


def _date_seconds(text: pl.Series) -> pl.Series:
    """``YYYY-M-D`` strings as unix seconds at 00:00 UTC; null where the date does not exist."""
    dates = text.str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
    return (dates.dt.epoch("s").cast(pl.Float64)).alias(text.name)


def _bad_time(frame: pl.DataFrame, path: Path, column: str, seconds: pl.Series, expected: str) -> None:
    bad = frame[column].is_not_null() & seconds.is_null()
    if bad.any():
        row = int(bad.arg_true()[0])
        raise _fail(
            path,
            int(frame[_LINE][row]),
            column,
            f"cannot parse the time {_show(frame[column][row])} ({int(bad.sum())} row(s) like this); expected "
            f"{expected}. Check that this is the right file for the reader.",
        )


def _paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [_existing(paths)]
    result = [_existing(path) for path in paths]
    if not result:
        raise EventDataError("no files given; pass a file, a folder or a list of files")
    return result


# ----------------------------------------------------------------------------------------------------------------
# MovieLens


def read_movielens(path: PathLike, *, rating_actions: str = "rate", like_threshold: float = 4.0) -> pl.DataFrame:
    """MovieLens ratings: ``u.data`` (100K), ``ratings.dat`` (1M/10M) or ``ratings.csv`` (20M/25M/32M/latest).

    The variant is told from the first line (``::`` separators, the ``userId,movieId,...`` header, or tabs); a
    folder is searched for ratings.csv, ratings.dat, then u.data. Users and movies keep their ids, the time is
    the unix-seconds timestamp and the rating is kept as a ``rating`` column. The action comes from the rating:
    ``rating_actions="rate"`` gives ``rate_4`` / ``rate_3.5``; ``"like"`` gives ``like`` when the rating is at
    least ``like_threshold``, else ``dislike``; ``"none"`` gives every event the default action.
    """
    _check_rating_options(rating_actions, like_threshold)
    path = _pick(path, ("ratings.csv", "ratings.dat", "u.data"), "movielens")
    first = _first_line(path, "movielens")
    hint = "expected a MovieLens ratings file (user, movie, rating, timestamp). " + _READER_HINT
    if "::" in first:
        layout = "'user::movie::rating::timestamp' (ratings.dat)"
        names = ("user_id", "_sep1", "item_id", "_sep2", "rating", "_sep3", "timestamp")
        frame = _read_fields(path, names, separator=":", skip_header=False, reader="movielens", layout=layout)
        single = frame["_sep1"].is_not_null() | frame["_sep2"].is_not_null() | frame["_sep3"].is_not_null()
        if single.any():
            row = int(single.arg_true()[0])
            raise _fail(path, int(frame[_LINE][row]), None, f"is not '::'-separated; expected {layout}")
    elif first.replace('"', "").lower().startswith("userid,movieid"):
        layout = "'userId,movieId,rating,timestamp' (ratings.csv)"
        header = _header_fields(path, ",", "movielens")
        if header != ["userId", "movieId", "rating", "timestamp"]:
            raise _fail(path, 1, None, f"the header {header} is not {layout}; {hint}")
        names = ("user_id", "item_id", "rating", "timestamp")
        frame = _read_fields(path, names, separator=",", skip_header=True, reader="movielens", layout=layout, quote='"')
    elif "\t" in first:
        layout = "'user<TAB>item<TAB>rating<TAB>timestamp' (u.data)"
        names = ("user_id", "item_id", "rating", "timestamp")
        frame = _read_fields(path, names, separator="\t", skip_header=False, reader="movielens", layout=layout)
    else:
        raise _fail(
            path,
            1,
            None,
            f"{_show(first)} is not a MovieLens ratings line: expected u.data (tab-separated), ratings.dat ('::') "
            f"or ratings.csv (header userId,movieId,rating,timestamp). {_READER_HINT}",
        )
    _require(frame, path, ("user_id", "item_id", "rating", "timestamp"), layout)
    rating = _numbers(frame, path, "rating", hint)
    timestamp = _numbers(frame, path, "timestamp", hint)
    frame = pl.DataFrame(
        [
            frame[_LINE],
            frame["user_id"].str.strip_chars(),
            frame["item_id"].str.strip_chars(),
            _rating_actions(rating, rating_actions, like_threshold),
            timestamp,
            rating,
        ]
    )
    return _finish(frame, path)


# ----------------------------------------------------------------------------------------------------------------
# RecBole atomic files


def read_recbole(
    path: PathLike,
    *,
    user_field: str | None = None,
    item_field: str = "item_id",
    timestamp_field: str = "timestamp",
    rating_field: str = "rating",
    action_field: str | None = None,
    rating_actions: str = "rate",
    like_threshold: float = 4.0,
    timestamp_unit: str = "auto",
) -> pl.DataFrame:
    """A RecBole atomic ``.inter`` file: tab-separated, header fields ``name:type`` (token, float, ..._seq).

    Field names are used without their ``:type``. The user is ``user_field``, by default ``user_id``, or
    ``session_id`` when there is no user field (session datasets); the item is ``item_field``. The time is
    ``timestamp_field`` when present (``timestamp_unit``: auto, s or ms), else there is none and the file order is
    the order. The action is ``action_field`` (default: a field named ``action`` if any), else it comes from the
    ``rating`` field as in ``read_movielens`` (``rating_actions``), else it is the default action. Other fields
    are kept as extra columns: floats as Float64, tokens as strings. A folder with one ``.inter`` file is accepted.
    """
    _check_rating_options(rating_actions, like_threshold)
    path = _existing(path)
    if path.is_dir():
        found = sorted(path.glob("*.inter"))
        if len(found) != 1:
            raise EventDataError(f"{path}: expected one .inter file in this folder, found {[p.name for p in found]}")
        path = found[0]
    layout = "a RecBole atomic file (tab-separated, header 'user_id:token<TAB>item_id:token<TAB>...')"
    names, types = [], {}
    for field in _header_fields(path, "\t", "recbole"):
        name, _, kind = field.rpartition(":")
        if not name or kind not in RECBOLE_TYPES:
            raise _fail(
                path,
                1,
                field,
                f"is not a RecBole 'name:type' header field (types {list(RECBOLE_TYPES)}); expected {layout}. "
                f"{_READER_HINT}",
            )
        names.append(name)
        types[name] = kind
    user = user_field or next((name for name in ("user_id", "session_id") if name in names), None)
    if user is None:
        raise _fail(path, 1, None, f"no user_id or session_id field in {names}; pass user_field= to name the user")
    action = action_field or ("action" if "action" in names else None)
    rating = rating_field if rating_field in names and action is None else None
    timestamp = timestamp_field if timestamp_field in names else None
    required = [user, item_field] + [name for name in (action_field,) if name]
    _require_header(path, names, required, "recbole", layout)
    frame = _read_fields(path, names, separator="\t", skip_header=True, reader="recbole", layout=layout)
    _require(frame, path, [user, item_field] + [name for name in (action, timestamp, rating) if name], layout)
    hint = f"the header declares it as {{}}; expected {layout}"
    columns = [frame[_LINE], frame[user].alias("user_id"), frame[item_field].alias("item_id")]
    if action is not None:
        columns.append(frame[action].alias("action"))
    elif rating is not None:
        values = _numbers(frame, path, rating, hint.format("float"))
        columns.append(_rating_actions(values, rating_actions, like_threshold))
    else:
        columns.append(pl.repeat(DEFAULT_ACTION, frame.height, dtype=pl.String, eager=True).alias("action"))
    if timestamp is not None:
        columns.append(_numbers(frame, path, timestamp, hint.format(types[timestamp])).alias("timestamp"))
    used = {user, item_field, action, timestamp}
    for name in names:
        if name in used:
            continue
        column = _numbers(frame, path, name, hint.format("float")) if types[name] == "float" else frame[name]
        clash = name in ("user_id", "item_id", "action", "timestamp", "event_index")
        columns.append(column.alias(f"recbole_{name}" if clash else name))
    return _finish(pl.DataFrame(columns), path, has_time=timestamp is not None, unit=timestamp_unit)


# ----------------------------------------------------------------------------------------------------------------
# SASRec / BERT4Rec sequence text


def read_sequence_text(path: PathLike, *, one_line_per_user: bool = False) -> pl.DataFrame:
    """The ``user item`` text of SASRec/BERT4Rec data (e.g. beauty.txt): whitespace-separated, no timestamps.

    One event per line, each user's lines already in time order, so the order is the file order (``event_index``)
    and ``timestamp`` is null. With ``one_line_per_user=True`` a line is ``user item item ...`` (S3-Rec style) and
    gives one event per item, in line order. Every event gets the default action.
    """
    path = _existing(path)
    if path.is_dir():
        raise EventDataError(f"{path}: reader='sequence_text' reads one file; pass the .txt file itself")
    layout = "'user item item ...'" if one_line_per_user else "'user item' (one event per line)"
    frame = _read_fields(path, ("line",), separator="\x00", skip_header=False, reader="sequence_text", layout=layout)
    tokens = frame["line"].str.strip_chars().str.replace_all(r"\s+", " ").str.split(" ")
    counts = tokens.list.len()
    bad = (counts < 2) if one_line_per_user else (counts != 2)
    if bad.any():
        row = int(bad.arg_true()[0])
        if one_line_per_user:
            advice = "each line needs a user and at least one item."
        elif counts[row] > 2:
            advice = (
                "if each line is 'user item item ...', pass one_line_per_user=True; for 'user item rating "
                "timestamp' files use reader='movielens' or the generic reader."
            )
        else:
            advice = "each line must be 'user item'."
        raise _fail(
            path,
            int(frame[_LINE][row]),
            "line",
            f"{_show(frame['line'][row])} has {counts[row]} whitespace-separated field(s), expected {layout}; {advice}",
        )
    events = pl.DataFrame([frame[_LINE], tokens.list.first().alias("user_id"), tokens.list.slice(1).alias("item_id")])
    events = events.explode("item_id")
    events = events.with_columns(pl.lit(DEFAULT_ACTION, dtype=pl.String).alias("action"))
    return _finish(events, path, has_time=False)


# ----------------------------------------------------------------------------------------------------------------
# Amazon reviews


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


# ----------------------------------------------------------------------------------------------------------------
# e-commerce logs with native actions


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


# ----------------------------------------------------------------------------------------------------------------
# session datasets: sessions are the users


def read_yoochoose(paths: PathLike | Sequence[PathLike]) -> pl.DataFrame:
    """YooChoose (RecSys Challenge 2015): sessions are users.

    Reads ``yoochoose-clicks.dat`` (``session,timestamp,item,category``, ISO times, action ``click``, category
    kept), ``yoochoose-buys.dat`` (``session,timestamp,item,price,quantity``, action ``buy``, price and quantity
    kept as text) and session-rec's prepared TSV (header ``SessionId<TAB>ItemId<TAB>Time``, Time in unix seconds
    with a fraction, action ``click``; further columns kept). Pass one file, a list of files (e.g. clicks and
    buys; rows keep the order given) or a folder holding yoochoose-clicks.dat and/or yoochoose-buys.dat.
    """
    files = _paths(paths)
    if len(files) == 1 and files[0].is_dir():
        folder = files[0]
        files = [folder / name for name in ("yoochoose-clicks.dat", "yoochoose-buys.dat") if (folder / name).is_file()]
        if not files:
            raise EventDataError(f"{folder}: no yoochoose-clicks.dat or yoochoose-buys.dat here; pass the files")
    frames = [_yoochoose_file(path) for path in files]
    label = files[0] if len(files) == 1 else ", ".join(str(path) for path in files)
    return _finish(pl.concat(frames, how="diagonal_relaxed"), label)


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
    files = _paths(paths)
    if len(files) == 1 and files[0].is_dir():
        folder = files[0]
        files = [folder / name for name in ("train-item-views.csv", "train-purchases.csv") if (folder / name).is_file()]
        if not files:
            raise EventDataError(f"{folder}: no train-item-views.csv or train-purchases.csv here; pass the files")
    frames = [_diginetica_file(path) for path in files]
    label = files[0] if len(files) == 1 else ", ".join(str(path) for path in files)
    return _finish(pl.concat(frames, how="diagonal_relaxed"), label)


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


# ----------------------------------------------------------------------------------------------------------------
# one entry point

_FUNCTIONS: dict[str, Callable[..., pl.DataFrame]] = {
    "movielens": read_movielens,
    "recbole": read_recbole,
    "sequence_text": read_sequence_text,
    "amazon": read_amazon,
    "retailrocket": read_retailrocket,
    "taobao": read_taobao,
    "tmall": read_tmall,
    "yoochoose": read_yoochoose,
    "diginetica": read_diginetica,
}


def read_public(path: PathLike | Sequence[PathLike], reader: str | None = None, **options: Any) -> pl.DataFrame:
    """The canonical events of a public dataset's native file(s), read by the named ``reader``.

    ``reader`` is one of ``READERS``; ``None`` uses the generic ``read_events`` (options then go to it, e.g.
    ``columns=``). ``options`` are the reader's keyword options, e.g. ``rating_actions="like"`` for MovieLens or
    ``year=2013`` for Tmall; an option the reader does not have is an error listing the ones it has.
    """
    if reader is None:
        return read_events(path, **options)
    function = _FUNCTIONS.get(reader)
    if function is None:
        close = difflib.get_close_matches(str(reader), READERS, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise EventDataError(f"unknown reader {reader!r}; use one of {list(READERS)}.{hint}")
    allowed = [name for name, p in inspect.signature(function).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise EventDataError(f"reader={reader!r} has no option(s) {unknown}; its options are {allowed or 'none'}")
    return function(path, **options)
