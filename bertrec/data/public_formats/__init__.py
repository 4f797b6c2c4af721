"""Readers for the native files of public recommendation datasets, each giving the canonical events table.

Every reader maps the dataset's own signals onto ``user_id``, ``item_id``, ``action`` and ``timestamp`` (see
``bertrec.data.schema``) and then goes through the same canonicalisation as ``read_events``, so ids are exact
strings, ``event_index`` is the order of the rows in the file(s) (the stable tie-break for equal times) and the
validation is shared. Files are read by polars as text, whole columns at a time; a line that does not fit the
format raises ``EventDataError`` naming the file, the 1-based line (header counted) and the column, with the fix.

``read_public(path, reader=...)`` dispatches by name; each reader is also a public function. What each one does
with its dataset (which file, which column becomes what, which assumptions) is documented in docs/datasets.md.

The package: ``movielens``, ``recbole``, ``sequence_text``, ``inter_json``, ``amazon``, ``shop_logs`` (RetailRocket,
Taobao, Tmall) and ``sessions`` (YooChoose, Diginetica) hold one family of readers each; ``_fields`` holds the shared
reading, validation and error helpers and ``_ratings`` the rating-to-action mapping.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from bertrec.data.public_formats._fields import PathLike
from bertrec.data.public_formats._ratings import RATING_ACTIONS
from bertrec.data.public_formats.amazon import AMAZON_CSV_LAYOUTS, read_amazon
from bertrec.data.public_formats.inter_json import read_inter_json
from bertrec.data.public_formats.movielens import read_movielens
from bertrec.data.public_formats.recbole import RECBOLE_TYPES, read_recbole
from bertrec.data.public_formats.sequence_text import read_sequence_text
from bertrec.data.public_formats.sessions import read_diginetica, read_yoochoose
from bertrec.data.public_formats.shop_logs import (
    RETAILROCKET_EVENTS,
    TAOBAO_BEHAVIORS,
    TMALL_DEFAULT_YEAR,
    TMALL_TYPES,
    read_retailrocket,
    read_taobao,
    read_tmall,
)
from bertrec.data.readers import read_events
from bertrec.data.schema import EventDataError

__all__ = [
    "AMAZON_CSV_LAYOUTS",
    "PathLike",
    "RATING_ACTIONS",
    "READERS",
    "RECBOLE_TYPES",
    "RETAILROCKET_EVENTS",
    "TAOBAO_BEHAVIORS",
    "TMALL_DEFAULT_YEAR",
    "TMALL_TYPES",
    "read_amazon",
    "read_diginetica",
    "read_inter_json",
    "read_movielens",
    "read_public",
    "read_recbole",
    "read_retailrocket",
    "read_sequence_text",
    "read_taobao",
    "read_tmall",
    "read_yoochoose",
]

READERS = (
    "movielens",
    "recbole",
    "sequence_text",
    "inter_json",
    "amazon",
    "retailrocket",
    "taobao",
    "tmall",
    "yoochoose",
    "diginetica",
)

_FUNCTIONS: dict[str, Callable[..., pl.DataFrame]] = {
    "movielens": read_movielens,
    "recbole": read_recbole,
    "sequence_text": read_sequence_text,
    "inter_json": read_inter_json,
    "amazon": read_amazon,
    "retailrocket": read_retailrocket,
    "taobao": read_taobao,
    "tmall": read_tmall,
    "yoochoose": read_yoochoose,
    "diginetica": read_diginetica,
}


def read_public(path: PathLike | Sequence[PathLike], reader: str | None = None, **options: Any) -> pl.DataFrame:
    """The canonical events of a public dataset's native file(s), read by the named ``reader``.

    ``reader`` is one of ``READERS``; ``None`` uses the generic ``read_events`` (options then go to it, e.g.
    ``columns=``). ``options`` are the reader's keyword options, e.g. ``rating_actions="like"`` for MovieLens or
    ``year=2013`` for Tmall; an option the reader does not have is an error listing the ones it has.
    """
    if reader is None:
        return read_events(path, **options)
    function = _FUNCTIONS.get(reader)
    if function is None:
        close = difflib.get_close_matches(str(reader), READERS, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise EventDataError(f"unknown reader {reader!r}; use one of {list(READERS)}.{hint}")
    allowed = [name for name, p in inspect.signature(function).parameters.items() if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise EventDataError(f"reader={reader!r} has no option(s) {unknown}; its options are {allowed or 'none'}")
    return function(path, **options)
