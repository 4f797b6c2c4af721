"""The ``*.inter.json`` layout of semantic-ID recommendation data (the LC-Rec / LETTER packaging): one JSON
object mapping each user to the list of their items in time order, with no timestamps (the list order is the order).

``_load_json_object`` is shared with ``bertrec.data.item_features``, which reads the companion ``*.item.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from bertrec.data.public_formats._fields import PathLike, _existing, _finish, _open_binary, _show
from bertrec.data.read_errors import check_not_utf16
from bertrec.data.schema import DEFAULT_ACTION, EventDataError

_LAYOUT = 'the *.inter.json layout: one JSON object {"<user>": [<item>, <item>, ...], ...}'


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` refusing a repeated key: ``json`` would silently keep only the last one, which for
    these layouts drops a user's history or an item's features without a word."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _load_json_object(path: Path, layout: str, entries: str, lines_hint: str) -> dict[str, Any]:
    """The file's single top-level JSON object, keys in file order; every way it can fail is an ``EventDataError``
    naming the file (and the line, where the JSON parser knows it). ``entries`` names what the keys are;
    ``lines_hint`` says how to read the file instead when it turns out to be JSON lines."""
    if path.is_file() and path.stat().st_size == 0:
        raise EventDataError(f"{path}: the file is empty, so it has no {entries}. Check the path.")
    if path.suffix.lower() != ".gz":
        check_not_utf16(path)
    try:
        with _open_binary(path) as handle:
            raw = handle.read()
    except (OSError, EOFError) as error:
        raise EventDataError(f"{path}: cannot read it ({error}); check that the file is complete") from error
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise EventDataError(
            f"{path}: line {line}: the file is not valid UTF-8 (byte offset {error.start}); re-encode it to UTF-8, "
            "e.g. iconv -f latin1 -t utf-8"
        ) from error
    try:
        data = json.loads(text, object_pairs_hook=_unique_keys)
    except _DuplicateKey as error:
        raise EventDataError(
            f"{path}: the key {_show(error.key)} appears twice in one JSON object, and only one of the two could be "
            f"kept; merge or remove the repeated entry. Expected {layout}."
        ) from None
    except json.JSONDecodeError as error:
        hint = (
            f" The file holds more than one JSON value; if it has one JSON object per line it is JSON lines: "
            f"{lines_hint}."
            if error.msg == "Extra data"
            else " The file may be truncated."
        )
        raise EventDataError(
            f"{path}: line {error.lineno}, character {error.colno}: not valid JSON ({error.msg}); "
            f"expected {layout}.{hint}"
        ) from None
    except RecursionError:
        raise EventDataError(f"{path}: the JSON is nested too deeply to read; expected {layout}") from None
    if not isinstance(data, dict):
        raise EventDataError(f"{path}: the file is a JSON {type(data).__name__}, not an object; expected {layout}")
    if not data:
        raise EventDataError(f"{path}: the JSON object is empty, so the file has no {entries}. Check the path.")
    return data


def _fail_user(path: Path, user: str, position: int | None, message: str) -> EventDataError:
    place = f"{path}: user {_show(user)}" + (f", item {position} of its list" if position is not None else "")
    return EventDataError(f"{place}: {message}")


def read_inter_json(path: PathLike) -> pl.DataFrame:
    """A ``*.inter.json`` file: ``{"<user>": [<item>, ...], ...}``, each list in time order, no timestamps.

    Users are the keys and items the list entries, both as exact strings (an integer item 5 becomes "5", as the
    other readers turn integer ids into their decimal text, so it matches key "5" of the companion
    ``*.item.json``). Every event gets the default action and a null time; the order is the file order, users in
    key order and each user's items in list order, so ``event_index`` carries it and a leave-one-out split takes
    each list's last item. A user with an empty list has no events. A folder holding exactly one ``*.inter.json``
    (optionally ``.gz``) is accepted.
    """
    path = _existing(path)
    if path.is_dir():
        found = sorted([*path.glob("*.inter.json"), *path.glob("*.inter.json.gz")])
        if len(found) != 1:
            raise EventDataError(
                f"{path}: expected one *.inter.json file in this folder, found {[p.name for p in found]}; "
                "pass the file itself"
            )
        path = found[0]
    lines_hint = "read it with the generic reader (read_events, or no --reader), named .jsonl"
    data = _load_json_object(path, _LAYOUT, "users", lines_hint)
    users: list[str] = []
    items: list[str] = []
    for user, sequence in data.items():
        if not isinstance(sequence, list):
            hint = (
                " This looks like an *.item.json file (item -> fields): read it with "
                "bertrec.data.item_features.read_item_features."
                if isinstance(sequence, dict)
                else ""
            )
            raise _fail_user(
                path,
                user,
                None,
                f"{_show(sequence)} is not a list of items; expected {_LAYOUT}.{hint}",
            )
        if sequence and not user:
            raise _fail_user(path, user, None, "the user id is empty; give every user a non-empty key")
        if all(type(item) is int for item in sequence):  # the usual case, checked in one pass
            items.extend(map(str, sequence))
        else:
            for position, item in enumerate(sequence, start=1):
                if isinstance(item, bool) or not isinstance(item, (str, int)):
                    raise _fail_user(
                        path,
                        user,
                        position,
                        f"{_show(item)} is not an item id; item ids must be strings or integers. Expected {_LAYOUT}.",
                    )
                if item == "":
                    raise _fail_user(path, user, position, "the item id is empty; remove it or fill it in")
                items.append(item if isinstance(item, str) else str(item))
        users.extend([user] * len(sequence))
    events = pl.DataFrame(
        {"user_id": users, "item_id": items, "action": pl.repeat(DEFAULT_ACTION, len(items), eager=True)},
        schema={"user_id": pl.String, "item_id": pl.String, "action": pl.String},
    )
    return _finish(events, path, has_time=False)
