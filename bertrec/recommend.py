"""Recommendations from raw ids: histories of (item, action, timestamp) in, top-k raw item ids out.

This is the serving-side view of a saved bertrec folder. It reuses the exact prompt encoding and scoring of
offline evaluation, so what the benchmark measured is what a caller gets.

Serving inputs are not curated like a training log, so everything a caller hands in is checked here, with an
error that names the event at fault: a history may be thousands of events long (only the most recent ones that
fit the model are encoded), may hold items the model never saw (skipped and counted), may be empty (popularity
fallback), and may come as tuples or dicts with missing or ``None`` times (a log without times).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import torch

from bertrec.collators import TokenLayout, pad_sequences
from bertrec.data.schema import DEFAULT_ACTION
from bertrec.evaluation import encode_prompts, prompt_features, prompt_scores
from bertrec.modeling import load_model, model_objective
from bertrec.tokenization import LAYOUTS, EventTokenizer

Event = tuple[str, str, float | None] | dict
EVENT_SHAPE = "an (item, action, timestamp) tuple or a dict with 'item' and optional 'action' and 'timestamp'"


@dataclass
class Recommendations:
    items: list[str]
    scores: list[float]
    unknown_items_skipped: int = 0
    fallback: str | None = field(default=None)  # "popularity" when the history had no known item


@dataclass
class _History:
    """A validated history reduced to what scoring needs, so a 5,000-event history costs no more than a short one.

    ``items``/``actions``/``timestamps`` are the most recent known events in time order, at most ``max_events``
    of them: the prompt holds ``max_events - 1``, and one more event is kept so the first encoded event's time
    gap is measured from its real predecessor, exactly as when the whole history is encoded. ``seen`` holds the
    item index of every known event of the whole history, for ``exclude_seen``.
    """

    items: list[str]
    actions: list[str]
    timestamps: list[float | None]
    seen: list[int]
    skipped: int


class Recommender:
    """Top-k raw item ids for raw histories, with business rules (allow/deny lists) and embeddings for ANN.

    One instance may serve several threads at once: a call keeps all its state in locals and only reads the
    model (in eval mode, without gradients), so concurrent calls return what serial calls return (tested).
    """

    def __init__(self, model, tokenizer: EventTokenizer, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.objective = model_objective(model)
        self._items = np.asarray(tokenizer.spec.items, dtype=object)
        self._index = {item: i for i, item in enumerate(tokenizer.spec.items)}
        # the vocabulary is frequency-ordered, so item index order is popularity order
        self._popularity = -torch.arange(tokenizer.num_items, dtype=torch.float32)

    @classmethod
    def from_pretrained(cls, directory: str, device: str | torch.device = "cpu") -> Recommender:
        return cls(load_model(directory), EventTokenizer.load(directory), device)

    def add_items(self, features: pl.DataFrame | str | Path) -> list[str]:
        """Rank items that have content but no interactions yet, without retraining (a model trained with
        ``--item_features``): ``features`` is an item feature file (read in the model's columns,
        ``item_content.read_features_for``) or a frame of ``item_id``, the model's attribute columns
        (``List[String]`` or ``String``) and its text columns (``String``). Each new item's row is composed from its
        attributes as trained rows are (``item_content.add_items_from_content``); values the model never saw
        count as ``[NONE]``. Returns the ids added (items already known are left as they are); they rank
        below every known item when scores tie, and can be recommended at once."""
        from bertrec import item_content

        if not isinstance(features, pl.DataFrame):
            features = item_content.read_features_for(self.tokenizer, features)
        before = self.tokenizer.num_items
        self.tokenizer, _ = item_content.add_items_from_content(self.model, self.tokenizer, features)
        self.model.to(self.device)
        added = self.tokenizer.spec.items[before:]
        self._items = np.asarray(self.tokenizer.spec.items, dtype=object)
        self._index.update({item: before + i for i, item in enumerate(added)})
        self._popularity = -torch.arange(self.tokenizer.num_items, dtype=torch.float32)
        return list(added)

    def calibrate_added_items(self, examples: pl.DataFrame, **options):
        """Choose how much each history gives the items added by ``add_items`` against the trained ones, on
        held-out ``examples`` (a split's examples frame, e.g. interactions logged since the items were added,
        some of whose targets are added items), ranked with seen items excluded; ``options`` go to
        ``added_item_weighing.fit_weighing``. Without it the added items get their share of the catalogue.
        Returns the choice (every candidate's NDCG@10 included); adding items later resets it."""
        from bertrec import added_item_weighing

        choice = added_item_weighing.fit_weighing(
            self.model, self.tokenizer, examples, objective=self.objective, device=self.device, **options
        )
        self.tokenizer = added_item_weighing.with_weighing(self.tokenizer, choice.weighing)
        return choice

    def recommend(self, history: Sequence[Event], k: int = 10, **options) -> Recommendations:
        return self.recommend_batch([history], k=k, **options)[0]

    @torch.no_grad()
    def recommend_batch(
        self,
        histories: Sequence[Sequence[Event]],
        k: int = 10,
        *,
        exclude_seen: bool = True,
        action: str | None = None,
        now: float | None = None,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] | None = None,
        batch_size: int = 256,
    ) -> list[Recommendations]:
        """Top-``k`` items per history.

        Events are ``(item, action, timestamp)`` tuples or dicts with ``item`` and optional ``action`` and
        ``timestamp`` (unix seconds, or ``None`` when the log has no time); they are ordered by time, input
        order breaking ties. Only the most recent known events that fit the model are encoded, so any history
        length is fine; ``exclude_seen`` still removes every item of the whole history. Unknown items are
        skipped and counted; a history without a known item falls back to popularity.

        ``now`` (unix seconds) sets the current-time bucket (default: the last event's time); ``action``
        conditions the prompt (e.g. "purchase"). ``allow``/``deny`` restrict the items; ids the model does not
        know are ignored there, since a catalogue rule may name items newer than the model. Histories are
        scored ``batch_size`` at a time, which bounds memory for any number of histories.
        """
        _check_positive(k=k, batch_size=batch_size)
        self._check_action(action)
        now = _timestamp(now, "now")
        rules = self._rule_mask(allow, deny)
        parsed = [self._parse(history, position) for position, history in enumerate(histories)]
        results: list[Recommendations] = []
        for start in range(0, len(parsed), batch_size):
            chunk = parsed[start : start + batch_size]
            results += self._rank(chunk, k, exclude_seen=exclude_seen, rules=rules, action=action, now=now)
        return results

    @torch.no_grad()
    def user_embeddings(
        self, histories: Sequence[Sequence[Event]], now: float | None = None, batch_size: int = 256
    ) -> np.ndarray:
        """The head features at each history's prediction position: score = embedding @ item_embeddings().T
        (plus the output bias, if any). That is the whole score of every item outside the history, except that
        a model with transition scores adds their bonus to the last item's (at most 32) successors
        (``bertrec.transitions``: add them to ANN candidates); a model with repeat scores adds its bonus to
        the history's own items (``bertrec.repeats``)."""
        _check_positive(batch_size=batch_size)
        now = _timestamp(now, "now")
        parsed = [self._parse(history, position) for position, history in enumerate(histories)]
        if any(not history.items for history in parsed):
            raise ValueError("user_embeddings needs at least one known item in every history")
        hidden = self.model.config.hidden_size
        chunks = [
            self._features(parsed[start : start + batch_size], None, now).cpu().numpy()
            for start in range(0, len(parsed), batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, hidden), dtype=np.float32)

    def item_embeddings(self) -> np.ndarray:
        """Output-layer rows of the items, in ``tokenizer.spec.items`` order (for ANN and item-to-item)."""
        offset, n = self.tokenizer.item_offset, self.tokenizer.num_items
        return self.model.get_output_embeddings().weight[offset : offset + n].detach().cpu().numpy()

    # internals ---------------------------------------------------------------------------------------------
    def _parse(self, history: Sequence[Event], position: int) -> _History:
        """Validate every event, then keep only what scoring needs (plain lists: no per-history frame)."""
        events = [_event(event, position, index) for index, event in enumerate(history)]
        # time order with input order as the tie-break, missing times first: as build_sequences orders a log
        events.sort(key=lambda e: (e[2] is not None, e[2] or 0.0))
        known = [e for e in events if e[0] in self._index]
        recent = known[-self.tokenizer.spec.max_events :]
        return _History(
            items=[e[0] for e in recent],
            actions=[e[1] for e in recent],
            timestamps=[e[2] for e in recent],
            seen=[self._index[e[0]] for e in known],
            skipped=len(events) - len(known),
        )

    def _rank(
        self,
        chunk: list[_History],
        k: int,
        *,
        exclude_seen: bool,
        rules: torch.Tensor,
        action: str | None,
        now: float | None,
    ) -> list[Recommendations]:
        """Rank one chunk with tensor operations on the whole ``[chunk, items]`` score matrix at once."""
        scores = self._popularity.repeat(len(chunk), 1)
        known = [row for row, history in enumerate(chunk) if history.items]
        if known:
            scores[known] = self._score([chunk[row] for row in known], action, now)
        if exclude_seen:
            rows = np.repeat(np.arange(len(chunk)), [len(history.seen) for history in chunk])
            columns = np.fromiter((i for history in chunk for i in history.seen), dtype=np.int64, count=len(rows))
            scores[torch.as_tensor(rows), torch.as_tensor(columns)] = float("-inf")
        scores[:, ~rules] = float("-inf")
        top = torch.topk(scores, min(k, self.tokenizer.num_items))
        finite = torch.isfinite(top.values).sum(dim=1).tolist()  # fewer than k items may remain allowed
        values, indices = top.values.tolist(), top.indices.numpy()
        return [
            Recommendations(
                items=self._items[indices[row, :n]].tolist(),
                scores=values[row][:n],
                unknown_items_skipped=history.skipped,
                fallback=None if history.items else "popularity",
            )
            for row, (history, n) in enumerate(zip(chunk, finite))
        ]

    def _prompts(self, histories: list[_History], action: str | None, now: float | None) -> dict:
        examples = pl.DataFrame(
            {
                "item_id": [h.items for h in histories],
                "action": [h.actions for h in histories],
                "timestamp": [h.timestamps for h in histories],
                "event_index": [list(range(len(h.items))) for h in histories],
                "target_timestamp": [now if now is not None else h.timestamps[-1] for h in histories],
            },
            schema={
                "item_id": pl.List(pl.String),
                "action": pl.List(pl.String),
                "timestamp": pl.List(pl.Float64),
                "event_index": pl.List(pl.Int64),
                "target_timestamp": pl.Float64,
            },
        )
        batch = pad_sequences(encode_prompts(self.tokenizer, examples, self.objective, action), self.tokenizer.pad_id)
        return {name: tensor.to(self.device) for name, tensor in batch.items()}

    def _features(self, histories: list[_History], action: str | None, now: float | None) -> torch.Tensor:
        batch = self._prompts(histories, action, now)
        return prompt_features(self.model, batch["input_ids"], batch["attention_mask"])

    def _score(self, histories: list[_History], action: str | None, now: float | None) -> torch.Tensor:
        batch = self._prompts(histories, action, now)
        layout = TokenLayout.from_tokenizer(self.tokenizer)
        return prompt_scores(self.model, layout, batch["input_ids"], batch["attention_mask"]).cpu()

    def _check_action(self, action: str | None) -> None:
        """An action outside the vocabulary has no token, and a layout without action tokens cannot be asked
        for one at all: say so instead of failing deep in encoding or ignoring the request."""
        spec = self.tokenizer.spec
        if action is None:
            return
        if "action" not in spec.fields:
            reading = sorted(name for name, fields in LAYOUTS.items() if "action" in fields)
            raise ValueError(
                f"action={action!r}: this model's layout {spec.layout!r} has no action tokens, so it cannot be "
                f"asked for an action; models trained with a layout that has them can ({reading}). Leave "
                "action out here."
            )
        if action not in spec.actions:
            raise ValueError(f"action {action!r} is not in the model's vocabulary; choose one of {spec.actions}")

    def _rule_mask(self, allow: Iterable[str] | None, deny: Iterable[str] | None) -> torch.Tensor:
        """Items the rules let through; ids unknown to the model are ignored (see ``recommend_batch``)."""
        for name, ids in (("allow", allow), ("deny", deny)):
            if isinstance(ids, str):
                raise ValueError(f"{name} must be a collection of item ids, not the single string {ids!r}")
        mask = torch.ones(self.tokenizer.num_items, dtype=torch.bool)
        if allow is not None:
            mask[:] = False
            mask[[self._index[i] for i in allow if i in self._index]] = True
        if deny is not None:
            mask[[self._index[i] for i in deny if i in self._index]] = False
        return mask


def _check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _event(event: Event, position: int, index: int) -> tuple[str, str, float | None]:
    """One event as ``(item, action, timestamp)``; a malformed one is reported by history and event index."""
    where = f"history {position}, event {index}"
    if isinstance(event, dict):
        if "item" not in event:
            raise ValueError(f"{where}: dict event {event!r} has no 'item' key; expected {EVENT_SHAPE}")
        item, action, timestamp = event["item"], event.get("action"), event.get("timestamp")
    elif isinstance(event, (tuple, list)) and len(event) == 3:
        item, action, timestamp = event
    else:
        raise ValueError(f"{where}: got {event!r}; expected {EVENT_SHAPE}")
    return str(item), DEFAULT_ACTION if action is None else str(action), _timestamp(timestamp, where)


def _timestamp(value, where: str) -> float | None:
    """Unix seconds as a float, or ``None`` for "no time"; strings are refused rather than guessed at."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{where}: timestamp must be a finite number of unix seconds or None, got {value!r}")
    return float(value)
