"""Property-based tests (hypothesis) for the data path: readers, cleaning, sequences and splits, and the tokenizer.

Each property is checked against a small, obviously correct pure-Python model (or an exact round trip), never
against the library itself, so a property can only pass if the library behaves as documented.
"""

from __future__ import annotations

import bisect
import tempfile
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote

import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from bertrec.data.cleaning import CleaningConfig, clean_events
from bertrec.data.readers import read_events
from bertrec.data.schema import CANONICAL_COLUMNS, CANONICAL_SCHEMA, DEFAULT_ACTION
from bertrec.data.sequences import build_sequences
from bertrec.data.splits import check_no_leakage, leave_one_out, temporal_split
from bertrec.tokenization import (
    FIRST_EVENT_BUCKET,
    LAYOUTS,
    UNK,
    UNK_ITEM,
    EventTokenizer,
    action_token,
    item_token,
    time_token,
)
from tests.conftest import make_events

# Ids that break naive readers and tokenizers: delimiters, quotes, line breaks (CRLF included), every kind of
# Unicode whitespace, brackets that spell special tokens, percent signs, leading zeros and number look-alikes.
AWKWARD_IDS = [
    "",
    " ",
    "007",
    "7",
    "7.0",
    "-0",
    "1e5",
    "nan",
    "NULL",
    "true",
    '"',
    'say "hi"',
    "a,b",
    "a\tb",
    "a\nb",
    "a\r\nb",
    "\r",
    " lead",
    "trail ",
    "50%off",
    "%20",
    "[MASK]",
    "<i:x>",
    "a\xa0b",
    "a\x0bb",
    "\u3000",
    "\u2028",
    "\x1c",
    "\x00",
    "é",
    "e\u0301",
    "\ufeffbom",
    "🙂",
    "ﬁ",
]
ID_TEXT = st.one_of(
    st.sampled_from(AWKWARD_IDS),
    st.text(st.characters(codec="utf-8"), max_size=6),  # any Unicode scalar value (no lone surrogates)
    st.integers(-(10**20), 10**20).map(str),
)
NUMBERISH_IDS = st.sampled_from(["007", "0042", "7", "7.0", "-0", "1e5", "00", "+3", "1_000"]) | st.integers(
    0, 10**6
).map(lambda i: f"{i:08d}")
FAST = {"deadline": None}  # no per-example deadline: timings on a shared machine vary too much


# --------------------------------------------------------------------------------------------------------------
# readers: write a log in every format, read it back, get exactly the same ids, order and event_index
# --------------------------------------------------------------------------------------------------------------
ID_COLUMNS = ("user_id", "item_id", "action")


def id_columns(n: int):
    """A column of n ids, strings or integers, maybe null, and their canonical strings (integers as decimal text)."""
    strings = st.lists(st.one_of(st.none(), ID_TEXT), min_size=n, max_size=n).map(lambda v: (v, pl.String, v))
    # a whole column of number look-alikes, which a type-guessing reader would turn into numbers
    numberish = st.lists(st.none() | NUMBERISH_IDS, min_size=n, max_size=n).map(lambda v: (v, pl.String, v))
    integers = st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)), min_size=n, max_size=n).map(
        lambda v: (v, pl.Int64, [None if x is None else str(x) for x in v])
    )
    return st.one_of(strings, numberish, integers)


def time_columns(n: int):
    """Timestamps as whole or fractional seconds, or milliseconds (auto-detected), maybe with nulls; and the
    expected seconds (milliseconds / 1000, correctly rounded)."""
    seconds_int = st.integers(-(10**10), 10**10)
    seconds_float = st.floats(-1e10, 1e10, allow_nan=False)
    millis = st.integers(10**11 + 1, 10**14) | st.integers(-(10**14), -(10**11) - 1)
    columns = []
    for values, dtype, to_seconds in (
        (seconds_int, pl.Int64, float),
        (seconds_float, pl.Float64, float),
        (millis, pl.Int64, lambda v: v / 1000),
    ):
        for element in (values, st.one_of(st.none(), values)):
            columns.append(
                st.lists(element, min_size=n, max_size=n).map(
                    lambda v, dtype=dtype, f=to_seconds: (v, dtype, [None if x is None else f(x) for x in v])
                )
            )
    return st.one_of(columns)


def assert_same_times(got: list, expected: list, where) -> None:
    """Times exactly as written: seconds as they are, milliseconds as the nearest float of seconds."""
    assert [g is None for g in got] == [e is None for e in expected], where
    for value, want in zip(got, expected):
        if want is not None:
            assert value == want, (*where, value, want)


@st.composite
def logs(draw) -> tuple[pl.DataFrame, dict[str, list], bool]:
    """A typed log frame (optional action and timestamp columns, one extra column), the expected columns, and
    whether the times are in milliseconds."""
    n = draw(st.integers(1, 8))
    data, schema, expected = {}, {}, {}
    for name in ID_COLUMNS if draw(st.booleans()) else ID_COLUMNS[:2]:
        data[name], schema[name], expected[name] = draw(id_columns(n))
    expected.setdefault("action", [DEFAULT_ACTION] * n)
    if draw(st.booleans()):
        data["timestamp"], schema["timestamp"], expected["timestamp"] = draw(time_columns(n))
    else:
        expected["timestamp"] = [None] * n
    data["note"] = expected["note"] = draw(st.lists(st.one_of(st.none(), ID_TEXT), min_size=n, max_size=n))
    schema["note"] = pl.String  # an extra column travels unchanged
    expected["event_index"] = list(range(n))
    millis = any(abs(v or 0) > 1e11 for v in data.get("timestamp", []))
    return pl.DataFrame(data, schema=schema), expected, millis


WRITERS = {
    "log.csv": lambda frame, path: frame.write_csv(path),
    "log.tsv": lambda frame, path: frame.write_csv(path, separator="\t"),
    # Windows line endings, every string quoted: a carriage return inside a value must not end the row
    "crlf.csv": lambda frame, path: frame.write_csv(path, line_terminator="\r\n", quote_style="non_numeric"),
    "log.parquet": lambda frame, path: frame.write_parquet(path),
    "log.jsonl": lambda frame, path: frame.write_ndjson(path),
}


def assert_same_ids(got: list, expected: list, where) -> None:
    """Every id exact; an empty id may be read as "" or as missing (null), the one choice left to the readers
    (the same choice in every format, checked by the caller)."""
    assert len(got) == len(expected), where
    for row, (value, want) in enumerate(zip(got, expected), start=1):
        assert value == want or (want == "" and value is None), (*where, f"data row {row}")


@settings(max_examples=30, **FAST)
@given(log=logs())
def test_every_format_round_trips_ids_order_and_event_index(log):
    frame, expected, millis = log
    in_memory = read_events(frame)
    tables = {"in-memory frame": in_memory}
    with tempfile.TemporaryDirectory() as folder:
        for name, write in WRITERS.items():
            path = Path(folder) / name
            write(frame, path)
            tables[name] = read_events(path)
    for name, events in tables.items():
        assert events.columns == [*CANONICAL_COLUMNS, "note"], name
        assert {c: events.schema[c] for c in CANONICAL_COLUMNS} == CANONICAL_SCHEMA, name
        for column in ID_COLUMNS:
            assert_same_ids(events[column].to_list(), expected[column], (name, column))
        assert_same_times(events["timestamp"].to_list(), expected["timestamp"], (name, "timestamp"))
        for column in ("event_index", "note"):
            assert events[column].to_list() == expected[column], (name, column)
        # every source gives the same table, empty ids included
        assert events.select(CANONICAL_COLUMNS).equals(in_memory.select(CANONICAL_COLUMNS)), name


@settings(max_examples=20, deadline=None)
@given(millis=st.integers(10**11 + 1, 10**14) | st.integers(-(10**14), -(10**11) - 1))
@example(millis=1_704_067_200_008)
def test_millisecond_timestamps_read_as_the_nearest_seconds(millis):
    frame = pl.DataFrame({"user_id": ["u"], "item_id": ["i"], "timestamp": [millis]})
    for log in (frame, frame.with_columns(pl.col("timestamp").cast(pl.String))):  # a typed or a text column
        assert read_events(log)["timestamp"].to_list() == [millis / 1000]


# --------------------------------------------------------------------------------------------------------------
# cleaning: the report counts every dropped row under the right reason, and k-core is a real fixpoint
# --------------------------------------------------------------------------------------------------------------
ACTIONS = ["view", "cart", "buy", "click"]


@st.composite
def canonical_events(draw, max_rows: int = 24, nulls: bool = True) -> pl.DataFrame:
    """Canonical events with nulls in any column, duplicates, repeats, ties, an unsorted and gapped
    event_index, and sometimes no times at all; plus an extra column that must travel with its row. Each
    log draws how many users, items, actions and times it uses, so some are dense in collisions."""
    n = draw(st.integers(0, max_rows))

    def column(values: list):
        values = values[: draw(st.integers(1, len(values)))]
        return st.sampled_from(values + [None] if nulls and draw(st.booleans()) else values)

    users = column(["u1", "u2", "007", "7", "u3"])
    items = column(["a", "b", "a,b", "c", "d"])
    actions = column(ACTIONS[:3])
    times = column([1.0, 0.0, 2.0, 1e9]) if draw(st.booleans()) else st.none()
    row = st.tuples(users, items, actions, times)
    rows = draw(st.lists(row, min_size=n, max_size=n))
    if rows:  # exact copies of some rows, anywhere in the log
        for copy in draw(st.lists(st.sampled_from(rows), max_size=4)):
            rows.insert(draw(st.integers(0, len(rows))), copy)
    n = len(rows)
    index = draw(st.lists(st.integers(0, 10 * max_rows), min_size=n, max_size=n, unique=True))
    return make_events(rows, index).with_columns(note=pl.Series([f"row{i}" for i in index], dtype=pl.String))


@st.composite
def cleaning_configs(draw, k_core: bool | None = None, least_minimum: int = 1) -> CleaningConfig:
    renames = draw(st.none() | st.dictionaries(st.sampled_from(ACTIONS), st.sampled_from(ACTIONS), max_size=2))
    return CleaningConfig(
        drop_duplicates=draw(st.booleans()),
        collapse_consecutive_repeats=draw(st.booleans()),
        min_user_events=draw(st.integers(least_minimum, least_minimum + 2)),
        min_item_events=draw(st.integers(least_minimum, least_minimum + 2)),
        k_core=draw(st.booleans()) if k_core is None else k_core,
        keep_actions=draw(st.none() | st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=3, unique=True)),
        rename_actions=renames or None,
    )


def reference_clean(events: pl.DataFrame, config: CleaningConfig) -> tuple[list[int], dict[str, int], int]:
    """The documented cleaning steps, one row at a time: kept event_index values, drops per reason, rounds."""
    rows = sorted(events.iter_rows(named=True), key=lambda r: r["event_index"])
    renames = config.rename_actions or {}
    for r in rows:
        r["action"] = renames.get(r["action"], r["action"])  # all at once: no chaining
    has_times = any(r["timestamp"] is not None for r in rows)
    dropped: dict[str, int] = {}

    def drop(reason: str, keep) -> None:
        nonlocal rows
        kept = [r for r in rows if keep(r)]
        dropped[reason] = dropped.get(reason, 0) + len(rows) - len(kept)
        rows = kept

    for column in ("user", "item", "action"):
        drop(f"null_{column}", lambda r, c=column: r[c if c == "action" else f"{c}_id"] is not None)
    if has_times:
        drop("null_timestamp", lambda r: r["timestamp"] is not None)
    if config.keep_actions is not None:
        drop("action_filtered", lambda r: r["action"] in config.keep_actions)
    if config.drop_duplicates and has_times:
        seen: set = set()
        first = {r["event_index"] for r in rows if not (key(r) in seen or seen.add(key(r)))}
        drop("duplicate", lambda r: r["event_index"] in first)
    if config.collapse_consecutive_repeats:
        repeats, previous = set(), {}
        for r in sorted(rows, key=lambda r: (r["timestamp"] or 0.0, r["event_index"])):
            last = previous.get(r["user_id"])
            if last is not None and (last["item_id"], last["action"]) == (r["item_id"], r["action"]):
                repeats.add(r["event_index"])
            previous[r["user_id"]] = r
        drop("consecutive_repeat", lambda r: r["event_index"] not in repeats)
    minimums = [(f"min_{k}_events", f"{k}_id", getattr(config, f"min_{k}_events")) for k in ("item", "user")]
    minimums = [m for m in minimums if m[2] > 1]
    rounds = 0
    while minimums:
        rounds += 1
        start = len(rows)
        for reason, column, minimum in minimums:
            counts = Counter(r[column] for r in rows)
            drop(reason, lambda r, c=column, m=minimum, counts=counts: counts[r[c]] >= m)
        if not config.k_core or len(rows) == start:
            break
    return [r["event_index"] for r in rows], dropped, rounds


def key(row: dict) -> tuple:
    return row["user_id"], row["item_id"], row["action"], row["timestamp"]


@settings(max_examples=60, **FAST)
@given(events=canonical_events(), config=cleaning_configs())
def test_cleaning_counts_every_drop_under_its_reason_and_keeps_a_subset_in_order(events, config):
    cleaned, report = clean_events(events, config)
    kept, dropped, rounds = reference_clean(events, config)
    # the report adds up to the input per reason (same reasons, same order), not just in total
    assert report.dropped == dropped and list(report.dropped) == list(dropped)
    assert report.input_rows == events.height == len(kept) + sum(dropped.values())
    assert report.output_rows == cleaned.height == len(kept)
    assert report.k_core_iterations == rounds
    # the output is exactly the kept input rows, by event_index, in input order, each row intact
    assert cleaned["event_index"].to_list() == kept
    assert cleaned.columns == events.columns
    source = events.sort("event_index").filter(pl.col("event_index").is_in(kept))
    renames = config.rename_actions or {}
    assert cleaned.drop("action").equals(source.drop("action"))
    assert cleaned["action"].to_list() == [renames.get(a, a) for a in source["action"]]
    assert report.users_before == events["user_id"].drop_nulls().n_unique()
    assert report.items_before == events["item_id"].drop_nulls().n_unique()
    assert (report.users_after, report.items_after, report.actions_after) == tuple(
        cleaned[c].n_unique() for c in ("user_id", "item_id", "action")
    )
    assert report.has_timestamps == (events["timestamp"].null_count() < events.height)


@settings(max_examples=40, **FAST)
@given(events=canonical_events(max_rows=40, nulls=False), config=cleaning_configs(True, 2))
def test_k_core_output_is_a_fixpoint(events, config):
    cleaned, _ = clean_events(events, config)
    for column, minimum in (("user_id", config.min_user_events), ("item_id", config.min_item_events)):
        assert cleaned.height == 0 or cleaned[column].value_counts()["count"].min() >= minimum, column
    # cleaning the output again drops nothing. Renames are not re-applied (they would chain), and consecutive
    # repeats are not looked for again: that step runs before the minimum filters, which can make new ones
    # (a, b, a with item b removed) by design of the documented step order.
    again = replace(config, rename_actions=None, collapse_consecutive_repeats=False)
    twice, second = clean_events(cleaned, again)
    assert second.dropped == dict.fromkeys(second.dropped, 0)
    assert second.k_core_iterations <= 1 and twice.equals(cleaned)


# --------------------------------------------------------------------------------------------------------------
# sequences and splits: time order, targets, partition of events, and no leakage by event identity
# --------------------------------------------------------------------------------------------------------------
@st.composite
def user_logs(draw, *, nullable_times: bool = False) -> pl.DataFrame:
    """Events of a few users over few items (revisits are the rule), tied times, unsorted unique event_index."""
    n = draw(st.integers(1, 30))
    time = st.integers(0, 12).map(float)
    if nullable_times and draw(st.booleans()):
        time = time | st.none()
    row = st.tuples(
        st.sampled_from(["u0", "u1", "u2", "u3", "u4"]),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["view", "buy"]),
        time,
    )
    rows = draw(st.lists(row, min_size=n, max_size=n))
    index = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n, unique=True))
    return make_events(rows, index)


def reference_sequences(events: pl.DataFrame, max_events: int | None = None) -> dict[str, list[dict]]:
    """Each user's events in time order, missing times first, ties in input (event_index) order."""
    by_user: dict[str, list[dict]] = defaultdict(list)
    for r in events.iter_rows(named=True):
        by_user[r["user_id"]].append(r)
    order = lambda r: (r["timestamp"] is not None, r["timestamp"] or 0.0, r["event_index"])  # noqa: E731
    return {u: sorted(rs, key=order)[-(max_events or len(rs)) :] for u, rs in by_user.items()}


def indices(frame: pl.DataFrame, user: str) -> list[int] | None:
    """The event_index list of the user's row in a split part (None: the user is not in it)."""
    rows = frame.filter(pl.col("user_id") == user)["event_index"].to_list()
    assert len(rows) <= 1, f"{user} has {len(rows)} rows"
    return rows[0] if rows else None


def assert_example(frame: pl.DataFrame, user: str, target: dict, history: list[dict]) -> None:
    row = frame.filter(pl.col("user_id") == user).row(0, named=True)
    assert row["target_event_index"] == target["event_index"]
    assert (row["target_item_id"], row["target_action"]) == (target["item_id"], target["action"])
    assert row["target_timestamp"] == target["timestamp"]
    assert row["event_index"] == [e["event_index"] for e in history]
    assert row["item_id"] == [e["item_id"] for e in history]


@settings(max_examples=50, **FAST)
@given(events=user_logs(nullable_times=True), max_events=st.none() | st.integers(1, 6))
def test_leave_one_out_tests_the_last_event_and_partitions_the_events(events, max_events):
    sequences = build_sequences(events, max_events=max_events)
    expected = reference_sequences(events, max_events)
    assert sequences["user_id"].to_list() == sorted(expected)
    for user, seq in expected.items():
        row = sequences.filter(pl.col("user_id") == user).row(0, named=True)
        for column in ("item_id", "action", "timestamp", "event_index"):
            assert row[column] == [e[column] for e in seq], column
    split = leave_one_out(sequences)
    check_no_leakage(split)
    evaluated = sorted(u for u, seq in expected.items() if len(seq) >= 3)
    assert split.test["user_id"].sort().to_list() == evaluated == split.valid["user_id"].sort().to_list()
    assert split.stats["evaluated_users"] == len(evaluated)
    seen: list[int] = []
    for user, seq in expected.items():
        train = indices(split.train, user)
        if len(seq) < 3:  # no evaluation target: the whole sequence trains
            assert train == [e["event_index"] for e in seq]
            seen += train
            continue
        assert_example(split.test, user, seq[-1], seq[:-1])  # test: the last event, every earlier one as history
        assert_example(split.valid, user, seq[-2], seq[:-2])  # validation: the second-last
        assert train == [e["event_index"] for e in seq[:-2]]
        test_event = seq[-1]["event_index"]
        assert test_event not in (train or []) and test_event not in indices(split.valid, user)
        assert seq[-2]["event_index"] not in train
        seen += [*train, seq[-2]["event_index"], test_event]
    # train events + validation targets + test targets: every (kept) event exactly once
    assert sorted(seen) == sorted(e["event_index"] for seq in expected.values() for e in seq)


@settings(max_examples=40, **FAST)
@given(events=user_logs())
def test_target_action_split_holds_out_the_last_two_events_of_that_action(events):
    sequences = build_sequences(events)
    expected = reference_sequences(events)
    evaluable = {}
    for user, seq in expected.items():
        buys = [p for p, e in enumerate(seq) if e["action"] == "buy"]
        if len(buys) >= 2 and buys[-2] >= 1:
            evaluable[user] = (buys[-3] + 1 if len(buys) >= 3 else 0, buys[-2], buys[-1])
    if not evaluable:
        with pytest.raises(ValueError, match="no user has two 'buy' events"):
            leave_one_out(sequences, target_action="buy")
        return
    split = leave_one_out(sequences, target_action="buy")
    check_no_leakage(split)
    assert sorted(split.test["user_id"]) == sorted(evaluable) == sorted(split.valid["user_id"])
    held_out = 0
    for user, seq in expected.items():
        train = indices(split.train, user)
        if user not in evaluable:
            assert train == [e["event_index"] for e in seq]
            continue
        train_end, valid_at, test_at = evaluable[user]
        assert_example(split.test, user, seq[test_at], seq[:test_at])
        assert_example(split.valid, user, seq[valid_at], seq[:valid_at])
        # up to the buy before the validation target: a validation history ends with untrained events
        assert train == ([e["event_index"] for e in seq[:train_end]] if train_end else None)  # no empty rows
        held_out += valid_at - train_end
        test_event = seq[test_at]["event_index"]
        assert test_event not in (train or []) and test_event not in indices(split.valid, user)
        assert all(e["action"] != "buy" for e in seq[test_at + 1 :])  # the test target is the user's last buy
    assert split.stats["held_out_events"] == held_out


FRACTIONS = st.sampled_from([0.1, 0.2, 0.3, 0.45])


@settings(max_examples=50, **FAST)
@given(events=user_logs(nullable_times=True), valid_fraction=FRACTIONS, test_fraction=FRACTIONS)
def test_temporal_split_targets_are_each_users_first_event_after_the_cut_off(events, valid_fraction, test_fraction):
    sequences = build_sequences(events)
    missing = events["timestamp"].null_count()
    if missing:  # events without a time cannot be placed before or after a cut-off
        with pytest.raises(ValueError, match="needs a timestamp for every event|has none"):
            temporal_split(sequences, valid_fraction=valid_fraction, test_fraction=test_fraction)
        return
    split = temporal_split(sequences, valid_fraction=valid_fraction, test_fraction=test_fraction)
    check_no_leakage(split)
    valid_start, test_start = split.stats["valid_start"], split.stats["test_start"]
    times = events["timestamp"].to_list()
    assert valid_start in times and test_start in times and valid_start <= test_start
    expected = reference_sequences(events)
    seen: list[int] = []
    for user, seq in expected.items():
        before_valid = sum(e["timestamp"] < valid_start for e in seq)
        before_test = sum(e["timestamp"] < test_start for e in seq)
        train = indices(split.train, user)
        assert train == ([e["event_index"] for e in seq[:before_valid]] if before_valid else None)
        seen += train or []
        valid = indices(split.valid, user)
        if before_valid and before_test > before_valid:  # first event in the validation period, with history
            assert_example(split.valid, user, seq[before_valid], seq[:before_valid])
            assert valid_start <= seq[before_valid]["timestamp"] < test_start
            seen.append(seq[before_valid]["event_index"])
        else:
            assert valid is None
        if before_test and len(seq) > before_test:  # first event in the test period, with history
            assert_example(split.test, user, seq[before_test], seq[:before_test])
            test_event = seq[before_test]["event_index"]
            assert seq[before_test]["timestamp"] >= test_start
            assert test_event not in (train or []) and test_event not in (valid or [])
            seen.append(test_event)
        else:
            assert indices(split.test, user) is None
    assert len(seen) == len(set(seen))  # no event is both trained on and a target, or a target twice


# --------------------------------------------------------------------------------------------------------------
# tokenizer: ids <-> tokens <-> text round trips for arbitrary item ids and actions
# --------------------------------------------------------------------------------------------------------------
GAPS = st.sampled_from([0.0, 0.5, 1.0, 4.9, 5.0, 59.0, 60.0, 3600.0, 86400.0, 1e9])


@st.composite
def vocabularies(draw):
    """Training sequences over arbitrary item ids and actions, and sequences to encode that also hold unseen
    items and actions (which must become [UNK_ITEM] and [UNK])."""
    items = draw(st.lists(ID_TEXT, min_size=1, max_size=8, unique=True))
    actions = draw(st.lists(ID_TEXT, min_size=1, max_size=3, unique=True))
    unseen_items = draw(st.lists(ID_TEXT.filter(lambda i: i not in items), max_size=2))
    unseen_actions = draw(st.lists(ID_TEXT.filter(lambda a: a not in actions), max_size=1))

    def sequences(item_pool: list[str], action_pool: list[str], users: int) -> pl.DataFrame:
        rows = []
        for _ in range(users):
            n = draw(st.integers(1, 6))
            gaps = draw(st.lists(GAPS, min_size=n, max_size=n))
            start = draw(st.sampled_from([0.0, 1.7e9]))
            rows.append(
                {
                    "item_id": draw(st.lists(st.sampled_from(item_pool), min_size=n, max_size=n)),
                    "action": draw(st.lists(st.sampled_from(action_pool), min_size=n, max_size=n)),
                    "timestamp": [start + sum(gaps[: k + 1]) for k in range(n)],
                }
            )
        schema = {"item_id": pl.List(pl.String), "action": pl.List(pl.String), "timestamp": pl.List(pl.Float64)}
        return pl.DataFrame(rows, schema=schema)

    train = sequences(items, actions, users=2)
    train_items = set(train["item_id"].explode())
    train_actions = set(train["action"].explode())
    encode = sequences(items + unseen_items, actions + unseen_actions, users=2)
    return train, encode, train_items, train_actions


@settings(max_examples=30, **FAST)
@given(data=vocabularies(), layout=st.sampled_from(sorted(LAYOUTS)))
def test_tokenizer_round_trips_ids_tokens_text_and_raw_item_ids(data, layout):
    train, encode, train_items, train_actions = data
    tok = EventTokenizer.build(train, layout=layout, max_events=64)
    hf = tok.hf_tokenizer()
    inverse = tok.inverse_vocab
    assert sorted(tok.spec.items) == sorted(train_items) and tok.num_items == len(train_items)
    encoded = tok.encode_sequences(encode)
    assert len(encoded) == encode.height
    with tempfile.TemporaryDirectory() as folder:
        tok.save(folder)
        loaded = EventTokenizer.load(folder)
        plain = AutoTokenizer.from_pretrained(folder)  # what downstream code without bertrec uses
    assert loaded.vocab == tok.vocab
    for ids, row in zip(encoded, encode.iter_rows(named=True)):
        ids = ids.reshape(-1).tolist()  # stacked layouts: [events, fields], read event by event
        events = list(zip(row["item_id"], row["action"], row["timestamp"]))
        assert len(ids) == len(events) * tok.spec.tokens_per_event
        # each event's ids are the tokens its fields spell (an independent model of the vocabulary)
        expected_tokens = []
        for k, (item, action, time) in enumerate(events):
            for field in tok.spec.fields:
                if field == "item":
                    expected_tokens.append(item_token(item) if item in train_items else UNK_ITEM)
                elif field == "action":
                    expected_tokens.append(action_token(action) if action in train_actions else UNK)
                else:
                    gap = None if k == 0 else time - events[k - 1][2]
                    bucket = None if gap is None else bisect.bisect_right(tok.spec.time_boundaries, gap)
                    expected_tokens.append(FIRST_EVENT_BUCKET if gap is None else time_token(bucket))
        assert [inverse[i] for i in ids] == expected_tokens
        # ids -> tokens -> ids, through bertrec's vocabulary and through the HF tokenizer
        assert [tok.token_id(t) for t in expected_tokens] == ids
        assert hf.convert_tokens_to_ids(hf.convert_ids_to_tokens(ids)) == ids
        # the text form: one whitespace-free token per id, and plain HF tokenizers give the bulk ids back
        text = tok.history_to_text(row["item_id"], row["action"], row["timestamp"])
        assert text.split() == expected_tokens
        assert hf(text, add_special_tokens=False)["input_ids"] == ids
        assert plain(text, add_special_tokens=False)["input_ids"] == ids
        assert hf(hf.decode(ids), add_special_tokens=False)["input_ids"] == ids
        # item token ids decode to the raw item ids: by vocabulary position and by un-escaping the token text
        for token_id in ids:
            if tok.item_offset <= token_id < tok.item_offset + tok.num_items:
                raw = tok.spec.items[token_id - tok.item_offset]
                assert raw in train_items and item_token(raw) == inverse[token_id]
                assert unquote(inverse[token_id][len("<i:") : -1]) == raw
    known = [i for i in train["item_id"].explode() if i is not None]
    assert [tok.spec.items[i] for i in tok.item_indices(pl.Series(known)).tolist()] == known
