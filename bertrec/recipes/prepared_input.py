"""Training from a prepared folder (``recipes/prepare.py``'s output) instead of the raw log.

A log is cleaned and split once, where it lives (``prepare.py``, or its larger-than-memory path with
``--events_per_bucket``), and every training run reads the result: the split's Parquet files, and for a bucketed
folder its tokenizer and training windows, which are memory-mapped (``datasets``) rather than encoded again.
The options that shaped the folder (cleaning, split, reader, columns; for a bucketed folder the tokenizer's) were
applied when it was made, so a run that passes them again is refused by name rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertrec.args import ConfigError, DataArguments, TokenizerArguments
from bertrec.data.cleaning import CleaningReport
from bertrec.data.splits import fold_validation_into_training
from bertrec.tokenization import EventTokenizer

# what a run from a prepared folder still chooses: item content joins the vocabulary at training time
TRAINING_TIME_DATA = (
    "prepared_dir", "item_features", "item_feature_columns", "item_text_columns", "train_on_validation"
)  # fmt: skip
TRAINING_TIME_TOKENS = (
    "min_attribute_items", "item_tokens", "item_text_encoder", "item_text_dim",
    "semantic_id_levels", "semantic_id_codebook"
)  # fmt: skip


class TrainWindows(Sequence):
    """A prepared folder's training windows (a memory-mapped ``datasets.Dataset``) as the sequence of token-id
    arrays the training loop indexes; a window is read from disk when a batch asks for it. A stacked layout's
    windows are stored flat and come back ``[events, fields]``, as ``encode_training_windows`` makes them."""

    def __init__(self, dataset, tokenizer: EventTokenizer):
        self._rows = dataset.with_format("numpy")
        self._fields = tokenizer.spec.tokens_per_event if tokenizer.spec.stacked else None

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: int) -> np.ndarray:
        window = self._rows[int(index)]["input_ids"].astype(np.int64)
        return window.reshape(-1, self._fields) if self._fields else window


@dataclass
class PreparedInput:
    data: object  # recipes.common.PreparedData
    tokenizer: EventTokenizer | None  # a bucketed folder's; None: build it from the split as from a raw log
    windows: TrainWindows | None  # a bucketed folder's; None: encode them from the split


def prepared_data(data_args: DataArguments, *, on_disk: bool = False):
    """The split and cleaning report of ``--prepared_dir`` (``recipes.common.PreparedData``), what
    ``prepare_data`` returns for a raw log; every recipe that reads data goes through it. ``on_disk``: a bucketed
    folder's parts stay on disk (``load_split``), for a recipe that only counts and evaluates from them."""
    from bertrec.recipes.common import REPORT_FILE, PreparedData
    from bertrec.recipes.prepare import load_split

    folder = Path(data_args.prepared_dir)
    if not folder.is_dir():
        raise ConfigError(f"--prepared_dir {folder}: no such folder; write one with recipes/prepare.py")
    _refuse_changed(data_args, DataArguments(), TRAINING_TIME_DATA, "the split was made with them")
    split = load_split(folder, on_disk=on_disk)
    if data_args.train_on_validation:
        if (folder / "tokenizer").is_dir():
            raise ConfigError(
                f"--train_on_validation changes the training windows, which {folder} holds already encoded; "
                "prepare it in memory (recipes/prepare.py without --events_per_bucket) to use it"
            )
        split = fold_validation_into_training(split)
    return PreparedData(split, CleaningReport.load(folder / REPORT_FILE))


def read_prepared(data_args: DataArguments, tokenizer_args: TokenizerArguments) -> PreparedInput:
    """The split (and, for a bucketed folder, tokenizer and windows) of ``--prepared_dir``. A bucketed folder's
    split stays on disk: its training windows come encoded and memory-mapped, and evaluation, item counts and
    the baselines read the split a chunk of users at a time, so pretraining from it holds the model, the
    catalogue-sized tables and one chunk, not the log."""
    from bertrec.data.streaming import load_train_windows

    folder = Path(data_args.prepared_dir)
    bucketed = (folder / "tokenizer").is_dir()  # prepared in buckets: the tokenizer and windows come with it
    data = prepared_data(data_args, on_disk=bucketed)
    tokenizer = windows = None
    if bucketed:
        _refuse_changed(tokenizer_args, TokenizerArguments(), TRAINING_TIME_TOKENS, "its windows were encoded by it")
        if data_args.item_features:
            raise ConfigError(
                f"--item_features changes the training windows, which {folder} holds already encoded; prepare "
                "it in memory (recipes/prepare.py without --events_per_bucket) to use it"
            )
        tokenizer = EventTokenizer.load(folder / "tokenizer")
        windows = TrainWindows(load_train_windows(folder), tokenizer)
    return PreparedInput(data, tokenizer, windows)


def _refuse_changed(given, defaults, allowed: tuple[str, ...], why: str) -> None:
    changed = [
        f"--{f.name}"
        for f in dataclasses.fields(given)
        if f.name not in allowed and getattr(given, f.name) != getattr(defaults, f.name)
    ]
    if changed:
        raise ConfigError(
            f"--prepared_dir: drop {', '.join(changed)}; the folder was prepared with its own ({why}), so "
            "prepare it again with the options you want"
        )
