"""Prepare a log on Apache Spark, where warehouse logs already live, into the folder the bucketed path writes.

The output is ``bertrec.data.streaming``'s prepared folder, file for file: ``split/{train,valid,test}-NNNNN.parquet``,
``tokenizer/``, ``train_windows/data-NNNNN.arrow`` (memory-mapped by ``datasets``), ``cleaning_report.json``,
``split_stats.json`` and the manifest, written last. ``recipes/pretrain.py --prepared_dir`` trains from it, and it
equals the in-memory path (``read_events`` -> ``clean_events`` -> ``build_sequences`` -> ``leave_one_out`` ->
``EventTokenizer``) event for event: ``tests/test_spark_prepare.py`` checks that on the same logs as the bucketed
path.

What runs where:

- **Reading** is Spark's (Parquet, CSV/TSV, or any DataFrame such as ``spark.table("db.events")``, which is first
  written as it is, so that its order is fixed). Each row's
  ``event_index`` is its position in the input: files are ordered by path and split start (from Spark's hidden
  ``_metadata`` column), rows within a split by Spark's per-partition record number, so the index is the row's
  place in the file without a global sort. Only the per-split row counts come to the driver.
- **Canonicalising** (ids to exact strings, times to unix seconds) runs ``bertrec.data.readers``' own rules on
  Arrow batches on the executors (``mapInArrow``), so a bad value gets the same error, with its row in the file.
- **Cleaning, k-core, sessions, sequences, the split and its leakage check** are Spark DataFrame operations
  (windows, joins, higher-order array functions); nothing is collected.
- **The vocabulary** (training events per item) is the one thing collected to the driver, as in the bucketed
  path; the tokenizer is built from it and shipped to the executors, which **encode** the training windows.

Stages are written to Parquet under ``output_dir/_spark`` and read back, which cuts Spark's lineage (the
k-core rounds would otherwise grow one plan per round) and makes every later stage read a fixed input.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from bertrec.atomic import atomic_write_text
from bertrec.data.cleaning import (
    NO_TIMES_NOTE,
    CleaningConfig,
    CleaningReport,
    _note_unseen,
    empty_id_note,
    minimum_filters,
)
from bertrec.data.read_errors import check_header, check_not_utf16, read_error_message
from bertrec.data.readers import text_separator
from bertrec.data.schema import CANONICAL_COLUMNS, ColumnMapping, EventDataError
from bertrec.data.sequences import SEQUENCE_LIST_COLUMNS
from bertrec.data.spark_workers import Canonicaliser, WindowEncoder
from bertrec.data.splits import LeakageError
from bertrec.data.streaming import WINDOWS_SCHEMA, BucketedData, _StageClock, _stream_format, no_evaluated_users
from bertrec.integrity import mark_incomplete, write_manifest
from bertrec.tokenization import EventTokenizer, check_times_for_layout

logger = logging.getLogger(__name__)
PARTS = ("train", "valid", "test")
_ROWS_PER_ARROW_BATCH = 100_000  # rows per Arrow batch handed to Python on the executors


def spark_session(master: str = "local[*]", driver_memory: str = "2g", **conf: str):
    """A Spark session for preparing logs; an existing one (``spark-submit``, a notebook) is reused as it is.

    The settings are what a local run needs (UTC times, no UI, few shuffle partitions that adaptive execution
    merges further); on a cluster, pass your own session to ``prepare_on_spark`` instead.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = (
        SparkSession.builder.master(master)
        .appName("bertrec-prepare")
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(_ROWS_PER_ARROW_BATCH))
    )
    for key, value in conf.items():
        builder = builder.config(key, value)
    # local workers run this interpreter (with bertrec installed), not whatever `python3` is first on PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session


def prepare_on_spark(
    source: str | Path | Any,
    output_dir: str | Path,
    *,
    spark: Any = None,
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
) -> BucketedData:
    """Read, clean, sequence, split (leave-one-out), tokenize and encode ``source`` on Spark.

    ``source`` is a Parquet file or folder, a CSV/TSV file, or a Spark DataFrame (its row order, as its
    partitions are written, is the event order; a table read with ``spark.table`` keeps its files' order).
    ``output_dir`` must be on a file system the driver and the executors share (local disk in local mode).
    Arguments mean what they mean for ``bertrec.data.streaming.prepare_in_buckets``, which writes the same folder.
    """
    cleaning = cleaning or CleaningConfig()
    spark = spark or spark_session()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    mark_incomplete(output_dir)
    for folder in ("_spark", "split", "train_windows", "tokenizer"):
        shutil.rmtree(output_dir / folder, ignore_errors=True)
    stage = _Stages(spark, output_dir / "_spark")
    clock = _StageClock()
    events, label = _canonical_events(stage, source, ColumnMapping.coerce(columns), format, delimiter, timestamp_unit)
    events = _job(lambda: stage.save(events, "events"), source, format, delimiter)
    clock.lap("read and canonicalise")
    cleaned, report = _clean(stage, events, cleaning)
    if report.output_rows == 0:
        raise EventDataError(
            f"{label}: no events left after cleaning; the report says what was dropped:\n{report.summary()}"
        )
    clock.lap("clean")
    split, stats = _split(stage, cleaned, session_gap_seconds, target_action)
    clock.lap("sequences and split")
    tokenizer = _vocabulary(split["train"], layout, time_boundaries, min_item_count, max_events)
    tokenizer.save(output_dir / "tokenizer")
    clock.lap("tokenizer")
    stats["train_windows"] = _encode(stage, split["train"], output_dir, min_window_events)
    _write_split(stage, split, output_dir / "split")
    clock.lap("encode and write")
    shutil.rmtree(output_dir / "_spark")
    report.save(output_dir / "cleaning_report.json")
    atomic_write_text(output_dir / "split_stats.json", json.dumps(stats, indent=2) + "\n")
    write_manifest(output_dir)
    logger.info("spark data path: seconds per stage %s", clock.seconds)
    shards = len(list((output_dir / "train_windows").glob("*.arrow")))  # Spark's partitions stand in for buckets
    return BucketedData(output_dir, tokenizer, report, stats, shards, 0, clock.seconds)


class _Stages:
    """Stage outputs written as Parquet and read back (a fixed input for what follows, and a short plan)."""

    def __init__(self, spark, folder: Path) -> None:
        self.spark, self.folder = spark, folder

    def save(self, frame, name: str):
        path = str(self.folder / name)
        frame.write.mode("overwrite").parquet(path)
        return self.spark.read.parquet(path)

    def rows(self, name: str) -> int:
        """Rows of a saved stage, from its Parquet footers: no Spark job."""
        return sum(pq.ParquetFile(f).metadata.num_rows for f in (self.folder / name).glob("*.parquet"))


# reading ----------------------------------------------------------------------------------------------------
def _canonical_events(stage: _Stages, source, mapping: ColumnMapping, format, delimiter, unit: str):
    """The canonical events (``CANONICAL_COLUMNS``; extra input columns are not needed to prepare) and the
    source's name for messages.

    A DataFrame is first written as it is (its partitions in order, as Parquet files): the row index is read
    in two jobs, and a query that shuffles could hand its rows to partitions differently each time it runs."""
    from pyspark.sql import DataFrame
    from pyspark.sql import functions as F

    spark = stage.spark
    if isinstance(source, DataFrame):
        mapping.resolve(source.columns, "DataFrame")  # a missing or clashing column fails before any job runs
        label, raw = "DataFrame", stage.save(source, "input")
    else:
        label, raw = str(source), _read_files(spark, Path(source), format, delimiter)
        mapping.resolve(raw.columns, label)
    keyed = raw.select(
        "*",
        F.col("_metadata.file_path").alias("_file"),
        F.col("_metadata.file_block_start").alias("_split"),
        F.monotonically_increasing_id().alias("_record"),  # the record number within its partition, in order
    )
    keys = ["_file", "_split"]
    # the number of rows before each input split: a few rows per file split, the only thing brought back here
    parts = keyed.groupBy(*keys).agg(F.min("_record").alias("_first"), F.count("*").alias("_rows")).toArrow()
    parts = pl.from_arrow(parts).sort(keys).with_columns(_offset=pl.col("_rows").cum_sum() - pl.col("_rows"))
    if parts.height == 0:
        raise EventDataError(f"{label}: the source has no events. Check that this is the right file.")
    offsets = spark.createDataFrame(parts.select(*keys, "_first", "_offset").rows(), [*keys, "_first", "_offset"])
    indexed = keyed.join(F.broadcast(offsets), on=keys).select(
        *raw.columns, (F.col("_offset") + F.col("_record") - F.col("_first")).alias("event_index")
    )
    schema = "user_id string, item_id string, action string, timestamp double, event_index long"
    canonicalise = Canonicaliser(mapping, label, unit)
    return indexed.mapInArrow(canonicalise, schema), label


def _read_files(spark, path: Path, format: str | None, delimiter: str | None):
    kind = _stream_format(path, format, delimiter)
    if kind == "parquet":
        return spark.read.parquet(str(path))
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        check_not_utf16(file)
    separator = text_separator(kind, delimiter)
    header = pl.read_csv(files[0], n_rows=0, infer_schema=False, separator=separator).columns if files else []
    check_header(header, path)
    # every column a string, as read_events reads text; a malformed line fails the job instead of becoming nulls
    return (
        spark.read.option("header", True)
        .option("sep", separator)
        .option("mode", "FAILFAST")
        .option("inferSchema", False)
        .csv(str(path))
    )


def _job(action, source, format: str | None, delimiter: str | None):
    """Run a Spark action; an input error raised on an executor comes back as the ``EventDataError`` it was,
    and a malformed line of a text file as the in-memory reader's message about it."""
    try:
        return action()
    except Exception as error:  # py4j / pyspark wrap what the executors raised
        text = str(error)
        found = re.search(r"EventDataError: (.+)", text)
        if found:
            raise EventDataError(found.group(1).strip()) from None
        if "Malformed" in text and isinstance(source, (str, Path)):
            kind = _stream_format(Path(source), format, delimiter)
            detail = ValueError("Spark found a malformed CSV record")  # its own message is a Java stack trace
            message = read_error_message(Path(source), kind, False, text_separator(kind, delimiter), detail)
            raise EventDataError(message) from None
        raise


# cleaning ---------------------------------------------------------------------------------------------------
def _clean(stage: _Stages, events, config: CleaningConfig):
    """``clean_events`` as Spark operations: the same steps, order, counts and notes (see ``cleaning``)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    user, item, action, ts, index = (F.col(c) for c in CANONICAL_COLUMNS)
    totals = events.agg(
        F.count("*").alias("rows"),
        F.count("timestamp").alias("timed"),
        F.sum((user == "").cast("long")).alias("empty_user_id"),
        F.sum((item == "").cast("long")).alias("empty_item_id"),
        F.collect_set("action").alias("actions"),
    ).first()
    has_timestamps = totals["timed"] > 0
    before = {"users": _distinct(events, "user_id"), "items": _distinct(events, "item_id")}
    notes = [
        empty_id_note(column, totals[f"empty_{column}"])
        for column in ("user_id", "item_id")
        if totals[f"empty_{column}"]
    ]
    raw_actions = pl.DataFrame({"action": totals["actions"]}, schema={"action": pl.String})
    renamed_actions = raw_actions
    if config.rename_actions:
        _note_unseen(notes, "rename_actions", config.rename_actions, raw_actions)
        renames = F.create_map(*[F.lit(x) for pair in config.rename_actions.items() for x in pair])
        events = events.withColumn("action", F.coalesce(renames[action], action))
        renamed_actions = raw_actions.with_columns(pl.col("action").replace(config.rename_actions)).unique()
    reasons = [("null_user", user.isNull()), ("null_item", item.isNull()), ("null_action", action.isNull())]
    if has_timestamps:
        reasons.append(("null_timestamp", ts.isNull()))
    if config.keep_actions is not None:
        _note_unseen(notes, "keep_actions", config.keep_actions, renamed_actions)
        reasons.append(("action_filtered", ~action.isin(list(config.keep_actions))))
    first_reason = F.lit(None).cast("string")
    for reason, dropped in reversed(reasons):  # the first step that drops a row is the one it counts under
        first_reason = F.when(dropped, F.lit(reason)).otherwise(first_reason)
    flagged = events.withColumn("_reason", first_reason)
    counts = {row["_reason"]: row["count"] for row in flagged.groupBy("_reason").count().collect()}
    dropped = {reason: counts.get(reason, 0) for reason, _ in reasons}
    kept = flagged.where(F.col("_reason").isNull()).drop("_reason")
    rows = totals["rows"] - sum(dropped.values())

    def keep(reason: str, frame) -> None:
        nonlocal kept, rows
        kept = stage.save(frame, reason)
        remaining = stage.rows(reason)
        dropped[reason], rows = rows - remaining, remaining

    if config.drop_duplicates and has_timestamps:  # the first of each (user, item, action, time) by input order
        keep("duplicate", kept.groupBy(*CANONICAL_COLUMNS[:4]).agg(F.min("event_index").alias("event_index")))
    elif config.drop_duplicates:
        notes.append(NO_TIMES_NOTE)
    if config.collapse_consecutive_repeats:
        order = ["timestamp", "event_index"] if has_timestamps else ["event_index"]
        previous = Window.partitionBy("user_id").orderBy(*order)
        repeat = (item == F.lag(item).over(previous)) & (action == F.lag(action).over(previous))
        flagged = kept.withColumn("_repeat", F.coalesce(repeat, F.lit(False)))
        keep("consecutive_repeat", flagged.where(~F.col("_repeat")).drop("_repeat"))
    kept, minimum_drops, rounds = _minimum_filters(stage, kept, rows, config)
    dropped.update(minimum_drops)
    after = {
        "rows": rows - sum(minimum_drops.values()),
        "users": _distinct(kept, "user_id"),
        "items": _distinct(kept, "item_id"),
        "actions": _distinct(kept, "action"),
    }
    report = CleaningReport(
        input_rows=totals["rows"],
        output_rows=after["rows"],
        dropped=dropped,
        k_core_iterations=rounds,
        users_before=before["users"],
        users_after=after["users"],
        items_before=before["items"],
        items_after=after["items"],
        actions_before=renamed_actions.height,
        actions_after=after["actions"],
        has_timestamps=has_timestamps,
        notes=notes,
        config=asdict(config),
    )
    return kept, report


def _distinct(frame, column: str) -> int:
    """Distinct non-null values of one column (one aggregation per column is cheaper in Spark than several
    exact distinct counts in one, which copies every row once per column)."""
    return frame.select(column).where(f"{column} is not null").distinct().count()


def _minimum_filters(stage: _Stages, kept, rows: int, config: CleaningConfig):
    """Items, then users, below their minimum; repeated to a fixpoint with ``k_core``. Each round is saved, so
    a k-core of many rounds keeps a short plan."""
    from pyspark.sql import functions as F

    filters = minimum_filters(config)
    counts: dict[str, int] = {}
    if not filters:
        return kept, counts, 0
    rounds = 0
    while True:
        rounds += 1
        start = rows
        for reason, key, minimum in filters:
            frequent = kept.groupBy(key).count().where(F.col("count") >= minimum).select(key)
            name = f"{reason}-{rounds}"
            kept = stage.save(kept.join(frequent, on=key, how="left_semi"), name)
            remaining = stage.rows(name)
            counts[reason] = counts.get(reason, 0) + rows - remaining
            rows = remaining
        if not config.k_core or rows == start:
            return kept, counts, rounds


# sequences and split ----------------------------------------------------------------------------------------
def _split(stage: _Stages, events, session_gap_seconds: float | None, target_action: str | None):
    """Time-ordered sequences per user (or session) and their leave-one-out split, as ``splits`` makes them."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = "user_id"
    if session_gap_seconds is not None:
        if session_gap_seconds <= 0:
            raise ValueError(f"session gap must be positive seconds, got {session_gap_seconds!r}")
        if events.where("timestamp is not null").isEmpty():
            raise ValueError("sessions need timestamps, but this log has none; drop the session gap option")
        in_time = Window.partitionBy("user_id").orderBy("timestamp", "event_index")
        starts = F.coalesce((F.col("timestamp") - F.lag("timestamp").over(in_time)) > session_gap_seconds, F.lit(False))
        number = F.sum(starts.cast("long")).over(in_time.rowsBetween(Window.unboundedPreceding, Window.currentRow))
        events = events.withColumn("session_id", F.concat("user_id", F.lit("#"), number.cast("string")))
        key = "session_id"
    # nulls first, as polars sorts them: a log without times has only nulls, a timed one none after cleaning
    order_time = F.coalesce(F.col("timestamp"), F.lit(float("-inf")))
    event = F.struct(order_time.alias("_t"), "event_index", "item_id", "action", "timestamp")
    grouped = events.groupBy(key).agg(F.array_sort(F.collect_list(event)).alias("_events"))
    sequences = grouped.select(
        F.col(key).alias("user_id"), *[F.col("_events")[c].alias(c) for c in SEQUENCE_LIST_COLUMNS]
    )
    sequences = stage.save(sequences, "sequences")
    if target_action is None:
        parts, stats = _leave_one_out(sequences)
    else:
        parts, stats = _action_leave_one_out(sequences, target_action)
    parts = {name: stage.save(frame, f"split-{name}") for name, frame in parts.items()}
    evaluated = stage.rows("split-valid")
    stats = {
        "protocol": stats.pop("protocol"),
        "evaluated_users": evaluated,
        "train_only_users": stage.rows("sequences") - evaluated,
        **stats,
    }
    if evaluated == 0:
        actions = [r[0] for r in sequences.select(F.explode("action")).distinct().limit(10).collect()]
        raise no_evaluated_users(target_action, actions)
    _check_no_leakage(parts)
    return parts, stats


def _head(length) -> list:
    from pyspark.sql import functions as F

    return [F.slice(c, 1, length).alias(c) for c in SEQUENCE_LIST_COLUMNS]


def _examples(frame, at) -> Any:
    """History before the 0-based position ``at`` and the event there as the target."""
    from pyspark.sql import functions as F

    targets = [F.element_at(c, at + 1).alias(f"target_{c}") for c in SEQUENCE_LIST_COLUMNS]
    return frame.select("user_id", *_head(at), *targets)


def _leave_one_out(sequences):
    from pyspark.sql import functions as F

    n = F.size("item_id")
    evaluable, train_only = sequences.where(n >= 3), sequences.where(n < 3)
    train = evaluable.select("user_id", *_head(n - 2)).unionByName(train_only)
    parts = {"train": train, "valid": _examples(evaluable, n - 2), "test": _examples(evaluable, n - 1)}
    return parts, {"protocol": "leave_one_out"}


def _action_leave_one_out(sequences, action: str):
    """``splits.action_leave_one_out``: targets are events of ``action``; training stops at the one before the
    validation target."""
    from pyspark.sql import functions as F

    positions = F.filter(
        F.sequence(F.lit(0), F.size("action") - 1), lambda i: F.element_at("action", i + 1) == F.lit(action)
    )
    marked = sequences.withColumn("_targets", positions)
    found = F.size("_targets")
    valid_at = F.when(found >= 2, F.element_at("_targets", -2))
    test_at = F.element_at("_targets", -1)
    train_end = F.coalesce(F.when(found >= 3, F.element_at("_targets", -3) + 1), F.lit(0))
    evaluable = marked.where((found >= 2) & (valid_at >= 1)).withColumn("_train_end", train_end)
    evaluable = evaluable.withColumn("_valid_at", valid_at).withColumn("_test_at", test_at)
    train_only = marked.where(~((found >= 2) & (valid_at >= 1))).drop("_targets")
    head = evaluable.where(F.col("_train_end") > 0).select("user_id", *_head(F.col("_train_end")))
    held_out = evaluable.agg(F.sum(F.col("_valid_at") - F.col("_train_end"))).first()[0] or 0
    parts = {
        "train": head.unionByName(train_only),
        "valid": _examples(evaluable, F.col("_valid_at")),
        "test": _examples(evaluable, F.col("_test_at")),
    }
    stats = {
        "protocol": f"leave_one_out, target action {action}",
        "held_out_events": int(held_out),
    }
    return parts, stats


def _check_no_leakage(parts: dict) -> None:
    """``splits.check_no_leakage`` as joins: no validation target in training, no test target in training or
    validation, no target in its own history."""
    from pyspark.sql import functions as F

    def events(frame, column: str):
        return frame.select(F.explode(column).alias("event_index"))

    def targets(name: str):
        return parts[name].select(F.col("target_event_index").alias("event_index"))

    train = events(parts["train"], "event_index")
    valid_visible = train.unionByName(events(parts["valid"], "event_index")).unionByName(targets("valid"))
    for name, visible in (("validation", train), ("test", valid_visible)):
        part = "valid" if name == "validation" else "test"
        # the targets (one per user) are broadcast and the many visible events streamed past them
        leaked = visible.join(F.broadcast(targets(part)), on="event_index", how="left_semi")
        own = parts[part].where(F.array_contains("event_index", F.col("target_event_index")))
        found = leaked.limit(5).collect()
        if found:
            raise LeakageError(
                f"{name} target events (event_index e.g. {[r[0] for r in found]}) are visible in data the model "
                "sees earlier; the split is leaky and its metrics would be inflated"
            )
        if not own.isEmpty():
            raise LeakageError(f"{name} examples have their target event in their own input history")


# vocabulary, encoding and output ----------------------------------------------------------------------------
def _vocabulary(train, layout: str, time_boundaries, min_item_count: int, max_events: int) -> EventTokenizer:
    """The tokenizer from training-event counts per item, the one table collected to the driver."""
    from pyspark.sql import functions as F

    flat = train.select(F.explode(F.arrays_zip("item_id", "action", "timestamp")).alias("e")).select("e.*")
    seen = flat.agg(F.count_if(F.col("timestamp").isNull()).alias("untimed"), F.collect_set("action")).first()
    check_times_for_layout(layout, pl.Series("timestamp", [None] * min(seen[0], 1), pl.Float64))
    counts = pl.from_arrow(
        flat.where("item_id is not null").groupBy("item_id").agg(F.count("*").alias("len")).toArrow()
    )
    actions = seen[1]
    return EventTokenizer.from_counts(
        counts,
        actions,
        layout=layout,
        time_boundaries=time_boundaries,
        min_item_count=min_item_count,
        max_events=max_events,
    )


def _encode(stage: _Stages, train, output_dir: Path, min_events: int) -> int:
    """Training windows encoded on the executors, then rewritten from Parquet as the Arrow stream files that
    ``datasets`` memory-maps, one Parquet file at a time (a batch at a time in memory)."""
    tokenizer_dir = output_dir / "tokenizer"
    fingerprint = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(tokenizer_dir.iterdir()))
    encoder = WindowEncoder(str(tokenizer_dir.resolve()), fingerprint, min_events)
    stage.save(train.mapInArrow(encoder, "input_ids array<int>"), "windows")
    folder = output_dir / "train_windows"
    folder.mkdir()
    total = 0
    for number, file in enumerate(sorted((stage.folder / "windows").glob("*.parquet"))):
        with pa.OSFile(str(folder / f"data-{number:05d}.arrow"), "wb") as sink:
            with pa.ipc.new_stream(sink, WINDOWS_SCHEMA) as out:
                for batch in pq.ParquetFile(file).iter_batches(batch_size=_ROWS_PER_ARROW_BATCH):
                    out.write_table(pa.Table.from_batches([batch]).cast(WINDOWS_SCHEMA))
                    total += batch.num_rows
    return total


def _write_split(stage: _Stages, parts: dict, folder: Path) -> None:
    """The split's Parquet files, renamed to the bucketed path's ``{part}-NNNNN.parquet``."""
    folder.mkdir()
    for name in PARTS:
        source = stage.folder / f"split-{name}"
        for number, file in enumerate(sorted(source.glob("*.parquet"))):
            shutil.move(file, folder / f"{name}-{number:05d}.parquet")
