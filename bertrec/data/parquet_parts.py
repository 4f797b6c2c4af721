"""A split part kept on disk: the Parquet files of a bucketed or Spark-prepared folder, read a chunk of users at
a time.

A prepared folder of a 50M-event log holds every user's full history twice (validation and test examples) and
once more as training sequences; loading them whole costs gigabytes that grow with the log. Training from such a
folder reads its windows memory-mapped, and everything else that needs the split (evaluation, item counts, the
Markov baseline) takes it through ``frame_chunks``, so a process holds one chunk at a time whatever the log's
size. A chunk is sized in events, not users, since a user's history can be 5 events or 5,000. An in-memory
``polars.DataFrame`` goes through the same function, sliced.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

DEFAULT_CHUNK_EVENTS = 2_000_000  # history events per chunk: about 100-200 MB of list columns in memory
LIST_COLUMN = "item_id"  # every split part's history list; its length is a row's events


class ParquetParts:
    """The rows of ``files`` (same schema, in order) without reading them: ``height``, ``columns`` and the
    events per row come from the Parquet footers; ``chunks`` yields ``polars.DataFrame`` slices."""

    def __init__(self, files: Sequence[str | Path]):
        self.files = [Path(f) for f in files]
        if not self.files:
            raise ValueError("ParquetParts needs at least one Parquet file")
        self._metadata = [pq.ParquetFile(f).metadata for f in self.files]
        self.columns = list(pq.read_schema(self.files[0]).names)

    @property
    def height(self) -> int:
        return sum(m.num_rows for m in self._metadata)

    def events(self) -> int:
        """History events over all rows (the list column's values, from the footers)."""
        total = 0
        for metadata in self._metadata:
            for group in range(metadata.num_row_groups):
                row_group = metadata.row_group(group)
                for column in range(row_group.num_columns):
                    if row_group.column(column).path_in_schema.split(".")[0] == LIST_COLUMN:
                        total += row_group.column(column).num_values
        return total

    def chunks(self, rows: int, columns: Sequence[str] | None = None) -> Iterator[pl.DataFrame]:
        for file in self.files:
            for batch in pq.ParquetFile(file).iter_batches(batch_size=rows, columns=list(columns) if columns else None):
                yield pl.from_arrow(batch)


Frame = pl.DataFrame | ParquetParts


def frame_chunks(
    frame: Frame, events: int = DEFAULT_CHUNK_EVENTS, columns: Sequence[str] | None = None
) -> Iterator[pl.DataFrame]:
    """``frame`` as consecutive row chunks, in order, each holding about ``events`` history events (at least one
    row): slices of a DataFrame, or reads of a ``ParquetParts``."""
    if isinstance(frame, ParquetParts):
        rows = _rows_per_chunk(frame.height, frame.events(), events)
        yield from frame.chunks(rows, columns)
        return
    total = int(frame[LIST_COLUMN].list.len().sum()) if LIST_COLUMN in frame.columns and frame.height else 0
    rows = _rows_per_chunk(frame.height, total, events)
    selected = frame.select(columns) if columns else frame
    for start in range(0, max(selected.height, 1), rows):
        yield selected.slice(start, rows)


def _rows_per_chunk(rows: int, total_events: int, events: int) -> int:
    per_row = max(total_events / max(rows, 1), 1.0)
    return max(1, int(events // per_row))
