"""Prepare a log once: clean it, split it, and write the split as Parquet plus the cleaning report.

python recipes/prepare.py --dataset events.csv --output_dir data/prepared
python recipes/evaluate.py --model_dir outputs/pretrain --split_dir data/prepared
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from bertrec.args import DataArguments, parse_args
from bertrec.atomic import atomic_directory
from bertrec.data.splits import Split
from bertrec.integrity import verify_manifest, write_manifest
from bertrec.recipes.common import REPORT_FILE, prepare_data, setup_logging

logger = logging.getLogger("bertrec")
PARTS = ("train", "valid", "test")


@dataclass
class PrepareArguments:
    output_dir: str = field(default="data/prepared", metadata={"help": "Folder for train/valid/test Parquet files."})


def save_split(split: Split, directory: Path) -> None:
    with atomic_directory(directory) as folder:
        for part in PARTS:
            getattr(split, part).write_parquet(folder / f"{part}.parquet")
        (folder / "split_stats.json").write_text(json.dumps(split.stats, indent=2) + "\n")
        write_manifest(folder)


def load_split(directory: str | Path) -> Split:
    directory = Path(directory)
    missing = [p for p in PARTS if not (directory / f"{p}.parquet").is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} is not a prepared split (missing {missing}); run recipes/prepare.py")
    verify_manifest(directory, what="prepared split")
    parts = {p: pl.read_parquet(directory / f"{p}.parquet") for p in PARTS}
    return Split(**parts, stats=json.loads((directory / "split_stats.json").read_text()))


def main(argv: list[str] | None = None) -> None:
    data_args, prepare_args = parse_args((DataArguments, PrepareArguments), argv)
    setup_logging(True)
    data = prepare_data(data_args)
    out = Path(prepare_args.output_dir)
    save_split(data.split, out)
    data.report.save(out / REPORT_FILE)
    print(data.report.summary())
    print(f"split {data.split.stats} written to {out}")


if __name__ == "__main__":
    main()
