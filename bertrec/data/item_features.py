"""Item content (attribute tokens and free text) keyed by the same exact item ids as the events table.

Content-aware models need, per item, its attributes (brand, categories, genre: turned into tokens) and its text
(title, description: given to a text encoder). ``read_item_features`` reads them from CSV/TSV, Parquet, JSON lines
or the ``*.item.json`` layout of semantic-ID datasets (``{"<item>": {"title": ..., "brand": ..., ...}}``) into one
table: ``item_id`` (String, unique), each categorical column as ``List[String]`` and each text column as String.

Ids follow the event readers' rules (``schema.to_id_strings``): text is kept exactly ("007" is not "7"), integers
become their decimal text, so item 5 of an events file and key "5" of a feature file are the same item. Catalogues
of logs and feature files rarely match exactly and many items lack some attribute, so gaps are counted in
``ItemFeatures.report``, never errors; ``ItemFeatures.for_items`` lines the table up with a list of items.

Bad input raises ``EventDataError`` naming the file, the place (``data row N`` for CSV/TSV/Parquet, 1-based and
header not counted; ``line N`` for JSON lines; ``item '<key>'`` for item.json) and the column, with the fix.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from bertrec.data.public_formats._fields import PathLike, _open_binary
from bertrec.data.public_formats.inter_json import _DuplicateKey, _load_json_object, _unique_keys
from bertrec.data.read_errors import check_not_utf16
from bertrec.data.readers import _EXTENSIONS, _read_file
from bertrec.data.schema import EventDataError, _show, to_id_strings

__all__ = [
    "FEATURE_FORMATS",
    "ITEM_JSON_CATEGORICAL",
    "ITEM_JSON_SEPARATORS",
    "ITEM_JSON_TEXT",
    "ItemFeatures",
    "read_item_features",
]

logger = logging.getLogger("bertrec")

FEATURE_FORMATS = ("csv", "tsv", "parquet", "jsonl", "item_json", "recbole_item")
# The item.json layout's own fields: what they are is known, so they need no configuration.
ITEM_JSON_CATEGORICAL = ("brand", "categories")
ITEM_JSON_TEXT = ("title", "description")
# Its categories are a category path, written "a, b, c" in some releases and "a,b,c" in others: splitting on ","
# and stripping covers both (a category name with a comma in it would be split; none of the known files has one).
ITEM_JSON_SEPARATORS = {"categories": ","}
_ITEM_JSON_LAYOUT = 'the *.item.json layout: one JSON object {"<item>": {"title": ..., "brand": ..., ...}, ...}'
_EMPTY_LIST = pl.lit([], dtype=pl.List(pl.String))


@dataclass
class ItemFeatures:
    """The content of a catalogue, one row per item.

    ``table``: ``item_id`` (String, unique, file order), then each ``categorical`` column as ``List[String]``
    (stripped values, empty ones dropped; an item without a value has an empty list), then each ``text`` column
    as String ("" when missing). ``source`` is the file read. ``report`` counts what was read:
    ``rows_read``, ``missing`` (per column, the items with no value), ``distinct_values`` (per categorical column)
    and ``items_without_features`` (set by the last ``for_items`` call; None before). ``columns``: every column of
    the file besides the ids, read or not (numeric ones are left out of a default read).
    """

    table: pl.DataFrame
    categorical: list[str]
    text: list[str]
    source: str
    report: dict[str, Any]
    columns: list[str] = field(default_factory=list)

    def for_items(self, item_ids: Sequence[str] | pl.Series) -> pl.DataFrame:
        """The rows of ``item_ids``, in that order (repeats repeated), with the table's columns.

        An item the table lacks gets an all-missing row (empty lists, "" texts) instead of an error, because a
        log's catalogue and a feature file rarely match exactly; the number of such distinct items is stored in
        ``report["items_without_features"]`` and logged. Ids must be strings, as in the events table.
        """
        ids = _id_strings(item_ids)
        found = "__found"
        rows = pl.DataFrame([ids]).join(
            self.table.with_columns(pl.lit(True).alias(found)), on="item_id", how="left", maintain_order="left"
        )
        absent = rows[found].is_null()
        count = int(rows.filter(absent)["item_id"].n_unique())
        self.report["items_without_features"] = count
        if count:
            logger.info("%s: %d of the %d items asked for have no features", self.source, count, ids.n_unique())
        return rows.drop(found).with_columns(
            *(pl.col(name).fill_null(_EMPTY_LIST) for name in self.categorical),
            *(pl.col(name).fill_null("") for name in self.text),
        )


def _id_strings(item_ids: Sequence[str] | pl.Series) -> pl.Series:
    if isinstance(item_ids, pl.Series):
        if item_ids.dtype != pl.String:
            raise TypeError(
                f"item ids must be strings, got a {item_ids.dtype} Series; pass events['item_id'] (already strings) "
                "or convert with .cast(pl.String)"
            )
        ids = item_ids.alias("item_id")
    else:
        if isinstance(item_ids, str):
            raise TypeError("pass a list of item ids, not one string")
        try:
            ids = pl.Series("item_id", list(item_ids), dtype=pl.String, strict=True)
        except (TypeError, pl.exceptions.PolarsError) as error:
            raise TypeError(
                "item ids must be strings, as in the events table (an integer id 5 is the string '5'); convert "
                "them with str() first"
            ) from error
    if ids.null_count():
        raise TypeError(f"item ids must not be None ({ids.null_count()} given)")
    return ids


def read_item_features(
    path: PathLike,
    *,
    item_column: str = "item_id",
    categorical: Sequence[str] | None = None,
    text: Sequence[str] | None = None,
    separators: Mapping[str, str | None] | None = None,
    format: str | None = None,
) -> ItemFeatures:
    """The item content of a CSV/TSV, Parquet, JSON-lines, ``*.item.json`` or RecBole ``*.item`` file, one row
    per item.

    ``format`` is one of ``FEATURE_FORMATS``; by default it comes from the extension, and a ``.json`` file is the
    item.json layout (an object item id -> fields; a file of one object per line is ``.jsonl``). ``item_column``
    names the id column (not used for item.json, whose keys are the ids); it becomes ``item_id``.

    ``categorical`` columns become lists of attribute tokens: a scalar is a one-value list, a list (JSON lines,
    Parquet, item.json) is multi-valued, and ``separators`` (column -> separator) splits text values into several
    (``{"genres": "|"}``); values are stripped and empty ones dropped. ``text`` columns stay whole strings for text
    encoders. When ``categorical`` / ``text`` are None: for item.json, ``brand`` and ``categories`` (split on ",")
    are categorical and ``title`` and ``description`` are text, each when the file has it; for other files every
    non-id column holding strings (or lists of strings) is categorical and none is text, since which column is
    free text cannot be told from its type. Numeric columns are left out by default; name them to keep them.
    A RecBole atomic ``.item`` file (``name:type`` headers, tab-separated) is read by its header: ``token`` and
    ``token_seq`` columns (split on spaces) are categorical, except ``token_seq`` columns named like a title or
    description, which are text (ml-100k: ``class`` and ``release_year`` categorical, ``movie_title`` text).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    format = _detect_format(path, format)
    if format == "item_json" and item_column != "item_id":
        raise EventDataError(
            f"{path}: item_column={item_column!r} does not apply to the item.json layout, whose keys are the item "
            "ids; leave item_column out"
        )
    if path.is_file() and path.stat().st_size == 0:
        raise EventDataError(f"{path}: the file is empty, so it has no items. Check the path.")
    for name, value in (("categorical", categorical), ("text", text)):
        if isinstance(value, str):
            raise EventDataError(f"{name}= takes a list of column names, e.g. {name}=[{value!r}], not one string")
    if format in ("item_json", "jsonl"):
        keys, records, where = _read_records(path, format, item_column)
        found = list(dict.fromkeys(name for record in records for name in record))
        defaults = _record_defaults(path, format, found, records, item_column)
        selection = _select(path, format, found, item_column, categorical, text, separators, defaults)
        frame = _records_frame(path, keys, records, where, *selection[:2])
    else:
        if format == "recbole_item":
            frame, defaults = _recbole_item_frame(path)
        else:
            frame = _read_file(path, format, None, "utf8")
        if frame.height == 0:
            raise EventDataError(
                f"{path}: the file has no items (columns {frame.columns}, 0 data rows). Check that this is the "
                "right file and that it has data rows."
            )

        def where(row: int) -> str:
            return f"data row {row + 1}"

        if item_column not in frame.columns:
            close = difflib.get_close_matches(item_column, frame.columns, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise EventDataError(
                f"{path}: column {item_column!r}: no such item id column. Columns found: {frame.columns}.{hint} "
                "Pass item_column= to name the column holding the item ids."
            )
        if format != "recbole_item":
            defaults = _frame_defaults(frame, item_column)
        selection = _select(path, format, frame.columns, item_column, categorical, text, separators, defaults)
        found = frame.columns
        frame = _typed_frame(path, frame, item_column, where, *selection[:2])
    features = _finish(path, frame, where, item_column if format != "item_json" else None, *selection)
    features.columns = [name for name in found if name != item_column]
    return features


def _detect_format(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in FEATURE_FORMATS:
            raise EventDataError(f"{path}: unknown format {format!r}; use one of {list(FEATURE_FORMATS)}")
        return format
    if path.is_dir():
        return "parquet"
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] == ".json":
        return "item_json"
    if suffixes and suffixes[-1] == ".item":
        return "recbole_item"
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise EventDataError(
        f"{path}: cannot tell the format from the extension; pass format= (one of {list(FEATURE_FORMATS)})"
    )


# ---------------------------------------------------------------------------------------------------------------
# JSON sources (item.json, JSON lines): parsed in Python, because polars turns a value whose type differs from the
# rest of its column (a list among strings, an object) into its JSON text without a word.


def _read_records(path: Path, format: str, item_column: str) -> tuple[list[str | None], list[dict], Callable]:
    """Each item's id (None when missing), its fields, and ``where(row)`` naming a row in errors."""
    if format == "item_json":
        lines_hint = "pass format='jsonl'"
        data = _load_json_object(path, _ITEM_JSON_LAYOUT, "items", lines_hint)
        keys = list(data)
        for key, fields in data.items():
            if not isinstance(fields, dict):
                hint = (
                    " This looks like an *.inter.json events file (user -> items): read it with "
                    "read_public(path, reader='inter_json')."
                    if isinstance(fields, list)
                    else ""
                )
                raise EventDataError(
                    f"{path}: item {_show(key)}: {_show(fields)} is not an object of fields; expected "
                    f"{_ITEM_JSON_LAYOUT}.{hint}"
                )
        return keys, list(data.values()), lambda row: f"item {_show(keys[row])}"  # type: ignore[return-value]
    lines: list[int] = []
    records: list[dict] = []
    if path.suffix.lower() != ".gz":
        check_not_utf16(path)
    with _open_binary(path) as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                raise EventDataError(
                    f"{path}: line {number}: not valid UTF-8; re-encode the file, e.g. iconv -f latin1 -t utf-8"
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line, object_pairs_hook=_unique_keys)
            except _DuplicateKey as error:
                raise EventDataError(
                    f"{path}: line {number}, column {error.key!r}: the key appears twice in this object, and only "
                    "one could be kept; remove the repeat"
                ) from None
            except (ValueError, RecursionError) as error:
                raise EventDataError(
                    f"{path}: line {number}: not valid JSON ({_show(str(error))}); each line must be one JSON object "
                    "(for one object item id -> fields over the whole file, pass format='item_json')"
                ) from None
            if not isinstance(record, dict):
                raise EventDataError(
                    f"{path}: line {number}: {_show(record)} is not a JSON object; each line must be one item's "
                    'fields, e.g. {"item_id": "a1", "brand": "Acme"}'
                )
            lines.append(number)
            records.append(record)
    if not records:
        raise EventDataError(f"{path}: the file has only blank lines, so it has no items. Check the path.")

    def where(row: int) -> str:
        return f"line {lines[row]}"

    found = {name for record in records for name in record}
    if item_column not in found:
        close = difflib.get_close_matches(item_column, sorted(found), n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise EventDataError(
            f"{path}: column {item_column!r}: no such item id field. Fields found: {sorted(found)}.{hint} Pass "
            "item_column= to name the field holding the item ids."
        )
    keys = [_json_id(path, where(row), item_column, record.get(item_column)) for row, record in enumerate(records)]
    records = [{name: value for name, value in record.items() if name != item_column} for record in records]
    return keys, records, where


def _json_id(path: Path, where: str, column: str, value: Any) -> str | None:
    """A JSON item id as exact text, by ``to_id_strings``' rules: strings as they are, integers (and whole floats
    below 2**53, which some writers produce from integer columns) as decimal text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 2.0**53:
        return str(int(value))
    raise EventDataError(
        f"{path}: {where}, column {column!r}: {_show(value)} is not an item id; ids must be strings or integers"
    )


def _record_defaults(
    path: Path, format: str, found: list[str], records: list[dict], item_column: str
) -> tuple[list[str], list[str], dict[str, str]]:
    """The default categorical and text columns, and the default separators, of a JSON source."""
    if format == "item_json":
        present = set(found)
        return (
            [name for name in ITEM_JSON_CATEGORICAL if name in present],
            [name for name in ITEM_JSON_TEXT if name in present],
            dict(ITEM_JSON_SEPARATORS),
        )
    stringy = dict.fromkeys(name for name in found if name != "item_id")
    for record in records:
        for name, value in record.items():
            if name in stringy and not (
                value is None
                or isinstance(value, str)
                or (isinstance(value, list) and all(v is None or isinstance(v, str) for v in value))
            ):
                del stringy[name]
    seen = {name for record in records for name, value in record.items() if value is not None}
    return [name for name in stringy if name in seen], [], {}


def _records_frame(
    path: Path,
    keys: list[str | None],
    records: list[dict],
    where: Callable[[int], str],
    categorical: list[str],
    text: list[str],
) -> pl.DataFrame:
    columns: dict[str, list] = {"item_id": keys}
    for name in categorical:
        columns[name] = [_categorical_value(path, where, row, name, r.get(name)) for row, r in enumerate(records)]
    for name in text:
        columns[name] = [_text_value(path, where, row, name, r.get(name)) for row, r in enumerate(records)]
    schema = {"item_id": pl.String, **{name: pl.List(pl.String) for name in categorical}}
    return pl.DataFrame(columns, schema={**schema, **{name: pl.String for name in text}})


def _scalar_text(value: Any) -> str | None:
    """A JSON scalar as text (as polars writes it: true/false, 5, 1.5); None for a list or an object."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return None


def _categorical_value(path: Path, where: Callable[[int], str], row: int, name: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    values = value if isinstance(value, list) else [value]
    result = []
    for element in values:
        if element is None:
            continue
        element_text = _scalar_text(element)
        if element_text is None:
            raise _nested(path, where(row), name, value)
        result.append(element_text)
    return result


def _text_value(path: Path, where: Callable[[int], str], row: int, name: str, value: Any) -> str | None:
    if value is None:
        return None
    result = _scalar_text(value)
    if result is None:
        raise _not_text(path, where(row), name, _show(value))
    return result


def _nested(path: Path, where: str, name: str, value: Any) -> EventDataError:
    return EventDataError(
        f"{path}: {where}, column {name!r}: {_show(value)} is a nested value; a categorical column holds one value "
        "or a list of values per item. Flatten it first (e.g. keep the leaf names), or leave the column out of "
        "categorical=."
    )


def _not_text(path: Path, where: str, name: str, shown: str) -> EventDataError:
    return EventDataError(
        f"{path}: {where}, column {name!r}: {shown} is not a single text; a text column holds one string per item. "
        "Join the parts into one string first, or list the column under categorical= if it holds attributes."
    )


# ---------------------------------------------------------------------------------------------------------------
# Typed sources (CSV/TSV read as text, Parquet with its own types)


_RECBOLE_TEXT_NAMES = ("title", "description", "desc")


def _recbole_item_frame(path: Path) -> tuple[pl.DataFrame, tuple[list[str], list[str], dict[str, str]]]:
    """A RecBole ``.item`` file with its ``name:type`` headers reduced to names, and its default columns."""
    frame = _read_file(path, "tsv", None, "utf8")
    frame = frame.with_columns(pl.col(c).cast(pl.String) for c in frame.columns)  # "1995" stays a token, not a year
    types = {}
    for header in frame.columns:
        name, _, kind = header.rpartition(":")
        if not name or kind not in ("token", "token_seq", "float", "float_seq"):
            raise EventDataError(
                f"{path}: header {header!r} is not a RecBole 'name:type' field (types token, token_seq, float, "
                "float_seq); a plain table should be named .tsv or .csv"
            )
        types[name] = kind
    frame = frame.rename(dict(zip(frame.columns, types)))
    text = [n for n, k in types.items() if k == "token_seq" and any(t in n.lower() for t in _RECBOLE_TEXT_NAMES)]
    categorical = [n for n, k in types.items() if k in ("token", "token_seq") and n not in text and n != "item_id"]
    separators = {n: " " for n in categorical if types[n] == "token_seq"}
    return frame, (categorical, text, separators)


def _frame_defaults(frame: pl.DataFrame, item_column: str) -> tuple[list[str], list[str], dict[str, str]]:
    def stringy(dtype: pl.DataType) -> bool:
        if isinstance(dtype, (pl.List, pl.Array)):
            dtype = dtype.inner
        return dtype == pl.String or isinstance(dtype, (pl.Categorical, pl.Enum))

    names = [name for name, dtype in frame.schema.items() if name not in (item_column, "item_id") and stringy(dtype)]
    return names, [], {}


def _scalar_dtype(dtype: pl.DataType) -> bool:
    return not (dtype.is_nested() or dtype in (pl.Binary, pl.Object))


def _typed_frame(
    path: Path,
    frame: pl.DataFrame,
    item_column: str,
    where: Callable[[int], str],
    categorical: list[str],
    text: list[str],
) -> pl.DataFrame:
    columns = [to_id_strings(frame[item_column], source=str(path)).alias("item_id")]
    for name in categorical:
        values = frame[name]
        dtype = values.dtype
        if isinstance(dtype, (pl.List, pl.Array)) and _scalar_dtype(dtype.inner):
            columns.append(values.cast(pl.List(pl.String)))
        elif dtype == pl.Null:
            columns.append(values.cast(pl.List(pl.String)))
        elif _scalar_dtype(dtype):
            columns.append(pl.select(pl.concat_list(values.cast(pl.String))).to_series().alias(name))
        else:
            raise _nested(path, where(_first_value(values)), name, values[_first_value(values)])
    for name in text:
        values = frame[name]
        if not _scalar_dtype(values.dtype):
            raise _not_text(path, where(_first_value(values)), name, f"a {values.dtype} value")
        columns.append(values.cast(pl.String))
    return pl.DataFrame(columns)


def _first_value(values: pl.Series) -> int:
    present = values.is_not_null()
    return int(present.arg_true()[0]) if present.any() else 0


# ---------------------------------------------------------------------------------------------------------------
# Shared: which columns, then validation, cleaning and the report


def _select(
    path: Path,
    format: str,
    found: Sequence[str],
    item_column: str,
    categorical: Sequence[str] | None,
    text: Sequence[str] | None,
    separators: Mapping[str, str | None] | None,
    defaults: tuple[list[str], list[str], dict[str, str]],
) -> tuple[list[str], list[str], dict[str, str]]:
    """The categorical and text columns (asked for, else the defaults) and each categorical column's separator."""
    default_categorical, default_text, default_separators = defaults
    text_names = list(text) if text is not None else [n for n in default_text if n not in (categorical or ())]
    categorical_names = (
        list(categorical) if categorical is not None else [n for n in default_categorical if n not in text_names]
    )
    id_name = "the item.json keys" if format == "item_json" else f"item_column={item_column!r}"
    for role, names in (("categorical", categorical_names), ("text", text_names)):
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise EventDataError(f"{path}: {role}= names {repeated} more than once; name each column once")
        for name in names:
            if not isinstance(name, str):
                raise EventDataError(f"{path}: {role}= must list column names, got {name!r}")
            if name in (item_column, "item_id"):
                raise EventDataError(
                    f"{path}: column {name!r} (in {role}=) is the item id or would clash with the output's item_id "
                    f"column ({id_name} gives the ids); leave it out or rename it"
                )
            if name not in found:
                close = difflib.get_close_matches(name, list(found), n=1, cutoff=0.6)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise EventDataError(
                    f"{path}: column {name!r} (in {role}=): no such column. Columns found: {list(found)}.{hint}"
                )
    both = [name for name in categorical_names if name in text_names]
    if both:
        raise EventDataError(f"{path}: column(s) {both} are in both categorical= and text=; pick one for each")
    chosen = {name: sep for name, sep in default_separators.items() if name in categorical_names}
    for name, separator in (separators or {}).items():
        if name not in categorical_names:
            kind = "a text column, kept whole" if name in text_names else "not one of the categorical columns"
            raise EventDataError(
                f"{path}: column {name!r}: separators= applies to categorical columns {categorical_names}, and "
                f"{name!r} is {kind}"
            )
        if separator is not None and (not isinstance(separator, str) or not separator):
            raise EventDataError(
                f"{path}: column {name!r}: the separator must be a non-empty string (None: do not split), "
                f"got {separator!r}"
            )
        chosen[name] = separator
    return categorical_names, text_names, {name: sep for name, sep in chosen.items() if sep is not None}


def _finish(
    path: Path,
    frame: pl.DataFrame,
    where: Callable[[int], str],
    item_column: str | None,
    categorical: list[str],
    text: list[str],
    separators: dict[str, str],
) -> ItemFeatures:
    """Refuse missing and repeated ids, clean the categorical values, fill the gaps, and count what was read."""
    ids = frame["item_id"]
    place = f", column {item_column!r}" if item_column else ""
    empty = ids.is_null() | (ids.str.len_bytes() == 0)
    if empty.any():
        row = int(empty.arg_true()[0])
        raise EventDataError(
            f"{path}: {where(row)}{place}: the item id is {'missing' if ids[row] is None else 'empty'} "
            f"({int(empty.sum())} row(s) like this); every row needs an item id. Fill it in or drop the row."
        )
    repeated = ids.is_duplicated()
    if repeated.any():
        first = int(repeated.arg_true()[0])
        same = (ids == ids[first]).arg_true()
        raise EventDataError(
            f"{path}: {where(int(same[0]))} and {where(int(same[1]))}{place}: item id {_show(ids[first])} appears "
            f"{len(same)} times ({ids.filter(repeated).n_unique()} id(s) repeated); the features of an item must be "
            "on one row. Merge or drop the repeated rows."
        )
    table = frame.with_columns(
        *(_clean(pl.col(name), separators.get(name)).alias(name) for name in categorical),
        *(pl.col(name).fill_null("") for name in text),
    ).select("item_id", *categorical, *text)
    missing = {name: int((table[name].list.len() == 0).sum()) for name in categorical}
    missing.update({name: int((table[name].str.strip_chars() == "").sum()) for name in text})
    distinct = {name: int(table[name].explode().drop_nulls().n_unique()) for name in categorical}
    report = {
        "rows_read": table.height,
        "missing": missing,
        "distinct_values": distinct,
        "items_without_features": None,
    }
    logger.info("%s: %d items; missing values per column %s", path, table.height, _nonzero(missing))
    return ItemFeatures(table=table, categorical=categorical, text=text, source=str(path), report=report)


def _clean(values: pl.Expr, separator: str | None) -> pl.Expr:
    """Split each value on ``separator`` (when given), strip the parts, drop empty ones; a missing value -> []."""
    if separator is not None:
        values = values.list.eval(pl.element().str.split(separator)).list.eval(pl.element().explode())
    stripped = pl.element().str.strip_chars()
    return values.list.eval(stripped.filter(stripped.str.len_chars() > 0)).fill_null(_EMPTY_LIST)


def _nonzero(counts: Mapping[str, int]) -> dict[str, int] | str:
    kept = {name: count for name, count in counts.items() if count}
    return kept or "none"
