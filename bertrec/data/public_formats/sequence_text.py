"""The ``user item`` sequence text of SASRec / BERT4Rec data (no timestamps: the file order is the order)."""

from __future__ import annotations

import polars as pl

from bertrec.data.public_formats._fields import _LINE, PathLike, _existing, _finish, _read_fields, _reject_first, _show
from bertrec.data.schema import DEFAULT_ACTION, EventDataError


def read_sequence_text(path: PathLike, *, one_line_per_user: bool = False) -> pl.DataFrame:
    """The ``user item`` text of SASRec/BERT4Rec data (e.g. beauty.txt): whitespace-separated, no timestamps.

    One event per line, each user's lines already in time order, so the order is the file order (``event_index``)
    and ``timestamp`` is null. With ``one_line_per_user=True`` a line is ``user item item ...`` (S3-Rec style) and
    gives one event per item, in line order. Every event gets the default action.
    """
    path = _existing(path)
    if path.is_dir():
        raise EventDataError(f"{path}: reader='sequence_text' reads one file; pass the .txt file itself")
    layout = "'user item item ...'" if one_line_per_user else "'user item' (one event per line)"
    frame = _read_fields(path, ("line",), separator="\x00", skip_header=False, reader="sequence_text", layout=layout)
    tokens = frame["line"].str.strip_chars().str.replace_all(r"\s+", " ").str.split(" ")
    counts = tokens.list.len()
    bad = (counts < 2) if one_line_per_user else (counts != 2)

    def problem(row: int) -> str:
        if one_line_per_user:
            advice = "each line needs a user and at least one item."
        elif counts[row] > 2:
            advice = (
                "if each line is 'user item item ...', pass one_line_per_user=True; for 'user item rating "
                "timestamp' files use reader='movielens' or the generic reader."
            )
        else:
            advice = "each line must be 'user item'."
        return (
            f"{_show(frame['line'][row])} has {counts[row]} whitespace-separated field(s), expected {layout}; {advice}"
        )

    _reject_first(frame, path, bad, "line", problem)
    events = pl.DataFrame([frame[_LINE], tokens.list.first().alias("user_id"), tokens.list.slice(1).alias("item_id")])
    events = events.explode("item_id")
    events = events.with_columns(pl.lit(DEFAULT_ACTION, dtype=pl.String).alias("action"))
    return _finish(events, path, has_time=False)
