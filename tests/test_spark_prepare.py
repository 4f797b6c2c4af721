"""The Spark data path (a real local Spark) writes what the in-memory path gives, event for event.

One Spark session serves the module (its start-up is most of the cost). It reads with small input splits and
small Arrow batches, so rows are indexed across several partitions and batches, as they are on a real log.
"""

from __future__ import annotations

import polars as pl
import pytest

from bertrec.args import ConfigError
from bertrec.data.cleaning import CleaningConfig
from bertrec.data.schema import EventDataError
from bertrec.data.streaming import load_train_windows
from bertrec.integrity import is_complete
from tests.test_streaming import CASES, by_user, in_memory, messy_log, window_set

COLUMNS = {"user": "user", "item": "item", "timestamp": "ts"}
# one run covers minimums, k-core, consecutive repeats, renames and the target action; sessions get their own
COMBINED = {
    "kcore_repeats_target": dict(
        cleaning=CleaningConfig(
            min_user_events=5,
            min_item_events=3,
            k_core=True,
            collapse_consecutive_repeats=True,
            rename_actions={"cart": "basket", "pay": "buy"},
        ),
        target_action="buy",
    ),
    "sessions": CASES["sessions"],
}


@pytest.fixture(scope="module")
def spark():
    from bertrec.data.spark_prepare import spark_session

    session = spark_session(
        "local[2]",
        driver_memory="1g",
        **{
            "spark.sql.shuffle.partitions": "2",
            "spark.sql.adaptive.enabled": "false",  # nothing to adapt on a few thousand rows
            "spark.driver.extraJavaOptions": "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",  # quick JVM start-up
            "spark.sql.files.maxPartitionBytes": "65536",  # several input splits per test file
            "spark.sql.execution.arrow.maxRecordsPerBatch": "1000",  # several Arrow batches per split
        },
    )
    yield session
    session.stop()


def check_folder(out, report, split, tokenizer) -> None:
    """The prepared folder ``out`` holds what the in-memory path gives: report, split, vocabulary, windows."""
    from bertrec.data.cleaning import CleaningReport
    from bertrec.recipes.prepare import load_split
    from bertrec.tokenization import EventTokenizer

    assert CleaningReport.load(out / "cleaning_report.json").to_dict() == report.to_dict()
    assert EventTokenizer.load(out / "tokenizer").spec == tokenizer.spec
    prepared = load_split(out)
    for part in ("train", "valid", "test"):
        assert by_user(getattr(prepared, part)).equals(by_user(getattr(split, part))), part
    assert {k: v for k, v in prepared.stats.items() if k != "train_windows"} == split.stats
    windows = load_train_windows(out)["input_ids"]
    assert window_set(windows) == window_set(tokenizer.encode_training_windows(split.train, min_events=2))
    assert prepared.stats["train_windows"] == len(windows)
    assert is_complete(out) and not (out / "_spark").exists()


def write_log(tmp_path, suffix: str, rows: int = 6000):
    path = tmp_path / f"log{suffix}"
    log = messy_log(rows)
    log.write_parquet(path) if suffix == ".parquet" else log.write_csv(path)
    return path


def test_spark_path_matches_in_memory_path_from_a_dataframe(spark, tmp_path):
    """Minimums, k-core, consecutive repeats, renames and a target action in one run, read from a DataFrame (a
    table or a query is read in its row order); the log's bad rows (nulls, duplicates) counted the same."""
    from bertrec.data.spark_prepare import prepare_on_spark

    options = COMBINED["kcore_repeats_target"]
    path = write_log(tmp_path, ".parquet")
    expected = in_memory(path, **options)
    prepared = prepare_on_spark(
        spark.read.parquet(str(path)),
        tmp_path / "out",
        spark=spark,
        cleaning=options["cleaning"],
        columns=COLUMNS,
        target_action=options["target_action"],
        max_events=8,
    )
    check_folder(tmp_path / "out", *expected)
    report = prepared.report
    assert report.dropped["duplicate"] > 0 and report.dropped["null_item"] == 20
    assert report.k_core_iterations > 1 and report.dropped["consecutive_repeat"] > 0
    assert any("rename_actions names no action" in note for note in report.notes)  # 'pay' is not in the log
    assert prepared.split_stats["held_out_events"] > 0


def test_prepare_recipe_with_spark_engine_matches_in_memory_path_on_a_csv_file(spark, tmp_path):
    """The recipe on a CSV file read in several splits (rows indexed by their place in the file), with sessions."""
    from bertrec.recipes.prepare import main

    path = write_log(tmp_path, ".csv")
    expected = in_memory(path, **CASES["sessions"], layout="action item")
    flags = ["--dataset", str(path), "--user_column", "user", "--item_column", "item", "--timestamp_column", "ts"]
    flags += ["--min_user_events", "2", "--session_gap_seconds", "7200", "--layout", "action item"]
    main([*flags, "--max_events", "8", "--engine", "spark", "--output_dir", str(tmp_path / "spark")])
    check_folder(tmp_path / "spark", *expected)
    with pytest.raises(ConfigError, match="--engine spark reads .* drop --split temporal"):
        main([*flags, "--output_dir", str(tmp_path / "x"), "--engine", "spark", "--split", "temporal"])


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_spark_path_matches_in_memory_path_on_every_bucketed_case(spark, tmp_path, case, suffix):
    from bertrec.data.spark_prepare import prepare_on_spark

    options = CASES[case]
    path = write_log(tmp_path, suffix)
    expected = in_memory(path, **options)
    prepare_on_spark(
        path,
        tmp_path / "out",
        spark=spark,
        cleaning=options["cleaning"],
        columns=COLUMNS,
        target_action=options.get("target_action"),
        session_gap_seconds=options.get("session_gap"),
        max_events=8,
    )
    check_folder(tmp_path / "out", *expected)


def test_spark_path_reports_bad_rows_by_their_row_in_the_file(spark, tmp_path):
    from bertrec.data.spark_prepare import prepare_on_spark

    log = messy_log().with_columns(pl.col("ts").cast(pl.String))
    log = log.with_columns(ts=pl.when(pl.int_range(pl.len()) == 4321).then(pl.lit("yesterday")).otherwise("ts"))
    path = tmp_path / "log.csv"
    log.write_csv(path)
    with pytest.raises(EventDataError, match=r"log.csv: column 'ts', data row 4322\b.*yesterday.*Fix the value"):
        prepare_on_spark(path, tmp_path / "out", spark=spark, columns=COLUMNS)
    assert not is_complete(tmp_path / "out")
    with pytest.raises(EventDataError, match=r"no item column 'sku'.*Columns found: \['user', 'item'"):
        prepare_on_spark(path, tmp_path / "out", spark=spark, columns={"user": "user", "item": "sku"})
    unclosed = tmp_path / "unclosed.csv"
    unclosed.write_text('user,item,ts\nu1,i1,1\nu1,"i2,2\nu2,i3,3\n')
    with pytest.raises(EventDataError, match=r"unclosed.csv: cannot read it as csv.*quote opened on line 3"):
        prepare_on_spark(unclosed, tmp_path / "out", spark=spark, columns=COLUMNS)
