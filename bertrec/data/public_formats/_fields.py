"""The shared reading, validation and error helpers of the public-dataset readers.

Files are read by polars as text, whole columns at a time (``_read_fields``); a line that does not fit the format
raises ``EventDataError`` naming the file, the 1-based line (header counted) and the column, with the fix
(``_fail``). Every reader ends in ``_finish``, the same canonicalisation as ``read_events``, so ids are exact
strings, ``event_index`` is the order of the rows in the file(s) (the stable tie-break for equal times) and the
validation is shared.
"""

from __future__ import annotations

import difflib
import gzip
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from bertrec.data.readers import _canonicalize
from bertrec.data.schema import ColumnMapping, EventDataError

_LINE = "__line"  # the 1-based line of each row, carried through validation and dropped before canonicalising
_EXTRA = "__extra"  # catches fields beyond the expected ones, so a wrong file fails instead of being truncated
PathLike = str | os.PathLike


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
    _reject_first(
        frame,
        path,
        frame[_EXTRA].is_not_null(),
        None,
        lambda row: (
            f"has more than the {len(names)} {_separator_name(separator)}-separated fields of {layout}; "
            f"this is not a {reader} file in that layout. {_READER_HINT}"
        ),
    )
    return frame.drop(_EXTRA)


def _reject_first(
    frame: pl.DataFrame, path: Path, bad: pl.Series, column: str | None, message: Callable[[int], str]
) -> None:
    """Raise for the first row where ``bad`` holds, naming its line; ``message(row)`` says what is wrong there."""
    if bad.any():
        row = int(bad.arg_true()[0])
        raise _fail(path, int(frame[_LINE][row]), column, message(row))


def _read_each(
    paths: PathLike | Sequence[PathLike], names: Sequence[str], read_one: Callable[[Path], pl.DataFrame]
) -> pl.DataFrame:
    """Canonical events of one file, a list of files (rows in the order given) or the files ``names`` found in a
    folder, each read by ``read_one``."""
    files = _paths(paths)
    if len(files) == 1 and files[0].is_dir():
        folder = files[0]
        files = [folder / name for name in names if (folder / name).is_file()]
        if not files:
            raise EventDataError(f"{folder}: no {' or '.join(names)} here; pass the files")
    label = files[0] if len(files) == 1 else ", ".join(str(path) for path in files)
    return _finish(pl.concat([read_one(path) for path in files], how="diagonal_relaxed"), label)


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
        _reject_first(
            frame,
            path,
            missing,
            name,
            lambda row, missing=missing: (
                f"missing value ({int(missing.sum())} row(s) like this); every line must be {layout}. "
                "Check the separator, or whether this is the right file for the reader."
            ),
        )


def _numbers(frame: pl.DataFrame, path: Path, column: str, hint: str) -> pl.Series:
    """A string column as finite Float64 (nulls stay null); a value that is not a number names its line."""
    text = frame[column]
    values = text.str.strip_chars().cast(pl.Float64, strict=False)
    bad = text.is_not_null() & (values.is_null() | ~values.is_finite().fill_null(True))
    _reject_first(
        frame,
        path,
        bad,
        column,
        lambda row: f"{_show(text[row])} is not a number ({int(bad.sum())} row(s) like this); {hint}",
    )
    return values.alias(column)


def _check_values(frame: pl.DataFrame, path: Path, column: str, allowed: Sequence[str], hint: str) -> None:
    bad = frame[column].is_not_null() & ~frame[column].is_in(list(allowed))
    _reject_first(
        frame,
        path,
        bad,
        column,
        lambda row: (
            f"unknown value {_show(frame[column][row])} ({int(bad.sum())} row(s) like this); expected "
            f"one of {list(allowed)}. {hint}"
        ),
    )


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
    _reject_first(
        frame,
        path,
        bad,
        column,
        lambda row: (
            f"cannot parse the time {_show(frame[column][row])} ({int(bad.sum())} row(s) like this); "
            f"expected {expected}. Check that this is the right file for the reader."
        ),
    )


def _paths(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    if isinstance(paths, (str, os.PathLike)):
        return [_existing(paths)]
    result = [_existing(path) for path in paths]
    if not result:
        raise EventDataError("no files given; pass a file, a folder or a list of files")
    return result
