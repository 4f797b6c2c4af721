"""Fine-tuning tasks as data: prompts that end at each target event, and candidate lists for re-ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from bertrec.data.schema import EventDataError
from bertrec.data.sequences import SEQUENCE_LIST_COLUMNS
from bertrec.evaluation import CANDIDATES
from bertrec.tokenization import EventTokenizer


def target_event_prefixes(sequences: pl.DataFrame, action: str, max_events: int) -> pl.DataFrame:
    """One sequence per ``action`` event that has history: its most recent ``max_events - 1`` earlier events
    followed by the event itself, which is what the fine-tuning prompt supervises (see
    ``collators.last_event_labels``). Training on exactly the inference prompt, rather than masking target
    events in the middle of a sequence, keeps later events (which a real prompt never has) out of view."""
    positions = pl.col("action").list.eval(pl.arg_where(pl.element() == action))
    targets = sequences.with_columns(_end=positions).explode("_end").filter(pl.col("_end") >= 1)
    targets = targets.with_columns(pl.col("_end").cast(pl.Int64))  # arg_where gives u32: no underflow below
    start = (pl.col("_end") + 1 - max_events).clip(lower_bound=0)
    length = pl.col("_end") + 1 - start
    return targets.select(["user_id", *[pl.col(c).list.slice(start, length) for c in SEQUENCE_LIST_COLUMNS]])


def read_candidates(path: str | Path) -> pl.DataFrame:
    """Candidate lists from rows ``user_id, split, item_id`` (CSV, Parquet or JSONL), one row per candidate."""
    path = Path(path)
    readers = {".csv": pl.read_csv, ".parquet": pl.read_parquet, ".jsonl": pl.read_ndjson}
    if path.suffix not in readers:
        raise EventDataError(f"{path}: candidate files must be .csv, .parquet or .jsonl, got {path.suffix!r}")
    if not path.is_file():
        raise FileNotFoundError(f"candidates file {path} not found")
    frame = readers[path.suffix](path, infer_schema_length=0) if path.suffix == ".csv" else readers[path.suffix](path)
    missing = {"user_id", "split", "item_id"} - set(frame.columns)
    if missing:
        raise EventDataError(
            f"{path}: missing column(s) {sorted(missing)}; a candidates file has one row per candidate with "
            f"columns user_id, split (valid or test), item_id (found {frame.columns})"
        )
    bad = frame.filter(~pl.col("split").is_in(["valid", "test"]))
    if bad.height:
        raise EventDataError(f"{path}: column split must be 'valid' or 'test'; first bad value {bad['split'][0]!r}")
    return frame.select(pl.col(c).cast(pl.String) for c in ("user_id", "split", "item_id"))


def attach_candidates(
    examples: pl.DataFrame,
    part: str,
    *,
    tokenizer: EventTokenizer,
    candidates: pl.DataFrame | None,
    num_negatives: int,
    seed: int,
) -> pl.DataFrame:
    """Add a ``candidates`` list column: from the candidates file for this part, or else the target plus
    ``num_negatives`` distinct items drawn uniformly (seeded). Users without file candidates get an empty list
    (their target is a counted miss), so coverage gaps in a retrieval stage show up in the metrics."""
    if candidates is not None:
        lists = candidates.filter(pl.col("split") == part).group_by("user_id").agg(pl.col("item_id").alias(CANDIDATES))
        joined = examples.join(lists, on="user_id", how="left")
        return joined.with_columns(pl.col(CANDIDATES).fill_null(pl.lit([], dtype=pl.List(pl.String))))
    rng = np.random.default_rng([seed, 0 if part == "valid" else 1])
    items = np.asarray(tokenizer.spec.items, dtype=object)
    count = min(num_negatives, tokenizer.num_items - 1)
    lists = []
    for target in examples["target_item_id"].to_list():
        drawn = rng.choice(tokenizer.num_items, size=count + 1, replace=False)
        negatives = [item for item in items[drawn] if item != target][:count]
        lists.append([target, *negatives])
    return examples.with_columns(pl.Series(CANDIDATES, lists, dtype=pl.List(pl.String)))
