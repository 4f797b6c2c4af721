"""A new period brings new items: give them tokens, embedding rows, and a sensible starting point.

Items are the last block of the vocabulary, so new items append after the known ones and every existing id
stays valid. A new item's row starts as the mean embedding of the known items it co-occurs with (its
neighbours within a few events in the new period's training sequences): an item bought beside phone cases
starts near phone cases, instead of at a random point that the frozen model has never scored. Items with
no known neighbour start at the mean item embedding.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import polars as pl
import torch
from transformers import PreTrainedModel

from bertrec.item_content import none_attributes
from bertrec.tokenization import EventTokenizer

logger = logging.getLogger(__name__)


def new_item_ids(tokenizer: EventTokenizer, train_sequences: pl.DataFrame, min_count: int = 1) -> list[str]:
    """Raw ids of training items without a token, most frequent first (ties by id), as the vocabulary is."""
    counts = train_sequences.select(pl.col("item_id").explode()).group_by("item_id").len()
    known = pl.Series("item_id", tokenizer.spec.items, dtype=pl.String).to_frame()
    fresh = counts.join(known, on="item_id", how="anti").filter(pl.col("len") >= min_count)
    return fresh.sort(["len", "item_id"], descending=[True, False])["item_id"].to_list()


def add_new_items(
    model: PreTrainedModel, tokenizer: EventTokenizer, train_sequences: pl.DataFrame, items: list[str], window: int = 2
) -> tuple[EventTokenizer, list[int]]:
    """Extend the tokenizer and the model's (tied) embeddings with ``items``; returns the new tokenizer and
    the token ids of the new rows. New output biases (BERT) are zero, exactly what a plain
    ``resize_token_embeddings(n, mean_resizing=False)`` gives, so a base resized that way loads the adapter."""
    spec = tokenizer.spec
    attributes = [*spec.item_attributes, *[none_attributes(tokenizer)] * len(items)] if spec.item_attributes else []
    extended = EventTokenizer(
        replace(spec, items=[*spec.items, *items], item_attributes=attributes), tokenizer.item_encoder
    )
    model.resize_token_embeddings(extended.vocab_size, mean_resizing=False)
    first = tokenizer.item_offset + tokenizer.num_items
    new_ids = list(range(first, first + len(items)))
    embeddings = model.get_input_embeddings().weight
    with torch.no_grad():
        known = embeddings[tokenizer.item_offset : first]
        sums, counts = _neighbour_sums(extended, train_sequences, known, num_old=tokenizer.num_items, window=window)
        fallback = known.mean(dim=0)
        rows = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], fallback)
        embeddings[first:] = rows.to(embeddings.dtype)
    logger.info(
        "added %d new items; %d start from co-occurring known items, %d from the mean item",
        len(items),
        int((counts > 0).sum()),
        int((counts == 0).sum()),
    )
    return extended, new_ids


def _neighbour_sums(
    tokenizer: EventTokenizer, sequences: pl.DataFrame, known: torch.Tensor, *, num_old: int, window: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each new item: the sum of known-item embeddings within ``window`` events of it, and their count."""
    index = tokenizer.item_indices(sequences["item_id"].explode())
    lengths = sequences["item_id"].list.len().to_numpy()
    user = np.repeat(np.arange(len(lengths)), lengths)
    num_new = tokenizer.num_items - num_old
    sums = torch.zeros((num_new, known.shape[1]), dtype=known.dtype)
    counts = torch.zeros(num_new, dtype=known.dtype)
    for shift in range(1, window + 1):
        for a, b in ((index[:-shift], index[shift:]), (index[shift:], index[:-shift])):
            same_user = user[: len(user) - shift] == user[shift:]
            pairs = same_user & (a >= num_old) & (b >= 0) & (b < num_old)
            target = torch.as_tensor(a[pairs] - num_old)
            sums.index_add_(0, target, known[torch.as_tensor(b[pairs])])
            counts.index_add_(0, target, torch.ones(len(target), dtype=known.dtype))
    return sums, counts
