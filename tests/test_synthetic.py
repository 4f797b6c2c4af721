"""The built-in synthetic shop log: reproducible, realistic in shape, and learnable."""

import polars as pl
import pytest

from bertrec.baselines import markov_scorer, popularity_scorer
from bertrec.data.sequences import build_sequences
from bertrec.data.splits import leave_one_out
from bertrec.data.synthetic import SyntheticShopConfig, generate_shop_log
from bertrec.evaluation import evaluate_scorer
from bertrec.tokenization import EventTokenizer

SMALL = SyntheticShopConfig(n_users=600, n_items=800, n_categories=12)


@pytest.fixture(scope="module")
def log() -> pl.DataFrame:
    return generate_shop_log(SMALL)


def test_reproducible_and_seeded(log):
    assert generate_shop_log(SMALL).equals(log)
    other = generate_shop_log(SyntheticShopConfig(n_users=600, n_items=800, n_categories=12, seed=1))
    assert not other.equals(log)


def test_canonical_schema(log):
    assert log.columns[:5] == ["user_id", "item_id", "action", "timestamp", "event_index"]
    assert [log[c].dtype for c in log.columns[:5]] == [pl.String, pl.String, pl.String, pl.Float64, pl.Int64]
    assert log["event_index"].to_list() == list(range(log.height))
    assert set(log["action"].unique()) == {"view", "cart", "purchase"}
    assert "category" in log.columns


def test_funnel_order(log):
    ordered = log.sort(["user_id", "timestamp", "event_index"])
    seen_views, seen_carts = set(), set()
    for user, item, action in ordered.select("user_id", "item_id", "action").iter_rows():
        if action == "cart":
            assert (user, item) in seen_views
            seen_carts.add((user, item))
        elif action == "purchase":
            assert (user, item) in seen_carts
        else:
            seen_views.add((user, item))
    assert 0.005 < (log["action"] == "purchase").mean() < 0.1


def test_popularity_is_skewed_and_gaps_are_realistic(log):
    counts = log.group_by("item_id").len().sort("len", descending=True)["len"]
    assert counts.head(len(counts) // 10).sum() / counts.sum() > 0.3
    gaps = (
        log.sort(["user_id", "timestamp", "event_index"])
        .select(pl.col("timestamp").diff().over("user_id"))
        .drop_nulls()
    )
    assert (gaps["timestamp"] >= 0).all()
    assert (gaps["timestamp"] < 600).mean() > 0.5 and (gaps["timestamp"] > 86400).any()


def test_structure_is_learnable(log):
    split = leave_one_out(build_sequences(log))
    tokenizer = EventTokenizer.build(split.train, layout="item")
    popularity = evaluate_scorer(popularity_scorer(tokenizer, split.train), tokenizer, split.test)
    markov = evaluate_scorer(markov_scorer(tokenizer, split.train), tokenizer, split.test)
    assert markov["hr@10"] > 2 * popularity["hr@10"]


def test_default_size_is_frozen():
    config = SyntheticShopConfig()
    assert (config.n_users, config.n_items, config.zipf_exponent, config.seed) == (4000, 3000, 0.8, 0)
