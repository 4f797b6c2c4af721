"""read_events: every source gives the same canonical table, ids stay exact, and bad input fails with the fix."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import polars as pl
import pytest

from bertrec.data.readers import read_events
from bertrec.data.schema import (
    CANONICAL_COLUMNS,
    CANONICAL_SCHEMA,
    DEFAULT_ACTION,
    ColumnMapping,
    EventDataError,
    normalize_timestamps,
)

T0 = 1_704_067_200  # 2024-01-01T00:00:00Z
PLUS_ONE = dt.timezone(dt.timedelta(hours=1))


def typed_log() -> pl.DataFrame:
    """A small log with the awkward ids: leading zeros, "7" next to "007", a comma and a quote inside ids."""
    return pl.DataFrame(
        {
            "user_id": ["007", "7", "007", 'u"q', "7"],
            "item_id": ["a,b", "x", 'say "hi"', "x", "a\tb"],
            "action": ["view", "cart", "view", "buy", "view"],
            "timestamp": [T0, T0 + 60, T0 + 5, T0 + 7, T0 + 61],
            "note": ["n0", "n1", None, "n3", "n4"],
        }
    )


def expected_log() -> pl.DataFrame:
    log = typed_log()
    return pl.DataFrame(
        {
            "user_id": log["user_id"],
            "item_id": log["item_id"],
            "action": log["action"],
            "timestamp": log["timestamp"].cast(pl.Float64),
            "event_index": pl.Series(range(log.height), dtype=pl.Int64),
            "note": log["note"],
        }
    )


def test_every_source_gives_the_same_canonical_table(tmp_path):
    log = typed_log()
    log.write_csv(tmp_path / "log.csv")
    log.write_csv(tmp_path / "log.tsv", separator="\t")
    log.write_csv(tmp_path / "log.txt", separator="\t")
    log.write_parquet(tmp_path / "log.parquet")
    log.write_ndjson(tmp_path / "log.jsonl")
    sources = {
        "csv": read_events(tmp_path / "log.csv"),
        "tsv": read_events(tmp_path / "log.tsv"),
        "tsv by delimiter": read_events(str(tmp_path / "log.txt"), delimiter="\t"),
        "parquet": read_events(tmp_path / "log.parquet"),
        "jsonl": read_events(tmp_path / "log.jsonl"),
        "pandas": read_events(log.to_pandas()),
        "polars": read_events(log),
        "lazy": read_events(log.lazy()),
    }
    expected = expected_log()
    for name, events in sources.items():
        assert events.columns == [*CANONICAL_COLUMNS, "note"], name
        assert dict(events.schema) | {"note": pl.String} == CANONICAL_SCHEMA | {"note": pl.String}, name
        assert events.equals(expected), name


def test_ids_are_exact_strings_never_numbers(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id\n007,0042\n7,42\n007,42\n")
    events = read_events(tmp_path / "log.csv")
    assert events["user_id"].to_list() == ["007", "7", "007"]
    assert events["item_id"].to_list() == ["0042", "42", "42"]
    assert events["user_id"].n_unique() == 2


def test_integer_and_whole_float_ids_become_integer_text():
    frame = pl.DataFrame({"user_id": [7, 8], "item_id": [1.0, None]})
    events = read_events(frame)
    assert events["user_id"].to_list() == ["7", "8"]
    assert events["item_id"].to_list() == ["1", None]  # pandas turns int ids with gaps into floats
    with pytest.raises(EventDataError, match=r"column 'item_id', data row 2: id 2\.5 is not a whole number"):
        read_events(pl.DataFrame({"user_id": ["a", "b"], "item_id": [1.0, 2.5]}))


def test_mixed_type_pandas_object_ids_are_stringified():
    frame = pd.DataFrame({"user_id": ["007", 7, None, 3.0], "item_id": ["a", "b", "c", "d"]})
    events = read_events(frame)
    assert events["user_id"].to_list() == ["007", "7", None, "3"]
    assert events["event_index"].to_list() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "values",
    [
        [T0, T0 + 90],  # seconds
        [T0 * 1000, (T0 + 90) * 1000],  # milliseconds, detected
        [str(T0), f"{T0 + 90}.0"],  # numeric strings
        ["2024-01-01", "2024-01-01T00:01:30Z"],  # date only, UTC marker
        ["2024-01-01 00:00:00", "2024-01-01T01:01:30+01:00"],  # naive is UTC; offsets are applied
        ["2024-01-01T00:00:00.000", "2024-01-01T00:01:30.000+0000"],
        [dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 1, 30)],
        [dt.datetime(2024, 1, 1, 1, tzinfo=PLUS_ONE), dt.datetime(2024, 1, 1, 1, 1, 30, tzinfo=PLUS_ONE)],
    ],
)
def test_timestamp_forms_normalise_to_the_same_seconds(values):
    seconds = normalize_timestamps(pl.Series("ts", values))
    assert seconds.dtype == pl.Float64
    assert seconds.to_list() == [float(T0), float(T0 + 90)]


def test_timestamp_units_dates_and_missing_values():
    assert normalize_timestamps(pl.Series([dt.date(2024, 1, 1)])).to_list() == [float(T0)]
    assert normalize_timestamps(pl.Series([1500, 2500]), unit="ms").to_list() == [1.5, 2.5]
    assert normalize_timestamps(pl.Series([1500, 2500]), unit="auto").to_list() == [1500.0, 2500.0]
    assert normalize_timestamps(pl.Series(["10", "", " ", None, "nan"])).to_list() == [10.0, None, None, None, None]
    assert normalize_timestamps(pl.Series([1.0, float("nan"), None])).to_list() == [1.0, None, None]


def test_timestamp_errors_name_the_row_the_value_and_the_count(tmp_path):
    rows = ["user_id,item_id,ts", "u,i,2024-01-01", "u,i,17", "u,i,2024-13-45T10:00", "u,i,soon"]
    (tmp_path / "events.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(EventDataError) as error:
        read_events(tmp_path / "events.csv", columns=ColumnMapping(timestamp="ts"))
    message = str(error.value)
    assert "events.csv: column 'ts', data row 3" in message
    assert "'2024-13-45T10:00'" in message and "2 row(s)" in message and "Fix the value or drop the row" in message


def test_mixed_or_too_large_numeric_units_are_refused():
    with pytest.raises(EventDataError, match=r"data row 2: timestamp 1704067200 looks like seconds"):
        normalize_timestamps(pl.Series("ts", [T0 * 1000, T0, T0 * 1000]))
    assert normalize_timestamps(pl.Series([T0 * 1000, T0]), unit="ms").to_list() == [float(T0), T0 / 1000]
    with pytest.raises(EventDataError, match="micro- or nanoseconds"):
        normalize_timestamps(pl.Series("ts", [T0 * 1_000_000]))
    with pytest.raises(EventDataError, match="not finite"):
        normalize_timestamps(pl.Series("ts", [1.0, float("inf")]))


def test_column_mapping_renames_and_keeps_extras_in_order(tmp_path):
    (tmp_path / "log.csv").write_text("session,uid,sku,event,when,price\ns1,1,a,click,5,9.5\ns2,2,b,buy,6,1.0\n")
    mapping = ColumnMapping(user="uid", item="sku", action="event", timestamp="when")
    events = read_events(tmp_path / "log.csv", columns=mapping)
    assert events.columns == [*CANONICAL_COLUMNS, "session", "price"]
    assert events.row(1) == ("2", "b", "buy", 6.0, 1, "s2", "1.0")  # extras from text files stay text
    as_dict = read_events(
        tmp_path / "log.csv", columns={"user": "uid", "item": "sku", "action": "event", "timestamp": "when"}
    )
    assert as_dict.equals(events)


def test_log_without_action_or_timestamp_gets_the_defaults(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id\nu,a\nu,b\n")
    events = read_events(tmp_path / "log.csv")
    assert events["action"].to_list() == [DEFAULT_ACTION, DEFAULT_ACTION]
    assert events["timestamp"].dtype == pl.Float64 and events["timestamp"].null_count() == 2
    assert events["event_index"].to_list() == [0, 1]


def test_missing_column_error_names_file_column_found_columns_and_fix(tmp_path):
    (tmp_path / "events.csv").write_text("uid,item_id\nu,a\n")
    with pytest.raises(EventDataError) as error:
        read_events(tmp_path / "events.csv")
    message = str(error.value)
    assert "events.csv" in message and "'user_id'" in message and "['uid', 'item_id']" in message
    assert "columns=ColumnMapping(user=" in message and "--user_column" in message


def test_a_header_read_as_one_column_suggests_the_delimiter(tmp_path):
    (tmp_path / "events.csv").write_text("user_id;item_id\nu;a\n")
    with pytest.raises(EventDataError, match="probably delimited by ';'. Pass delimiter=';'"):
        read_events(tmp_path / "events.csv")
    assert read_events(tmp_path / "events.csv", delimiter=";")["item_id"].to_list() == ["a"]


def test_an_explicit_action_or_timestamp_column_must_exist(tmp_path):
    (tmp_path / "log.csv").write_text("user_id,item_id,action\nu,a,view\n")
    with pytest.raises(EventDataError, match="no timestamp column 'ts'"):
        read_events(tmp_path / "log.csv", columns=ColumnMapping(timestamp="ts"))
    with pytest.raises(EventDataError, match="no action column 'event'"):
        read_events(tmp_path / "log.csv", columns={"action": "event"})


def test_input_columns_clashing_with_canonical_names_are_refused():
    frame = pl.DataFrame({"uid": ["u"], "user_id": ["other"], "item_id": ["a"]})
    with pytest.raises(EventDataError, match="'user_id' clashes"):
        read_events(frame, columns=ColumnMapping(user="uid"))
    with pytest.raises(EventDataError, match="'event_index' clashes"):
        read_events(pl.DataFrame({"user_id": ["u"], "item_id": ["a"], "event_index": [5]}))


@pytest.mark.parametrize("content", [b"", b"user_id,item_id,timestamp\n"])
def test_empty_and_header_only_files_have_no_events(tmp_path, content):
    (tmp_path / "events.csv").write_bytes(content)
    with pytest.raises(EventDataError, match="events.csv: the file (is empty|has no events)"):
        read_events(tmp_path / "events.csv")


def test_zero_row_frames_and_files_have_no_events(tmp_path):
    empty = pl.DataFrame(schema={"user_id": pl.String, "item_id": pl.String})
    with pytest.raises(EventDataError, match="no events"):
        read_events(empty)
    empty.write_parquet(tmp_path / "events.parquet")
    with pytest.raises(EventDataError, match="events.parquet: the file has no events"):
        read_events(tmp_path / "events.parquet")


def test_non_utf8_bytes_are_a_clear_error_unless_lossy_is_asked_for(tmp_path):
    (tmp_path / "events.csv").write_bytes(b"user_id,item_id\nu1,cafe\nu2,caf\xe9\n")
    with pytest.raises(EventDataError) as error:
        read_events(tmp_path / "events.csv")
    message = str(error.value)
    assert "events.csv" in message and "not valid UTF-8 at line 3" in message and "utf8-lossy" in message
    assert error.value.__cause__ is not None  # the reader's exception is chained, not lost
    events = read_events(tmp_path / "events.csv", encoding="utf8-lossy")
    assert events["item_id"].to_list() == ["cafe", "caf\ufffd"]
    (tmp_path / "events.jsonl").write_bytes(b'{"user_id": "u", "item_id": "caf\xe9"}\n')
    with pytest.raises(EventDataError, match="events.jsonl: the file is not valid UTF-8 at line 1"):
        read_events(tmp_path / "events.jsonl")


def test_broken_files_raise_event_data_errors_naming_the_file(tmp_path):
    (tmp_path / "events.parquet").write_text("not parquet at all")
    with pytest.raises(EventDataError, match="events.parquet: cannot read it as parquet"):
        read_events(tmp_path / "events.parquet")
    (tmp_path / "events.jsonl").write_text('{"user_id": "u", "item_id": "a"}\n{"user_id": \n')
    with pytest.raises(EventDataError, match="events.jsonl: cannot read it as jsonl"):
        read_events(tmp_path / "events.jsonl")
    (tmp_path / "events.csv").write_text("user_id,item_id\nu,a,extra,fields\n")
    with pytest.raises(EventDataError, match="events.csv: cannot read it as csv"):
        read_events(tmp_path / "events.csv")
    (tmp_path / "events.dat").write_text("user_id,item_id\nu,a\n")
    with pytest.raises(EventDataError, match="pass format="):
        read_events(tmp_path / "events.dat")
    assert read_events(tmp_path / "events.dat", format="csv").height == 1
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_events(tmp_path / "missing.csv")


def test_jsonl_types_are_inferred_from_every_line(tmp_path):
    lines = [f'{{"user_id": {i}, "item_id": "a", "timestamp": {T0}}}' for i in range(150)]
    lines.append('{"user_id": "007", "item_id": "b", "timestamp": "2024-01-01"}')
    (tmp_path / "events.ndjson").write_text("\n".join(lines) + "\n")
    events = read_events(tmp_path / "events.ndjson")
    assert events["user_id"].to_list()[-2:] == ["149", "007"]
    assert events["timestamp"].unique().to_list() == [float(T0)]
