"""The bucketed (larger-than-memory) data path gives exactly what the in-memory path gives."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from bertrec.args import ConfigError
from bertrec.data import streaming
from bertrec.data.cleaning import CleaningConfig, clean_events
from bertrec.data.readers import read_events
from bertrec.data.schema import EventDataError
from bertrec.data.sequences import add_sessions, build_sequences
from bertrec.data.splits import leave_one_out
from bertrec.data.streaming import load_train_windows, prepare_in_buckets
from bertrec.integrity import is_complete
from bertrec.tokenization import EventTokenizer


def messy_log(rows: int = 6000, seed: int = 0) -> pl.DataFrame:
    """Skewed users and items, 3 actions, tied and repeated times, duplicates, nulls and a few rare items."""
    rng = np.random.default_rng(seed)
    user = (300 * rng.random(rows) ** 2).astype(int)
    item = (400 * rng.random(rows) ** 3).astype(int)
    frame = pl.DataFrame(
        {
            "user": [f"u{u}" for u in user],
            "item": [f"i{i}" for i in item],
            "action": rng.choice(["view", "cart", "buy"], rows, p=[0.8, 0.12, 0.08]).tolist(),
            "ts": (1_600_000_000 + rng.integers(0, 50, rows) * 3600).tolist(),  # many ties
            "extra": rng.integers(0, 9, rows).tolist(),
        }
    )
    duplicates = frame.sample(rows // 20, seed=seed)
    nulls = frame.head(20).with_columns(item=pl.lit(None, pl.String))
    return pl.concat([frame, duplicates, nulls]).sample(fraction=1.0, shuffle=True, seed=seed)


def in_memory(path, cleaning, *, target_action=None, session_gap=None, layout="time action item"):
    events = read_events(path, columns={"user": "user", "item": "item", "timestamp": "ts"})
    events, report = clean_events(events, cleaning)
    key = "user_id"
    if session_gap:
        events, key = add_sessions(events, session_gap), "session_id"
    split = leave_one_out(build_sequences(events, key=key), target_action=target_action)
    tokenizer = EventTokenizer.build(split.train, layout=layout, max_events=8)
    return report, split, tokenizer


def by_user(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort("user_id")


def window_set(windows) -> list[tuple[int, ...]]:
    return sorted(tuple(int(t) for t in w) for w in windows)


CASES = {
    "minimums": dict(cleaning=CleaningConfig(min_user_events=12, min_item_events=4)),
    "k_core": dict(cleaning=CleaningConfig(min_user_events=10, min_item_events=10, k_core=True)),
    "repeats_renames": dict(
        cleaning=CleaningConfig(collapse_consecutive_repeats=True, rename_actions={"cart": "basket"}, min_user_events=3)
    ),
    "target_action": dict(cleaning=CleaningConfig(min_user_events=3), target_action="buy"),
    "sessions": dict(cleaning=CleaningConfig(min_user_events=2), session_gap=7200),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_bucketed_path_matches_in_memory_path(tmp_path, monkeypatch, case, suffix):
    options = CASES[case]
    monkeypatch.setattr(streaming, "_COLLAPSE_ROWS", 50)  # bucket item counts summed several times per pass
    log = messy_log()
    path = tmp_path / f"log{suffix}"
    log.write_parquet(path) if suffix == ".parquet" else log.write_csv(path)
    report, split, tokenizer = in_memory(path, **options)
    # about 6 buckets and 4 batches, so users and items are spread over parts and batches
    streamed = prepare_in_buckets(
        path,
        tmp_path / "out",
        cleaning=options["cleaning"],
        columns={"user": "user", "item": "item", "timestamp": "ts"},
        target_action=options.get("target_action"),
        session_gap_seconds=options.get("session_gap"),
        max_events=8,
        events_per_bucket=1000,
        batch_rows=1700,
    )
    assert streamed.num_buckets > 3 and streamed.largest_bucket_events < log.height
    assert streamed.report.to_dict() == report.to_dict()
    assert streamed.tokenizer.spec == tokenizer.spec
    for part in ("train", "valid", "test"):
        assert by_user(streamed.examples(part).collect()).equals(by_user(getattr(split, part))), part
    assert streamed.split_stats["evaluated_users"] == split.stats["evaluated_users"]
    windows = load_train_windows(tmp_path / "out")["input_ids"]
    assert window_set(windows) == window_set(tokenizer.encode_training_windows(split.train, min_events=2))
    assert is_complete(tmp_path / "out")
    assert not (tmp_path / "out" / "buckets").exists()


def test_bucketed_path_reports_bad_rows_by_their_row_in_the_file(tmp_path):
    log = messy_log().with_columns(pl.col("ts").cast(pl.String))
    log = log.with_columns(ts=pl.when(pl.int_range(pl.len()) == 4321).then(pl.lit("yesterday")).otherwise("ts"))
    path = tmp_path / "log.csv"
    log.write_csv(path)
    with pytest.raises(EventDataError, match=r"data row 4322\b.*yesterday"):
        prepare_in_buckets(
            path, tmp_path / "out", columns={"user": "user", "item": "item", "timestamp": "ts"}, batch_rows=1000
        )
    assert not is_complete(tmp_path / "out")


def test_bucketed_path_refuses_formats_it_cannot_stream(tmp_path):
    path = tmp_path / "log.jsonl"
    messy_log(200).write_ndjson(path)
    with pytest.raises(EventDataError, match="Parquet, CSV or TSV.*convert"):
        prepare_in_buckets(path, tmp_path / "out")


def test_prepare_recipe_writes_the_same_split_bucketed_and_pretraining_reads_it(tmp_path):
    """prepare.py writes the same split in memory and bucketed. --prepared_dir: a run from the in-memory folder
    is the run from the raw log, metric for metric; a bucketed folder's tokenizer and memory-mapped windows are
    trained on as they are; options that shaped the folder are refused by name. The raw log is deleted before
    the runs from folders: the folders are all they need."""
    from bertrec.recipes.prepare import load_split, main
    from bertrec.recipes.pretrain import main as pretrain

    path = tmp_path / "log.csv"
    messy_log().write_csv(path)
    flags = ["--dataset", str(path), "--user_column", "user", "--item_column", "item", "--timestamp_column", "ts"]
    flags += ["--min_user_events", "5"]
    main([*flags, "--output_dir", str(tmp_path / "memory")])
    bucketed_flags = ["--events_per_bucket", "1500", "--layout", "time action item"]
    main([*flags, "--output_dir", str(tmp_path / "bucketed"), *bucketed_flags])
    memory, bucketed = load_split(tmp_path / "memory"), load_split(tmp_path / "bucketed")
    for part in ("train", "valid", "test"):
        assert by_user(getattr(bucketed, part)).equals(by_user(getattr(memory, part))), part
    assert EventTokenizer.load(tmp_path / "bucketed" / "tokenizer").spec.layout == "time action item"
    with pytest.raises(ConfigError, match="--split temporal"):
        main([*flags, "--output_dir", str(tmp_path / "x"), "--events_per_bucket", "1500", "--split", "temporal"])
    with pytest.raises(ConfigError, match="--events_per_bucket only"):
        main([*flags, "--output_dir", str(tmp_path / "x"), "--max_events", "20"])

    model = ["--model_type", "gpt2", "--hidden_size", "16", "--num_layers", "1", "--num_heads", "2"]
    model += ["--num_epochs", "1", "--batch_size", "64", "--seed", "3"]
    raw = pretrain([*flags, *model, "--output_dir", str(tmp_path / "raw")])
    path.unlink()
    from_memory = pretrain(["--prepared_dir", str(tmp_path / "memory"), *model, "--output_dir", str(tmp_path / "m")])
    for part in ("valid", "test"):
        assert from_memory[part] == pytest.approx(raw[part], abs=1e-6), part
    assert from_memory["data"]["train_windows"] == raw["data"]["train_windows"]
    from bertrec.recipes.evaluate import main as evaluate  # reads the folder its saved config names

    assert evaluate(["--model_dir", str(tmp_path / "m")])["model"]["ndcg@10"] == pytest.approx(
        from_memory["test"]["ndcg@10"], abs=1e-6
    )
    unstacked = ["--repeat_scores", "false", "--transition_scores", "false"]  # they read one position per event
    bucketed_run = ["--prepared_dir", str(tmp_path / "bucketed"), *model, *unstacked]
    from_buckets = pretrain([*bucketed_run, "--output_dir", str(tmp_path / "b")])
    assert (
        from_buckets["test"]["users"] == raw["test"]["users"] and from_buckets["data"]["items"] == raw["data"]["items"]
    )
    assert from_buckets["data"]["train_windows"] == raw["data"]["train_windows"]  # the folder's own windows
    with pytest.raises(ConfigError, match="drop --min_user_events"):
        pretrain(["--prepared_dir", str(tmp_path / "memory"), "--min_user_events", "7", *model])
    with pytest.raises(ConfigError, match="drop --max_events"):
        pretrain(["--prepared_dir", str(tmp_path / "bucketed"), "--max_events", "20", *model])


def test_bucketed_path_refuses_utf16_text_and_duplicate_headers(tmp_path):
    utf16 = tmp_path / "excel.csv"
    utf16.write_text("user_id,item_id\nu1,i1\n", encoding="utf-16")
    with pytest.raises(EventDataError, match="UTF-16"):
        prepare_in_buckets(utf16, tmp_path / "out")
    twice = tmp_path / "twice.csv"
    twice.write_text("user_id,item_id,item_id\nu1,i1,i2\n")
    with pytest.raises(EventDataError, match="item_id"):
        prepare_in_buckets(twice, tmp_path / "out")
