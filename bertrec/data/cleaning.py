"""Clean canonical events, counting every dropped row under the reason that dropped it.

Steps run in this order, and each row is counted under the first one that drops it:

1. ``rename_actions`` (drops nothing; renames are applied all at once, so ``{"a": "b", "b": "c"}`` does not chain)
2. ``null_user``, ``null_item``, ``null_action``, then ``null_timestamp`` (only when the log has times at all:
   an all-null timestamp column means "no time", and every row is kept)
3. ``action_filtered``: ``keep_actions``, matched against the names *after* renaming
4. ``duplicate``: same user, item, action and timestamp; the first by ``event_index`` stays. Skipped when the
   log has no times, because without a time a repeat cannot be told from a duplicate.
5. ``consecutive_repeat``: within a user's sequence ordered by (timestamp, event_index), an event with the
   same item and action as the previous one
6. ``min_item_events`` then ``min_user_events``; with ``k_core`` the pair repeats until nothing changes, so
   every remaining item and user meets its minimum (one pass may leave a user short after items went).

The output keeps the canonical column order, the extra columns, the input order (by ``event_index``) and the
``event_index`` values themselves; sequencing is ``bertrec.data.sequences``' job. Everything is vectorised
polars on integer codes, so 10M-row logs clean in seconds.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import polars as pl

from bertrec.atomic import atomic_write_text
from bertrec.data.schema import CANONICAL_COLUMNS, check_canonical

_DUPLICATE_KEY = ["user_id", "item_id", "action", "timestamp"]
_CHECK_SEED = 0x5EED  # the second hash of _id_codes
NO_TIMES_NOTE = (
    "the log has no timestamps, so duplicates were not dropped (a repeat cannot be told from a duplicate "
    "without a time)"
)


@dataclass
class CleaningConfig:
    """What to drop; the defaults drop only exact duplicates and rows with missing fields."""

    drop_duplicates: bool = True
    collapse_consecutive_repeats: bool = False
    min_user_events: int = 1
    min_item_events: int = 1
    k_core: bool = False
    keep_actions: list[str] | None = None
    rename_actions: dict[str, str] | None = None

    def __post_init__(self) -> None:
        for name in ("min_user_events", "min_item_events"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer of at least 1, got {value!r}")
        if isinstance(self.keep_actions, str):
            raise ValueError(f"keep_actions must be a list of action names, e.g. [{self.keep_actions!r}]")
        if self.keep_actions is not None and len(self.keep_actions) == 0:
            raise ValueError("keep_actions is empty, which would drop every event; use None to keep all actions")
        if self.rename_actions and not all(isinstance(x, str) for pair in self.rename_actions.items() for x in pair):
            raise ValueError(f"rename_actions must map action names to action names, got {self.rename_actions!r}")


@dataclass
class CleaningReport:
    """What cleaning did, for the log and the saved model folder: every input row is an output row or a drop.

    ``dropped`` maps each step that ran to the rows it dropped, in the order applied (zeros included, so the
    report shows what was checked). ``k_core_iterations`` counts rounds of the minimum filters: 0 when none is
    set, 1 without ``k_core``, and with ``k_core`` the rounds up to and including the one that changed nothing.
    """

    input_rows: int
    output_rows: int
    dropped: dict[str, int]
    k_core_iterations: int
    users_before: int
    users_after: int
    items_before: int
    items_after: int
    actions_before: int
    actions_after: int
    has_timestamps: bool
    notes: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input_rows != self.output_rows + sum(self.dropped.values()):
            raise AssertionError(
                f"cleaning report does not add up: {self.input_rows} input rows != "
                f"{self.output_rows} output + {sum(self.dropped.values())} dropped {self.dropped}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CleaningReport:
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON atomically (temp file beside ``path``, then rename), so a kill never leaves half a report."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> CleaningReport:
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))

    def summary(self) -> str:
        """A few lines for a log or a terminal."""
        total = sum(self.dropped.values())
        drops = ", ".join(f"{reason} {rows:,}" for reason, rows in self.dropped.items() if rows) or "none"
        lines = [
            f"events: {self.input_rows:,} -> {self.output_rows:,} ({total:,} dropped: {drops})",
            f"users: {self.users_before:,} -> {self.users_after:,}; items: {self.items_before:,} -> "
            f"{self.items_after:,}; actions: {self.actions_before:,} -> {self.actions_after:,}",
        ]
        if self.k_core_iterations > 1:
            lines.append(f"k-core: fixpoint after {self.k_core_iterations} rounds")
        lines.extend(f"note: {note}" for note in self.notes)
        return "\n".join(lines)


def clean_events(
    events: pl.DataFrame, config: CleaningConfig | None = None, *, has_timestamps: bool | None = None
) -> tuple[pl.DataFrame, CleaningReport]:
    """Apply ``config`` to canonical ``events``; return the kept events and the report (see the module doc).

    ``has_timestamps`` says whether the whole log has times when ``events`` is only part of it (a bucket of
    users, see ``bertrec.data.streaming``); by default it is read from ``events``.

    Every step runs on a narrow frame of integer codes (user and item ids dictionary-encoded once, the
    action, time and event index) and the wide frame is gathered once at the end: hashing, counting and
    grouping 32-bit codes is several times faster than doing it on id strings, and extra columns are copied
    once instead of at every step.
    """
    config = config or CleaningConfig()
    check_canonical(events, source="clean_events input")
    extras = [name for name in events.columns if name not in CANONICAL_COLUMNS]
    frame = events.select([*CANONICAL_COLUMNS, *extras])
    if not frame["event_index"].is_sorted():
        frame = frame.sort("event_index")
    if has_timestamps is None:
        has_timestamps = frame.height > 0 and frame["timestamp"].null_count() < frame.height
    notes: list[str] = []
    _note_empty_ids(notes, frame)
    if config.rename_actions:
        _note_unseen(notes, "rename_actions", config.rename_actions, frame)
        frame = frame.with_columns(pl.col("action").replace(config.rename_actions))
    codes, distinct = _id_codes(frame)
    keys = frame.select(
        *codes,
        pl.col("action").cast(pl.Categorical).to_physical(),
        "timestamp",
        "event_index",
        _row=pl.int_range(pl.len(), dtype=pl.UInt32 if frame.height < 2**32 else pl.UInt64),
        # actions become codes above (cheaper to hash and compare), so the names to keep are matched here
        **({"_kept_action": pl.col("action").is_in(list(config.keep_actions))} if config.keep_actions else {}),
    )
    before = {**distinct, "actions": keys["action"].drop_nulls().n_unique()}
    dropped: dict[str, int] = {}

    def drop(reason: str, keep: pl.Expr | pl.Series) -> None:
        """Count and drop the rows where ``keep`` is false; the copy happens only if some are."""
        nonlocal keys
        mask = keep if isinstance(keep, pl.Series) else keys.select(keep).to_series()
        dropped[reason] = keys.height - int(mask.sum())
        if dropped[reason]:
            keys = keys.filter(mask)

    drop("null_user", pl.col("user_id").is_not_null())
    drop("null_item", pl.col("item_id").is_not_null())
    drop("null_action", pl.col("action").is_not_null())
    if has_timestamps:
        drop("null_timestamp", pl.col("timestamp").is_not_null())
    if config.keep_actions is not None:
        _note_unseen(notes, "keep_actions", config.keep_actions, frame)
        drop("action_filtered", pl.col("_kept_action"))
    if config.drop_duplicates:
        if has_timestamps:
            drop("duplicate", _first_occurrences(keys))
        else:
            notes.append(NO_TIMES_NOTE)
    if config.collapse_consecutive_repeats:
        drop("consecutive_repeat", ~_consecutive_repeats(keys, has_timestamps))
    keys, minimum_drops, rounds = _minimum_filters(keys, config)
    dropped.update(minimum_drops)
    changed = keys.height < frame.height
    after = _counts(keys) if changed or config.rename_actions else before
    if changed:
        frame = frame[keys["_row"]]
    report = CleaningReport(
        input_rows=events.height,
        output_rows=frame.height,
        dropped=dropped,
        k_core_iterations=rounds,
        **{f"{kind}_before": count for kind, count in before.items()},
        **{f"{kind}_after": count for kind, count in after.items()},
        has_timestamps=has_timestamps,
        notes=notes,
        config=asdict(config),
    )
    return frame, report


def _id_codes(frame: pl.DataFrame) -> tuple[list[pl.Series], dict[str, int]]:
    """User and item ids as integers that are equal exactly when the ids are (nulls stay null), and the number
    of distinct non-null users and items (counted on the way, for the report).

    A 64-bit hash of each id costs a fraction of building a dictionary of millions of strings. It is used when
    a second, independently seeded hash finds as many distinct values: a collision among the first hash's values
    shows up as a count one short, and for both counts to come out equally short the second hash would need
    its own collisions among the same ids (for a million ids, about 1e-15). Else exact dictionary codes are
    used. Counting distinct 64-bit values is several times cheaper than counting distinct strings.
    """
    codes, distinct = [], {}
    for column, kind in (("user_id", "users"), ("item_id", "items")):
        ids = frame[column]
        hashed = pl.select(pl.when(ids.is_not_null()).then(ids.hash())).to_series().alias(column)
        distinct[kind] = hashed.drop_nulls().n_unique()
        if distinct[kind] != ids.drop_nulls().hash(seed=_CHECK_SEED).n_unique():
            hashed = ids.cast(pl.Categorical).to_physical().alias(column)
            distinct[kind] = hashed.drop_nulls().n_unique()
        codes.append(hashed)
    return codes, distinct


def _first_occurrences(keys: pl.DataFrame) -> pl.Series:
    """True for the first row (in row order) of each (user, item, action, timestamp).

    A row whose 64-bit row hash no other row shares is a first occurrence; only the rows that share one
    (duplicates, and the rare collision) are compared field by field. Counting hashes needs one table of 64-bit
    values, where the exact comparison of every row held a table of whole rows: about 1 GB more at 10M events.
    """
    hashes = keys.select(_DUPLICATE_KEY).hash_rows().alias("hash").to_frame()
    shared = hashes.select(pl.len().over("hash") > 1).to_series()
    first = np.ones(keys.height, dtype=bool)
    rows = shared.arg_true()
    first[rows.to_numpy()] = keys[rows].select(pl.struct(_DUPLICATE_KEY).is_first_distinct()).to_series().to_numpy()
    return pl.Series("first", first)


def _consecutive_repeats(keys: pl.DataFrame, has_timestamps: bool) -> pl.Series:
    """True where an event repeats the item and action of the user's previous event (in time order).

    A numeric sort by (timestamp, event_index), then a shift within each user (a window keeps that order), and
    the flags go back to row order. Without times the frame is already in order.
    """
    keyed = keys.select("user_id", "item_id", "action", "timestamp", "event_index", _position=pl.int_range(pl.len()))
    if has_timestamps:
        keyed = keyed.sort(["timestamp", "event_index"])
    same = (pl.col("item_id") == pl.col("item_id").shift(1)) & (pl.col("action") == pl.col("action").shift(1))
    flags = keyed.select("_position", repeat=same.over("user_id").fill_null(False))
    if has_timestamps:
        flags = flags.sort("_position")
    return flags["repeat"]


def minimum_filters(config: CleaningConfig) -> list[tuple[str, str, int]]:
    """(drop reason, key column, minimum) of each minimum that is on, in the order they apply: items, then users."""
    pairs = (
        ("min_item_events", "item_id", config.min_item_events),
        ("min_user_events", "user_id", config.min_user_events),
    )
    return [(reason, key, minimum) for reason, key, minimum in pairs if minimum > 1]


def _minimum_filters(keys: pl.DataFrame, config: CleaningConfig) -> tuple[pl.DataFrame, dict[str, int], int]:
    """Items then users below their minimum; repeated to a fixpoint with ``k_core``.

    Returns the kept rows, rows dropped per reason (summed over rounds) and the number of rounds.
    """
    counts: dict[str, int] = {}
    filters = minimum_filters(config)
    if not filters:
        return keys, counts, 0
    rounds = 0
    while True:
        rounds += 1
        start = keys.height
        for reason, key, minimum in filters:
            kept = keys.filter(pl.len().over(key) >= minimum)
            counts[reason] = counts.get(reason, 0) + keys.height - kept.height
            keys = kept
        if not config.k_core or keys.height == start:
            break
    return keys, counts, rounds


def _counts(frame: pl.DataFrame) -> dict[str, int]:
    """Distinct non-null users, items and actions."""
    row = frame.select(
        users=pl.col("user_id").drop_nulls().n_unique(),
        items=pl.col("item_id").drop_nulls().n_unique(),
        actions=pl.col("action").drop_nulls().n_unique(),
    ).row(0, named=True)
    return {kind: int(count) for kind, count in row.items()}


def _note_empty_ids(notes: list[str], frame: pl.DataFrame) -> None:
    """Note events whose user or item id is the empty string: kept as an id, but usually a missing value that a
    writer quoted (pandas ``to_csv(quoting=QUOTE_ALL)`` writes NaN as ``""``), which merges them into one user."""
    for column in ("user_id", "item_id"):
        empty = int((frame[column].str.len_bytes() == 0).sum())
        if empty:
            notes.append(empty_id_note(column, empty))


def empty_id_note(column: str, empty: int) -> str:
    return (
        f"{empty:,} event(s) have the empty {column} '' (kept as an id): if it means a missing value, write "
        f"an empty unquoted field or a null instead, so cleaning drops those rows as null_{column[:-3]}"
    )


def _note_unseen(notes: list[str], option: str, names, frame: pl.DataFrame) -> None:
    """Note option values that match no action in the log: usually a typo, or old names in keep_actions."""
    seen = set(frame["action"].drop_nulls().unique().to_list())
    unseen = sorted(str(name) for name in names if name not in seen)
    if unseen:
        notes.append(f"{option} names no action in the log: {unseen} (actions present: {sorted(seen)[:20]})")
