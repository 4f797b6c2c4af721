"""The bad-input corpus: every hostile log we could think of, run through the real data path, with a figure.

Each case writes a small input (a file in a temporary folder, or an in-memory frame) and runs what the recipes
run: ``read_events`` -> ``clean_events`` (default ``CleaningConfig()``) -> ``build_sequences`` -> ``leave_one_out``.
Its outcome is one of

- ``error``: a bertrec error (``EventDataError``, ``ConfigError``, ``LeakageError``) whose message names the file
  (or the frame), says where and says what to do;
- ``counted drop``: every input row is a kept row or a drop counted under a reason in the cleaning report;
- ``kept``: accepted as it is, with the kept events checked;

or a failure: ``crash`` (any other exception, e.g. a bare polars traceback) or ``silent loss`` (rows that vanish
without being counted, at any step from the file to the split). The summary test counts them, and
``docs/bad_inputs.md`` documents every case (a test keeps the table in step with the corpus).
"""

from __future__ import annotations

import gzip
import logging
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pytest

from bertrec.data.cleaning import CleaningConfig, CleaningReport, clean_events
from bertrec.data.readers import read_events
from bertrec.data.schema import ColumnMapping, EventDataError
from bertrec.data.sequences import build_sequences
from bertrec.data.splits import Split, leave_one_out

DOCS = Path(__file__).resolve().parents[1] / "docs" / "bad_inputs.md"
OUTCOMES = ("error", "counted drop", "kept")
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
HEADER = "user_id,item_id,action,timestamp"
# Two users with enough events to be evaluated, so every accepted case reaches a non-empty split.
BASE = [
    f"u1,a,view,{T0}",
    f"u1,b,view,{T0 + 60}",
    f"u1,c,cart,{T0 + 120}",
    f"u1,d,buy,{T0 + 180}",
    f"u2,a,view,{T0 + 10}",
    f"u2,c,view,{T0 + 70}",
    f"u2,e,buy,{T0 + 130}",
]
ROW = len(BASE) + 1  # the data row of the first line a case appends to BASE
LINE = ROW + 1  # ... and its file line (the header is line 1)


@dataclass
class Source:
    """What a case hands to ``read_events``, and the number of data rows (events) it holds."""

    data: Any  # a path or an in-memory frame
    rows: int
    options: dict[str, Any] = field(default_factory=dict)  # read_events keyword arguments

    @property
    def label(self) -> str:
        """What an error message must name: the path, or the kind of frame."""
        if isinstance(self.data, Path):
            return str(self.data)
        if isinstance(self.data, pd.DataFrame):
            return "pandas DataFrame"
        return "LazyFrame" if isinstance(self.data, pl.LazyFrame) else "DataFrame"


@dataclass
class Result:
    source: Source
    outcome: str  # one of OUTCOMES, "crash" or "silent loss"
    message: str = ""  # the error, or the warnings and report notes of an accepted input
    events: pl.DataFrame | None = None  # what read_events returned
    report: CleaningReport | None = None
    split: Split | None = None
    accounting: dict[str, int] = field(default_factory=dict)


@dataclass
class Case:
    name: str
    make: Callable[[Path], Source]
    expected_outcome: str
    message_must_contain: list[str] = field(default_factory=list)
    drops: dict[str, int] = field(default_factory=dict)  # expected non-zero counts of the cleaning report
    check: Callable[[Result], None] | None = None  # more assertions on an accepted input


# ------------------------------------------------------------------------------------------------------------
# making inputs
# ------------------------------------------------------------------------------------------------------------
def text(name: str, lines: list[str] | bytes, rows: int, **options) -> Callable[[Path], Source]:
    """A text file of ``lines`` (joined with newlines) or raw bytes."""

    def make(folder: Path) -> Source:
        path = folder / name
        path.write_bytes(lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode())
        return Source(path, rows, options)

    return make


def log(*extra: str, header: str = HEADER, name: str = "events.csv", **options) -> Callable[[Path], Source]:
    """The base log plus ``extra`` rows, as CSV."""
    return text(name, [header, *BASE, *extra], len(BASE) + len(extra), **options)


def base_frame() -> pl.DataFrame:
    rows = [line.split(",") for line in BASE]
    users, items, actions, times = map(list, zip(*rows))
    return pl.DataFrame({"user_id": users, "item_id": items, "action": actions, "timestamp": list(map(int, times))})


def frame(make_frame: Callable[[], Any]) -> Callable[[Path], Source]:
    def make(folder: Path) -> Source:
        data = make_frame()
        rows = 0 if isinstance(data, pl.LazyFrame) else len(data)
        return Source(data, rows)

    return make


def parquet(make_frame: Callable[[], pl.DataFrame], name: str = "events.parquet") -> Callable[[Path], Source]:
    def make(folder: Path) -> Source:
        data = make_frame()
        data.write_parquet(folder / name)
        return Source(folder / name, data.height)

    return make


def with_base(**columns) -> pl.DataFrame:
    """The base log with some columns replaced (as typed columns), e.g. ``with_base(user_id=[True] * 7)``."""
    return base_frame().with_columns(pl.Series(name, values) for name, values in columns.items())


def base_plus(extra: dict[str, list]) -> pl.DataFrame:
    """The base log with typed rows appended (nulls allowed)."""
    return pl.concat([base_frame(), pl.DataFrame(extra, schema=base_frame().schema)])


def big_history(folder: Path) -> Source:
    """One user with a million events (items cycling through 1,000), beside the base log; Parquet keeps it fast."""
    n = 1_000_000
    history = pl.DataFrame(
        {
            "user_id": pl.repeat("heavy", n, eager=True),
            "item_id": pl.Series(np.arange(n) % 1000).cast(pl.String),
            "action": pl.repeat("view", n, eager=True),
            "timestamp": T0 + np.arange(n, dtype=np.int64),
        }
    )
    data = pl.concat([base_frame(), history])
    data.write_parquet(folder / "events.parquet")
    return Source(folder / "events.parquet", data.height)


def huge_integer_ids() -> pl.DataFrame:
    """The base log with integer ids (users 1 and 2), plus ids at the ends of the 64-bit ranges."""
    return pl.DataFrame(
        {
            "user_id": pl.Series([1, 1, 1, 1, 2, 2, 2, 2**64 - 1, 2**64 - 2], dtype=pl.UInt64),
            "item_id": pl.Series([0, 1, 2, 3, 0, 2, 4, 2**63 - 1, -(2**63)], dtype=pl.Int64),
            "action": ["view"] * 9,
            "timestamp": [T0 + i for i in range(9)],
        }
    )


def truncated_parquet(folder: Path) -> Source:
    base_frame().write_parquet(folder / "full.parquet")
    (folder / "events.parquet").write_bytes((folder / "full.parquet").read_bytes()[:-40])
    return Source(folder / "events.parquet", len(BASE))


def crlf_log(folder: Path) -> Source:
    """Windows line endings, with the action (a string) last, where a stray carriage return would stick."""
    lines = ["user_id,item_id,timestamp,action", *(f"{u},{i},{t},{a}" for u, i, a, t in base_frame().rows())]
    (folder / "events.csv").write_bytes("".join(line + "\r\n" for line in lines).encode())
    return Source(folder / "events.csv", len(BASE))


def pandas_frame(**columns) -> Callable[[Path], Source]:
    return frame(lambda: pd.DataFrame(columns))


# ------------------------------------------------------------------------------------------------------------
# checks on accepted inputs
# ------------------------------------------------------------------------------------------------------------
def ids(result: Result, column: str = "user_id") -> list:
    return result.events[column].to_list()


def check_mapped(result: Result) -> None:
    assert ids(result)[:4] == ["u1"] * 4 and ids(result, "item_id")[:2] == ["a", "b"]
    assert ids(result, "timestamp")[0] == float(T0)


def check_no_times(result: Result) -> None:
    assert not result.report.has_timestamps
    assert result.events["timestamp"].null_count() == result.events.height


def check_negative_times(result: Result) -> None:
    first = result.split.train.filter(pl.col("user_id") == "u3")
    assert first["timestamp"][0].to_list()[0] == -86_400.0  # 1969 comes first, not dropped, not moved


def check_far_future(result: Result) -> None:
    assert 32_503_680_000.0 in ids(result, "timestamp")  # year 3000, in seconds: kept as is


def check_milliseconds(result: Result) -> None:
    assert ids(result, "timestamp")[:2] == [float(T0), float(T0 + 60)]  # read as milliseconds, stored as seconds


def check_iso(result: Result) -> None:
    assert ids(result, "timestamp")[-3:] == [float(T0 + 600), float(T0 + 600), float(T0 + 660)]


def check_lossy(result: Result) -> None:
    assert ids(result, "item_id")[-1] == "caf\ufffd"


def check_bom(result: Result) -> None:
    assert result.events.columns[0] == "user_id" and ids(result)[0] == "u1"


def check_crlf(result: Result) -> None:
    assert not result.events["action"].str.contains("\r", literal=True).any()
    assert ids(result, "action")[-1] == "buy"


def check_quoted(result: Result) -> None:
    assert ids(result, "item_id")[-3:] == ["a,b", 'say "hi"', "tab\there"]


def check_merged(result: Result) -> None:
    assert ids(result, "item_id")[-2] == "f,view,1704067300\nu3,g"  # one CSV record, as the quoting says


def check_one_event_user(result: Result) -> None:
    assert result.split.stats["train_only_users"] == 1
    assert result.split.train.filter(pl.col("user_id") == "u3")["item_id"].to_list() == [["f"]]


def check_test_only_item(result: Result) -> None:
    """The unseen test item maps to [UNK_ITEM] and evaluation counts it as an unknown target (never a crash)."""
    from bertrec.baselines import popularity_scorer
    from bertrec.evaluation import evaluate_scorer
    from bertrec.tokenization import EventTokenizer

    tokenizer = EventTokenizer.build(result.split.train, layout="item", max_events=10)
    test = result.split.test
    assert "z" in test["target_item_id"].to_list() and tokenizer.item_indices(pl.Series(["z"])).tolist() == [-1]
    unseen = set(test["target_item_id"]) - set(result.split.train["item_id"].explode())
    assert unseen == {"z", "e"}  # z, and u2's last item e, are never seen in training
    metrics = evaluate_scorer(popularity_scorer(tokenizer, result.split.train), tokenizer, test, ks=(2,))
    assert metrics["unknown_targets"] == 2 and metrics["hr@2"] == 0.0


def check_million(result: Result) -> None:
    """A 10**6-event history flows through the split and the tokenizer, which truncates it to max_events."""
    from bertrec.tokenization import EventTokenizer

    heavy = result.split.train.filter(pl.col("user_id") == "heavy")
    assert heavy["item_id"].list.len().to_list() == [1_000_000 - 2]
    tokenizer = EventTokenizer.build(result.split.train, layout="time action item", max_events=50)
    encoded = tokenizer.encode_sequences(heavy)
    assert [len(tokens) for tokens in encoded] == [50 * 3]
    windows = tokenizer.encode_training_windows(heavy)
    assert sum(len(w) for w in windows) == (1_000_000 - 2) * 3 and max(len(w) for w in windows) == 150
    prompt = tokenizer.encode_sequences(result.split.test.filter(pl.col("user_id") == "heavy"))
    assert len(prompt[0]) == 150


def check_huge_ints(result: Result) -> None:
    assert ids(result)[-2:] == [str(2**64 - 1), str(2**64 - 2)]
    assert ids(result, "item_id")[-2:] == [str(2**63 - 1), str(-(2**63))]


def check_huge_text_ints(result: Result) -> None:
    assert ids(result, "item_id")[-2:] == ["1" * 40, "1" * 39 + "2"]  # distinct, never rounded through a float


def check_long_ids(result: Result) -> None:
    assert ids(result, "item_id")[-2:] == ["x" * 10_000, "x" * 9_999 + "y"]


def check_mixed_objects(result: Result) -> None:
    assert ids(result) == ["7", "007", "7", "u"]  # 7 and 7.0 are one user, "007" another


def check_float_nan(result: Result) -> None:
    assert ids(result) == ["1", None, "2"]  # never "1.0"


def check_index(result: Result) -> None:
    assert ids(result) == ["u", "v"] and ids(result, "timestamp") == [float(T0), float(T0 + 86_400)]


def check_json_mixed(result: Result) -> None:
    assert ids(result)[-2:] == ["1", "u2"]


def check_empty_id(result: Result) -> None:
    assert ids(result)[-1] == ""


def check_null_markers(result: Result) -> None:
    assert ids(result)[-2:] == ["NULL", "\\N"]


# ------------------------------------------------------------------------------------------------------------
# the corpus
# ------------------------------------------------------------------------------------------------------------
CASES = [
    # columns and layout
    Case(
        "missing_user_column",
        text("events.csv", ["item_id,action,timestamp", f"a,view,{T0}"], 1),
        "error",
        ["no user column 'user_id'", "Columns found: ['item_id', 'action', 'timestamp']", "--user_column"],
    ),
    Case(
        "renamed_columns",
        text("events.csv", ["uid,sku,event,ts", *BASE], len(BASE)),
        "error",
        ["no user column 'user_id'", "'uid'", "columns=ColumnMapping(user="],
    ),
    Case(
        "renamed_columns_mapped",
        text(
            "events.csv",
            ["uid,sku,event,ts", *BASE],
            len(BASE),
            columns=ColumnMapping(user="uid", item="sku", action="event", timestamp="ts"),
        ),
        "kept",
        check=check_mapped,
    ),
    Case(
        "mapped_column_typo",
        log(columns=ColumnMapping(timestamp="time")),
        "error",
        ["no timestamp column 'time'", "Did you mean 'timestamp'?"],
    ),
    Case(
        "semicolon_delimiter",
        text("events.csv", [r.replace(",", ";") for r in [HEADER, *BASE]], len(BASE)),
        "error",
        ["probably delimited by ';'", "delimiter=';'"],
    ),
    Case(
        "tab_delimited_named_csv",
        text("events.csv", [HEADER.replace(",", "\t"), *(r.replace(",", "\t") for r in BASE)], len(BASE)),
        "error",
        ["probably delimited by '\\t'", "delimiter='\\t'"],
    ),
    Case(
        "duplicate_header_column",
        log(header="user_id,item_id,item_id,timestamp"),
        "error",
        ["column(s) ['item_id'] more than once", "Rename or delete"],
    ),
    Case(
        "reserved_column_name",
        text("events.csv", [f"{HEADER},event_index", *(f"{r},{i}" for i, r in enumerate(BASE))], len(BASE)),
        "error",
        ["'event_index' clashes", "rename or drop the input column"],
    ),
    Case(
        "row_with_extra_field",
        log(f"u2,f,view,{T0 + 200},oops"),
        "error",
        ["cannot read it as csv", f"line {LINE} has 5 fields, the header has 4"],
    ),
    Case(
        "row_with_missing_field",
        log("u2,f,view"),
        "counted drop",
        drops={"null_timestamp": 1},
    ),
    Case(
        "preamble_before_header",
        text("events.csv", ["# exported 2024-01-02", HEADER, *BASE], len(BASE)),
        "error",
        ["cannot read it as csv", "line 2 has 4 fields, the header has 1"],
    ),
    Case(
        "cr_only_line_endings",
        text("events.csv", "\r".join([HEADER, *BASE]).encode(), len(BASE)),
        "error",
        ["bare carriage return", "Convert the line endings"],
    ),
    # wrong types
    Case(
        "timestamp_garbage_strings",
        log("u2,f,view,yesterday"),
        "error",
        [f"column 'timestamp', data row {ROW}", "cannot parse timestamp 'yesterday'", "ISO-8601"],
    ),
    Case(
        "timestamp_day_first_dates",
        log("u2,f,view,31/01/2024"),
        "error",
        [f"data row {ROW}", "cannot parse timestamp '31/01/2024'", "Fix the value or drop the row"],
    ),
    Case(
        "timestamp_boolean_column",
        parquet(lambda: with_base(timestamp=[True] * len(BASE))),
        "error",
        ["column 'timestamp'", "has type Boolean, which is not a time"],
    ),
    Case(
        "id_boolean_column",
        parquet(lambda: with_base(user_id=[True, False] * 3 + [True])),
        "error",
        ["column 'user_id'", "has type Boolean, which cannot be an id", "Convert the column to strings"],
    ),
    Case(
        "id_list_column",
        parquet(lambda: with_base(item_id=[["a", "b"]] * len(BASE))),
        "error",
        ["column 'item_id'", "has type List(String), which cannot be an id"],
    ),
    # missing values
    Case("null_user", log(f",f,view,{T0 + 200}"), "counted drop", drops={"null_user": 1}),
    Case("null_item", log(f"u2,,view,{T0 + 200}"), "counted drop", drops={"null_item": 1}),
    Case("null_action", log(f"u2,f,,{T0 + 200}"), "counted drop", drops={"null_action": 1}),
    Case("null_timestamp", log("u2,f,view,"), "counted drop", drops={"null_timestamp": 1}),
    Case("nan_timestamp_text", log("u2,f,view,NaN", "u2,g,view,nan"), "counted drop", drops={"null_timestamp": 2}),
    Case(
        "nulls_in_every_column",
        parquet(
            lambda: base_plus(
                {
                    "user_id": [None, "u2", "u2", "u2", None],
                    "item_id": ["f", None, "f", "f", None],
                    "action": ["view", "view", None, "view", None],
                    "timestamp": [T0 + 200, T0 + 201, T0 + 202, None, None],
                }
            )
        ),
        "counted drop",
        drops={"null_user": 2, "null_item": 1, "null_action": 1, "null_timestamp": 1},
    ),
    Case(
        "nan_and_null_timestamps_typed",
        parquet(
            lambda: (
                base_frame()
                .with_columns(pl.col("timestamp").cast(pl.Float64))
                .vstack(
                    pl.DataFrame(
                        {
                            "user_id": ["u2"] * 2,
                            "item_id": ["f", "g"],
                            "action": ["view"] * 2,
                            "timestamp": [np.nan, None],
                        }
                    )
                )
            )
        ),
        "counted drop",
        drops={"null_timestamp": 2},
    ),
    Case(
        "blank_lines",
        text("events.csv", [HEADER, *BASE[:3], "", *BASE[3:], ""], len(BASE) + 2),
        "counted drop",
        drops={"null_user": 2},
    ),
    Case(
        "timestamp_column_all_empty",
        text("events.csv", [HEADER, *(r.rsplit(",", 1)[0] + "," for r in BASE)], len(BASE)),
        "kept",
        ["the log has no timestamps"],
        check=check_no_times,
    ),
    Case(
        "quoted_empty_id",
        log(f'"",f,view,{T0 + 200}'),
        "kept",
        ["1 event(s) have the empty user_id ''", "null_user"],
        check=check_empty_id,
    ),
    Case(
        "sql_null_markers",
        log(f"NULL,f,view,{T0 + 200}", f"\\N,g,view,{T0 + 201}"),
        "kept",
        check=check_null_markers,
    ),
    # timestamps
    Case(
        "negative_timestamps",
        log("u3,f,view,-86400", f"u3,g,view,{T0}"),
        "kept",
        check=check_negative_times,
    ),
    Case("far_future_timestamps", log("u2,f,view,32503680000"), "kept", check=check_far_future),
    Case(
        "millisecond_timestamps",
        text(
            "events.csv",
            [HEADER, *(f"{r.rsplit(',', 1)[0]},{int(r.rsplit(',', 1)[1]) * 1000}" for r in BASE)],
            len(BASE),
        ),
        "kept",
        check=check_milliseconds,
    ),
    Case(
        "mixed_seconds_and_milliseconds",
        log(f"u2,f,view,{(T0 + 200) * 1000}"),
        "error",
        [f"data row {ROW}", "looks like milliseconds", "timestamp_unit='s' or 'ms'"],
    ),
    Case(
        "microsecond_timestamps",
        text("events.csv", [HEADER, *(f"{r.rsplit(',', 1)[0]},{T0 * 10**6}" for r in BASE)], len(BASE)),
        "error",
        ["column 'timestamp'", "micro- or nanoseconds", "Convert them to unix seconds"],
    ),
    Case(
        "infinite_timestamp",
        log("u2,f,view,inf"),
        "error",
        [f"column 'timestamp', data row {ROW}", "is not finite"],
    ),
    Case(
        "iso_timestamps_with_offsets",
        log("u3,f,view,2024-01-01T00:10:00Z", "u3,g,view,2024-01-01 01:10:00+01:00", "u3,h,view,2024-01-01T00:11"),
        "kept",
        check=check_iso,
    ),
    # duplicates
    Case("duplicate_rows", log(BASE[1], BASE[1], BASE[5]), "counted drop", drops={"duplicate": 3}),
    Case(
        "duplicate_rows_without_timestamps",
        text("events.csv", ["user_id,item_id", "u1,a", "u1,a", "u1,b", "u1,c"], 4),
        "kept",
        ["duplicates were not dropped"],
    ),
    # encodings and line endings
    Case(
        "non_utf8_bytes",
        text("events.csv", f"{HEADER}\n{chr(10).join(BASE)}\nu2,caf\xe9,view,{T0 + 200}\n".encode("latin-1"), 8),
        "error",
        [f"not valid UTF-8 at line {LINE}", "iconv -f latin1 -t utf-8", 'encoding="utf8-lossy"'],
    ),
    Case(
        "non_utf8_bytes_lossy",
        text(
            "events.csv",
            f"{HEADER}\n{chr(10).join(BASE)}\nu2,caf\xe9,view,{T0 + 200}\n".encode("latin-1"),
            8,
            encoding="utf8-lossy",
        ),
        "kept",
        check=check_lossy,
    ),
    Case(
        "utf16_file",
        text("events.csv", "\n".join([HEADER, *BASE]).encode("utf-16"), len(BASE)),
        "error",
        ["UTF-16 text", "not UTF-8", "iconv -f utf-16 -t utf-8"],
    ),
    Case(
        "utf8_bom_in_header",
        text("events.csv", "\ufeff".encode() + "\n".join([HEADER, *BASE]).encode(), len(BASE)),
        "kept",
        check=check_bom,
    ),
    Case("crlf_line_endings", crlf_log, "kept", check=check_crlf),
    # quotes and delimiters
    Case(
        "quotes_and_delimiters_in_ids",
        log(f'u2,"a,b",view,{T0 + 200}', f'u2,"say ""hi""",view,{T0 + 201}', f'u2,"tab\there",view,{T0 + 202}'),
        "kept",
        check=check_quoted,
    ),
    Case(
        "stray_quote_in_field",
        log(f'u2,tv 55",view,{T0 + 200}'),
        "error",
        ["cannot read it as csv", f"line {LINE}: a quote inside an unquoted field", '"tv 55"""'],
    ),
    Case(
        "text_after_closing_quote",
        log(f'u2,"tv" 55,view,{T0 + 200}'),
        "error",
        [f"line {LINE}: text follows the closing quote"],
    ),
    Case(
        "unclosed_quote",
        log(f'u2,"tv 55,view,{T0 + 200}', f"u2,g,view,{T0 + 201}"),
        "error",
        [f"the quote opened on line {LINE} is never closed"],
    ),
    Case(
        "quote_merging_lines",
        # two stray quotes make one valid CSV record of two lines: 2 records, the reader warns about the row
        log(f'u3,"f,view,{T0 + 100}\nu3,g",view,{T0 + 200}', f"u3,h,view,{T0 + 300}"),
        "kept",
        [f"column 'item_id', data row {ROW}", "spans 2 lines", "stray quote"],
        check=check_merged,
    ),
    # empty inputs and broken files
    Case("empty_file", text("events.csv", b"", 0), "error", ["the file is empty"]),
    Case("header_only_file", text("events.csv", [HEADER], 0), "error", ["0 data rows", "right file"]),
    Case("blank_file", text("events.csv", b"\n\n\n", 0), "error", ["the file is empty"]),
    Case(
        "header_only_parquet",
        parquet(lambda: base_frame().head(0)),
        "error",
        ["the file has no events", "0 data rows"],
    ),
    Case("empty_dataframe", frame(lambda: base_frame().head(0)), "error", ["the frame has no events (0 rows)"]),
    Case("truncated_parquet", truncated_parquet, "error", ["cannot read it as parquet", "complete Parquet file"]),
    Case(
        "truncated_gzip_csv",
        text("events.csv.gz", gzip.compress("\n".join([HEADER, *BASE * 50]).encode())[:-30], len(BASE) * 50),
        "error",
        ["cannot read it as csv", "compressed: check that it is complete"],
    ),
    Case(
        "malformed_jsonl_line",
        text("events.jsonl", ['{"user_id": "u1", "item_id": "a"}', '{"user_id": "u1", "item_id": }'], 2),
        "error",
        ["cannot read it as jsonl", "line 2 is not valid JSON"],
    ),
    Case(
        "json_array_not_lines",
        text("events.jsonl", ['[{"user_id": "u1", "item_id": "a"}, {"user_id": "u1", "item_id": "b"}]'], 2),
        "error",
        ["each line must be one JSON object", "line 1 is not a JSON object"],
    ),
    Case(
        "lazyframe_failing_query",
        frame(lambda: base_frame().lazy().select("user_id", "item_id", "price")),
        "error",
        ["collecting it failed", "fix the query first"],
    ),
    # histories
    Case("user_with_one_event", log(f"u3,f,view,{T0}"), "kept", check=check_one_event_user),
    Case(
        "item_only_in_test",
        log(f"u1,z,view,{T0 + 900}"),
        "kept",
        check=check_test_only_item,
    ),
    Case("million_event_history", big_history, "kept", check=check_million),
    # ids
    Case("huge_integer_ids", parquet(huge_integer_ids), "kept", check=check_huge_ints),
    Case(
        "huge_integer_ids_text",
        log(f"u2,{'1' * 40},view,{T0 + 200}", f"u2,{'1' * 39}2,view,{T0 + 201}"),
        "kept",
        check=check_huge_text_ints,
    ),
    Case(
        "huge_float_ids",
        parquet(lambda: base_frame().with_columns(pl.Series("user_id", [2.0**60] + [1.0] * 6))),
        "error",
        ["column 'user_id', data row 1", "is not a whole number below 2**53", "astype(str)"],
    ),
    Case(
        "float32_ids_above_2_24",
        pandas_frame(user_id=np.array([16_777_217, 1], dtype=np.float32), item_id=["a", "b"]),
        "error",
        ["pandas DataFrame: column 'user_id', data row 1", "below 2**24"],
    ),
    Case(
        "long_string_ids",
        log(f"u2,{'x' * 10_000},view,{T0 + 200}", f"u2,{'x' * 9_999}y,view,{T0 + 201}"),
        "kept",
        check=check_long_ids,
    ),
    Case(
        "pandas_mixed_type_ids",
        pandas_frame(user_id=[7, "007", 7.0, "u"], item_id=["a", "b", "c", "d"]),
        "kept",
        check=check_mixed_objects,
    ),
    Case(
        "pandas_float_ids_with_nan",
        pandas_frame(user_id=[1.0, np.nan, 2.0], item_id=["a", "b", "c"]),
        "counted drop",
        drops={"null_user": 1},
        check=check_float_nan,
    ),
    Case(
        "pandas_fractional_float_id",
        pandas_frame(user_id=["u1", "u1", "u2"], item_id=[1.0, 2.0, 1.5]),
        "error",
        ["pandas DataFrame: column 'item_id', data row 3", "id 1.5 is not a whole number"],
    ),
    Case(
        "pandas_duplicate_column_names",
        frame(lambda: pd.DataFrame([["u1", "a", "b"]], columns=["user_id", "item_id", "item_id"])),
        "error",
        ["column name(s) ['item_id'] appear more than once", "df.columns.duplicated()"],
    ),
    Case(
        "pandas_ids_in_index",
        frame(
            lambda: pd.DataFrame(
                {"item_id": ["a", "b"], "timestamp": [T0, T0 + 86_400]},
                index=pd.Index(["u", "v"], name="user_id"),
            )
        ),
        "kept",
        check=check_index,
    ),
    Case(
        "jsonl_mixed_id_types",
        text("events.jsonl", ['{"user_id": 1, "item_id": "a"}', '{"user_id": "u2", "item_id": 5}'], 2),
        "kept",
        check=check_json_mixed,
    ),
]


# ------------------------------------------------------------------------------------------------------------
# running a case
# ------------------------------------------------------------------------------------------------------------
class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def run(case: Case, folder: Path) -> Result:
    """The user's path, classified; nothing raised here escapes (a crash is an outcome)."""
    source = case.make(folder)
    handler = _Collect()
    logger = logging.getLogger("bertrec")
    logger.addHandler(handler)
    try:
        events = read_events(source.data, **source.options)
        cleaned, report = clean_events(events, CleaningConfig())
        sequences = build_sequences(cleaned)
        split = leave_one_out(sequences)
    except Exception as error:  # noqa: BLE001 - classifying every failure is the point
        clear = type(error).__module__.startswith("bertrec.")
        return Result(source, "error" if clear else "crash", f"{type(error).__name__}: {error}")
    finally:
        logger.removeHandler(handler)
    accounting = {
        "rows": source.rows,
        "read": events.height,
        "report_input": report.input_rows,
        "kept": report.output_rows,
        "dropped": sum(report.dropped.values()),
        "sequenced": int(sequences["item_id"].list.len().sum() or 0),
        "split": int(split.train["item_id"].list.len().sum() or 0) + split.valid.height + split.test.height,
    }
    conserved = (
        accounting["rows"] == accounting["read"] == accounting["report_input"]
        and accounting["kept"] + accounting["dropped"] == accounting["read"]
        and accounting["kept"] == accounting["sequenced"] == accounting["split"]
        and cleaned.height == accounting["kept"]
    )
    outcome = "silent loss" if not conserved else ("counted drop" if accounting["dropped"] else "kept")
    message = "\n".join([*handler.messages, *report.notes])
    return Result(source, outcome, message, events, report, split, accounting)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Callable[[Case], Result]:
    """Each case run once per module, on demand (the parametrized tests and the summary share the runs)."""
    cache: dict[str, Result] = {}

    def get(case: Case) -> Result:
        if case.name not in cache:
            cache[case.name] = run(case, tmp_path_factory.mktemp(case.name))
        return cache[case.name]

    return get


# ------------------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------------------
def test_the_corpus_is_well_formed():
    names = [case.name for case in CASES]
    assert len(names) == len(set(names)) and all(re.fullmatch(r"[a-z0-9_]+", n) for n in names)
    assert {case.expected_outcome for case in CASES} == set(OUTCOMES)
    for case in CASES:
        assert bool(case.drops) == (case.expected_outcome == "counted drop"), case.name
        assert case.message_must_contain or case.expected_outcome != "error", case.name


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_bad_input(case, results):
    result = results(case)
    assert result.outcome == case.expected_outcome, (result.outcome, result.message, result.accounting)
    for fragment in case.message_must_contain:
        assert fragment in result.message, (fragment, result.message)
    if result.outcome == "error":
        assert result.source.label in result.message  # names the file or the kind of frame
        return
    dropped = {reason: rows for reason, rows in result.report.dropped.items() if rows}
    assert dropped == case.drops  # counted, and under the reason that explains the drop
    assert all(f"{reason} {rows:,}" in result.report.summary() for reason, rows in dropped.items())
    if case.check is not None:
        case.check(result)


def test_corpus_summary(results, request):
    """The figure: every bad input handled (clear error, counted drop, or kept), no crash, no silent loss."""
    outcomes = Counter(results(case).outcome for case in CASES)
    tried = len(CASES)
    handled = sum(outcomes[outcome] for outcome in OUTCOMES)
    line = (
        f"bad inputs: {tried} tried, {handled} handled ({outcomes['error']} clear errors, "
        f"{outcomes['counted drop']} counted drops, {outcomes['kept']} kept), {outcomes['crash']} crashes, "
        f"{outcomes['silent loss']} silent losses"
    )
    collected = getattr(pytest, "reliability_summary", None)
    if collected is None:
        try:  # conftest.py's session list, printed in the terminal summary
            collected = request.getfixturevalue("reliability_summary")
        except pytest.FixtureLookupError:
            collected = None
    if collected is not None:
        collected.append(line)
    else:
        print(line)
    documented = re.findall(r"`(bad inputs: [^`]*)`", DOCS.read_text(encoding="utf-8"))
    assert documented == [line], "update the figure in docs/bad_inputs.md"
    failed = {case.name: results(case).outcome for case in CASES if results(case).outcome not in OUTCOMES}
    assert tried == handled and outcomes["crash"] == 0 and outcomes["silent loss"] == 0, failed
    assert outcomes == Counter(case.expected_outcome for case in CASES)


def test_silent_loss_and_crash_are_detected(tmp_path):
    """The runner itself: rows that vanish are a silent loss, a foreign exception is a crash, not a pass."""
    lossy = Case("lossy", lambda folder: Source(base_frame(), len(BASE) + 1), "kept")
    assert run(lossy, tmp_path).outcome == "silent loss"
    crashing = Case("crashing", lambda folder: Source(base_frame(), len(BASE), {"columns": 5}), "error")
    assert run(crashing, tmp_path).outcome == "crash"  # a TypeError is not a clear bertrec error


def test_the_docs_table_lists_every_case_with_its_outcome():
    rows = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\|\s*`([a-z0-9_]+)`\s*\|", line)
        if match:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            rows[match.group(1)] = cells
    assert set(rows) == {case.name for case in CASES}, "docs/bad_inputs.md and the corpus list different cases"
    for case in CASES:
        cells = rows[case.name]
        assert cells[2] == case.expected_outcome, (case.name, cells[2])
        for reason in case.drops:
            assert f"`{reason}`" in cells[3], (case.name, reason)


def test_the_recipe_path_agrees_on_file_cases(results):
    """``prepare_data`` (what the recipes and CLI run) gives the same error or the same cleaning report."""
    from bertrec.args import DataArguments
    from bertrec.recipes.common import prepare_data

    compared = 0
    for case in CASES:
        result = results(case)
        source = result.source
        if not isinstance(source.data, Path) or set(source.options) - {"columns"} or case.name.startswith("million"):
            continue  # frames and options without a command-line flag (encoding=) have no recipe path
        mapping = source.options.get("columns") or ColumnMapping()
        args = DataArguments(
            dataset=str(source.data),
            user_column=mapping.user,
            item_column=mapping.item,
            action_column=mapping.action,
            timestamp_column=mapping.timestamp,
            min_user_events=1,  # CleaningConfig()'s default; the recipes' default of 3 is a choice, not a fix
        )
        if result.outcome == "error":
            with pytest.raises(Exception) as error:
                prepare_data(args)
            assert f"{type(error.value).__name__}: {error.value}" == result.message, case.name
        elif result.split.valid.height == 0:  # nothing to evaluate: the recipes refuse to train blind
            with pytest.raises(EventDataError, match="left no validation or test users"):
                prepare_data(args)
        else:
            prepared = prepare_data(args)
            assert prepared.report.to_dict() == result.report.to_dict(), case.name
            assert prepared.split.stats == result.split.stats, case.name
        compared += 1
    assert compared >= 40
