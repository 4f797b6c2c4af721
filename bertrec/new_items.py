"""A new period brings new items: give them tokens, embedding rows, and a sensible starting point.

Items are the last block of the vocabulary, so new items append after the known ones and every existing id
stays valid. A new item's row starts as the mean embedding of the known items it co-occurs with (its
neighbours within a few events in the new period's training sequences): an item bought beside phone cases
starts near phone cases, instead of at a random point that the frozen model has never scored. Items with
no known neighbour start at the mean item embedding. On a base trained with item features, a new item whose
content is known starts from the row its content composes, as a cold-start item's does.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import polars as pl
import torch
from transformers import PreTrainedModel

from bertrec.item_content import add_items_from_content, distinct_item_layers, none_attributes, read_features_for
from bertrec.tokenization import EventTokenizer

logger = logging.getLogger(__name__)


def new_item_ids(tokenizer: EventTokenizer, train_sequences: pl.DataFrame, min_count: int = 1) -> list[str]:
    """Raw ids of training items without a token, most frequent first (ties by id), as the vocabulary is."""
    counts = train_sequences.select(pl.col("item_id").explode()).group_by("item_id").len()
    known = pl.Series("item_id", tokenizer.spec.items, dtype=pl.String).to_frame()
    fresh = counts.join(known, on="item_id", how="anti").filter(pl.col("len") >= min_count)
    return fresh.sort(["len", "item_id"], descending=[True, False])["item_id"].to_list()


def new_item_features(data_args, tokenizer: EventTokenizer) -> pl.DataFrame | None:
    """The content of ``--item_features`` (by default the file the base was pretrained with) in the base's
    columns, for the new items of a base trained with item features; None otherwise."""
    if not (data_args.item_features and tokenizer.spec.item_attributes):
        return None
    return read_features_for(tokenizer, data_args.item_features)


def add_new_items(
    model: PreTrainedModel,
    tokenizer: EventTokenizer,
    train_sequences: pl.DataFrame,
    items: list[str],
    window: int = 2,
    features: pl.DataFrame | None = None,
) -> tuple[EventTokenizer, list[int]]:
    """Extend the tokenizer and the model's item rows (input, and output when untied) with ``items``; returns
    the new tokenizer and the token ids of the new rows. New output biases (BERT) are zero, exactly what a plain
    ``resize_token_embeddings(n, mean_resizing=False)`` gives, so a base resized that way loads the adapter.

    With ``features`` (``item_id`` and the base's attribute and text columns) and a base trained with item
    features, the new items that have a row there start from their content, composed as a cold-start item's
    row is (``item_content.add_items_from_content``), since that is the row the base learnt to read; they are
    then trained from their interactions like the rest, so they join the trained items' pool. The others start
    from their co-occurring known items, with ``[NONE]`` attributes and no text."""
    described: list[str] = []
    if features is not None and tokenizer.spec.item_attributes:
        wanted = set(items)
        described = [i for i in features["item_id"].unique(maintain_order=True).to_list() if i in wanted]
    first = tokenizer.item_offset + tokenizer.num_items
    if described:
        tokenizer, _ = add_items_from_content(model, tokenizer, features.filter(pl.col("item_id").is_in(described)))
        tokenizer = EventTokenizer(replace(tokenizer.spec, items_from_content=0), tokenizer.item_encoder)
    rest = [item for item in items if item not in set(described)]
    if rest:
        tokenizer = _add_from_neighbours(model, tokenizer, train_sequences, rest, window)
    logger.info("added %d new items: %d start from their content", len(items), len(described))
    return tokenizer, list(range(first, tokenizer.item_offset + tokenizer.num_items))


def _add_from_neighbours(
    model: PreTrainedModel, tokenizer: EventTokenizer, train_sequences: pl.DataFrame, items: list[str], window: int
) -> EventTokenizer:
    """``items`` appended with rows averaged from the known items they co-occur with (the mean item for those
    with none); with item features they hold ``[NONE]`` attributes and a zero text vector."""
    spec, encoder = tokenizer.spec, tokenizer.item_encoder
    attributes = [*spec.item_attributes, *[none_attributes(tokenizer)] * len(items)] if spec.item_attributes else []
    if encoder is not None and encoder.item_vectors is not None:  # one text vector per item, zero without text
        blank = np.zeros((len(items), encoder.item_vectors.shape[1]), dtype=encoder.item_vectors.dtype)
        encoder = replace(encoder, item_vectors=np.concatenate([encoder.item_vectors, blank]))
    extended = EventTokenizer(replace(spec, items=[*spec.items, *items], item_attributes=attributes), encoder)
    model.resize_token_embeddings(extended.vocab_size, mean_resizing=False)
    first = tokenizer.item_offset + tokenizer.num_items
    with torch.no_grad():
        # an untied output layer's new rows start from its own known rows: its columns ride beside the input's
        weights = [layer.weight for layer in distinct_item_layers(model)]
        known = torch.cat([weight[tokenizer.item_offset : first] for weight in weights], dim=1)
        sums, counts = _neighbour_sums(extended, train_sequences, known, num_old=tokenizer.num_items, window=window)
        rows = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], known.mean(dim=0))
        for weight, part in zip(weights, rows.split([weight.shape[1] for weight in weights], dim=1)):
            weight[first:] = part.to(weight.dtype)
    logger.info(
        "%d new items start from co-occurring known items, %d from the mean item",
        int((counts > 0).sum()),
        int((counts == 0).sum()),
    )
    return extended


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
