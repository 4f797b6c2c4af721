"""What ``bertrec.data.spark_prepare`` runs on Spark's executors, in Python workers: canonicalising Arrow batches
of the raw log and encoding Arrow batches of training sequences into token windows.

A module of its own so that a worker unpickling the canonicaliser imports only the readers' rules (polars,
pyarrow), not the tokenizer's libraries (transformers): each worker pays its imports once, and the ones that
only canonicalise stay light. The encoder imports the tokenizer when it first runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

import polars as pl
import pyarrow as pa

from bertrec.data.readers import _canonicalize
from bertrec.data.schema import CANONICAL_COLUMNS, ColumnMapping, EventDataError


class Canonicaliser:
    """``readers._canonicalize`` on each Arrow batch of an executor; an input error's "data row" is rewritten
    from the batch's row to the row in the file (``event_index + 1``)."""

    def __init__(self, mapping: ColumnMapping, label: str, unit: str) -> None:
        self.mapping, self.label, self.unit = mapping, label, unit

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        schema = pa.schema(
            [(c, pa.string()) for c in CANONICAL_COLUMNS[:3]]
            + [("timestamp", pa.float64()), ("event_index", pa.int64())]
        )
        for batch in batches:
            frame = pl.from_arrow(pa.Table.from_batches([batch]))
            index = frame["event_index"]
            try:
                events = _canonicalize(frame.drop("event_index"), self.mapping, self.label, self.unit)
            except EventDataError as error:
                raise EventDataError(_rows_in_file(str(error), index)) from None
            table = events.select(CANONICAL_COLUMNS).with_columns(event_index=index).to_arrow()
            yield from table.cast(schema).to_batches()


def _rows_in_file(message: str, index: pl.Series) -> str:
    """A message about a batch's "data row N" made about the file's row (``event_index + 1``)."""
    return re.sub(r"data row (\d+)", lambda match: f"data row {index[int(match.group(1)) - 1] + 1}", message)


class WindowEncoder:
    """``EventTokenizer.encode_training_windows`` on each Arrow batch of training sequences, on an executor."""

    def __init__(self, tokenizer_dir: str, fingerprint: tuple, min_events: int) -> None:
        self.tokenizer_dir, self.fingerprint, self.min_events = tokenizer_dir, fingerprint, min_events

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from bertrec.data.streaming import windows_column

        tokenizer = _load_tokenizer(self.tokenizer_dir, self.fingerprint)
        for batch in batches:
            sequences = pl.from_arrow(pa.Table.from_batches([batch]))
            windows = tokenizer.encode_training_windows(sequences, min_events=self.min_events)
            column = windows_column(windows).cast(pa.list_(pa.int32()))
            yield pa.RecordBatch.from_arrays([column], names=["input_ids"])


@lru_cache(maxsize=2)
def _load_tokenizer(folder: str, fingerprint: tuple):
    """Loaded once per Python worker, which Spark reuses across tasks; ``fingerprint`` (the files' sizes and
    times) keeps a worker from reusing the tokenizer of an earlier run written to the same folder."""
    from bertrec.tokenization import EventTokenizer

    return EventTokenizer.load(folder)
