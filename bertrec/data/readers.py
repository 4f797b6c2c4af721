"""Read an event log (CSV, TSV, Parquet, JSONL, or an in-memory frame) into the canonical events table.

Text files are read with every column as a string, so ids keep leading zeros ("007" is not "7") and the
timestamp parser, not a type guesser, decides what a time is. Typed sources (Parquet, JSONL, frames) have their
id columns converted to exact strings by ``schema.to_id_strings``. Any input problem surfaces as an
``EventDataError`` naming the file, never as a raw polars or pyarrow exception.
"""

from __future__ import annotations

import codecs
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import polars as pl

from bertrec.data.schema import (
    DEFAULT_ACTION,
    TIMESTAMP_UNITS,
    ColumnMapping,
    EventDataError,
    _show,
    normalize_timestamps,
    to_id_strings,
)

logger = logging.getLogger("bertrec")
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
        quoted = _may_hold_quoted_fields(path, format, delimiter)
    else:
        if format is not None or delimiter is not None:
            raise ValueError("format= and delimiter= apply to files only, not to in-memory frames")
        frame, label = _from_memory(source)
        empty, quoted = "the frame has no events (0 rows)", False
    if frame.height == 0:
        raise EventDataError(f"{label}: {empty}. Check that this is the right file and that it has data rows.")
    events = _canonicalize(frame, mapping, label, timestamp_unit)
    if quoted:
        _warn_on_merged_lines(events, label)
    return events


def _canonicalize(frame: pl.DataFrame, mapping: ColumnMapping, source: str, unit: str) -> pl.DataFrame:
    """Canonical columns first, then the unused input columns unchanged; event_index is the input row order."""
    resolved = mapping.resolve(frame.columns, source)
    height = frame.height
    user, item, action, timestamp = (resolved[c] for c in ("user_id", "item_id", "action", "timestamp"))
    canonical = [
        to_id_strings(frame[user], source=source).alias("user_id"),
        to_id_strings(frame[item], source=source).alias("item_id"),
        (
            to_id_strings(frame[action], source=source)
            if action
            else pl.repeat(DEFAULT_ACTION, height, dtype=pl.String, eager=True)
        ).alias("action"),
        (
            normalize_timestamps(frame[timestamp], unit=unit, source=source)
            if timestamp
            else pl.repeat(None, height, dtype=pl.Float64, eager=True)
        ).alias("timestamp"),
        pl.int_range(height, dtype=pl.Int64, eager=True).alias("event_index"),
    ]
    used = {name for name in resolved.values() if name is not None}
    extras = frame.select([name for name in frame.columns if name not in used])
    return pl.DataFrame(canonical).hstack(extras).rechunk()  # one chunk per column: later steps run faster


def _may_hold_quoted_fields(path: Path, format: str | None, delimiter: str | None) -> bool:
    """Whether a CSV/TSV file may hold quoted fields (compressed: assume so); a memchr scan, ~1 GB/s."""
    if _detect_format(path, format, delimiter)[0] not in ("csv", "tsv"):
        return False
    if not path.is_file() or path.suffix.lower() in _COMPRESSED:
        return True
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            if b'"' in chunk:
                return True
    return False


def _warn_on_merged_lines(events: pl.DataFrame, source: str) -> None:
    """Warn about ids that span a line break: in a CSV/TSV file that is usually a stray quote that swallowed the
    following lines into one row, which the CSV rules accept without an error.

    A properly quoted id may hold a line break, so this is a warning, not an error. Run only on text files that
    contain a quote at all, since only a quoted field can span lines.
    """
    for column in ("user_id", "item_id", "action"):
        broken = events[column].str.contains("\n", literal=True).fill_null(False)
        if broken.any():
            first = int(broken.arg_true()[0])
            value = events[column][first]
            logger.warning(
                "%s: column %r, data row %d: the value %s spans %d lines (%d such rows). If the file has a stray "
                'quote ("), it opened a field that ran on into the next line(s) and merged them into this row: '
                'quote the whole field and double the quotes inside it ("tv 55""") or remove the stray quote.',
                source,
                column,
                first + 1,
                _show(value),
                value.count("\n") + 1,
                int(broken.sum()),
            )


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


def _read_file(path: Path, format: str | None, delimiter: str | None, encoding: str) -> pl.DataFrame:
    """Read one file (or a folder of Parquet files) into a frame, translating every reader failure."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    format, compressed = _detect_format(path, format, delimiter)
    if path.is_file() and path.stat().st_size == 0:
        raise EventDataError(f"{path}: the file is empty, so it has no events. Check the path.")
    if path.is_file() and not compressed and format != "parquet":
        _check_not_utf16(path)
    separator = delimiter if delimiter is not None else ("\t" if format == "tsv" else ",")
    try:
        if format in ("csv", "tsv"):
            frame = pl.read_csv(path, infer_schema=False, separator=separator, encoding=encoding)
            _check_header(frame.columns, path)
            return frame
        if format == "jsonl":
            data: Path | io.BytesIO = path
            if encoding == "utf8-lossy":
                data = io.BytesIO(path.read_bytes().decode("utf-8", errors="replace").encode())
            # every line is inspected for types, so a string id after 100 numeric ones is not an error
            return pl.read_ndjson(data, infer_schema_length=None)
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError, UnicodeError) as error:
        raise EventDataError(_read_error_message(path, format, compressed, separator, error)) from error
    except Exception as error:  # pyarrow and other backends raise their own types for a bad file
        if type(error).__module__.split(".")[0] not in ("pyarrow", "polars"):
            raise
        raise EventDataError(_read_error_message(path, format, compressed, separator, error)) from error


_UTF16_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def _check_not_utf16(path: Path) -> None:
    """Refuse UTF-16/32 text (Excel's "Unicode text"), which the UTF-8 reader would turn into garbled names."""
    with path.open("rb") as handle:
        head = handle.read(4)
    for bom, name in _UTF16_BOMS:
        if head.startswith(bom):
            raise EventDataError(
                f"{path}: the file is {name} text (it starts with a {name} byte-order mark), not UTF-8. Re-encode "
                f'it to UTF-8 (e.g. iconv -f {name.lower()} -t utf-8, or save as "CSV UTF-8" in Excel).'
            )


def _check_header(columns: list[str], path: Path) -> None:
    """Refuse a header naming a column twice (polars would silently rename the second to ``<name>_duplicated_0``)
    and one holding a carriage return: the file ends its lines with a bare CR, so it was read as one line."""
    if any("\r" in name for name in columns):
        raise EventDataError(
            f"{path}: the file ends its lines with a bare carriage return (old Mac style), so it was read as a single "
            "line. Convert the line endings to \\n (e.g. tr '\\r' '\\n' < old.csv > new.csv)."
        )
    repeated = sorted({name.rsplit("_duplicated_", 1)[0] for name in columns if "_duplicated_" in name} & set(columns))
    if repeated:
        raise EventDataError(
            f"{path}: the header names column(s) {repeated} more than once, so which one holds the data is "
            "ambiguous. Rename or delete the repeated column(s) in the header."
        )


def _read_error_message(path: Path, format: str, compressed: bool, separator: str, error: Exception) -> str:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if "utf-8" in str(error).lower() or "utf8" in str(error).lower():
        position = None if compressed or path.is_dir() else _first_invalid_utf8(path)
        where = f" at line {position[0]} (byte offset {position[1]})" if position else ""
        return (
            f"{path}: the file is not valid UTF-8{where}. Re-encode it to UTF-8 (e.g. iconv -f latin1 -t utf-8), "
            'or pass encoding="utf8-lossy" (--encoding utf8-lossy) to replace the bad bytes.'
        )
    if isinstance(error, pl.exceptions.NoDataError):
        return f"{path}: the file is empty, so it has no events. Check the path."
    hints = {
        "csv": f"check the delimiter (read with {separator!r}; pass delimiter= or --delimiter) and the quoting",
        "tsv": "check that it is tab-separated (else pass delimiter= or --delimiter) and the quoting",
        "jsonl": "each line must be one JSON object",
        "parquet": "check that it is a complete Parquet file",
    }
    where = " The file is compressed: check that it is complete (e.g. gzip -t)." if compressed else ""
    if path.is_file() and not compressed and format in ("csv", "tsv", "jsonl"):
        found = _first_bad_json_line(path) if format == "jsonl" else _first_bad_csv_line(path, separator)
        where = f" First problem: {found}." if found else ""
    return f"{path}: cannot read it as {format} ({detail}); {hints[format]}.{where}"


_DIAGNOSE_LINES = 1_000_000  # the diagnosis runs only after a failed read; it stops after this many lines


def _first_bad_csv_line(path: Path, separator: str, quote: str = '"') -> str | None:
    """Where a CSV/TSV file first breaks the quoting rules or has more fields than its header (failure path only).

    A field is quoted only if it starts with a quote; inside it a quote is doubled, and the closing quote must
    end the field. A quote anywhere else (``tv 55"``, ``"tv" 55``) is the usual cause of a failed read.
    """
    expected = None
    record_line = fields = 0
    in_quotes = False
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        for number, line in enumerate(handle, start=1):
            if number > _DIAGNOSE_LINES:
                return None
            body = line.rstrip("\r\n")
            position = 0
            if not in_quotes:
                record_line, fields, field_start = number, 1, True
                if not body.strip() and expected is not None:
                    continue
                if quote not in body:  # the usual line: count its fields in C, not character by character
                    position, fields = len(body), body.count(separator) + 1
            else:
                field_start = False
            while position < len(body):
                char = body[position]
                if in_quotes:
                    if char == quote:
                        if body[position + 1 : position + 2] == quote:
                            position += 1
                        else:
                            in_quotes = False
                            following = body[position + 1 : position + 2]
                            if following not in ("", separator):
                                return f"line {number}: text follows the closing quote of a quoted field"
                elif char == separator:
                    fields, field_start = fields + 1, True
                    position += 1
                    continue
                elif char == quote:
                    if not field_start:
                        return (
                            f"line {number}: a quote inside an unquoted field; quote the whole field and double "
                            'the quote ("tv 55""")'
                        )
                    in_quotes = True
                field_start = False
                position += 1
            if in_quotes:
                continue
            if expected is None:
                expected = fields
            elif fields > expected:
                return f"line {record_line} has {fields} fields, the header has {expected}"
    if in_quotes:
        return f"the quote opened on line {record_line} is never closed"
    return None


def _first_bad_json_line(path: Path) -> str | None:
    """The first line of a JSONL file that is not one JSON object (failure path only)."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if number > _DIAGNOSE_LINES:
                return None
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                return f"line {number} is not valid JSON: {_show(line.strip())}"
            if not isinstance(value, dict):
                return f"line {number} is not a JSON object: {_show(line.strip())}"
    return None


def _first_invalid_utf8(path: Path) -> tuple[int, int] | None:
    """(1-based line, byte offset) of the first byte that is not UTF-8, read in chunks; only run on failure."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = consumed = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as error:
                pending = len(error.object) - len(chunk)  # incomplete bytes carried over from the last chunk
                head = bytes(error.object[: error.start])
                return newlines + head.count(b"\n") + 1, consumed - pending + error.start
            newlines += chunk.count(b"\n")
            consumed += len(chunk)
    return None


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
