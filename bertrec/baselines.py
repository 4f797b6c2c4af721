"""Non-neural baselines reported beside every model: most popular, item-to-item transitions (Markov), the
user's own recent items, and (for catalogues with item text) the items most similar in content to the history.

All score from training sequences only, in the tokenizer's item index space, and plug into
``evaluation.evaluate_scorer`` like a model does.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from bertrec.data.parquet_parts import Frame, frame_chunks
from bertrec.evaluation import EvalBatch, ScoreFn
from bertrec.pair_counts import PairCounter
from bertrec.tokenization import EventTokenizer


def item_counts(tokenizer: EventTokenizer, train_sequences: Frame, action: str | None = None) -> np.ndarray:
    """Training events per vocabulary item (only events of ``action`` when given), a chunk of users at a time."""
    counts = np.zeros(tokenizer.num_items, dtype=np.float64)
    for chunk in frame_chunks(train_sequences, columns=["item_id", "action"] if action else ["item_id"]):
        items = chunk["item_id"].explode()
        if action is not None:
            items = items.filter(chunk["action"].explode() == action)
        index = tokenizer.item_indices(items)
        counts += np.bincount(index[index >= 0], minlength=tokenizer.num_items)
    return counts


def _popularity_below_one(tokenizer: EventTokenizer, train_sequences: Frame) -> torch.Tensor:
    """Training popularity scaled below one event: orders the items a baseline's own signal leaves tied."""
    return _below_one(item_counts(tokenizer, train_sequences))


def _below_one(counts: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(counts / (counts.max() + 1.0), dtype=torch.float32)


def popularity_scorer(tokenizer: EventTokenizer, train_sequences: Frame, action: str | None = None) -> ScoreFn:
    """Every user gets the training popularity ranking (of ``action`` events, e.g. best sellers, when given)."""
    counts = torch.as_tensor(item_counts(tokenizer, train_sequences, action), dtype=torch.float32)

    def score(batch: EvalBatch) -> torch.Tensor:
        return counts.expand(len(batch.targets), -1).clone()

    return score


def markov_scorer(tokenizer: EventTokenizer, train_sequences: Frame) -> ScoreFn:
    """First-order transitions: how often each item followed the user's last item in training sequences.

    Popularity, scaled below one transition, breaks ties, so users whose last item has few successors still
    get a sensible ranking instead of a block of ties.
    """
    counter, counts = PairCounter(tokenizer.num_items), np.zeros(tokenizer.num_items)
    for chunk in frame_chunks(train_sequences, columns=["item_id"]):  # a chunk of users at a time, read once
        items = tokenizer.item_indices(chunk["item_id"].explode())
        counts += np.bincount(items[items >= 0], minlength=tokenizer.num_items)
        lengths = chunk["item_id"].list.len().to_numpy().astype(np.int64)
        same_user = np.repeat(np.arange(len(lengths)), lengths)
        follows = (same_user[1:] == same_user[:-1]) & (items[1:] >= 0) & (items[:-1] >= 0)
        counter.add(items[:-1][follows], items[1:][follows])
    prev, successors, weights = counter.result()
    tie_break = _below_one(counts)
    starts = np.searchsorted(prev, np.arange(tokenizer.num_items + 1))

    def score(batch: EvalBatch) -> torch.Tensor:
        scores = tie_break.expand(len(batch.targets), -1).clone()
        for row, last in enumerate(batch.last_item.tolist()):
            if last >= 0:
                begin, end = starts[last], starts[last + 1]
                scores[row, successors[begin:end]] += torch.as_tensor(weights[begin:end], dtype=torch.float32)
        return scores

    return score


def recent_items_scorer(tokenizer: EventTokenizer, train_sequences: Frame) -> ScoreFn:
    """The user's own history items, most recent first, then every other item by popularity.

    Where people come back to what they just looked at (a brand browsed before it is bought, a product
    re-clicked within a session) this is the bar a model has to clear with seen items kept: on Tmall's next
    purchase the last browsed brand is the one bought about two times in three. With seen items excluded it
    is the popularity ranking.
    """
    below_one = _popularity_below_one(tokenizer, train_sequences)

    def score(batch: EvalBatch) -> torch.Tensor:
        scores = below_one.expand(len(batch.targets), -1).clone()
        rows, items = batch.seen_rows
        recency = torch.arange(1, rows.numel() + 1, dtype=torch.float32)  # history order: later is larger
        flat = scores.view(-1)
        flat.scatter_reduce_(0, rows * tokenizer.num_items + items, recency, reduce="amax")
        return scores

    return score


def content_similarity_scorer(
    tokenizer: EventTokenizer, train_sequences: pl.DataFrame, item_vectors: np.ndarray
) -> ScoreFn:
    """Items ranked by the cosine similarity of their content vector (e.g. ``text_vectors.tfidf_svd`` of their
    titles) to the mean vector of the user's history items: the bar for content-aware and cold-start models,
    which needs no interaction with the item at all. Popularity, scaled below any similarity step, breaks
    ties (items without content, users without a known item).

    ``item_vectors [num_items, dim]``: unit rows in the tokenizer's item order (zero rows: no content).
    """
    vectors = torch.as_tensor(item_vectors, dtype=torch.float32)
    tie_break = _popularity_below_one(tokenizer, train_sequences) * 1e-3

    def score(batch: EvalBatch) -> torch.Tensor:
        rows, items = batch.seen_rows
        profile = torch.zeros(len(batch.targets), vectors.shape[1]).index_add_(0, rows, vectors[items])
        profile = torch.nn.functional.normalize(profile, dim=1)
        return profile @ vectors.T + tie_break

    return score
