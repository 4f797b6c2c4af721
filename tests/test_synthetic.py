"""The built-in synthetic shop log: reproducible, realistic, fast, learnable in the intended order."""

import hashlib
import time

import numpy as np
import polars as pl
import pytest

from bertrec.baselines import markov_scorer, popularity_scorer
from bertrec.data.sequences import build_sequences
from bertrec.data.splits import leave_one_out
from bertrec.data.synthetic import SyntheticShopConfig, estimate_events, generate_shop_log
from bertrec.evaluation import evaluate_scorer
from bertrec.tokenization import EventTokenizer

SMALL = SyntheticShopConfig(n_users=600, n_items=800, n_categories=12)


@pytest.fixture(scope="module")
def log() -> pl.DataFrame:
    return generate_shop_log(SMALL)


@pytest.fixture(scope="module")
def default_log() -> tuple[pl.DataFrame, float]:
    start = time.perf_counter()
    events = generate_shop_log()
    return events, time.perf_counter() - start


def test_reproducible_and_seeded(log):
    assert generate_shop_log(SMALL).equals(log)
    other = generate_shop_log(SyntheticShopConfig(n_users=600, n_items=800, n_categories=12, seed=1))
    assert not other.equals(log)


def test_canonical_schema(log):
    assert log.columns == ["user_id", "item_id", "action", "timestamp", "event_index", "category"]
    assert log.schema == pl.Schema(
        dict(zip(log.columns, [pl.String, pl.String, pl.String, pl.Float64, pl.Int64, pl.String]))
    )
    assert log["event_index"].to_list() == list(range(log.height))
    assert set(log["action"].unique()) == {"view", "cart", "purchase"}
    assert log["user_id"].n_unique() == SMALL.n_users and log["user_id"].is_sorted()
    assert log["user_id"][0] == "u000000" and log["item_id"].str.contains(r"^i\d{5}$").all()
    assert log.group_by("item_id").agg(pl.col("category").n_unique())["category"].max() == 1


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
    gaps = log.select(pl.col("timestamp").diff().over("user_id")).drop_nulls()["timestamp"]
    assert (gaps > 0).all()  # rows are sorted by user then time, with no ties within a user
    assert (gaps < 600).mean() > 0.5 and (gaps > 86400).any()
    assert log["timestamp"].min() >= SMALL.start_timestamp


def test_transitions_are_directed(log):
    """Order matters: for frequent item pairs, A -> B is much more common than B -> A."""
    views = log.filter(pl.col("action") == "view")
    pairs = views.select(
        pl.col("item_id").alias("a"), pl.col("item_id").shift(-1).over("user_id").alias("b")
    ).drop_nulls()
    counts = pairs.filter(pl.col("a") != pl.col("b")).group_by("a", "b").len()
    both = counts.join(counts, left_on=["a", "b"], right_on=["b", "a"], how="left", suffix="_back")
    frequent = both.filter(pl.col("len") >= 5).fill_null(0)
    assert frequent.height > 50
    assert frequent["len"].sum() > 3 * frequent["len_back"].sum()


def test_structure_is_learnable(log):
    split = leave_one_out(build_sequences(log))
    tokenizer = EventTokenizer.build(split.train, layout="item")
    popularity = evaluate_scorer(popularity_scorer(tokenizer, split.train), tokenizer, split.test)
    markov = evaluate_scorer(markov_scorer(tokenizer, split.train), tokenizer, split.test)
    assert markov["hr@10"] > 2 * popularity["hr@10"]


def loo_hit_rates(events: pl.DataFrame) -> dict[str, float]:
    """HR@10 with each user's last event as target: popularity, Markov, and Markov + the user's categories.

    The third scorer knows nothing Markov does not, except the category mix of the user's whole history; it
    beating Markov shows the log holds long-term signal a sequence model can use and a Markov model cannot.
    """
    items = events["item_id"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    users = events["user_id"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    categories = events["category"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    n_items, last = items.max() + 1, np.r_[users[1:] != users[:-1], True]
    targets, previous, history = items[last], items[np.flatnonzero(last) - 1], ~last
    popularity = np.bincount(items[history], minlength=n_items).astype(np.float64)
    follows = history[:-1] & history[1:] & (users[1:] == users[:-1])
    transitions = np.zeros((n_items, n_items))
    np.add.at(transitions, (items[:-1][follows], items[1:][follows]), 1.0)
    item_category = np.zeros(n_items, dtype=np.int64)
    item_category[items] = categories
    user_mix = np.zeros((users.max() + 1, categories.max() + 1))
    np.add.at(user_mix, (users[history], categories[history]), 1.0)
    user_mix /= user_mix.sum(axis=1, keepdims=True)
    within = popularity / np.bincount(item_category, weights=popularity)[item_category]
    tie_break = popularity / (popularity.max() + 1.0)
    markov = transitions[previous] + tie_break
    interest = user_mix[users[last]][:, item_category] * within
    row_markov = transitions[previous] / np.maximum(transitions[previous].sum(axis=1, keepdims=True), 1.0)

    def hr10(scores: np.ndarray) -> float:
        target_scores = scores[np.arange(len(targets)), targets]
        return float(((scores > target_scores[:, None]).sum(axis=1) < 10).mean())

    return {
        "popularity": hr10(np.broadcast_to(tie_break, markov.shape)),
        "markov": hr10(markov),
        "markov+interest": hr10(row_markov + interest + 1e-6 * tie_break),
    }


def test_default_log_is_frozen_fast_and_learnable(default_log):
    events, seconds = default_log
    config = SyntheticShopConfig()
    frozen = (config.n_users, config.n_items, config.n_categories, config.zipf_exponent, config.seed)
    assert frozen == (4000, 3000, 30, 0.8, 0)
    # the committed tokenizer is built from this exact log: any change to the generator shows up here
    assert events.height == 184_616
    digest = hashlib.sha256()
    for column in ("user_id", "item_id", "action"):
        digest.update("\n".join(events[column].to_list()).encode())
    digest.update(events["timestamp"].to_numpy().tobytes())
    assert digest.hexdigest()[:16] == "7d919c4defddb9a6"
    assert seconds < 10  # about 0.2 s on a laptop core; generous for slow CI
    assert abs(estimate_events(config) - events.height) < 0.05 * events.height
    rates = loo_hit_rates(events)
    assert rates["markov"] > 2 * rates["popularity"]
    assert rates["markov+interest"] > 1.03 * rates["markov"]


def test_invalid_config_names_the_field():
    with pytest.raises(ValueError, match="purchase_prob=1.5"):
        generate_shop_log(SyntheticShopConfig(n_users=10, purchase_prob=1.5))
    with pytest.raises(ValueError, match="n_items=10"):
        generate_shop_log(SyntheticShopConfig(n_users=10, n_items=10, n_categories=30))
