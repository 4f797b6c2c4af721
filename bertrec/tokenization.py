"""The event tokenizer: one vocabulary for special, action, time-bucket and item tokens.

It is saved as a standard Hugging Face tokenizer folder (a ``tokenizers`` WordLevel model behind
``PreTrainedTokenizerFast``), so downstream code encodes the text form of a history with plain
``AutoTokenizer`` and never needs bertrec. bertrec itself encodes in bulk with vectorised id lookups that give
the same ids (tested), and keeps the layout and time-bucket boundaries in ``event_tokenizer.json`` beside it.

Vocabulary order keeps ids stable and item ids contiguous: specials, actions, time buckets, item attributes
(``bertrec.item_content``, when the model reads item content), items (most frequent first, ties by id string).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from bertrec.atomic import atomic_write_text

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
UNK_ITEM = "[UNK_ITEM]"
SPECIAL_TOKENS = (PAD, UNK, CLS, SEP, MASK, UNK_ITEM)
FIRST_EVENT_BUCKET = "<t:start>"
# A space between fields: each token takes a position. A "+": the event's tokens share one position, their
# embeddings summed (``inputs_embeds``), so a history of n events is n positions whatever the layout, and the
# prediction is read at the event itself.
LAYOUTS = {
    "item": ("item",),
    "action item": ("action", "item"),
    "time item": ("time", "item"),  # logs with one kind of action (clicks, sessions): no constant action token
    "time action item": ("time", "action", "item"),
    "action+item": ("action", "item"),
    "time+item": ("time", "item"),
    "time+action+item": ("time", "action", "item"),
}
SPEC_FILE = "event_tokenizer.json"

_MINUTE, _HOUR, _DAY = 60.0, 3600.0, 86400.0
DEFAULT_TIME_BOUNDARIES = (
    1.0,
    5.0,
    15.0,
    30.0,
    _MINUTE,
    2 * _MINUTE,
    5 * _MINUTE,
    10 * _MINUTE,
    30 * _MINUTE,
    _HOUR,
    3 * _HOUR,
    6 * _HOUR,
    12 * _HOUR,
    _DAY,
    2 * _DAY,
    4 * _DAY,
    7 * _DAY,
    14 * _DAY,
    30 * _DAY,
    90 * _DAY,
    180 * _DAY,
)


# Every character that str.split() or the tokenizers' WhitespaceSplit (Unicode White_Space) splits on, not only
# space, tab and newlines: a no-break space or a vertical tab inside an id would otherwise split its token in the
# text form. No whitespace code point lies above U+3000.
_WHITESPACE = [char for char in map(chr, range(0x3001)) if char.isspace()]
_ESCAPES = str.maketrans(
    {char: "".join(f"%{byte:02X}" for byte in char.encode()) for char in ["%", "[", "]", *_WHITESPACE]}
)


def _escape(raw_id: str) -> str:
    """Percent-escape (UTF-8 bytes, as in URLs) what would break the text form: whitespace (the token
    separator), and brackets, which could spell a special token such as ``[MASK]`` inside an id."""
    return raw_id.translate(_ESCAPES)


def item_token(item_id: str) -> str:
    return f"<i:{_escape(item_id)}>"


def action_token(action: str) -> str:
    return f"<a:{_escape(action)}>"


def time_token(bucket: int) -> str:
    return f"<t:{bucket}>"


def next_action_token(action: str) -> str:
    return f"<next:a:{_escape(action)}>"


def next_time_token(bucket: int) -> str:
    return f"<next:t:{bucket}>"


def attribute_token(column: str, value: str, none: bool = False) -> str:
    """``<f:brand:Acme>``; a column's no-value slot (``none``, the first of its values) is ``<f:brand:[NONE]>``,
    whose brackets no escaped real value can spell."""
    return f"<f:{_escape(column)}:[NONE]>" if none else f"<f:{_escape(column)}:{_escape(value)}>"


@dataclass
class EventTokenizerSpec:
    """What the vocabulary alone cannot say: how events become tokens."""

    layout: str
    time_boundaries: list[float]
    actions: list[str]
    items: list[str]
    max_events: int
    # item content (``bertrec.item_content``): column -> attribute values, and per item its attributes as
    # indices into the values of all columns in order; empty for id-only models
    attributes: dict[str, list[str]] = field(default_factory=dict)
    item_attributes: list[list[int]] = field(default_factory=list)
    item_id_rows: bool = True  # False: an item is its attributes alone (semantic IDs without id rows)
    # an item's row also holds its text vector (the item encoder's) through a learned linear map
    item_text_vectors: bool = False
    # cold start: how many of the last ``items`` were added from content after training, never trained on
    # (``item_content.add_items_from_content``); their scores are calibrated against the trained ones'
    items_from_content: int = 0
    # how much each prompt gives those items against the trained ones: (slope, intercept) of
    # ``item_content.pooled_scores``, fit on held-out examples; empty: their share of the catalogue
    added_items_weighing: list[float] = field(default_factory=list)

    @property
    def fields(self) -> tuple[str, ...]:
        return LAYOUTS[self.layout]

    @property
    def stacked(self) -> bool:
        """One position per event: the event's tokens are summed at that position (``+`` layouts)."""
        return "+" in self.layout

    @property
    def tokens_per_event(self) -> int:
        return len(self.fields)

    @property
    def positions_per_event(self) -> int:
        return 1 if self.stacked else len(self.fields)


class EventTokenizer:
    """Maps events to token ids; wraps the ``PreTrainedTokenizerFast`` that is saved for downstream use."""

    def __init__(self, spec: EventTokenizerSpec, item_encoder=None):
        if spec.layout not in LAYOUTS:
            raise ValueError(f"unknown layout {spec.layout!r}; choose one of {sorted(LAYOUTS)}")
        if list(spec.time_boundaries) != sorted(set(spec.time_boundaries)) or not spec.time_boundaries:
            raise ValueError(f"time_boundaries must be strictly increasing seconds, got {spec.time_boundaries}")
        self.spec = spec
        # semantic-ID models: the text encoder and codebooks that give a new item its codes
        # (``bertrec.semantic_ids.SemanticIdEncoder``), saved beside the tokenizer files
        self.item_encoder = item_encoder
        vocab = list(SPECIAL_TOKENS) + [action_token(a) for a in spec.actions]
        vocab += [FIRST_EVENT_BUCKET] + [time_token(b) for b in range(len(spec.time_boundaries) + 1)]
        # stacked layouts: what is known of the *next* event at a causal position (its action, its gap), added
        # to the position with tokens of their own, since a sum cannot say which event a shared token is of
        self.next_action_offset = len(vocab)
        if spec.stacked and "action" in spec.fields:
            vocab += [next_action_token(a) for a in spec.actions]
        self.next_time_offset = len(vocab)
        if spec.stacked and "time" in spec.fields:
            vocab += [next_time_token(b) for b in range(len(spec.time_boundaries) + 1)]
        self.attribute_offset = len(vocab)
        vocab += [
            attribute_token(column, value, none=index == 0)
            for column, values in spec.attributes.items()
            for index, value in enumerate(values)
        ]
        if spec.item_attributes and len(spec.item_attributes) != len(spec.items):
            raise ValueError(
                f"item_attributes has {len(spec.item_attributes)} rows for {len(spec.items)} items; "
                "rebuild the tokenizer"
            )
        self.item_offset = len(vocab)
        vocab += [item_token(i) for i in spec.items]
        self.vocab = {token: index for index, token in enumerate(vocab)}
        if len(self.vocab) != len(vocab):
            raise ValueError("two items or actions map to the same token; item and action ids must be distinct")
        self.action_offset = len(SPECIAL_TOKENS)
        self.first_bucket_id = self.vocab[FIRST_EVENT_BUCKET]
        self._items = pl.Series("item_id", spec.items, dtype=pl.String)
        self._item_lookup = pl.DataFrame({"item_id": self._items, "item_index": np.arange(len(spec.items))})
        hashes = self._items.hash().alias("item_hash")
        if len(hashes) and hashes.n_unique() == len(hashes):  # else look up by string (e.g. two share a hash)
            self._item_lookup = self._item_lookup.with_columns(hashes).drop("item_id")
        self._action_lookup = {a: self.action_offset + i for i, a in enumerate(spec.actions)}

    # ids -------------------------------------------------------------------------------------------------
    @property
    def num_items(self) -> int:
        return len(self.spec.items)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def token_id(self, token: str) -> int:
        return self.vocab[token]

    @property
    def pad_id(self) -> int:
        return self.vocab[PAD]

    @property
    def mask_id(self) -> int:
        return self.vocab[MASK]

    @property
    def unk_item_id(self) -> int:
        return self.vocab[UNK_ITEM]

    def item_indices(self, item_ids: pl.Series) -> np.ndarray:
        """Index of each raw item id in the item vocabulary (0-based), -1 for items never seen in training.

        The lookup joins on 64-bit hashes (about twice as fast as joining strings) and then compares each match
        with the vocabulary's string, so an unknown id whose hash equals a known one's is still unknown.
        """
        item_ids = item_ids.alias("item_id")
        if "item_id" in self._item_lookup.columns:
            joined = item_ids.to_frame().join(self._item_lookup, on="item_id", how="left", maintain_order="left")
            return joined["item_index"].fill_null(-1).to_numpy(writable=True)
        keys = item_ids.hash().alias("item_hash").to_frame()
        index = keys.join(self._item_lookup, on="item_hash", how="left", maintain_order="left")["item_index"]
        same = self._items.gather(index.fill_null(0)) == item_ids
        return (
            pl.select(pl.when(same & index.is_not_null()).then(index)).to_series().fill_null(-1).to_numpy(writable=True)
        )

    def action_ids(self, actions: pl.Series) -> np.ndarray:
        unk = self.vocab[UNK]
        return actions.replace_strict(self._action_lookup, default=unk, return_dtype=pl.Int64).to_numpy()

    def time_bucket_ids(self, gaps: np.ndarray) -> np.ndarray:
        """Bucket ids for gaps in seconds since the previous event; NaN (no previous event) -> ``<t:start>``."""
        buckets = np.searchsorted(np.asarray(self.spec.time_boundaries), np.maximum(gaps, 0.0), side="right")
        ids = self.first_bucket_id + 1 + buckets
        return np.where(np.isnan(gaps), self.first_bucket_id, ids)

    # bulk encoding -----------------------------------------------------------------------------------------
    def event_token_ids(self, sequences: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Token ids of every event of every sequence, as ``[n_events, tokens_per_event]`` plus the per-sequence
        event counts; events keep the sequence order (flattened lists).

        Sequences are encoded about a million events at a time into the one output array, so the intermediate
        columns (exploded ids, lookups, gaps) never exist for the whole log at once: about 0.2 GB less at 10M.
        """
        lengths = sequences["item_id"].list.len().to_numpy().astype(np.int64)
        tokens = np.empty((int(lengths.sum()), self.spec.tokens_per_event), dtype=np.int64)
        rows = max(1, int(_EVENTS_PER_CHUNK * len(lengths) / max(len(tokens), 1)))
        ends = np.cumsum(lengths)
        start = 0
        for first, chunk in zip(range(0, len(lengths), rows), sequences.iter_slices(n_rows=rows)):
            stop = int(ends[first + chunk.height - 1])
            for column, field_name in enumerate(self.spec.fields):
                if field_name == "item":
                    index = self.item_indices(chunk["item_id"].explode())
                    values = np.where(index >= 0, index + self.item_offset, self.unk_item_id)
                elif field_name == "action":
                    values = self.action_ids(chunk["action"].explode())
                else:
                    values = self.time_bucket_ids(_gaps(chunk["timestamp"]))
                tokens[start:stop, column] = values
            start = stop
        return tokens, lengths

    def encode_sequences(self, sequences: pl.DataFrame, max_events: int | None = None) -> list[np.ndarray]:
        """Token ids per sequence, each truncated to its most recent ``max_events`` events."""
        max_events = max_events or self.spec.max_events
        tokens, lengths = self.event_token_ids(sequences)
        ends = np.cumsum(lengths)
        starts = np.maximum(ends - lengths, ends - max_events)
        shape = (-1, self.spec.tokens_per_event) if self.spec.stacked else (-1,)
        return [tokens[s:e].reshape(shape) for s, e in zip(starts, ends)]

    def encode_training_windows(self, sequences: pl.DataFrame, min_events: int = 1) -> list[np.ndarray]:
        """Token ids of consecutive windows of at most ``max_events`` events, cut from each sequence's end.

        Long histories become several training examples instead of losing everything but their tail; windows
        shorter than ``min_events`` (2 for next-event training, which needs a previous event) are dropped.
        Stacked layouts give ``[events, fields]`` arrays, the others flat token arrays.
        """
        tokens, lengths = self.event_token_ids(sequences)
        per_event, window = self.spec.tokens_per_event, self.spec.max_events
        if self.spec.stacked:
            per_event, flat = 1, tokens
        else:
            flat = tokens.reshape(-1)
        ends = np.cumsum(lengths)
        windows = []
        for first, end in zip(ends - lengths, ends):
            for stop in range(end, first, -window):
                start = max(stop - window, first)
                if stop - start >= min_events:
                    windows.append(flat[start * per_event : stop * per_event])
        return windows

    # text form (for humans and for plain AutoTokenizer) ----------------------------------------------------
    def history_to_text(self, items: Sequence[str], actions: Sequence[str], timestamps: Sequence[float]) -> str:
        """The text form of a history, e.g. ``"<t:start> <a:view> <i:sku42> <t:3> <a:cart> <i:sku42>"``."""
        frame = pl.DataFrame(
            {
                "item_id": [list(items)],
                "action": [list(actions)],
                "timestamp": [list(map(float, timestamps))],
            },
            schema={
                "item_id": pl.List(pl.String),
                "action": pl.List(pl.String),
                "timestamp": pl.List(pl.Float64),
            },
        )
        ids, _ = self.event_token_ids(frame)
        inverse = self.inverse_vocab
        return " ".join(inverse[i] for i in ids.reshape(-1))

    @property
    def inverse_vocab(self) -> list[str]:
        inverse = [""] * len(self.vocab)
        for token, index in self.vocab.items():
            inverse[index] = token
        return inverse

    def hf_tokenizer(self) -> PreTrainedTokenizerFast:
        model = Tokenizer(models.WordLevel(vocab=self.vocab, unk_token=UNK))
        model.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
        return PreTrainedTokenizerFast(
            tokenizer_object=model,
            pad_token=PAD,
            unk_token=UNK,
            cls_token=CLS,
            sep_token=SEP,
            mask_token=MASK,
            model_max_length=self.spec.max_events * self.spec.tokens_per_event,
        )

    # persistence -------------------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike) -> None:
        """Write the HF tokenizer files and ``event_tokenizer.json``.

        ``tokenizer_class`` is forced to ``PreTrainedTokenizerFast``: transformers 5 writes its own backend
        name, which transformers 4 cannot load.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.hf_tokenizer().save_pretrained(directory)
        config_path = directory / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        config["tokenizer_class"] = "PreTrainedTokenizerFast"
        config.pop("backend", None)
        atomic_write_text(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
        atomic_write_text(directory / SPEC_FILE, json.dumps(asdict(self.spec), indent=2) + "\n")
        if self.item_encoder is not None:
            self.item_encoder.save(directory)

    @classmethod
    def load(cls, directory: str | os.PathLike) -> EventTokenizer:
        path = Path(directory) / SPEC_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: {directory} is not a bertrec tokenizer folder (build one with "
                "EventTokenizer.build or the pretrain recipe)"
            )
        try:
            spec = EventTokenizerSpec(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as error:
            raise ValueError(f"{path} is corrupted or from an incompatible version: {error}") from error
        from bertrec.semantic_ids import SemanticIdEncoder

        return cls(spec, SemanticIdEncoder.load(directory))

    @classmethod
    def build(
        cls,
        train_sequences: pl.DataFrame,
        *,
        layout: str = "time action item",
        time_boundaries: Sequence[float] | None = None,
        min_item_count: int = 1,
        max_events: int = 50,
    ) -> EventTokenizer:
        """Build the vocabulary from training sequences only, so no validation/test-only item gets a token."""
        check_times_for_layout(layout, train_sequences["timestamp"].explode())
        events = train_sequences.select(pl.col("item_id").explode(), pl.col("action").explode())
        return cls.from_counts(
            events.group_by("item_id").len(),
            events["action"].unique().drop_nulls().to_list(),
            layout=layout,
            time_boundaries=time_boundaries,
            min_item_count=min_item_count,
            max_events=max_events,
        )

    @classmethod
    def from_counts(
        cls,
        item_counts: pl.DataFrame,
        actions: Sequence[str],
        *,
        layout: str = "time action item",
        time_boundaries: Sequence[float] | None = None,
        min_item_count: int = 1,
        max_events: int = 50,
    ) -> EventTokenizer:
        """Build from training-event counts per item (columns ``item_id``, ``len``) and the training actions:
        what a log processed in parts (``bertrec.data.streaming``) has instead of one sequences frame. Items
        are ordered by count, then id, so the vocabulary does not depend on how the log was split into parts."""
        counts = item_counts.filter(pl.col("len") >= min_item_count)
        items = counts.sort(["len", "item_id"], descending=[True, False])["item_id"].to_list()
        boundaries = [float(b) for b in (time_boundaries or DEFAULT_TIME_BOUNDARIES)]
        return cls(EventTokenizerSpec(layout, boundaries, sorted(set(actions)), items, max_events))


def check_times_for_layout(layout: str, timestamps: pl.Series) -> None:
    """A layout with time tokens needs a time for every training event: a gap to a missing time has no bucket."""
    if "time" in LAYOUTS.get(layout, ()) and timestamps.null_count() > 0:
        raise ValueError(
            f"layout {layout!r} needs a timestamp for every event, but this log has missing timestamps; "
            "use layout 'action+item' (or 'action item', 'item'), or drop rows without a time"
        )


_EVENTS_PER_CHUNK = 1_000_000  # events encoded at once by event_token_ids


def _gaps(timestamps: pl.Series) -> np.ndarray:
    """Seconds since the previous event within each list; NaN for each list's first event or missing times."""
    gaps = timestamps.list.eval(pl.element().diff()).explode().cast(pl.Float64).fill_null(float("nan"))
    return gaps.to_numpy()
