"""Prepare a log once: clean it, split it, and write the split as Parquet plus the cleaning report.

python recipes/prepare.py --dataset events.csv --output_dir data/prepared
python recipes/evaluate.py --model_dir outputs/pretrain --split_dir data/prepared

A log larger than memory (Parquet, CSV or TSV) is prepared one bucket of users at a time with
``--events_per_bucket``: the folder then also holds the tokenizer and memory-mapped training windows
(``bertrec.data.streaming``), and its split loads the same way. ``--engine spark`` writes the same folder with
Apache Spark (``bertrec.data.spark_prepare``), from a file or a table (``--dataset table:db.events``), on the
master ``--spark_master`` names or the session ``spark-submit`` started.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from bertrec.args import ConfigError, DataArguments, TokenizerArguments, check_output_folder, parse_args
from bertrec.atomic import atomic_directory
from bertrec.data.parquet_parts import ParquetParts
from bertrec.data.splits import Split
from bertrec.data.streaming import prepare_in_buckets
from bertrec.integrity import verify_manifest, write_manifest
from bertrec.recipes.common import REPORT_FILE, cleaning_config, column_mapping, prepare_data, setup_logging

logger = logging.getLogger("bertrec")
PARTS = ("train", "valid", "test")


@dataclass
class PrepareArguments:
    output_dir: str = field(default="data/prepared", metadata={"help": "Folder for train/valid/test Parquet files."})
    events_per_bucket: int | None = field(
        default=None,
        metadata={
            "help": "For logs larger than memory: process about this many events at a time (peak memory follows "
            "it; 2000000 is about 1.5 GB) and also write the tokenizer and training windows. Leave-one-out only."
        },
    )
    engine: str = field(
        default="polars",
        metadata={
            "help": "polars (this machine; with --events_per_bucket for logs larger than memory) or spark: the "
            "same folder as --events_per_bucket writes, prepared by Apache Spark (pip install pyspark)",
            "choices": ["polars", "spark"],
        },
    )
    spark_master: str = field(
        default="local[*]",
        metadata={"help": "Spark master for --engine spark when no session is running (spark-submit sets one)"},
    )

    def __post_init__(self) -> None:
        check_output_folder(self.output_dir)


def save_split(split: Split, directory: Path) -> None:
    with atomic_directory(directory) as folder:
        for part in PARTS:
            getattr(split, part).write_parquet(folder / f"{part}.parquet")
        (folder / "split_stats.json").write_text(json.dumps(split.stats, indent=2) + "\n")
        write_manifest(folder)


def load_split(directory: str | Path, *, on_disk: bool = False) -> Split:
    """A split written by ``prepare`` (one Parquet file per part) or by its bucketed path (one per bucket).

    ``on_disk``: the parts of a bucketed folder stay ``ParquetParts`` (read a chunk of users at a time by
    evaluation and counting) instead of being loaded, so the process's memory does not grow with the log."""
    directory = Path(directory)
    bucketed = (directory / "split").is_dir()
    files = {p: sorted((directory / "split").glob(f"{p}-*.parquet")) for p in PARTS} if bucketed else {}
    missing = [p for p in PARTS if not (files.get(p) or (directory / f"{p}.parquet").is_file())]
    if missing:
        raise FileNotFoundError(f"{directory} is not a prepared split (missing {missing}); run recipes/prepare.py")
    verify_manifest(directory, what="prepared split")
    if bucketed and on_disk:
        parts = {p: ParquetParts(files[p]) for p in PARTS}
    else:
        parts = {p: pl.read_parquet(files[p] if bucketed else directory / f"{p}.parquet") for p in PARTS}
    return Split(**parts, stats=json.loads((directory / "split_stats.json").read_text()))


def refuse_unstreamable(data_args, tokenizer_args, flag: str) -> None:
    """The options the bucketed and Spark paths cannot honour, refused by name."""
    refused = {
        "--dataset synthetic": data_args.dataset == "synthetic",
        f"--reader {data_args.reader}": data_args.reader is not None,
        f"--split {data_args.split}": data_args.split != "leave_one_out",
        f"--encoding {data_args.encoding}": data_args.encoding != "utf8",
        "--tokenizer_dir": tokenizer_args.tokenizer_dir is not None,
        "--train_on_validation": data_args.train_on_validation,
    }
    if any(refused.values()):
        names = ", ".join(name for name, clash in refused.items() if clash)
        raise ConfigError(f"{flag} reads a Parquet/CSV/TSV file with leave-one-out; drop {names}")


def streamed_options(data_args, tokenizer_args) -> dict:
    """The keyword arguments ``prepare_in_buckets`` and ``prepare_on_spark`` share."""
    return dict(
        cleaning=cleaning_config(data_args),
        columns=column_mapping(data_args),
        format=data_args.format,
        delimiter=data_args.delimiter,
        timestamp_unit=data_args.timestamp_unit,
        session_gap_seconds=data_args.session_gap_seconds,
        target_action=data_args.target_action,
        layout=tokenizer_args.layout,
        max_events=tokenizer_args.max_events,
        min_item_count=tokenizer_args.min_item_count,
        time_boundaries=tokenizer_args.time_boundaries,
    )


def prepare_bucketed(data_args, tokenizer_args, prepare_args) -> None:
    """``prepare_in_buckets`` with the recipe's options."""
    refuse_unstreamable(data_args, tokenizer_args, "--events_per_bucket")
    result = prepare_in_buckets(
        data_args.dataset,
        prepare_args.output_dir,
        events_per_bucket=prepare_args.events_per_bucket,
        **streamed_options(data_args, tokenizer_args),
    )
    print(result.report.summary())
    print(f"split {result.split_stats} in {result.num_buckets} buckets written to {prepare_args.output_dir}")


def prepare_with_spark(data_args, tokenizer_args, prepare_args) -> None:
    """``prepare_on_spark`` with the recipe's options; ``--dataset table:NAME`` reads a catalog table."""
    if prepare_args.events_per_bucket is not None:
        raise ConfigError("--events_per_bucket is for --engine polars; Spark splits the work itself, drop it")
    refuse_unstreamable(data_args, tokenizer_args, "--engine spark")
    from bertrec.data.spark_prepare import prepare_on_spark, spark_session

    spark = spark_session(prepare_args.spark_master)
    source = data_args.dataset
    if source.startswith("table:"):
        source = spark.table(source.removeprefix("table:"))
    result = prepare_on_spark(
        source, prepare_args.output_dir, spark=spark, **streamed_options(data_args, tokenizer_args)
    )
    print(result.report.summary())
    print(f"split {result.split_stats} written to {prepare_args.output_dir} (seconds per stage {result.stage_seconds})")


def main(argv: list[str] | None = None) -> None:
    data_args, tokenizer_args, prepare_args = parse_args((DataArguments, TokenizerArguments, PrepareArguments), argv)
    setup_logging(True)
    if prepare_args.engine == "spark":
        return prepare_with_spark(data_args, tokenizer_args, prepare_args)
    if prepare_args.events_per_bucket is not None:
        return prepare_bucketed(data_args, tokenizer_args, prepare_args)
    if tokenizer_args != TokenizerArguments():  # the in-memory split has no tokenizer: pretraining builds it
        raise ConfigError("tokenizer options (--layout, --max_events, ...) apply with --events_per_bucket only")
    data = prepare_data(data_args)
    out = Path(prepare_args.output_dir)
    save_split(data.split, out)
    data.report.save(out / REPORT_FILE)
    print(data.report.summary())
    print(f"split {data.split.stats} written to {out}")


if __name__ == "__main__":
    main()
