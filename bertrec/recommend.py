"""Recommendations from raw ids: histories of (item, action, timestamp) in, top-k raw item ids out.

This is the serving-side view of a saved bertrec folder. It reuses the exact prompt encoding and scoring of
offline evaluation, so what the benchmark measured is what a caller gets.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

from bertrec.collators import pad_sequences
from bertrec.data.schema import DEFAULT_ACTION
from bertrec.evaluation import encode_prompts, prompt_features
from bertrec.modeling import item_logits, objective_for
from bertrec.tokenization import EventTokenizer

Event = tuple[str, str, float] | dict


@dataclass
class Recommendations:
    items: list[str]
    scores: list[float]
    unknown_items_skipped: int = 0
    fallback: str | None = field(default=None)  # "popularity" when the history had no known item


class Recommender:
    """Top-k raw item ids for raw histories, with business rules (allow/deny lists) and embeddings for ANN."""

    def __init__(self, model, tokenizer: EventTokenizer, device: str | torch.device = "cpu"):
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.device = torch.device(device)
        self.objective = objective_for(model.config.model_type)
        self._items = np.asarray(tokenizer.spec.items, dtype=object)
        self._index = {item: i for i, item in enumerate(tokenizer.spec.items)}

    @classmethod
    def from_pretrained(cls, directory: str, device: str | torch.device = "cpu") -> Recommender:
        config = AutoConfig.from_pretrained(directory)
        auto = AutoModelForMaskedLM if objective_for(config.model_type) == "masked" else AutoModelForCausalLM
        return cls(auto.from_pretrained(directory), EventTokenizer.load(directory), device)

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
    ) -> list[Recommendations]:
        """Top-``k`` items per history. ``now`` (unix seconds) sets the current-time bucket (default: the last
        event's time); ``action`` conditions the prompt (e.g. "purchase"); ``allow``/``deny`` restrict the items.
        Unknown items in a history are skipped and counted; an empty history falls back to popularity."""
        rules = self._rule_mask(allow, deny)
        parsed = [self._parse(history) for history in histories]
        results: list[Recommendations | None] = [None] * len(parsed)
        known = [i for i, (frame, _) in enumerate(parsed) if frame.height]
        scores = torch.empty((0, self.tokenizer.num_items))
        if known:
            scores = self._score([parsed[i][0] for i in known], action, now)
        popularity = -torch.arange(self.tokenizer.num_items, dtype=torch.float32)  # vocabulary is frequency-ordered
        for row, (frame, skipped) in enumerate(parsed):
            row_scores = scores[known.index(row)].clone() if frame.height else popularity.clone()
            if exclude_seen and frame.height:
                row_scores[[self._index[i] for i in frame["item_id"].unique()]] = float("-inf")
            row_scores[~rules] = float("-inf")
            top = torch.topk(row_scores, min(k, int(torch.isfinite(row_scores).sum())))
            results[row] = Recommendations(
                items=self._items[top.indices.numpy()].tolist(),
                scores=top.values.tolist(),
                unknown_items_skipped=skipped,
                fallback=None if frame.height else "popularity",
            )
        return results

    @torch.no_grad()
    def user_embeddings(self, histories: Sequence[Sequence[Event]], now: float | None = None) -> np.ndarray:
        """The head features at each history's prediction position: score = embedding @ item_embeddings().T."""
        frames = [self._parse(history)[0] for history in histories]
        if any(frame.height == 0 for frame in frames):
            raise ValueError("user_embeddings needs at least one known item in every history")
        return self._features(frames, None, now).cpu().numpy()

    def item_embeddings(self) -> np.ndarray:
        """Output-layer rows of the items, in ``tokenizer.spec.items`` order (for ANN and item-to-item)."""
        offset, n = self.tokenizer.item_offset, self.tokenizer.num_items
        return self.model.get_output_embeddings().weight[offset : offset + n].detach().cpu().numpy()

    # internals ---------------------------------------------------------------------------------------------
    def _parse(self, history: Sequence[Event]) -> tuple[pl.DataFrame, int]:
        rows = [
            (str(e["item"]), str(e.get("action", DEFAULT_ACTION)), float(e.get("timestamp", 0.0)))
            if isinstance(e, dict)
            else (str(e[0]), str(e[1]), float(e[2]))
            for e in history
        ]
        known = [r for r in rows if r[0] in self._index]
        frame = pl.DataFrame(known, schema=["item_id", "action", "timestamp"], orient="row")
        frame = frame.with_row_index("order").sort(["timestamp", "order"]).drop("order")
        return frame, len(rows) - len(known)

    def _features(self, frames: list[pl.DataFrame], action: str | None, now: float | None) -> torch.Tensor:
        examples = pl.DataFrame(
            {
                "item_id": [f["item_id"].to_list() for f in frames],
                "action": [f["action"].to_list() for f in frames],
                "timestamp": [f["timestamp"].to_list() for f in frames],
                "event_index": [list(range(f.height)) for f in frames],
                "target_timestamp": [now if now is not None else f["timestamp"][-1] for f in frames],
            },
            schema_overrides={"timestamp": pl.List(pl.Float64), "target_timestamp": pl.Float64},
        )
        batch = pad_sequences(encode_prompts(self.tokenizer, examples, self.objective, action), self.tokenizer.pad_id)
        return prompt_features(self.model, batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device))

    def _score(self, frames: list[pl.DataFrame], action: str | None, now: float | None) -> torch.Tensor:
        features = self._features(frames, action, now)
        return item_logits(self.model, features, self.tokenizer.item_offset, self.tokenizer.num_items).float().cpu()

    def _rule_mask(self, allow: Iterable[str] | None, deny: Iterable[str] | None) -> torch.Tensor:
        mask = torch.ones(self.tokenizer.num_items, dtype=torch.bool)
        if allow is not None:
            mask[:] = False
            mask[[self._index[i] for i in allow if i in self._index]] = True
        if deny is not None:
            mask[[self._index[i] for i in deny if i in self._index]] = False
        return mask
