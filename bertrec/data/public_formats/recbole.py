"""RecBole atomic ``.inter`` files (tab-separated, ``name:type`` header fields) as canonical events."""

from __future__ import annotations

import polars as pl

from bertrec.data.public_formats._fields import (
    _LINE,
    _READER_HINT,
    PathLike,
    _existing,
    _fail,
    _finish,
    _header_fields,
    _numbers,
    _read_fields,
    _require,
    _require_header,
)
from bertrec.data.public_formats._ratings import _check_rating_options, _rating_actions
from bertrec.data.schema import DEFAULT_ACTION, EventDataError

RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def read_recbole(
    path: PathLike,
    *,
    user_field: str | None = None,
    item_field: str = "item_id",
    timestamp_field: str = "timestamp",
    rating_field: str = "rating",
    action_field: str | None = None,
    rating_actions: str = "rate",
    like_threshold: float = 4.0,
    timestamp_unit: str = "auto",
) -> pl.DataFrame:
    """A RecBole atomic ``.inter`` file: tab-separated, header fields ``name:type`` (token, float, ..._seq).

    Field names are used without their ``:type``. The user is ``user_field``, by default ``user_id``, or
    ``session_id`` when there is no user field (session datasets); the item is ``item_field``. The time is
    ``timestamp_field`` when present (``timestamp_unit``: auto, s or ms), else there is none and the file order is
    the order. The action is ``action_field`` (default: a field named ``action`` if any), else it comes from the
    ``rating`` field as in ``read_movielens`` (``rating_actions``), else it is the default action. Other fields
    are kept as extra columns: floats as Float64, tokens as strings. A folder with one ``.inter`` file is accepted.
    """
    _check_rating_options(rating_actions, like_threshold)
    path = _existing(path)
    if path.is_dir():
        found = sorted(path.glob("*.inter"))
        if len(found) != 1:
            raise EventDataError(f"{path}: expected one .inter file in this folder, found {[p.name for p in found]}")
        path = found[0]
    layout = "a RecBole atomic file (tab-separated, header 'user_id:token<TAB>item_id:token<TAB>...')"
    names, types = [], {}
    for field in _header_fields(path, "\t", "recbole"):
        name, _, kind = field.rpartition(":")
        if not name or kind not in RECBOLE_TYPES:
            raise _fail(
                path,
                1,
                field,
                f"is not a RecBole 'name:type' header field (types {list(RECBOLE_TYPES)}); expected {layout}. "
                f"{_READER_HINT}",
            )
        names.append(name)
        types[name] = kind
    user = user_field or next((name for name in ("user_id", "session_id") if name in names), None)
    if user is None:
        raise _fail(path, 1, None, f"no user_id or session_id field in {names}; pass user_field= to name the user")
    action = action_field or ("action" if "action" in names else None)
    rating = rating_field if rating_field in names and action is None else None
    timestamp = timestamp_field if timestamp_field in names else None
    required = [user, item_field] + [name for name in (action_field,) if name]
    _require_header(path, names, required, "recbole", layout)
    frame = _read_fields(path, names, separator="\t", skip_header=True, reader="recbole", layout=layout)
    _require(frame, path, [user, item_field] + [name for name in (action, timestamp, rating) if name], layout)
    hint = f"the header declares it as {{}}; expected {layout}"
    columns = [frame[_LINE], frame[user].alias("user_id"), frame[item_field].alias("item_id")]
    if action is not None:
        columns.append(frame[action].alias("action"))
    elif rating is not None:
        values = _numbers(frame, path, rating, hint.format("float"))
        columns.append(_rating_actions(values, rating_actions, like_threshold))
    else:
        columns.append(pl.repeat(DEFAULT_ACTION, frame.height, dtype=pl.String, eager=True).alias("action"))
    if timestamp is not None:
        columns.append(_numbers(frame, path, timestamp, hint.format(types[timestamp])).alias("timestamp"))
    used = {user, item_field, action, timestamp}
    for name in names:
        if name in used:
            continue
        column = _numbers(frame, path, name, hint.format("float")) if types[name] == "float" else frame[name]
        clash = name in ("user_id", "item_id", "action", "timestamp", "event_index")
        columns.append(column.alias(f"recbole_{name}" if clash else name))
    return _finish(pl.DataFrame(columns), path, has_time=timestamp is not None, unit=timestamp_unit)
