"""Recommender: raw ids in, raw ids out, identical to offline scoring; rules, fallbacks and embeddings, and
robustness to what serving callers send: very long histories, big batches, unknown items, malformed events."""

import random
import time

import numpy as np
import polars as pl
import pytest
import torch

import bertrec.recommend
from bertrec import transitions
from bertrec.collators import TokenLayout
from bertrec.evaluation import _batches, encode_prompts, model_scorer
from bertrec.modeling import build_model
from bertrec.recommend import Recommendations, Recommender
from bertrec.tokenization import DEFAULT_TIME_BOUNDARIES, EventTokenizer, EventTokenizerSpec
from tests.test_pretrain import load_split_from_run


@pytest.fixture(scope="module", params=["bert", "gpt2"])
def setup(request, pretrained):
    folder = pretrained[request.param]["dir"]
    recommender = Recommender.from_pretrained(str(folder))
    examples = load_split_from_run(folder).test.head(8)
    return recommender, examples


def history_of(row):
    return list(zip(row["item_id"], row["action"], row["timestamp"]))


def test_matches_offline_scoring(setup):
    recommender, examples = setup
    tokenizer = recommender.tokenizer
    prompts = encode_prompts(tokenizer, examples, recommender.objective)
    offline = model_scorer(recommender.model, tokenizer)(next(_batches(tokenizer, examples, prompts, 8)))
    for row, scores in zip(examples.iter_rows(named=True), offline):
        result = recommender.recommend(history_of(row), k=5, exclude_seen=False, now=row["target_timestamp"])
        assert result.items == [tokenizer.spec.items[i] for i in scores.topk(5).indices]
        assert np.allclose(result.scores, scores.topk(5).values.numpy(), atol=1e-5)


def test_rules_seen_items_unknown_items_and_fallback(setup):
    recommender, examples = setup
    row = examples.row(0, named=True)
    history = history_of(row)
    result = recommender.recommend(history, k=20)
    assert not set(result.items) & set(row["item_id"])  # seen items excluded by default
    assert result.items == recommender.recommend(history, k=20).items  # deterministic
    allowed = recommender.tokenizer.spec.items[100:110]
    assert set(recommender.recommend(history, k=20, allow=allowed, exclude_seen=False).items) <= set(allowed)
    denied = recommender.recommend(history, k=5, deny=result.items[:2]).items
    assert not set(denied) & set(result.items[:2]) and denied[:3] == result.items[2:5]
    with_unknown = recommender.recommend([*history, ("never-seen-item", "view", 1e10)], k=20)
    assert with_unknown.unknown_items_skipped == 1
    empty = recommender.recommend([], k=3)
    assert empty.fallback == "popularity" and empty.items == recommender.tokenizer.spec.items[:3]


def test_batch_equals_single_calls(setup):
    recommender, examples = setup
    histories = [history_of(r) for r in examples.iter_rows(named=True)][:4]
    batch = recommender.recommend_batch(histories, k=10)
    assert [b.items for b in batch] == [recommender.recommend(h, k=10).items for h in histories]


def test_embeddings_reproduce_scores(setup):
    recommender, examples = setup
    history = history_of(examples.row(0, named=True))
    users, items = recommender.user_embeddings([history]), recommender.item_embeddings()
    assert items.shape == (recommender.tokenizer.num_items, recommender.model.config.hidden_size)
    scores = users @ items.T
    bias = getattr(recommender.model.get_output_embeddings(), "bias", None)
    if bias is not None:
        offset = recommender.tokenizer.item_offset
        scores = scores + bias[offset : offset + len(items)].detach().numpy()
    # transition scores add the last item's successors' weighted counts (bertrec.transitions) ...
    batch = recommender._prompts([recommender._parse(history, 0)], None, None)
    last = batch["attention_mask"].sum(dim=1) - 1
    causal = recommender.objective == "next"
    layout = TokenLayout.from_tokenizer(recommender.tokenizer)
    successors, bonus = transitions.model_term(
        recommender.model, layout, batch["input_ids"], torch.tensor([0]), last, causal=causal
    )
    assert bonus.abs().sum() > 0
    np.add.at(scores[0], successors[0].numpy(), bonus[0].detach().numpy())
    # ... and repeat scores add to the history's own items only: with them excluded, that gives the ranking
    index = {item: i for i, item in enumerate(recommender.tokenizer.spec.items)}
    scores[0, [index[item] for item, _, _ in history if item in index]] = -np.inf
    top = [recommender.tokenizer.spec.items[i] for i in torch.as_tensor(scores[0]).topk(5).indices]
    assert top == recommender.recommend(history, k=5, exclude_seen=True).items


def test_recommend_recipe_writes_jsonl_and_csv(pretrained, tmp_path):
    import json

    from bertrec.recipes.recommend import main

    log = tmp_path / "histories.csv"
    log.write_text("user_id,item_id,timestamp\nalice,i00001,1\nalice,i00002,2\nbob,unknown,3\nbob,i00003,4\n")
    folder = str(pretrained["gpt2"]["dir"])
    assert (
        main(["--model_dir", folder, "--histories", str(log), "--output_file", str(tmp_path / "r.jsonl"), "--k", "3"])
        == 2
    )
    rows = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert [r["user_id"] for r in rows] == ["alice", "bob"] and all(len(r["items"]) == 3 for r in rows)
    assert rows[1]["unknown_items_skipped"] == 1
    main(["--model_dir", folder, "--histories", str(log), "--output_file", str(tmp_path / "r.csv"), "--k", "3"])
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[0] == "user_id,rank,item_id,score" and len(lines) == 7


# robustness: long histories, big batches, messy events, bad input ---------------------------------------------
def random_history(recommender, n: int, seed: int, start: float = 0.0) -> list[tuple[str, str, float]]:
    """``n`` known-item events one minute apart, so the most recent ``m`` events are unambiguous."""
    rng = random.Random(seed)
    items = recommender.tokenizer.spec.items
    return [(rng.choice(items), rng.choice(["view", "cart"]), start + 60.0 * i) for i in range(n)]


def assert_same(a, b, exact: bool = True):
    assert a.items == b.items and a.fallback == b.fallback
    assert a.unknown_items_skipped == b.unknown_items_skipped
    assert (a.scores == b.scores) if exact else np.allclose(a.scores, b.scores, atol=1e-5)


def test_long_histories_score_like_their_most_recent_events(setup, monkeypatch):
    recommender, _ = setup
    fit = recommender.tokenizer.spec.max_events - 1  # the prompt takes one event slot
    widths = []
    real_scores = bertrec.recommend.prompt_scores

    def spy(model, layout, input_ids, attention_mask):
        widths.append(input_ids.shape[1])
        return real_scores(model, layout, input_ids, attention_mask)

    monkeypatch.setattr(bertrec.recommend, "prompt_scores", spy)
    for n in (500, 5000):
        history = random_history(recommender, n, seed=n)
        shuffled = random.Random(1).sample(history, len(history))  # events are ordered by time, not by position
        started = time.perf_counter()
        long = recommender.recommend(shuffled, k=10, exclude_seen=False)
        assert time.perf_counter() - started < 2.0
        # one more event than fits: the first kept event keeps its real gap, as in the long history
        assert_same(long, recommender.recommend(history[-fit - 1 :], k=10, exclude_seen=False))
        # exclude_seen is a rule on the whole history, including events too old to be encoded
        seen = {item for item, _, _ in history}
        expected = recommender.recommend(history[-fit - 1 :], k=10, deny=seen)
        assert_same(recommender.recommend(shuffled, k=10), expected)
    tokens_per_event = recommender.tokenizer.spec.tokens_per_event
    assert max(widths) <= recommender.tokenizer.spec.max_events * tokens_per_event  # no 5,000-event tensor
    untimed = [(item, action, None) for item, action, _ in random_history(recommender, 300, seed=3)]
    assert_same(
        recommender.recommend(untimed, k=10, exclude_seen=False),  # no times: input order decides what is recent
        recommender.recommend(untimed[-fit - 1 :], k=10, exclude_seen=False),
    )


def test_batch_of_1000_matches_single_calls(setup):
    recommender, _ = setup
    rng = random.Random(0)
    histories = [random_history(recommender, rng.randint(1, 60), seed=i) for i in range(1000)]
    for i in range(0, 1000, 50):
        histories[i] = []
    for i in range(7, 1000, 50):
        histories[i] = [(f"unknown-{i}-{j}", "view", float(j)) for j in range(1 + i % 5)]
    for i in range(13, 1000, 50):
        histories[i] = [*histories[i], ("unknown-item", "view", 30.0), {"item": "other-unknown"}]
    started = time.perf_counter()
    batch = recommender.recommend_batch(histories, k=10)
    assert time.perf_counter() - started < 60
    assert len(batch) == 1000
    popular = recommender.tokenizer.spec.items[:10]
    for i in range(0, 1000, 50):
        assert batch[i] == Recommendations(popular, batch[i].scores, 0, "popularity")
    for i in range(7, 1000, 50):
        assert batch[i] == Recommendations(popular, batch[i].scores, 1 + i % 5, "popularity")
    for i in range(13, 1000, 50):
        assert batch[i].unknown_items_skipped == 2 and batch[i].fallback is None
    assert sum(r.fallback == "popularity" for r in batch) == 40
    sample = rng.sample(range(1000), 20) + [0, 7, 13, 999]
    for i in sample:
        assert_same(batch[i], recommender.recommend(histories[i], k=10), exact=False)
    small_chunks = recommender.recommend_batch(histories[:40], k=10, batch_size=7)
    for a, b in zip(small_chunks, batch[:40]):
        assert_same(a, b, exact=False)


def test_unknown_items_are_skipped_and_dict_events_work(setup):
    recommender, examples = setup
    history = history_of(examples.row(1, named=True))
    mixed = [event for known in history for event in (known, ("ghost", known[1], known[2]))]
    result = recommender.recommend(mixed, k=10)
    assert result.unknown_items_skipped == len(history) and result.fallback is None
    assert result.items == recommender.recommend(history, k=10).items
    as_dicts = [{"item": i, "action": a, "timestamp": t} for i, a, t in history]
    assert_same(recommender.recommend(as_dicts, k=10), recommender.recommend(history, k=10))
    bare = recommender.recommend([{"item": i} for i, _, _ in history], k=10)  # no action, no time: input order
    assert bare.fallback is None and len(bare.items) == 10 and not set(bare.items) & {i for i, _, _ in history}
    only_unknown = recommender.recommend([("ghost", "view", 1.0), {"item": "ghost-2"}], k=4)
    assert only_unknown.fallback == "popularity" and only_unknown.unknown_items_skipped == 2
    assert only_unknown.items == recommender.tokenizer.spec.items[:4]


def test_same_inputs_give_identical_results(setup, pretrained):
    recommender, examples = setup
    histories = [history_of(r) for r in examples.iter_rows(named=True)] + [[], [("ghost", "view", 1.0)]]
    first = recommender.recommend_batch(histories, k=15)
    again = recommender.recommend_batch(histories, k=15)
    reloaded = Recommender.from_pretrained(str(pretrained[recommender.model.config.model_type]["dir"]))
    for a, b, c in zip(first, again, reloaded.recommend_batch(histories, k=15)):
        assert_same(a, b)
        assert_same(a, c)


@pytest.mark.parametrize("k", [0, -3, 2.5, True])
def test_bad_k_is_refused(setup, k):
    with pytest.raises(ValueError, match=r"\bk must be a positive integer"):
        setup[0].recommend([], k=k)


@pytest.mark.parametrize(
    "bad, message",
    [
        (("i", "view"), "event 1"),
        (("i", "view", 1.0, "extra"), "event 1"),
        ("i00001", "event 1"),
        ({"action": "view"}, "event 1: dict event .* has no 'item'"),
        (("i", "view", "yesterday"), "event 1: timestamp must be a finite number"),
        (("i", "view", float("nan")), "event 1: timestamp must be a finite number"),
    ],
)
def test_malformed_events_name_the_event_and_the_expected_shape(setup, bad, message):
    recommender, _ = setup
    with pytest.raises(ValueError, match=f"history 0, {message}") as error:
        recommender.recommend([("i", "view", 0.0), bad], k=3)
    assert "(item, action, timestamp)" in str(error.value) or "timestamp must be" in str(error.value)
    with pytest.raises(ValueError, match="history 2, event 0"):
        recommender.recommend_batch([[], [("i", "view", 0.0)], [bad]], k=3)


def test_unknown_ids_in_allow_and_deny_are_ignored(setup):
    recommender, examples = setup
    history = history_of(examples.row(0, named=True))
    allowed = recommender.tokenizer.spec.items[200:205]
    with_ghosts = recommender.recommend(history, k=10, allow=[*allowed, "ghost"], exclude_seen=False)
    assert_same(with_ghosts, recommender.recommend(history, k=10, allow=allowed, exclude_seen=False))
    assert sorted(with_ghosts.items) == sorted(allowed)  # fewer allowed items than k: all of them, no padding
    assert_same(recommender.recommend(history, k=10, deny=["ghost"]), recommender.recommend(history, k=10))
    assert recommender.recommend(history, k=10, allow=["ghost"]).items == []
    with pytest.raises(ValueError, match="allow must be a collection"):
        recommender.recommend(history, allow="i00001")


def test_now_is_checked_and_ignored_by_layouts_without_time(setup):
    recommender, examples = setup
    history = history_of(examples.row(0, named=True))
    plain = recommender.recommend(history, k=10)
    if "time" in recommender.tokenizer.spec.fields:  # the default layout: "now" is the gap to the predicted event
        later = recommender.recommend(history, k=10, now=history[-1][2] + 30 * 86400.0)
        assert later.scores != plain.scores
    else:
        for now in (0.0, history[-1][2] + 86400.0, 1e12):
            assert_same(recommender.recommend(history, k=10, now=now), plain)
    with pytest.raises(ValueError, match="now: timestamp must be a finite number"):
        recommender.recommend(history, now="tomorrow")


@pytest.mark.parametrize("model_type", ["bert", "gpt2"])
def test_time_layout_truncation_now_and_action(model_type):
    """A tiny untrained time-layout model: long histories still encode the first kept event's real time gap,
    and ``now`` and ``action`` reach the prompt."""
    tokenizer = EventTokenizer(
        EventTokenizerSpec("time action item", list(DEFAULT_TIME_BOUNDARIES), ["cart", "view"], list("abcdefgh"), 6)
    )
    torch.manual_seed(0)
    model = build_model(
        model_type=model_type, vocab_size=tokenizer.vocab_size, max_positions=18, hidden_size=16, num_layers=1
    )
    recommender = Recommender(model, tokenizer)
    gaps = [2.0, 40.0, 700.0, 20000.0, 300000.0]
    times = np.cumsum([gaps[i % 5] for i in range(40)]).tolist()
    history = [("abcdefgh"[i % 8], ["view", "cart"][i % 3 == 0], t) for i, t in enumerate(times)]
    now = times[-1] + 5000.0
    examples = pl.DataFrame(
        {
            "item_id": [[e[0] for e in history]],
            "action": [[e[1] for e in history]],
            "timestamp": [times],
            "event_index": [list(range(len(history)))],
            "target_timestamp": [now],
            "target_item_id": ["a"],
        }
    )
    prompts = encode_prompts(tokenizer, examples, recommender.objective)
    offline = model_scorer(model, tokenizer)(next(_batches(tokenizer, examples, prompts, 1)))[0]
    result = recommender.recommend(history, k=8, exclude_seen=False, now=now)
    assert result.items == [tokenizer.spec.items[i] for i in offline.topk(8).indices]
    assert np.allclose(result.scores, offline.topk(8).values.numpy(), atol=1e-5)
    later = recommender.recommend(history, k=8, exclude_seen=False, now=now + 30 * 86400.0)
    assert later.scores != result.scores  # another time bucket, another prompt
    default = recommender.recommend(history, k=8, exclude_seen=False)
    assert_same(default, recommender.recommend(history, k=8, exclude_seen=False, now=times[-1]))
    assert recommender.recommend(history, k=8, exclude_seen=False, action="cart").scores != default.scores
    with pytest.raises(ValueError, match="action 'buy' is not in the model's vocabulary"):
        recommender.recommend(history, action="buy")


def test_concurrent_calls_from_threads_match_serial_calls(setup):
    """A web server calls one Recommender from several threads: results must equal serial calls."""
    from concurrent.futures import ThreadPoolExecutor

    recommender, _ = setup
    histories = [random_history(recommender, 1 + i % 30, seed=100 + i) for i in range(64)]
    serial = [recommender.recommend(h, k=10) for h in histories]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda h: recommender.recommend(h, k=10), histories))
        batched = list(pool.map(lambda i: recommender.recommend_batch(histories[i : i + 8], k=10), range(0, 64, 8)))
    for a, b in zip(threaded, serial, strict=True):
        assert_same(a, b, exact=False)
    for a, b in zip([r for chunk in batched for r in chunk], serial, strict=True):
        assert_same(a, b, exact=False)
