"""A prepared folder's split read from disk a chunk at a time (bertrec.data.parquet_parts): evaluation and the
baselines' counts give exactly what they give on the split held in memory; item pairs counted a few at a time
(bertrec.pair_counts) equal the pairs counted at once."""

import numpy as np
import polars as pl
import pytest
import torch

from bertrec.baselines import item_counts, markov_scorer, popularity_scorer, recent_items_scorer
from bertrec.collators import TokenLayout
from bertrec.data.parquet_parts import ParquetParts, frame_chunks
from bertrec.data.sequences import build_sequences
from bertrec.data.splits import leave_one_out
from bertrec.data.synthetic import SyntheticShopConfig, generate_shop_log
from bertrec.evaluation import evaluate_model, evaluate_scorer
from bertrec.item_init import transition_counts
from bertrec.modeling import build_model
from bertrec.pair_counts import PairCounter
from bertrec.tokenization import EventTokenizer


@pytest.fixture(scope="module")
def split_on_disk(tmp_path_factory):
    """The split in memory and the same rows as ParquetParts of three files per part (as a bucketed folder)."""
    folder = tmp_path_factory.mktemp("parts")
    split = leave_one_out(build_sequences(generate_shop_log(SyntheticShopConfig(n_users=300, n_items=200))))
    parts = {}
    for name in ("train", "valid", "test"):
        frame = getattr(split, name)
        files = []
        for bucket, rows in enumerate(np.array_split(np.arange(frame.height), 3)):
            files.append(folder / f"{name}-{bucket:05d}.parquet")
            frame[rows].write_parquet(files[-1])
        parts[name] = ParquetParts(files)
    return split, parts


def test_chunks_hold_about_the_asked_events_and_every_row_once(split_on_disk):
    split, parts = split_on_disk
    assert parts["test"].height == split.test.height
    assert parts["train"].events() == int(split.train["item_id"].list.len().sum())
    for frame in (split.test, parts["test"]):
        chunks = list(frame_chunks(frame, events=400))
        per_row = parts["test"].events() / parts["test"].height
        assert len(chunks) > 3 and max(c.height for c in chunks) <= 400 / per_row + 1
        assert pl.concat(chunks).equals(split.test)  # in order, nothing lost or repeated


def test_evaluation_from_disk_in_chunks_equals_evaluation_in_memory(split_on_disk):
    split, parts = split_on_disk
    tokenizer = EventTokenizer.build(split.train, layout="time action item", max_events=20)
    torch.manual_seed(0)
    model = build_model(
        model_type="gpt2", vocab_size=tokenizer.vocab_size, max_positions=60, hidden_size=16, num_layers=1, num_heads=2
    )
    options = dict(ks=(5, 10), exclude_seen=True, details=True, batch_size=32)
    in_memory = evaluate_model(model, tokenizer, split.test, **options)
    from_disk = evaluate_model(model, tokenizer, parts["test"], chunk_events=500, **options)
    _assert_same(in_memory, from_disk)
    assert in_memory["repeat_targets_excluded"] > 0  # the counts summed over chunks are exercised
    for make in (popularity_scorer, markov_scorer, recent_items_scorer):
        expected = evaluate_scorer(make(tokenizer, split.train), tokenizer, split.valid, **options)
        got = evaluate_scorer(make(tokenizer, parts["train"]), tokenizer, parts["valid"], chunk_events=300, **options)
        _assert_same(expected, got)


def test_counts_from_disk_and_pairs_counted_in_pieces_equal_the_whole(split_on_disk):
    split, parts = split_on_disk
    tokenizer = EventTokenizer.build(split.train, layout="item", max_events=20)
    for action in (None, "purchase"):
        from_disk = item_counts(tokenizer, parts["train"], action)
        assert np.array_equal(from_disk, item_counts(tokenizer, split.train, action)) and from_disk.sum() > 0
    windows = tokenizer.encode_training_windows(split.train, min_events=2)
    layout = TokenLayout.from_tokenizer(tokenizer)
    pairs = [(w[:-1] - layout.item_offset, w[1:] - layout.item_offset) for w in windows]
    whole, pieces = PairCounter(layout.num_items, 10**9), PairCounter(layout.num_items, 50)  # dozens of merges
    for counter in (whole, pieces):
        for sources, targets in pairs:
            counter.add(sources, targets)
    expected = whole.result()
    assert all(np.array_equal(a, b) for a, b in zip(expected, pieces.result())) and expected[2].sum() > 1000
    assert all(np.array_equal(a, b) for a, b in zip(expected, transition_counts(windows, layout)))
    spread = transition_counts(windows, layout, max_pairs=int(expected[2].sum()) // 4)  # every 4th window or so
    assert 0.15 < spread[2].sum() / expected[2].sum() < 0.35


def _assert_same(expected: dict, got: dict) -> None:
    details, got_details = expected.pop("details"), got.pop("details")
    assert got == pytest.approx(expected, abs=1e-9)
    assert got_details["user_id"] == details["user_id"]
    assert np.array_equal(got_details["rank"], details["rank"])
    assert np.array_equal(got_details["top_items"], details["top_items"])
