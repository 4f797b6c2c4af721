"""Read an event log (CSV, TSV, Parquet, JSONL, or an in-memory frame) into the canonical events table.

Text files are read with every column as a string, so ids keep leading zeros ("007" is not "7") and the
timestamp parser, not a type guesser, decides what a time is. Typed sources (Parquet, JSONL, frames) have their
id columns converted to exact strings by ``schema.to_id_strings``. Any input problem surfaces as an
``EventDataError`` naming the file, never as a raw polars or pyarrow exception.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import Any

import polars as pl

from bertrec.data.read_errors import check_header, check_not_utf16, read_error_message, warn_on_merged_lines
from bertrec.data.schema import (
    DEFAULT_ACTION,
    TIMESTAMP_UNITS,
    ColumnMapping,
    EventDataError,
    normalize_timestamps,
    to_id_strings,
)

FORMATS = ("csv", "tsv", "parquet", "jsonl")
ENCODINGS = ("utf8", "utf8-lossy")
_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_COMPRESSED = (".gz", ".zst", ".zstd")  # polars decompresses these for CSV/TSV only


def read_events(
    source: str | os.PathLike | pl.DataFrame | pl.LazyFrame | Any,
    *,
    columns: ColumnMapping | dict[str, str | None] | None = None,
    format: str | None = None,
    timestamp_unit: str = "auto",
    delimiter: str | None = None,
    encoding: str = "utf8",
) -> pl.DataFrame:
    """The canonical events table of a log file or frame (see ``bertrec.data.schema``).

    ``format`` ("csv", "tsv", "parquet", "jsonl") overrides the file extension; ``delimiter`` overrides the
    CSV/TSV separator; ``timestamp_unit`` ("auto", "s", "ms") says how numeric times are read. Bytes that are
    not UTF-8 are an error by default; ``encoding="utf8-lossy"`` replaces them instead, for users who accept that.
    """
    mapping = ColumnMapping.coerce(columns)
    if timestamp_unit not in TIMESTAMP_UNITS:
        raise EventDataError(f"timestamp_unit must be one of {TIMESTAMP_UNITS}, got {timestamp_unit!r}")
    if encoding not in ENCODINGS:
        raise EventDataError(f"encoding must be one of {ENCODINGS}, got {encoding!r}; re-encode other files to UTF-8")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        frame = _read_file(path, format, delimiter, encoding)
        label, empty = str(source), f"the file has no events (columns {frame.columns}, 0 data rows)"
        text = _detect_format(path, format, delimiter)[0] in ("csv", "tsv")  # where a stray quote merges lines
    else:
        if format is not None or delimiter is not None:
            raise ValueError("format= and delimiter= apply to files only, not to in-memory frames")
        frame, label = _from_memory(source)
        empty, text = "the frame has no events (0 rows)", False
    if frame.height == 0:
        raise EventDataError(f"{label}: {empty}. Check that this is the right file and that it has data rows.")
    events = _canonicalize(frame, mapping, label, timestamp_unit)
    if text:
        warn_on_merged_lines(events, label)
    return events


def _canonicalize(
    frame: pl.DataFrame, mapping: ColumnMapping, source: str, unit: str, first_index: int = 0
) -> pl.DataFrame:
    """Canonical columns first, then the unused input columns unchanged; event_index is the input row order
    (counted from ``first_index`` when ``frame`` is a later part of a file read in batches)."""
    resolved = mapping.resolve(frame.columns, source)
    height = frame.height
    user, item, action, timestamp = (resolved[c] for c in ("user_id", "item_id", "action", "timestamp"))
    # one chunk per column (later steps run faster), each made as its column is converted: rechunking the
    # finished frame would briefly hold every column twice
    canonical = [
        to_id_strings(frame[user], source=source).alias("user_id").rechunk(),
        to_id_strings(frame[item], source=source).alias("item_id").rechunk(),
        (
            to_id_strings(frame[action], source=source)
            if action
            else pl.repeat(DEFAULT_ACTION, height, dtype=pl.String, eager=True)
        )
        .alias("action")
        .rechunk(),
        (
            normalize_timestamps(frame[timestamp], unit=unit, source=source)
            if timestamp
            else pl.repeat(None, height, dtype=pl.Float64, eager=True)
        )
        .alias("timestamp")
        .rechunk(),
        pl.int_range(first_index, first_index + height, dtype=pl.Int64, eager=True).alias("event_index"),
    ]
    used = {name for name in resolved.values() if name is not None}
    extras = [frame[name].rechunk() for name in frame.columns if name not in used]
    return pl.DataFrame([*canonical, *extras])


def _detect_format(path: Path, format: str | None, delimiter: str | None) -> tuple[str, bool]:
    """The format (explicit, else from the extension) and whether the file is compressed."""
    suffixes = [s.lower() for s in path.suffixes]
    compressed = bool(suffixes) and suffixes[-1] in _COMPRESSED
    if compressed:
        suffixes = suffixes[:-1]
    if format is None:
        if path.is_dir():
            format = "parquet"
        elif suffixes and suffixes[-1] in _EXTENSIONS:
            format = _EXTENSIONS[suffixes[-1]]
        elif delimiter is not None:
            format = "csv"
        else:
            raise EventDataError(f"{path}: cannot tell the format from the extension; pass format= (one of {FORMATS})")
    if format not in FORMATS:
        raise EventDataError(f"{path}: unknown format {format!r}; use one of {FORMATS}")
    if compressed and format not in ("csv", "tsv"):
        raise EventDataError(f"{path}: compressed files are supported for csv/tsv only; decompress it first")
    if delimiter is not None and format not in ("csv", "tsv"):
        raise EventDataError(f"{path}: delimiter= applies to csv/tsv only, not to {format}")
    if delimiter is not None and len(delimiter.encode()) != 1:
        raise EventDataError(f"{path}: the delimiter must be a single byte, got {delimiter!r}")
    return format, compressed


def text_separator(format: str, delimiter: str | None) -> str:
    """The field separator of a CSV/TSV file: ``delimiter`` if given, else tab for TSV and comma for CSV."""
    return delimiter if delimiter is not None else ("\t" if format == "tsv" else ",")


def _read_file(path: Path, format: str | None, delimiter: str | None, encoding: str) -> pl.DataFrame:
    """Read one file (or a folder of Parquet files) into a frame, translating every reader failure."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    format, compressed = _detect_format(path, format, delimiter)
    if path.is_file() and path.stat().st_size == 0:
        raise EventDataError(f"{path}: the file is empty, so it has no events. Check the path.")
    if path.is_file() and not compressed and format != "parquet":
        check_not_utf16(path)
    separator = text_separator(format, delimiter)
    try:
        if format in ("csv", "tsv"):
            frame = pl.read_csv(path, infer_schema=False, separator=separator, encoding=encoding)
            check_header(frame.columns, path)
            return frame
        if format == "jsonl":
            data: Path | io.BytesIO = path
            if encoding == "utf8-lossy":
                data = io.BytesIO(path.read_bytes().decode("utf-8", errors="replace").encode())
            # every line is inspected for types, so a string id after 100 numeric ones is not an error
            return pl.read_ndjson(data, infer_schema_length=None)
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, UnicodeError) as error:
        raise EventDataError(read_error_message(path, format, compressed, separator, error)) from error
    except Exception as error:  # pyarrow and other backends raise their own types for a bad file
        if type(error).__module__.split(".")[0] not in ("pyarrow", "polars"):
            raise
        raise EventDataError(read_error_message(path, format, compressed, separator, error)) from error


def _from_memory(source: Any) -> tuple[pl.DataFrame, str]:
    """A polars frame as is (a LazyFrame collected), a pandas frame converted; anything else is a TypeError."""
    if isinstance(source, pl.LazyFrame):
        try:
            return source.collect(), "LazyFrame"
        except pl.exceptions.PolarsError as error:
            detail = str(error).strip().splitlines()[0]
            raise EventDataError(f"LazyFrame: collecting it failed ({detail}); fix the query first.") from error
    if isinstance(source, pl.DataFrame):
        return source, "DataFrame"
    pandas = sys.modules.get("pandas")  # a pandas frame implies pandas is imported; do not import it otherwise
    if pandas is not None and isinstance(source, pandas.DataFrame):
        return _from_pandas(source, pandas), "pandas DataFrame"
    raise TypeError(
        f"read_events reads a path, a polars DataFrame/LazyFrame or a pandas DataFrame, not {type(source).__name__}"
    )


def _from_pandas(frame: Any, pandas: Any) -> pl.DataFrame:
    """Convert via Arrow; object columns holding mixed types become strings (``str`` of each non-null value).

    Arrow refuses mixed columns such as ["007", 7]; turning them into text keeps every id distinct and exact,
    with whole floats written without ".0" so that 7.0 and 7 stay the same id as in typed columns.
    """
    frame = frame.copy(deep=False)
    frame.columns = [str(name) for name in frame.columns]
    repeated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if repeated:
        raise EventDataError(
            f"pandas DataFrame: column name(s) {repeated} appear more than once; rename or drop the duplicates, "
            "e.g. df = df.loc[:, ~df.columns.duplicated()]."
        )
    named = [name for name in frame.index.names if name is not None and str(name) not in frame.columns]
    if named:  # e.g. after df.set_index("user_id"): keep the index's columns instead of silently losing them
        frame = frame.reset_index(level=named)
        frame.columns = [str(name) for name in frame.columns]
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object and pandas.api.types.infer_dtype(column, skipna=True).startswith("mixed"):
            frame[name] = column.map(_to_text, na_action="ignore").astype(object).where(column.notna(), None)
    try:
        return pl.from_pandas(frame)
    except Exception as error:
        raise EventDataError(
            f"pandas DataFrame: cannot convert it to polars ({error}); give each column a single "
            "type, e.g. df[column] = df[column].astype(str)."
        ) from error


def _to_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
