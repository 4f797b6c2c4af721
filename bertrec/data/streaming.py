"""Prepare a log larger than memory: users are bucketed to disk, then each bucket is cleaned, sequenced, split
and encoded on its own, so peak memory follows the largest bucket, not the log.

Every per-user step (duplicates, consecutive repeats, the user minimum, sequences, sessions, leave-one-out) sees a
user's whole history because a user's events all land in one bucket (a hash of the user id picks it). The item
minimum (and k-core) needs counts over the whole log: a running count per item is kept between passes, which is
the one structure that grows with the catalogue rather than the bucket. The result matches the in-memory path
(``read_events`` -> ``clean_events`` -> ``build_sequences`` -> ``leave_one_out`` -> ``EventTokenizer.build``)
event for event; ``tests/test_streaming.py`` checks that.

Passes over the data, each reading one bucket at a time:

0. read the log in batches (polars' streaming scan of Parquet or CSV/TSV), canonicalise each batch with the
   reader's own rules and append it to its users' bucket (an Arrow file, one record batch per read batch);
1. clean each bucket without the minimums, counting items over the whole log;
2. apply the item and user minimums (repeated to a fixpoint with k-core), one full pass per round;
3. build sequences and the split of each bucket (Parquet shards), counting training items for the vocabulary;
4. build the tokenizer from those counts and encode each bucket's training windows as an Arrow file, which
   ``datasets`` memory-maps.

The temporal split is not offered here: its cut times are quantiles of the whole log, which the in-memory path
computes; use ``leave_one_out`` (optionally with ``target_action``) for logs of this size.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from bertrec.atomic import atomic_write_text
from bertrec.data.cleaning import CleaningConfig, CleaningReport, _note_unseen, clean_events, minimum_filters
from bertrec.data.read_errors import check_header, check_not_utf16
from bertrec.data.readers import _canonicalize, _detect_format, text_separator
from bertrec.data.schema import ColumnMapping, EventDataError
from bertrec.data.sequences import add_sessions, build_sequences
from bertrec.data.splits import action_leave_one_out, leave_one_out
from bertrec.integrity import mark_incomplete, write_manifest
from bertrec.tokenization import EventTokenizer, check_times_for_layout

logger = logging.getLogger(__name__)
PARTS = ("train", "valid", "test")
_BUCKET_SEED = 1_234_567  # a fixed seed, so a rerun puts every user in the same bucket
_COLLAPSE_ROWS = 1_000_000  # item-count rows kept in parts before they are summed
_OPTION_NOTES = ("rename_actions", "keep_actions")  # notes about the whole log, made once, not per bucket
WINDOWS_SCHEMA = pa.schema([("input_ids", pa.large_list(pa.int32()))])  # train_windows/data-NNNNN.arrow


@dataclass
class BucketedData:
    """What ``prepare_in_buckets`` wrote to ``output_dir``."""

    output_dir: Path
    tokenizer: EventTokenizer
    report: CleaningReport
    split_stats: dict
    num_buckets: int
    largest_bucket_events: int
    stage_seconds: dict[str, float]

    def train_windows(self):
        """The training windows as one memory-mapped ``datasets.Dataset`` (column ``input_ids``)."""
        return load_train_windows(self.output_dir)

    def examples(self, part: str) -> pl.LazyFrame:
        """The ``valid`` or ``test`` examples (or the ``train`` sequences) of every bucket, as a lazy scan."""
        if part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {part!r}")
        return pl.scan_parquet(self.output_dir / "split" / f"{part}-*.parquet")


def load_train_windows(output_dir: str | Path):
    """Memory-map the training windows written by ``prepare_in_buckets``: nothing is copied into RAM."""
    import datasets

    files = sorted((Path(output_dir) / "train_windows").glob("data-*.arrow"))
    if not files:
        raise FileNotFoundError(f"{output_dir}/train_windows has no data-*.arrow files; run prepare_in_buckets first")
    return datasets.concatenate_datasets([datasets.Dataset.from_file(str(f)) for f in files])


def prepare_in_buckets(
    source: str | Path,
    output_dir: str | Path,
    *,
    cleaning: CleaningConfig | None = None,
    columns: ColumnMapping | dict[str, str | None] | None = None,
    format: str | None = None,
    delimiter: str | None = None,
    timestamp_unit: str = "auto",
    session_gap_seconds: float | None = None,
    target_action: str | None = None,
    layout: str = "time action item",
    max_events: int = 50,
    min_item_count: int = 1,
    time_boundaries: Sequence[float] | None = None,
    min_window_events: int = 2,
    events_per_bucket: int = 2_000_000,
    batch_rows: int = 1_000_000,
) -> BucketedData:
    """Read, clean, sequence, split, tokenize and encode the log at ``source`` one bucket of users at a time.

    ``events_per_bucket`` sets the memory bound: the log is cut into ``ceil(rows / events_per_bucket)`` buckets
    (rows from the Parquet metadata, or estimated from a text file's size), and each pass holds one bucket.
    ``output_dir`` receives ``tokenizer/``, ``split/{train,valid,test}-NNNNN.parquet``,
    ``train_windows/data-NNNNN.arrow``, ``cleaning_report.json`` and ``split_stats.json``; its manifest is
    written last, so a folder without one is an interrupted run (run it again: it starts over).
    """
    cleaning = cleaning or CleaningConfig()
    if events_per_bucket < 1 or batch_rows < 1:
        raise ValueError("events_per_bucket and batch_rows must be positive")
    path, output_dir = Path(source), Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    mark_incomplete(output_dir)
    for folder in ("buckets", "split", "train_windows", "tokenizer"):
        shutil.rmtree(output_dir / folder, ignore_errors=True)
    clock = _StageClock()
    kind = _stream_format(path, format, delimiter)
    num_buckets = max(1, math.ceil(_estimated_rows(path, kind) / events_per_bucket))
    read = _write_buckets(
        path, output_dir / "buckets", num_buckets, columns, kind, delimiter, timestamp_unit, batch_rows
    )
    clock.lap("read and bucket")
    report = _clean_buckets(read, cleaning)
    clock.lap("clean")
    stats, train_counts, actions = _split_buckets(read, session_gap_seconds, target_action, layout)
    clock.lap("sequences and split")
    tokenizer = EventTokenizer.from_counts(
        train_counts,
        actions,
        layout=layout,
        time_boundaries=time_boundaries,
        min_item_count=min_item_count,
        max_events=max_events,
    )
    tokenizer.save(output_dir / "tokenizer")
    clock.lap("tokenizer")
    windows = _encode_buckets(read, tokenizer, output_dir / "train_windows", min_window_events)
    clock.lap("encode")
    stats["train_windows"] = windows
    shutil.rmtree(output_dir / "buckets")
    report.save(output_dir / "cleaning_report.json")
    atomic_write_text(output_dir / "split_stats.json", json.dumps(stats, indent=2) + "\n")
    write_manifest(output_dir)
    logger.info("bucketed data path: %s buckets, seconds per pass %s", num_buckets, clock.seconds)
    return BucketedData(output_dir, tokenizer, report, stats, num_buckets, read.largest_bucket, clock.seconds)


class _StageClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._last, 3)
        self._last = now


# pass 0: bucketing ----------------------------------------------------------------------------------------
@dataclass
class _Buckets:
    files: list[Path]
    split_dir: Path
    rows: int
    has_timestamps: bool
    actions: pl.Series
    largest_bucket: int


def _stream_format(path: Path, format: str | None, delimiter: str | None) -> str:
    """parquet, csv or tsv (what a streaming scan reads); anything else is refused with what to do."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    kind, _ = _detect_format(path, format, delimiter)
    if kind not in ("parquet", "csv", "tsv"):
        raise EventDataError(
            f"{path}: the bucketed path reads Parquet, CSV or TSV, not {kind}; convert the file to Parquet "
            "(e.g. polars.scan_ndjson(path).sink_parquet(...)) or use the in-memory path (read_events)"
        )
    return kind


def _estimated_rows(path: Path, kind: str) -> int:
    """Rows of a Parquet file (its metadata) or an over-estimate for text (a log row is rarely under 16 bytes)."""
    if kind == "parquet":
        return int(pl.scan_parquet(path).select(pl.len()).collect().item())
    size = sum(f.stat().st_size for f in path.rglob("*")) if path.is_dir() else path.stat().st_size
    return max(1, size // 16)


def _scan(path: Path, kind: str, delimiter: str | None) -> pl.LazyFrame:
    if kind == "parquet":
        return pl.scan_parquet(path)
    if path.is_file():
        check_not_utf16(path)
    # every column a string, as read_events reads text
    return pl.scan_csv(path, infer_schema=False, separator=text_separator(kind, delimiter))


def _write_buckets(
    path: Path,
    folder: Path,
    num_buckets: int,
    columns,
    kind: str,
    delimiter: str | None,
    unit: str,
    batch_rows: int,
) -> _Buckets:
    """Canonicalise the log batch by batch (event_index counts rows over the whole file) and append each
    batch's rows to their users' bucket files."""
    folder.mkdir(parents=True)
    mapping = ColumnMapping.coerce(columns)
    files = [folder / f"bucket-{b:05d}.arrow" for b in range(num_buckets)]
    writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
    schemas: dict[int, pa.Schema] = {}  # a later batch's columns are cast to the first's (e.g. all-null ones)
    sizes = [0] * num_buckets
    rows, timed = 0, False
    actions = pl.Series("action", [], pl.String)
    try:
        for batch in _scan(path, kind, delimiter).collect_batches(chunk_size=batch_rows):
            if batch.height == 0:
                continue
            if rows == 0 and kind != "parquet":
                check_header(batch.columns, path)
            try:
                events = _canonicalize(batch, mapping, str(path), unit, first_index=rows)
            except EventDataError as error:  # the batch's row numbers, made the file's
                raise EventDataError(_shift_rows(str(error), rows)) from error
            rows += batch.height
            timed = timed or events["timestamp"].null_count() < events.height
            actions = pl.concat([actions, events["action"].drop_nulls().unique()]).unique()
            bucket = (events["user_id"].hash(seed=_BUCKET_SEED) % num_buckets).alias("_bucket")
            for (index,), part in events.with_columns(bucket).partition_by("_bucket", as_dict=True).items():
                table = part.drop("_bucket").to_arrow()
                if index not in writers:
                    writers[index] = pa.ipc.new_file(str(files[index]), table.schema)
                    schemas[index] = table.schema
                writers[index].write_table(table.cast(schemas[index]))
                sizes[index] += part.height
    except pl.exceptions.PolarsError as error:
        raise EventDataError(f"{path}: cannot read it as {kind}: {error}") from error
    finally:
        for writer in writers.values():
            writer.close()
    if rows == 0:
        raise EventDataError(f"{path}: the file has no events. Check that this is the right file.")
    kept = [f for f in files if f.exists()]
    return _Buckets(kept, folder.parent / "split", rows, timed, actions, max(sizes))


def _read_bucket(file: Path) -> pl.DataFrame:
    # bucket files are scratch space read back whole: uncompressed Arrow, the cheapest format to write and read
    return pl.read_ipc(file).rechunk()


def _write_bucket(frame: pl.DataFrame, file: Path) -> None:
    # written beside and renamed over: a frame read from ``file`` may still map the old file's pages
    temporary = file.with_suffix(".tmp")
    frame.write_ipc(temporary, compression="uncompressed")
    temporary.replace(file)


def _shift_rows(message: str, offset: int) -> str:
    return re.sub(r"data row (\d+)", lambda m: f"data row {int(m.group(1)) + offset}", message)


# passes 1 and 2: cleaning -----------------------------------------------------------------------------------
def _clean_buckets(read: _Buckets, config: CleaningConfig) -> CleaningReport:
    """Clean each bucket in place; the report adds up exactly as the in-memory one would."""
    per_row = CleaningConfig(**{**asdict(config), "min_user_events": 1, "min_item_events": 1, "k_core": False})
    dropped: dict[str, int] = {}
    users_before, notes = 0, []
    counts, raw_items = _ItemCounts(), _ItemCounts()
    finals: dict[Path, tuple[int, set[str]]] = {}  # each bucket's users and actions, as it was last written
    for file in read.files:
        events = _read_bucket(file)
        raw_items.add(events.drop_nulls("item_id"))
        cleaned, report = clean_events(events, per_row, has_timestamps=read.has_timestamps)
        _add(dropped, report.dropped)
        users_before += report.users_before
        notes += [n for n in report.notes if not n.startswith(_OPTION_NOTES) and n not in notes]
        counts.add(cleaned)
        finals[file] = (report.users_after, set(cleaned["action"].unique().to_list()))
        _write_bucket(cleaned, file)
    totals = counts.total()
    rounds = 0
    minimums = minimum_filters(config)
    while minimums:  # one round = the item minimum (whole-log counts), then the user minimum, over every bucket
        rounds += 1
        frequent = totals.filter(pl.col("len") >= config.min_item_events)["item_id"]
        counts, removed = _ItemCounts(), 0
        for file in read.files:
            frame = _read_bucket(file)
            start = frame.height
            for reason, key, minimum in minimums:
                kept = (
                    frame.filter(pl.col(key).is_in(frequent.implode()))
                    if key == "item_id"
                    else frame.filter(pl.len().over(key) >= minimum)
                )
                _add(dropped, {reason: frame.height - kept.height})
                frame = kept
            removed += start - frame.height
            counts.add(frame)
            if frame.height < start:
                finals[file] = (frame["user_id"].n_unique(), set(frame["action"].unique().to_list()))
                _write_bucket(frame, file)
        totals = counts.total()
        if not config.k_core or removed == 0:
            break
    for option in _OPTION_NOTES:
        names = getattr(config, option)
        if names:
            _note_unseen(notes, option, names, read.actions.to_frame())
    if config.rename_actions:
        actions_before = read.actions.replace(config.rename_actions).n_unique()
    else:
        actions_before = read.actions.len()
    return CleaningReport(
        input_rows=read.rows,
        output_rows=int(totals["len"].sum()),
        dropped=dropped,
        k_core_iterations=rounds,
        users_before=users_before,
        users_after=sum(users for users, _ in finals.values()),
        items_before=raw_items.total().height,
        items_after=totals.height,
        actions_before=actions_before,
        actions_after=len(set().union(*(actions for _, actions in finals.values()))),
        has_timestamps=read.has_timestamps,
        notes=notes,
        config=asdict(config),
    )


class _ItemCounts:
    """Events per item over every bucket added. Buckets' counts are kept as parts and summed when the parts
    outgrow the running total (and at the end), so memory stays near one row per item while each bucket is
    not re-summed against the whole catalogue."""

    def __init__(self) -> None:
        self._total = pl.DataFrame(schema={"item_id": pl.String, "len": pl.UInt32})
        self._parts: list[pl.DataFrame] = []

    def add(self, events: pl.DataFrame) -> None:
        self._parts.append(events.group_by("item_id").len().with_columns(pl.col("len").cast(pl.UInt32)))
        if sum(part.height for part in self._parts) > max(self._total.height, _COLLAPSE_ROWS):
            self._collapse()

    def total(self) -> pl.DataFrame:
        self._collapse()
        return self._total

    def _collapse(self) -> None:
        if self._parts:
            parts, self._parts = [self._total, *self._parts], []
            self._total = pl.concat(parts).group_by("item_id").agg(pl.col("len").sum())


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for reason, rows in more.items():
        total[reason] = total.get(reason, 0) + rows


# pass 3: sequences and split -------------------------------------------------------------------------------
def _split_buckets(
    read: _Buckets, session_gap_seconds: float | None, target_action: str | None, layout: str
) -> tuple[dict, pl.DataFrame, list[str]]:
    read.split_dir.mkdir()
    stats: dict = {}
    counts, actions = _ItemCounts(), set()
    for number, file in enumerate(read.files):
        events = _read_bucket(file)
        key = "user_id"
        if session_gap_seconds is not None:
            events, key = add_sessions(events, session_gap_seconds), "session_id"
        sequences = build_sequences(events, key=key)
        # a bucket may hold no user with two target events; only the whole log must hold one (checked below)
        split = leave_one_out(sequences) if target_action is None else action_leave_one_out(sequences, target_action)
        for part in PARTS:
            getattr(split, part).write_parquet(read.split_dir / f"{part}-{number:05d}.parquet", compression="lz4")
        for name, value in split.stats.items():
            stats[name] = stats.get(name, 0) + value if isinstance(value, int) else value
        train = split.train.select(
            pl.col("item_id").explode(), pl.col("action").explode(), pl.col("timestamp").explode()
        )
        check_times_for_layout(layout, train["timestamp"])
        counts.add(train.drop_nulls("item_id"))
        actions |= set(train["action"].drop_nulls().unique().to_list())
    if not stats.get("evaluated_users"):
        raise no_evaluated_users(target_action, actions)
    return stats, counts.total(), sorted(actions)


def no_evaluated_users(target_action: str | None, actions) -> ValueError:
    """The error for a split that evaluates no user (a log, not a part of it, must hold one)."""
    return ValueError(
        f"no user has a validation and a test target (target action {target_action!r}); check the action "
        f"name (actions in this log: {sorted(actions)[:10]}) or lower the cleaning minimums"
    )


# pass 4: training windows -----------------------------------------------------------------------------------
def _encode_buckets(read: _Buckets, tokenizer: EventTokenizer, folder: Path, min_events: int) -> int:
    """Each bucket's training windows as an Arrow stream file (what ``datasets.Dataset.from_file`` maps)."""
    folder.mkdir()
    total = 0
    for number in range(len(read.files)):
        train = pl.read_parquet(read.split_dir / f"train-{number:05d}.parquet")
        windows = tokenizer.encode_training_windows(train, min_events=min_events)
        total += len(windows)
        with pa.OSFile(str(folder / f"data-{number:05d}.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, WINDOWS_SCHEMA) as writer:
                writer.write_table(pa.table({"input_ids": windows_column(windows)}, schema=WINDOWS_SCHEMA))
    return total


def windows_column(windows: list[np.ndarray]) -> pa.LargeListArray:
    """Token windows as one Arrow list column built from a flat buffer (no per-row Python objects).

    A stacked layout's ``[events, fields]`` window is stored flat, event by event (``reshape(-1, fields)``
    gives it back, ``tokens_per_event`` fields per event), like its text form."""
    lengths = np.fromiter((w.size for w in windows), dtype=np.int64, count=len(windows))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    flat = (
        np.concatenate([w.reshape(-1) for w in windows], dtype=np.int32, casting="same_kind")
        if windows
        else np.zeros(0, dtype=np.int32)
    )
    return pa.LargeListArray.from_arrays(pa.array(offsets), pa.array(flat))
