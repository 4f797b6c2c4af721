import numpy as np
import polars as pl
import pytest

from bertrec.data.sequences import add_sessions, build_sequences
from bertrec.data.splits import (
    LeakageError,
    Split,
    check_no_leakage,
    fold_validation_into_training,
    leave_one_out,
    temporal_split,
)
from bertrec.evaluation import encode_prompts
from bertrec.tokenization import EventTokenizer
from tests.conftest import make_events


def unique_item_log(n_users=30, seed=0) -> pl.DataFrame:
    """Every event has its own item, so seeing an item means seeing that exact event."""
    rng = np.random.default_rng(seed)
    rows, k = [], 0
    for u in range(n_users):
        t = float(rng.integers(0, 1000))
        for _ in range(int(rng.integers(1, 8))):
            t += float(rng.integers(0, 500))  # ties happen
            rows.append((f"u{u}", f"i{k}", "view", t))
            k += 1
    return make_events(rows)


def test_sequences_sort_by_time_with_stable_tie_break():
    events = make_events(
        [("u", "late", "v", 5.0), ("u", "tie1", "v", 1.0), ("u", "tie2", "v", 1.0), ("u", "first", "v", 0.0)]
    )
    assert build_sequences(events)["item_id"][0].to_list() == ["first", "tie1", "tie2", "late"]
    assert build_sequences(events, max_events=2)["item_id"][0].to_list() == ["tie2", "late"]


def test_sessions_split_on_inactivity_gap():
    events = make_events([("u", "a", "v", 0.0), ("u", "b", "v", 10.0), ("u", "c", "v", 5000.0), ("w", "d", "v", 1.0)])
    sessions = build_sequences(add_sessions(events, gap_seconds=1800), key="session_id")
    assert dict(zip(sessions["user_id"], sessions["item_id"].to_list())) == {
        "u#0": ["a", "b"],
        "u#1": ["c"],
        "w#0": ["d"],
    }


def test_leave_one_out_positions():
    split = leave_one_out(build_sequences(unique_item_log()))
    for row in split.test.iter_rows(named=True):
        valid = split.valid.filter(pl.col("user_id") == row["user_id"]).row(0, named=True)
        train = split.train.filter(pl.col("user_id") == row["user_id"]).row(0, named=True)
        assert row["item_id"] == train["item_id"] + [valid["target_item_id"]]  # test history = train + valid target
        assert valid["item_id"] == train["item_id"]
    assert split.stats["evaluated_users"] == split.test.height


@pytest.mark.parametrize("protocol", ["leave_one_out", "temporal"])
def test_final_fit_trains_on_validation_targets_and_never_on_test_targets(protocol):
    sequences = build_sequences(unique_item_log(60))
    split = leave_one_out(sequences) if protocol == "leave_one_out" else temporal_split(sequences)
    folded = fold_validation_into_training(split)
    assert folded.valid.height == 0 and folded.test.equals(split.test)
    assert folded.stats["validation_targets_trained"] == split.valid.height > 0
    trained = set(folded.train["event_index"].explode().to_list())
    assert set(split.valid["target_event_index"].to_list()) <= trained  # every validation target now trains
    assert set(split.train["event_index"].explode().to_list()) <= trained  # and nothing trained before is lost
    assert not set(split.test["target_event_index"].to_list()) & trained
    assert sorted(folded.train["user_id"].to_list()) == sorted(split.train["user_id"].to_list())
    if protocol == "leave_one_out":  # each validated user now trains on exactly their test history
        test_history = dict(zip(split.test["user_id"], split.test["item_id"].to_list()))
        for user, items in zip(folded.train["user_id"], folded.train["item_id"].to_list()):
            assert items == test_history.get(user, items)
    with pytest.raises(LeakageError):  # validation targets asked as test targets: they trained now, so refused
        check_no_leakage(Split(folded.train, folded.valid, split.valid))


@pytest.mark.parametrize("protocol", ["leave_one_out", "temporal"])
@pytest.mark.parametrize("layout", ["item", "time action item"])
def test_no_test_target_is_visible_to_the_model_in_training_or_validation(protocol, layout):
    sequences = build_sequences(unique_item_log(60))
    split = leave_one_out(sequences) if protocol == "leave_one_out" else temporal_split(sequences)
    assert split.test.height > 0
    # a tokenizer over *all* items, so a leaked test item could not hide behind the unknown-item token
    tokenizer = EventTokenizer.build(sequences, layout=layout, max_events=50)
    test_tokens = {tokenizer.token_id(f"<i:{i}>") for i in split.test["target_item_id"]}
    valid_tokens = {tokenizer.token_id(f"<i:{i}>") for i in split.valid["target_item_id"]}
    training_input = np.concatenate(tokenizer.encode_training_windows(split.train))
    for objective in ("masked", "next"):
        validation_input = np.concatenate(encode_prompts(tokenizer, split.valid, objective))
        assert not test_tokens & set(training_input.tolist())
        assert not test_tokens & set(validation_input.tolist())
        assert not valid_tokens & set(validation_input.tolist())
        assert not valid_tokens & set(training_input.tolist())
        test_prompts = encode_prompts(tokenizer, split.test, objective)
        for prompt, target in zip(test_prompts, split.test["target_item_id"]):
            assert tokenizer.token_id(f"<i:{target}>") not in prompt.tolist()


def test_leakage_check_fires_on_a_leaky_split():
    split = leave_one_out(build_sequences(unique_item_log()))
    leaky_train = split.train.vstack(split.test.select(split.train.columns))  # test histories include valid targets
    with pytest.raises(LeakageError, match="validation target events"):
        check_no_leakage(Split(leaky_train, split.valid, split.test))
    own = split.test.with_columns(pl.col("event_index").list.concat(pl.concat_list("target_event_index")))
    with pytest.raises(LeakageError, match="own history"):
        check_no_leakage(Split(split.train, split.valid, own))


def test_temporal_split_respects_cut_offs():
    split = temporal_split(build_sequences(unique_item_log(80)), valid_fraction=0.2, test_fraction=0.2)
    valid_start, test_start = split.stats["valid_start"], split.stats["test_start"]
    assert split.train["timestamp"].explode().max() < valid_start
    assert split.valid["target_timestamp"].min() >= valid_start and split.valid["target_timestamp"].max() < test_start
    assert split.test["target_timestamp"].min() >= test_start
    with pytest.raises(ValueError, match="sum below 1"):
        temporal_split(build_sequences(unique_item_log()), valid_fraction=0.6, test_fraction=0.5)


def test_target_action_split_holds_out_the_last_two_events_of_that_action():
    rows = [
        ("u", "a", "view", 1.0), ("u", "a", "purchase", 2.0), ("u", "b", "view", 3.0), ("u", "b", "purchase", 4.0),
        ("u", "c", "view", 5.0), ("u", "c", "purchase", 6.0), ("u", "d", "view", 7.0),
        ("w", "a", "purchase", 1.0), ("w", "b", "view", 2.0), ("w", "c", "purchase", 3.0),  # first buy: no history
        ("x", "a", "view", 1.0), ("x", "b", "purchase", 2.0),  # one purchase: trains only
        ("y", "e", "view", 1.0), ("y", "e", "purchase", 2.0), ("y", "f", "view", 3.0), ("y", "f", "purchase", 4.0),
    ]  # fmt: skip
    split = leave_one_out(build_sequences(make_events(rows)), target_action="purchase")
    assert sorted(split.test["user_id"]) == ["u", "y"] == sorted(split.valid["user_id"])
    test = {r["user_id"]: r for r in split.test.iter_rows(named=True)}
    valid = {r["user_id"]: r for r in split.valid.iter_rows(named=True)}
    assert (test["u"]["target_item_id"], test["u"]["item_id"]) == ("c", ["a", "a", "b", "b", "c"])
    assert (valid["u"]["target_item_id"], valid["u"]["item_id"]) == ("b", ["a", "a", "b"])
    assert (valid["y"]["target_item_id"], valid["y"]["item_id"]) == ("e", ["e"])
    train = dict(zip(split.train["user_id"], split.train["item_id"].to_list()))
    # evaluated users train up to their purchase before the validation target, so a validation history ends
    # with events never trained on (u's view of b; y's view of e), as a test history does; y trains on nothing
    assert train == {"u": ["a", "a"], "w": ["a", "b", "c"], "x": ["a", "b"]}
    assert split.stats["held_out_events"] == 2
    assert split.stats["train_only_users"] == 2
    with pytest.raises(ValueError, match="no user has two 'buy' events"):
        leave_one_out(build_sequences(make_events(rows)), target_action="buy")
