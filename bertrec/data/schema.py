"""The canonical events table: the one contract between log readers and everything downstream.

Every reader produces, and every later step consumes, a ``polars.DataFrame`` whose first columns are
``CANONICAL_COLUMNS`` with the dtypes of ``CANONICAL_SCHEMA``, followed by any extra input columns unchanged:

- ``user_id``, ``item_id``: exact strings ("007" and "7" are different users), never inferred numbers.
- ``action``: string; ``DEFAULT_ACTION`` on every row when the log has no action column.
- ``timestamp``: Float64 unix seconds; all null when the log has no time (order is then file order).
- ``event_index``: Int64, the 0-based input row, assigned once at read time and never renumbered, because it
  is the stable tie-break for equal timestamps and the event identity the leakage checks rely on.

Input problems raise ``EventDataError`` (a ``ValueError``) whose message names the source, the column and the
1-based *data row* (the header line is not counted), the offending value, and what to do about it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import polars as pl

DEFAULT_ACTION = "interact"
CANONICAL_COLUMNS = ("user_id", "item_id", "action", "timestamp", "event_index")
CANONICAL_SCHEMA: dict[str, pl.DataType] = {
    "user_id": pl.String(),
    "item_id": pl.String(),
    "action": pl.String(),
    "timestamp": pl.Float64(),
    "event_index": pl.Int64(),
}
TIMESTAMP_UNITS = ("auto", "s", "ms")
# Numeric times whose median magnitude is above this are milliseconds: 1e11 s is the year 5138, 1e11 ms is 1973.
MS_THRESHOLD = 1e11
# Integers above 2**53 are not exact as floats, so a float id that large may already be a different id.
_MAX_EXACT_FLOAT = 2.0**53
_MAX_EXACT_FLOAT32 = 2.0**24
_ISO_FORMATS = (  # tried in order on the values still unparsed; "%#z" accepts Z, +01:00 and +0100
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%dT%H:%M%#z",
)
_TIMESTAMP_HELP = "expected unix seconds, unix milliseconds or an ISO-8601 string such as '2024-01-31T12:00:00Z'"


class EventDataError(ValueError):
    """A problem with the user's event log: the message says where (source, column, data row), what, and the fix.

    It subclasses ``ValueError`` so generic callers still catch it; the CLI prints it as one line, no traceback.
    """


def _show(value: object, limit: int = 60) -> str:
    """``repr`` of an offending value, shortened so one bad 10 kB cell cannot flood the message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _where(source: str, column: str, row: int | None = None) -> str:
    """The message prefix, e.g. ``events.csv: column 'ts', data row 17`` (rows are 1-based, header not counted)."""
    place = f"{source}: column {column!r}"
    return place if row is None else f"{place}, data row {row}"


@dataclass(frozen=True)
class ColumnMapping:
    """Which input columns hold the user, item, action and timestamp.

    ``action`` and ``timestamp`` default to ``None``, which means "use the column named ``action`` /
    ``timestamp`` if the input has one, else the log has none" (every event then gets ``DEFAULT_ACTION`` / a
    null time). A name given explicitly must exist: a typo should fail loudly, not silently drop the time.
    ``user`` and ``item`` are always required.
    """

    user: str = "user_id"
    item: str = "item_id"
    action: str | None = None
    timestamp: str | None = None

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value is None and field.name in ("action", "timestamp"):
                continue
            if not isinstance(value, str) or not value:
                raise EventDataError(f"ColumnMapping.{field.name} must be a non-empty column name, got {value!r}")

    @classmethod
    def coerce(cls, value: ColumnMapping | Mapping[str, str | None] | None) -> ColumnMapping:
        """Accept a mapping, a plain dict with the same keys (``{"user": "uid"}``), or ``None`` (the defaults)."""
        if value is None:
            return cls()
        if isinstance(value, ColumnMapping):
            return value
        if isinstance(value, Mapping):
            allowed = [field.name for field in fields(cls)]
            unknown = sorted(set(value) - set(allowed))
            if unknown:
                raise EventDataError(f"unknown column mapping keys {unknown}; use {allowed}, e.g. {{'user': 'uid'}}")
            return cls(**value)
        raise TypeError(f"columns must be a ColumnMapping, a dict or None, not {type(value).__name__}")

    def resolve(self, found: Sequence[str], source: str) -> dict[str, str | None]:
        """Map each canonical column to the input column that feeds it (``None``: not in the log).

        Raises ``EventDataError`` for a missing required or explicitly named column, listing the columns found
        and how to pass a mapping, and for input columns that would clash with a canonical name.
        """
        wanted = {
            "user_id": (self.user, "user"),
            "item_id": (self.item, "item"),
            "action": (self.action, "action"),
            "timestamp": (self.timestamp, "timestamp"),
        }
        resolved: dict[str, str | None] = {}
        for canonical, (name, role) in wanted.items():
            if name is None:
                resolved[canonical] = canonical if canonical in found else None
            elif name in found:
                resolved[canonical] = name
            else:
                raise EventDataError(_missing_column_message(source, role, name, found))
        used = [name for name in resolved.values() if name is not None]
        if len(set(used)) < len(used):
            raise EventDataError(
                f"{source}: one input column feeds two canonical columns ({resolved}); "
                "map each of user, item, action and timestamp to its own column"
            )
        for canonical in CANONICAL_COLUMNS:
            if canonical in found and canonical not in used:
                made_from = resolved.get(canonical)
                why = f"is made from {made_from!r}" if made_from else "is assigned by the reader"
                raise EventDataError(
                    f"{source}: input column {canonical!r} clashes with the canonical column of the "
                    f"same name, which {why}; rename or drop the input column"
                )
        return resolved


def _missing_column_message(source: str, role: str, name: str, found: Sequence[str]) -> str:
    separators = [sep for sep in ("\t", ";", "|", ",") if len(found) == 1 and sep in found[0]]
    if separators:  # the usual cause is the wrong delimiter, not a wrong name
        return (
            f"{source}: no {role} column {name!r}: the header was read as the single column {found[0]!r}, so the "
            f"file is probably delimited by {separators[0]!r}. Pass delimiter={separators[0]!r} "
            f"(--delimiter {separators[0]!r} on the command line), or save the file as comma-separated .csv or "
            "tab-separated .tsv."
        )
    close = difflib.get_close_matches(name, list(found), n=1, cutoff=0.6)
    guess = close[0] if close else "<column>"
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"{source}: no {role} column {name!r}. Columns found: {list(found)}.{hint} Pass a column mapping, "
        f"e.g. read_events(..., columns=ColumnMapping({role}={guess!r})) or --{role}_column {guess} on the "
        "command line."
    )


def to_id_strings(values: pl.Series, *, source: str = "DataFrame") -> pl.Series:
    """Ids (and action codes) as exact strings.

    Strings stay as they are; integers become their decimal text (7 -> "7"); floats are accepted only when
    every value is a whole number below 2**53 (2**24 for Float32), 7.0 -> "7", because pandas turns integer id
    columns with gaps into floats, while a fractional or huge float id has no exact string form and would
    silently merge or split users. Booleans, dates and nested values are rejected.
    """
    dtype = values.dtype
    name = values.name
    if dtype == pl.String:
        return values
    if isinstance(dtype, (pl.Categorical, pl.Enum, pl.Null)) or dtype.is_integer():
        return values.cast(pl.String)
    if isinstance(dtype, pl.Decimal) and dtype.scale == 0:
        return values.cast(pl.String)
    if dtype.is_float():
        values = values.fill_nan(None)
        # below 2**24 (Float32) or 2**53 (Float64) every whole number is exact; at the limit, limit + 1 rounds to it
        limit, bits = (_MAX_EXACT_FLOAT32, "2**24") if dtype == pl.Float32 else (_MAX_EXACT_FLOAT, "2**53")
        bad = values.is_not_null() & ~(values.is_finite() & (values.round(0) == values) & (values.abs() < limit))
        if bad.any():
            first = int(bad.arg_true()[0])
            value = values[first]
            problem = (
                f"is not a whole number below {bits}: a {dtype} above that may already be a different id"
                if math.isfinite(value) and value == round(value)
                else "is not a whole number"
            )
            raise EventDataError(
                f"{_where(source, name, first + 1)}: id {_show(value)} {problem} ({int(bad.sum())} such rows); ids "
                "must be strings or integers. Store the column as strings in the source, e.g. df[column].astype(str) "
                "in pandas."
            )
        return values.cast(pl.Int64).cast(pl.String)
    raise EventDataError(
        f"{_where(source, name)}: has type {dtype}, which cannot be an id; ids must be strings "
        "or integers. Convert the column to strings first."
    )


def normalize_timestamps(values: pl.Series, *, unit: str = "auto", source: str = "DataFrame") -> pl.Series:
    """Times of any common form as Float64 unix seconds; nulls (and NaN, and blank strings) stay null.

    Accepts numbers (seconds or milliseconds: ``unit`` "s", "ms", or "auto", which takes milliseconds when the
    median magnitude exceeds 1e11), numeric strings (same rule), ISO-8601 strings with or without a time and
    with or without an offset (naive times are UTC), and ``Datetime`` / ``Date`` columns. Numeric and ISO
    strings may be mixed in one column. A value that cannot be parsed raises ``EventDataError`` naming the first
    bad data row and the count, rather than becoming a null that cleaning would silently drop.
    """
    if unit not in TIMESTAMP_UNITS:
        raise EventDataError(f"timestamp_unit must be one of {TIMESTAMP_UNITS}, got {unit!r}")
    name, dtype = values.name, values.dtype
    if dtype == pl.Null:
        return pl.Series(name, [None] * values.len(), dtype=pl.Float64)
    if isinstance(dtype, pl.Datetime):
        return (values.dt.epoch("us").cast(pl.Float64) / 1e6).alias(name)
    if dtype == pl.Date:
        return (values.dt.epoch("s").cast(pl.Float64)).alias(name)
    if dtype.is_numeric():
        numbers = values.cast(pl.Float64).fill_nan(None)
        _check_finite(numbers, values, source)
        return _apply_unit(numbers, values, unit, source)
    if isinstance(dtype, (pl.Categorical, pl.Enum)):
        values = values.cast(pl.String)
    elif dtype != pl.String:
        raise EventDataError(
            f"{_where(source, name)}: has type {dtype}, which is not a time ({_TIMESTAMP_HELP}). "
            "Convert the column, or map another one with timestamp=."
        )
    text = values.str.strip_chars()
    text = pl.select(pl.when(text.str.len_bytes() > 0).then(text)).to_series()
    numbers = text.cast(pl.Float64, strict=False).fill_nan(None)
    _check_finite(numbers, values, source)
    seconds = _apply_unit(numbers, values, unit, source)
    pending = text.is_not_null() & numbers.is_null()
    if pending.any():  # "nan" cast to NaN, then to null above: it is a missing time, not a parse failure
        pending = pending & ~text.str.to_lowercase().is_in(["nan"])
    if pending.any():
        seconds = seconds.scatter(pending.arg_true(), _parse_iso(text.filter(pending)))
    bad = pending & seconds.is_null()
    if bad.any():
        first = int(bad.arg_true()[0])
        raise EventDataError(
            f"{_where(source, name, first + 1)}: cannot parse timestamp {_show(values[first])} "
            f"({_TIMESTAMP_HELP}); {int(bad.sum())} row(s) in total cannot be parsed. Fix the value "
            "or drop the row."
        )
    return seconds.alias(name)


def _check_finite(numbers: pl.Series, raw: pl.Series, source: str) -> None:
    infinite = numbers.is_infinite().fill_null(False)
    if infinite.any():
        first = int(infinite.arg_true()[0])
        raise EventDataError(
            f"{_where(source, raw.name, first + 1)}: timestamp {_show(raw[first])} is not finite "
            f"({_TIMESTAMP_HELP}). Fix the value or drop the row."
        )


def _apply_unit(numbers: pl.Series, raw: pl.Series, unit: str, source: str) -> pl.Series:
    """Seconds from seconds or milliseconds.

    "auto" decides from the median, and refuses a column with values on both sides of the threshold: a log
    mixing seconds and milliseconds would otherwise put some events 50 years off without a word. An explicit
    ``unit`` bypasses the check (for example a millisecond log with dates before 1973).
    """
    if unit == "auto":
        magnitude = numbers.abs()
        median = magnitude.median()
        if median is None:
            return numbers
        if median > MS_THRESHOLD * 1000:
            raise EventDataError(
                f"{_where(source, raw.name)}: numeric timestamps are too large even for milliseconds "
                f"(median {median:.4g}); they look like micro- or nanoseconds. Convert them to "
                "unix seconds or milliseconds."
            )
        unit = "ms" if median > MS_THRESHOLD else "s"
        odd = (magnitude <= MS_THRESHOLD) if unit == "ms" else (magnitude > MS_THRESHOLD)
        if odd.any():
            first = int(odd.arg_true()[0])
            other = "seconds" if unit == "ms" else "milliseconds"
            raise EventDataError(
                f"{_where(source, raw.name, first + 1)}: timestamp {_show(raw[first])} looks like {other}, while "
                f"most values look like {'milliseconds' if unit == 'ms' else 'seconds'} ({int(odd.sum())} rows "
                "differ). Fix those rows, or pass timestamp_unit='s' or 'ms' if the column really is in one unit."
            )
    if unit != "ms":
        return numbers
    # numpy's true division is correctly rounded; polars computes ``/ 1000.0`` as ``* 0.001``, which is one unit
    # in the last place off for ~15% of values (the same instant written in seconds would read differently)
    return pl.Series(numbers.name, numbers.to_numpy() / 1000.0, nan_to_null=True)


def _parse_iso(text: pl.Series) -> pl.Series:
    """ISO-8601 strings as seconds (null where no format fits), trying each format only on what is still null.

    A date and time separated by spaces are rewritten with "T" first, so one format list covers both
    spellings; formats are tried in the order that fits a sample best, so a homogeneous column (the usual
    case) is parsed in one pass instead of failing through the list.
    """
    if text.str.contains(" ", literal=True).any():
        text = text.str.replace(r"^(\d{4}-\d{1,2}-\d{1,2}) +", "${1}T")
    sample = text.head(1000)
    fits = {fmt: _to_seconds(sample, fmt).is_not_null().sum() for fmt in _ISO_FORMATS}
    seconds = pl.Series(text.name, [None] * text.len(), dtype=pl.Float64)
    for fmt in sorted(_ISO_FORMATS, key=lambda fmt: -fits[fmt]):
        todo = seconds.is_null()
        if not todo.any():
            break
        seconds = seconds.scatter(todo.arg_true(), _to_seconds(text.filter(todo), fmt))
    return seconds


def _to_seconds(text: pl.Series, fmt: str) -> pl.Series:
    parsed = text.str.to_datetime(fmt, strict=False, time_unit="us", time_zone="UTC")
    return parsed.dt.epoch("us").cast(pl.Float64) / 1e6


def check_canonical(events: pl.DataFrame, *, source: str = "DataFrame") -> None:
    """Fail early, with the fix, when a frame is not a canonical events table (wrong columns, dtypes or ids).

    ``event_index`` must be non-null and unique: it is the identity of an event for the leakage checks.
    """
    missing = [name for name in CANONICAL_COLUMNS if name not in events.columns]
    if missing:
        raise EventDataError(
            f"{source}: not a canonical events table: missing columns {missing} (found "
            f"{events.columns}). Build it with bertrec.data.readers.read_events()."
        )
    for name, dtype in CANONICAL_SCHEMA.items():
        if events.schema[name] != dtype:
            raise EventDataError(
                f"{source}: column {name!r} has type {events.schema[name]}, expected {dtype}. "
                "Build the table with bertrec.data.readers.read_events()."
            )
    index = events["event_index"]
    if index.null_count() or index.n_unique() != events.height:
        raise EventDataError(
            f"{source}: 'event_index' must be unique and non-null (it identifies each event); "
            "keep the values read_events() assigned."
        )
