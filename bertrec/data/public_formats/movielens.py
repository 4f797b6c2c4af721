"""MovieLens ratings (100K ``u.data``, 1M/10M ``ratings.dat``, 20M+ ``ratings.csv``) as canonical events."""

from __future__ import annotations

import polars as pl

from bertrec.data.public_formats._fields import (
    _LINE,
    _READER_HINT,
    PathLike,
    _fail,
    _finish,
    _first_line,
    _header_fields,
    _numbers,
    _pick,
    _read_fields,
    _reject_first,
    _require,
    _show,
)
from bertrec.data.public_formats._ratings import _check_rating_options, _rating_actions


def read_movielens(path: PathLike, *, rating_actions: str = "rate", like_threshold: float = 4.0) -> pl.DataFrame:
    """MovieLens ratings: ``u.data`` (100K), ``ratings.dat`` (1M/10M) or ``ratings.csv`` (20M/25M/32M/latest).

    The variant is told from the first line (``::`` separators, the ``userId,movieId,...`` header, or tabs); a
    folder is searched for ratings.csv, ratings.dat, then u.data. Users and movies keep their ids, the time is
    the unix-seconds timestamp and the rating is kept as a ``rating`` column. The action comes from the rating:
    ``rating_actions="rate"`` gives ``rate_4`` / ``rate_3.5``; ``"like"`` gives ``like`` when the rating is at
    least ``like_threshold``, else ``dislike``; ``"none"`` gives every event the default action.
    """
    _check_rating_options(rating_actions, like_threshold)
    path = _pick(path, ("ratings.csv", "ratings.dat", "u.data"), "movielens")
    first = _first_line(path, "movielens")
    hint = "expected a MovieLens ratings file (user, movie, rating, timestamp). " + _READER_HINT
    if "::" in first:
        layout = "'user::movie::rating::timestamp' (ratings.dat)"
        names = ("user_id", "_sep1", "item_id", "_sep2", "rating", "_sep3", "timestamp")
        frame = _read_fields(path, names, separator=":", skip_header=False, reader="movielens", layout=layout)
        single = frame["_sep1"].is_not_null() | frame["_sep2"].is_not_null() | frame["_sep3"].is_not_null()
        _reject_first(frame, path, single, None, lambda row: f"is not '::'-separated; expected {layout}")
    elif first.replace('"', "").lower().startswith("userid,movieid"):
        layout = "'userId,movieId,rating,timestamp' (ratings.csv)"
        header = _header_fields(path, ",", "movielens")
        if header != ["userId", "movieId", "rating", "timestamp"]:
            raise _fail(path, 1, None, f"the header {header} is not {layout}; {hint}")
        names = ("user_id", "item_id", "rating", "timestamp")
        frame = _read_fields(path, names, separator=",", skip_header=True, reader="movielens", layout=layout, quote='"')
    elif "\t" in first:
        layout = "'user<TAB>item<TAB>rating<TAB>timestamp' (u.data)"
        names = ("user_id", "item_id", "rating", "timestamp")
        frame = _read_fields(path, names, separator="\t", skip_header=False, reader="movielens", layout=layout)
    else:
        raise _fail(
            path,
            1,
            None,
            f"{_show(first)} is not a MovieLens ratings line: expected u.data (tab-separated), ratings.dat ('::') "
            f"or ratings.csv (header userId,movieId,rating,timestamp). {_READER_HINT}",
        )
    _require(frame, path, ("user_id", "item_id", "rating", "timestamp"), layout)
    rating = _numbers(frame, path, "rating", hint)
    timestamp = _numbers(frame, path, "timestamp", hint)
    frame = pl.DataFrame(
        [
            frame[_LINE],
            frame["user_id"].str.strip_chars(),
            frame["item_id"].str.strip_chars(),
            _rating_actions(rating, rating_actions, like_threshold),
            timestamp,
            rating,
        ]
    )
    return _finish(frame, path)
