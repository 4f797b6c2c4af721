"""Recommender: raw ids in, raw ids out, identical to offline scoring; rules, fallbacks and embeddings."""

import numpy as np
import pytest
import torch

from bertrec.evaluation import _batches, encode_prompts, model_scorer
from bertrec.recommend import Recommender
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
    top = [recommender.tokenizer.spec.items[i] for i in torch.as_tensor(scores[0]).topk(5).indices]
    assert top == recommender.recommend(history, k=5, exclude_seen=False).items


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
