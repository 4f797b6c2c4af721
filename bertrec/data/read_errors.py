"""Why a log file could not be read, in the user's terms: the file's encoding, its header, and the first line
where it breaks its format. Kept apart from ``readers`` because it runs only on the failure path (and once, as a
warning, on quoted CSV fields that swallowed line breaks), and a hand-written line scanner is its own concern.
"""

from __future__ import annotations

import codecs
import json
import logging
from pathlib import Path

import polars as pl

from bertrec.data.schema import EventDataError, _show

logger = logging.getLogger("bertrec")


def warn_on_merged_lines(events: pl.DataFrame, source: str) -> None:
    """Warn about ids that span a line break: in a CSV/TSV file that is usually a stray quote that swallowed the
    following lines into one row, which the CSV rules accept without an error.

    A properly quoted id may hold a line break, so this is a warning, not an error. It looks at the parsed ids
    (a vectorised search) rather than scanning the file again for quotes.
    """
    columns = ("user_id", "item_id", "action")
    spans = events.select(pl.col(columns).str.contains("\n", literal=True).any()).row(0)  # one parallel pass
    for column in (c for c, found in zip(columns, spans) if found):
        broken = events[column].str.contains("\n", literal=True).fill_null(False)
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


_UTF16_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)


def check_not_utf16(path: Path) -> None:
    """Refuse UTF-16/32 text (Excel's "Unicode text"), which the UTF-8 reader would turn into garbled names."""
    with path.open("rb") as handle:
        head = handle.read(4)
    for bom, name in _UTF16_BOMS:
        if head.startswith(bom):
            raise EventDataError(
                f"{path}: the file is {name} text (it starts with a {name} byte-order mark), not UTF-8. Re-encode "
                f'it to UTF-8 (e.g. iconv -f {name.lower()} -t utf-8, or save as "CSV UTF-8" in Excel).'
            )


def check_header(columns: list[str], path: Path) -> None:
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


def read_error_message(path: Path, format: str, compressed: bool, separator: str, error: Exception) -> str:
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
