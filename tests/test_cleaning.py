"""clean_events: each reason is counted, the report adds up, and k-core really reaches its fixpoint."""

from __future__ import annotations

import json

import polars as pl
import pytest

from bertrec.data.cleaning import _CHECK_SEED, CleaningConfig, CleaningReport, clean_events
from bertrec.data.schema import CANONICAL_COLUMNS, EventDataError

Row = tuple[str | None, str | None, str | None, float | None]


def events_of(rows: list[Row], **extra: list) -> pl.DataFrame:
    """Canonical events from (user, item, action, timestamp) tuples; event_index is the list position."""
    users, items, actions, times = (list(column) for column in zip(*rows))
    return pl.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "action": actions,
            "timestamp": times,
            "event_index": list(range(len(rows))),
            **extra,
        },
        schema_overrides={
            "user_id": pl.String,
            "item_id": pl.String,
            "action": pl.String,
            "timestamp": pl.Float64,
            "event_index": pl.Int64,
        },
    )


def assert_adds_up(report: CleaningReport) -> None:
    assert report.input_rows == report.output_rows + sum(report.dropped.values())


def test_each_reason_is_counted_once_under_the_first_that_applies():
    rows: list[Row] = [
        ("u1", "a", "view", 1.0),
        (None, None, "view", 2.0),  # null user (and item): counted once, as null_user
        ("u1", None, "view", 3.0),
        ("u1", "a", None, 4.0),
        ("u1", "a", "view", None),
        ("u1", "b", "spam", 5.0),  # action_filtered
        ("u1", "a", "view", 1.0),  # exact duplicate of row 0
        ("u1", "b", "view", 6.0),
        ("u1", "b", "view", 7.0),  # consecutive repeat of the previous event
        ("u2", "c", "view", 1.0),  # item c has one event: min_item_events
        ("u2", "a", "view", 2.0),
        ("u3", "a", "view", 8.0),  # u3 has one event: min_user_events
        ("u2", "b", "view", 3.0),
    ]
    config = CleaningConfig(
        collapse_consecutive_repeats=True, min_user_events=2, min_item_events=2, keep_actions=["view"]
    )
    cleaned, report = clean_events(events_of(rows), config)
    assert report.dropped == {
        "null_user": 1,
        "null_item": 1,
        "null_action": 1,
        "null_timestamp": 1,
        "action_filtered": 1,
        "duplicate": 1,
        "consecutive_repeat": 1,
        "min_item_events": 1,
        "min_user_events": 1,
    }
    assert list(report.dropped) == [
        "null_user",
        "null_item",
        "null_action",
        "null_timestamp",
        "action_filtered",
        "duplicate",
        "consecutive_repeat",
        "min_item_events",
        "min_user_events",
    ]
    assert cleaned["event_index"].to_list() == [0, 7, 10, 12]
    assert_adds_up(report)
    assert (report.users_before, report.users_after, report.items_before, report.items_after) == (3, 2, 3, 2)
    assert (report.actions_before, report.actions_after) == (2, 1)


def test_output_keeps_input_order_event_index_and_extra_columns():
    rows: list[Row] = [("u2", "b", "view", 9.0), ("u1", "a", "view", 1.0), ("u1", "b", "view", 5.0)]
    events = events_of(rows, price=[1.5, 2.5, 3.5]).select(
        "price", "timestamp", "event_index", "action", "item_id", "user_id"
    )
    cleaned, report = clean_events(events.reverse(), CleaningConfig(min_user_events=2))
    assert cleaned.columns == [*CANONICAL_COLUMNS, "price"]
    assert cleaned["event_index"].to_list() == [1, 2]  # the input's numbers, in input order, not renumbered
    assert cleaned["price"].to_list() == [2.5, 3.5]
    assert report.dropped == {
        "null_user": 0,
        "null_item": 0,
        "null_action": 0,
        "null_timestamp": 0,
        "duplicate": 0,
        "min_user_events": 1,
    }


def test_a_log_without_times_keeps_its_rows_and_its_repeats():
    rows: list[Row] = [("u", "a", "view", None), ("u", "a", "view", None), ("u", "b", "view", None)]
    cleaned, report = clean_events(events_of(rows))
    assert cleaned.height == 3 and not report.has_timestamps
    assert "null_timestamp" not in report.dropped and "duplicate" not in report.dropped
    assert any("no timestamps" in note for note in report.notes)
    cleaned, report = clean_events(events_of(rows), CleaningConfig(collapse_consecutive_repeats=True))
    assert report.dropped["consecutive_repeat"] == 1 and cleaned["event_index"].to_list() == [0, 2]


def test_duplicates_keep_the_first_by_event_index():
    rows: list[Row] = [
        ("u", "a", "view", 5.0),
        ("u", "a", "cart", 5.0),
        ("u", "a", "view", 5.0),
        ("u", "a", "view", 6.0),
    ]
    events = events_of(rows, source=["first", "x", "second", "y"])
    cleaned, report = clean_events(events.reverse())
    assert report.dropped["duplicate"] == 1
    assert cleaned["source"].to_list() == ["first", "x", "y"]
    _, report = clean_events(events, CleaningConfig(drop_duplicates=False))
    assert "duplicate" not in report.dropped


def test_consecutive_repeats_follow_time_order_per_user():
    rows: list[Row] = [
        ("u1", "a", "view", 10.0),
        ("u1", "b", "view", 20.0),
        ("u1", "a", "view", 11.0),  # right after the first event in time: a repeat
        ("u2", "a", "view", 12.0),  # other user: not a repeat of u1's events
        ("u1", "b", "cart", 21.0),  # same item, other action: kept
        ("u1", "a", "view", 30.0),  # a again after b: kept
        ("u1", "a", "view", 30.0),  # same second: repeat (tie broken by event_index)
    ]
    config = CleaningConfig(drop_duplicates=False, collapse_consecutive_repeats=True)
    cleaned, report = clean_events(events_of(rows), config)
    assert report.dropped["consecutive_repeat"] == 2
    assert cleaned["event_index"].to_list() == [0, 1, 3, 4, 5]


def test_k_core_reaches_the_fixpoint_a_single_pass_misses():
    # items: x is seen by u1, u2; y by u1, u3; z once (by u2). With minimum 2 for both, one pass drops z, then
    # u2 has only x left and goes, which leaves x with one user: only repeating the filters fixes that.
    rows: list[Row] = [
        ("u1", "x", "v", 1.0),
        ("u1", "y", "v", 2.0),
        ("u2", "x", "v", 3.0),
        ("u2", "z", "v", 4.0),
        ("u3", "y", "v", 5.0),
        ("u3", "y", "v", 6.0),
        ("u1", "y", "v", 7.0),
    ]
    events = events_of(rows)
    one_pass, report = clean_events(events, CleaningConfig(min_user_events=2, min_item_events=2))
    counts = lambda frame, key: frame.group_by(key).len()["len"]  # noqa: E731
    assert counts(one_pass, "item_id").min() < 2  # a single pass leaves an item below the minimum
    assert report.k_core_iterations == 1
    core, report = clean_events(events, CleaningConfig(min_user_events=2, min_item_events=2, k_core=True))
    assert counts(core, "item_id").min() >= 2 and counts(core, "user_id").min() >= 2
    assert sorted(core["event_index"].to_list()) == [1, 4, 5, 6]
    assert report.k_core_iterations == 3  # two rounds that drop, one that confirms
    assert report.dropped["min_item_events"] == 2 and report.dropped["min_user_events"] == 1
    assert_adds_up(report)


def test_rename_comes_before_keep_and_does_not_chain():
    rows: list[Row] = [("u", "a", "0", 1.0), ("u", "b", "1", 2.0), ("u", "c", "click", 3.0), ("u", "d", "2", 4.0)]
    config = CleaningConfig(rename_actions={"0": "click", "1": "buy", "click": "tap"}, keep_actions=["click", "buy"])
    cleaned, report = clean_events(events_of(rows), config)
    assert cleaned["action"].to_list() == ["click", "buy"]  # "click" became "tap" (no chain) and was filtered
    assert report.dropped["action_filtered"] == 2
    assert (report.actions_before, report.actions_after) == (4, 2)
    _, report = clean_events(events_of(rows), CleaningConfig(keep_actions=["click", "cart"]))
    assert any("['cart']" in note for note in report.notes)  # a name matching nothing is worth a note


def test_a_user_below_the_minimum_is_a_counted_drop():
    rows: list[Row] = [("u1", "a", "view", 1.0), ("u1", "b", "view", 2.0), ("u2", "a", "view", 3.0)]
    cleaned, report = clean_events(events_of(rows), CleaningConfig(min_user_events=2))
    assert cleaned["user_id"].unique().to_list() == ["u1"]
    assert report.dropped["min_user_events"] == 1
    assert (report.users_before, report.users_after) == (2, 1)
    assert "min_user_events 1" in report.summary()


def test_report_saves_atomically_and_round_trips(tmp_path):
    rows: list[Row] = [("u1", "a", "view", 1.0), ("u1", "a", "view", 1.0), (None, "b", "view", 2.0)]
    _, report = clean_events(events_of(rows), CleaningConfig(min_user_events=1, keep_actions=["view"]))
    path = tmp_path / "reports" / "cleaning_report.json"
    report.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["cleaning_report.json"]  # no temp file left behind
    data = json.loads(path.read_text())
    assert data == report.to_dict() and data["dropped"]["duplicate"] == 1
    assert CleaningReport.load(path) == report
    summary = report.summary()
    assert "3 -> 1" in summary and "duplicate 1" in summary and "null_user 1" in summary


def test_report_that_does_not_add_up_is_refused():
    with pytest.raises(AssertionError, match="does not add up"):
        CleaningReport(
            input_rows=3,
            output_rows=1,
            dropped={"duplicate": 1},
            k_core_iterations=0,
            users_before=1,
            users_after=1,
            items_before=1,
            items_after=1,
            actions_before=1,
            actions_after=1,
            has_timestamps=True,
        )


def test_bad_configs_and_non_canonical_input_fail_early():
    with pytest.raises(ValueError, match="min_user_events"):
        CleaningConfig(min_user_events=0)
    with pytest.raises(ValueError, match="keep_actions is empty"):
        CleaningConfig(keep_actions=[])
    with pytest.raises(ValueError, match=r"a list of action names, e.g. \['view'\]"):
        CleaningConfig(keep_actions="view")  # type: ignore[arg-type]
    events = events_of([("u", "a", "view", 1.0)])
    with pytest.raises(EventDataError, match="missing columns \\['event_index'\\]"):
        clean_events(events.drop("event_index"), CleaningConfig())
    with pytest.raises(EventDataError, match="'timestamp' has type String"):
        clean_events(events.with_columns(pl.col("timestamp").cast(pl.String)), CleaningConfig())
    with pytest.raises(EventDataError, match="unique"):
        clean_events(pl.concat([events, events]), CleaningConfig())


def test_empty_input_gives_an_empty_report():
    empty = events_of([("u", "a", "view", 1.0)]).clear()
    cleaned, report = clean_events(empty, CleaningConfig(min_user_events=3, k_core=True))
    assert cleaned.height == 0 and report.output_rows == 0 and report.input_rows == 0
    assert_adds_up(report)


def test_colliding_id_hashes_fall_back_to_exact_codes(monkeypatch):
    """Cleaning groups ids by a 64-bit hash only when a second, independently seeded hash counts as many
    distinct values; a collision of the first hash must change nothing."""
    rows: list[Row] = [("u1", "a", "view", 1.0), ("u1", "a", "view", 1.0), ("u1", "b", "view", 2.0)]
    rows += [("u2", "b", "view", 1.0), ("u2", "c", "view", 1.0), (None, "c", "view", 3.0), ("u3", "a", "view", 4.0)]
    config = CleaningConfig(min_user_events=2, min_item_events=2)
    expected, expected_report = clean_events(events_of(rows), config)
    original = pl.Series.hash

    def colliding(self, seed=0, *args, **kwargs):  # every id collides under the grouping hash, none under the check
        return original(self, seed, *args, **kwargs) if seed == _CHECK_SEED else pl.Series(self.name, [7] * len(self))

    monkeypatch.setattr(pl.Series, "hash", colliding)
    cleaned, report = clean_events(events_of(rows), config)
    assert cleaned.equals(expected) and report == expected_report
    assert report.users_before == 3 and report.dropped["duplicate"] == 1 and report.dropped["null_user"] == 1


def test_duplicate_row_hash_collisions_are_compared_exactly(monkeypatch):
    """Duplicates are found by a 64-bit row hash, and rows sharing a hash are compared field by field: with
    every row's hash made equal, the same rows must be dropped as duplicates."""
    rows: list[Row] = [("u1", "a", "view", 1.0), ("u1", "a", "view", 1.0), ("u1", "a", "buy", 1.0)]
    rows += [("u2", "a", "view", 1.0), ("u1", "a", "view", 2.0), ("u2", "a", "view", 1.0), ("u1", "a", "view", 1.0)]
    expected, expected_report = clean_events(events_of(rows))
    assert expected_report.dropped["duplicate"] == 3
    monkeypatch.setattr(pl.DataFrame, "hash_rows", lambda self, *a, **k: pl.Series([7] * self.height, dtype=pl.UInt64))
    cleaned, report = clean_events(events_of(rows))
    assert cleaned.equals(expected) and report == expected_report
