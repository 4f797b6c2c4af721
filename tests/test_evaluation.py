import polars as pl
import pytest

from bertrec.baselines import markov_scorer, popularity_scorer, recent_items_scorer
from bertrec.data.sequences import build_sequences
from bertrec.data.splits import LeakageError, leave_one_out
from bertrec.evaluation import evaluate_scorer
from bertrec.tokenization import EventTokenizer
from tests.conftest import make_events


@pytest.fixture
def split():
    # popularity in training: a (4) > b (3) > c (2) > d (1); u1's test target is a seen item, u2's is unseen
    rows = [("u1", i, "v", float(t)) for t, i in enumerate(["a", "b", "c", "a", "x", "a"])]
    rows += [("u2", i, "v", float(t)) for t, i in enumerate(["a", "b", "c", "d", "b", "zzz"])]
    return leave_one_out(build_sequences(make_events(rows)))


def test_seen_items_excluded_and_counted(split):
    tokenizer = EventTokenizer.build(split.train, layout="item")
    score = popularity_scorer(tokenizer, split.train)
    plain = evaluate_scorer(score, tokenizer, split.test, ks=(1,))
    assert plain["hr@1"] == 0.5 and plain["unknown_targets"] == 1  # u1's target a is most popular; zzz unknown
    excluded = evaluate_scorer(score, tokenizer, split.test, ks=(1,), exclude_seen=True)
    assert excluded["hr@1"] == 0.0 and excluded["repeat_targets_excluded"] == 1


def test_markov_scores_follow_transitions(split):
    tokenizer = EventTokenizer.build(split.train, layout="item")
    one_user = split.test.filter(pl.col("user_id") == "u1")  # last item x; x was never followed in training
    metrics = evaluate_scorer(markov_scorer(tokenizer, split.train), tokenizer, one_user, ks=(1,))
    assert metrics["hr@1"] == 1.0  # falls back to popularity: a


def test_recent_items_rank_the_users_own_items_latest_first(split):
    tokenizer = EventTokenizer.build(split.train, layout="item")
    score = recent_items_scorer(tokenizer, split.train)
    metrics = evaluate_scorer(score, tokenizer, split.test, ks=(1, 4), details=True)
    names = {tuple(tokenizer.spec.items[i] for i in row) for row in metrics["details"]["top_items"]}
    # u1 saw a b c a x (x unknown): a, c, b, then d by popularity; u2 saw a b c d b: b, d, c, a
    assert names == {("a", "c", "b", "d"), ("b", "d", "c", "a")}
    assert metrics["hr@1"] == 0.5  # u1's target a is its latest known item; u2's is unknown
    excluded = evaluate_scorer(score, tokenizer, split.test, ks=(1,), exclude_seen=True)
    popular = evaluate_scorer(
        popularity_scorer(tokenizer, split.train), tokenizer, split.test, ks=(1,), exclude_seen=True
    )
    assert excluded["ndcg@1"] == popular["ndcg@1"]  # with seen items excluded it is the popularity ranking


def test_coverage_and_per_user_details(split):
    tokenizer = EventTokenizer.build(split.train, layout="item")
    popular = evaluate_scorer(popularity_scorer(tokenizer, split.train), tokenizer, split.test, ks=(1, 2), details=True)
    # every user gets the same list: top-1 covers one item, top-2 two items of the catalogue
    assert popular["coverage@1"] == pytest.approx(1 / tokenizer.num_items)
    assert popular["coverage@2"] == pytest.approx(2 / tokenizer.num_items)
    details = popular["details"]
    assert details["user_id"] == split.test["user_id"].to_list()  # in the order of the examples
    assert details["top_items"].shape == (split.test.height, 2)
    a = tokenizer.item_indices(pl.Series(["a"]))[0]
    assert (details["top_items"][:, 0] == a).all()
    by_user = dict(zip(details["user_id"], details["rank"]))
    assert by_user["u1"] == 1 and by_user["u2"] == float("inf")  # u2's target zzz is unknown
    markov = evaluate_scorer(markov_scorer(tokenizer, split.train), tokenizer, split.test, ks=(1,))
    assert markov["coverage@1"] >= popular["coverage@1"] and "details" not in markov


def test_evaluation_refuses_examples_whose_target_is_in_their_own_history(split):
    tokenizer = EventTokenizer.build(split.train, layout="item")
    # a hand-built leaky frame: u1's history is extended with its own target event (the usual off-by-one)
    leaky = split.test.with_columns(
        pl.when(pl.col("user_id") == "u1")
        .then(pl.concat_list("event_index", "target_event_index"))
        .otherwise(pl.col("event_index"))
        .alias("event_index")
    )
    with pytest.raises(LeakageError, match="1 of 2 examples have their target event in their own input history"):
        evaluate_scorer(popularity_scorer(tokenizer, split.train), tokenizer, leaky)
    # the same item seen earlier is a legitimate revisit, not a leak: u1's target item "a" is in its history
    assert evaluate_scorer(popularity_scorer(tokenizer, split.train), tokenizer, split.test)["users"] == 2


def test_scores_are_computed_in_blocks_of_bounded_size(split):
    tokenizer = EventTokenizer.build(split.train, layout="item")
    sizes = []

    def score(batch):
        sizes.append(len(batch.targets))
        return popularity_scorer(tokenizer, split.train)(batch)

    evaluate_scorer(score, tokenizer, split.test, batch_size=256, max_score_elements=tokenizer.num_items)
    assert sizes == [1, 1]  # one example per block when a block may hold one row of scores
