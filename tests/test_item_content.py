"""Item content: attribute tokens composed into item embeddings, folded into a stock model when saved."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from bertrec import added_item_weighing, item_content
from bertrec.added_item_weighing import (
    SHARE_FACTORS,
    SLOPES,
    intercept_for_share,
    one_standard_error_choice,
    with_weighing,
    within_known_loss,
)
from bertrec.modeling import build_model, item_logits
from bertrec.tokenization import EventTokenizer

FEATURES = pl.DataFrame(
    {
        "item_id": ["a", "b", "c", "d", "zz"],
        "brand": ["Acme", "Acme", None, "Solo", "Acme"],
        "categories": [["Pens", "Ink"], ["Pens"], ["Paper"], ["Paper"], ["Toner"]],
    }
)


def _tokenizer(small_sequences, layout: str = "item") -> EventTokenizer:
    return EventTokenizer.build(small_sequences, layout=layout, max_events=8)


def test_attribute_vocabulary_counts_rare_and_missing_values_as_none():
    values, rows, report = item_content.attribute_table(["a", "b", "c", "d", "e"], FEATURES, ["brand", "categories"])
    # "Solo", "Ink" and "Toner" are held by one catalogue item each ("zz" is not in the catalogue): [NONE]
    assert values == {"brand": ["[NONE]", "Acme"], "categories": ["[NONE]", "Paper", "Pens"]}
    none_brand, acme, none_category, paper, pens = range(5)
    assert rows == [
        [acme, pens],
        [acme, pens],
        [none_brand, paper],
        [none_brand, paper],
        [none_brand, none_category],  # "e" has no feature row at all
    ]
    assert report["items_without_features"] == 1
    assert report["columns"]["brand"] == {"values": 1, "rare_values_dropped": 1, "items_with_none": 3}
    assert report["columns"]["categories"]["rare_values_dropped"] == 1


def test_missing_feature_column_is_named():
    with pytest.raises(ValueError, match="no column.*genre"):
        item_content.attribute_table(["a"], FEATURES, ["genre"])


def test_attribute_tokens_sit_before_the_items_and_round_trip(small_sequences, tmp_path):
    plain = _tokenizer(small_sequences)
    tokenizer, _ = item_content.with_attributes(plain, FEATURES, ["brand", "categories"])
    assert tokenizer.item_offset == plain.item_offset + 4 and tokenizer.num_items == plain.num_items
    assert tokenizer.inverse_vocab[tokenizer.attribute_offset : tokenizer.item_offset] == [
        "<f:brand:[NONE]>",
        "<f:brand:Acme>",
        "<f:categories:[NONE]>",
        "<f:categories:Pens>",
    ]  # the catalogue is a, b, c: "Paper" is c's alone there
    tokenizer.save(tmp_path)
    loaded = EventTokenizer.load(tmp_path)
    assert loaded.spec == tokenizer.spec and loaded.vocab == tokenizer.vocab
    hf = AutoTokenizer.from_pretrained(tmp_path)
    assert hf.convert_tokens_to_ids("<f:brand:Acme>") == tokenizer.attribute_offset + 1


def test_a_value_cannot_spell_the_none_token():
    table = pl.DataFrame({"item_id": ["a", "b"], "brand": ["[NONE]", "[NONE]"]})
    values, _, _ = item_content.attribute_table(["a", "b"], table, ["brand"])
    tokenizer = EventTokenizer.from_counts(pl.DataFrame({"item_id": ["a", "b"], "len": [2, 1]}), ["v"], layout="item")
    tokenizer, _ = item_content.with_attributes(tokenizer, table, ["brand"])
    assert tokenizer.inverse_vocab[tokenizer.attribute_offset : tokenizer.item_offset] == [
        "<f:brand:[NONE]>",
        "<f:brand:%5BNONE%5D>",
    ]


def _model(tokenizer: EventTokenizer, model_type: str, tie: bool = True):
    torch.manual_seed(0)
    return build_model(
        model_type=model_type, vocab_size=tokenizer.vocab_size, max_positions=16, hidden_size=8, num_layers=1,
        num_heads=2, intermediate_size=None, dropout=0.0, attention_dropout=0.0, pad_token_id=tokenizer.pad_id,
        attn_implementation="sdpa", tie_embeddings=tie,
    )  # fmt: skip


@pytest.mark.parametrize(("model_type", "tie"), [("gpt2", True), ("gpt2", False), ("bert", True)])
def test_item_rows_are_id_plus_mean_of_attributes_and_train_them(small_sequences, model_type, tie):
    tokenizer, _ = item_content.with_attributes(_tokenizer(small_sequences), FEATURES, ["brand", "categories"])
    model = _model(tokenizer, model_type, tie)
    raw = model.get_input_embeddings().weight.detach().clone()
    item_content.attach(model, tokenizer)
    composed = model.get_input_embeddings().weight
    for index, attributes in enumerate(tokenizer.spec.item_attributes):
        row = tokenizer.item_offset + index
        expected = raw[row] + raw[[tokenizer.attribute_offset + a for a in attributes]].mean(dim=0)
        assert torch.allclose(composed[row], expected, atol=1e-6)
    assert torch.equal(composed[: tokenizer.item_offset], raw[: tokenizer.item_offset])  # non-items unchanged
    if tie:
        assert model.get_output_embeddings().weight.data_ptr() != raw.data_ptr()  # composed, not the raw rows
    ids = torch.tensor([[tokenizer.item_offset, tokenizer.item_offset + 1]])
    hidden = model.base_model(input_ids=ids).last_hidden_state
    if model_type == "bert":
        hidden = model.cls.predictions.transform(hidden)
    item_logits(model, hidden[:, -1], tokenizer.item_offset, tokenizer.num_items)[0, 2].backward()
    grad = model.get_input_embeddings().parametrizations.weight.original.grad
    acme = tokenizer.attribute_offset + 1
    assert grad[acme].abs().sum() > 0  # the attribute row learns from the items that hold it


def test_id_dropout_reads_a_share_of_items_by_content_alone_in_training_only(small_sequences, tmp_path):
    """--item_id_dropout: in training each read of the item rows leaves a seeded share of ids out (those rows are
    their content alone, as an item added from content is); evaluation and the saved model keep every id."""
    tokenizer, _ = item_content.with_attributes(_tokenizer(small_sequences), FEATURES, ["brand", "categories"])
    model = _model(tokenizer, "gpt2")
    module = item_content.attach(model, tokenizer, id_dropout=0.5)
    raw = model.get_input_embeddings().parametrizations.weight.original.detach().clone()
    items = slice(tokenizer.item_offset, tokenizer.item_offset + tokenizer.num_items)
    with torch.no_grad():
        content, full = module.content(raw), raw[items] + module.content(raw)
    model.train()
    dropped = []
    for seed in range(20):
        torch.manual_seed(seed)
        rows = model.get_input_embeddings().weight[items].detach()
        is_content = torch.isclose(rows, content, atol=1e-6).all(dim=1)
        assert (is_content | torch.isclose(rows, full, atol=1e-6).all(dim=1)).all()  # each row: one or the other
        dropped.append(is_content.float().mean().item())
        torch.manual_seed(seed)
        assert torch.equal(model.get_input_embeddings().weight[items].detach(), rows)  # seeded: replayable
    assert 0.3 < sum(dropped) / len(dropped) < 0.7
    with item_content.folded(model):  # saved in training mode: every id is in the saved rows
        saved = model.get_input_embeddings().weight.detach()[items].clone()
    assert torch.allclose(saved, full, atol=1e-6) and module.training
    model.eval()
    assert torch.allclose(model.get_input_embeddings().weight[items].detach(), full, atol=1e-6)
    semantic, _ = item_content.with_attributes(_tokenizer(small_sequences), FEATURES, ["brand"], id_rows=False)
    with pytest.raises(ValueError, match="id rows"):
        item_content.attach(_model(semantic, "gpt2"), semantic, id_dropout=0.1)


@pytest.mark.parametrize(("model_type", "auto"), [("gpt2", AutoModelForCausalLM), ("bert", AutoModelForMaskedLM)])
def test_saved_model_is_a_stock_model_scoring_items_as_trained(small_sequences, tmp_path, model_type, auto):
    tokenizer, _ = item_content.with_attributes(_tokenizer(small_sequences), FEATURES, ["brand", "categories"])
    model = _model(tokenizer, model_type)
    item_content.attach(model, tokenizer)
    with torch.no_grad():  # make the composition matter: distinct attribute rows
        original = model.get_input_embeddings().parametrizations.weight.original
        original[tokenizer.attribute_offset : tokenizer.item_offset] += 3.0 * torch.randn(4, 8)
    model.eval()
    ids = torch.tensor([[tokenizer.item_offset + 2, tokenizer.item_offset, tokenizer.item_offset + 1]])
    with torch.no_grad():
        trained = model(input_ids=ids).logits[0, -1, tokenizer.item_offset :]
    raw_before = original.detach().clone()
    with item_content.folded(model):
        model.save_pretrained(tmp_path)
    assert item_content.attached(model) and torch.equal(original, raw_before)  # training state restored
    reloaded = auto.from_pretrained(tmp_path).eval()  # no unexpected or missing keys
    with torch.no_grad():
        stock = reloaded(input_ids=ids).logits[0, -1, tokenizer.item_offset :]
    assert torch.allclose(stock, trained, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits[0, -1, tokenizer.item_offset :], trained)


@pytest.fixture(scope="module")
def content_run(tmp_path_factory) -> dict:
    """A tiny next-event model trained by the pretrain recipe on a generated log with a brand per item."""
    import random

    from bertrec.recipes.pretrain import main

    folder = tmp_path_factory.mktemp("content")
    rng = random.Random(0)
    lines = ["user_id,item_id,timestamp"]
    for user in range(60):
        start = rng.randrange(30)
        lines += [f"u{user},i{(start + step) % 30},{step}" for step in range(rng.randint(4, 9))]
    (folder / "events.csv").write_text("\n".join(lines) + "\n")
    rows = [f"i{i},brand{i % 4},shelf{i % 3}" for i in range(28)]  # i28, i29: no features
    (folder / "items.csv").write_text("item_id,brand,shelf\n" + "\n".join(rows) + "\n")
    output = folder / "run"
    metrics = main([
        "--dataset", str(folder / "events.csv"), "--item_features", str(folder / "items.csv"),
        "--item_feature_columns", "brand", "--layout", "item", "--model_type", "gpt2", "--hidden_size", "16",
        "--num_layers", "1", "--num_heads", "2", "--max_events", "10", "--num_epochs", "2", "--batch_size", "16",
        "--repeat_scores", "false", "--transition_scores", "false", "--tie_embeddings", "true",
        "--item_init", "random", "--output_dir", str(output),
    ])  # fmt: skip
    return {"dir": output, "metrics": metrics, "events": folder / "events.csv"}


def test_pretrain_recipe_reads_item_features_and_saves_a_stock_model(content_run):
    """--item_features end to end: the attribute vocabulary is built, training composes item rows, and the
    saved folder is a plain stock model (scored by plain transformers as bertrec scores it) whose card and
    metrics name the item-token scheme."""
    from bertrec.args import DataArguments
    from bertrec.evaluation import evaluate_model
    from bertrec.modeling import load_model
    from bertrec.recipes.common import prepare_data

    output, metrics = content_run["dir"], content_run["metrics"]
    attributes = metrics["data"]["item_attributes"]
    assert attributes["columns"] == {"brand": {"values": 4, "items_with_value": attributes["items"] - 2}}
    card = (output / "README.md").read_text()
    assert "Item tokens: id + mean of attribute tokens" in card and "`brand` (4 values" in card
    tokenizer = EventTokenizer.load(output)
    assert list(tokenizer.spec.attributes) == ["brand"]  # only the asked column
    model = load_model(str(output)).eval()  # a plain GPT-2: no parametrization, no extra keys
    assert not item_content.attached(model)
    split = prepare_data(DataArguments(dataset=str(content_run["events"]))).split
    again = evaluate_model(model, tokenizer, split.test, ks=(10,), batch_size=64)
    assert again["ndcg@10"] == pytest.approx(metrics["test"]["ndcg@10"], abs=1e-6)


def test_recommender_ranks_a_new_item_from_its_content_alone(content_run):
    """Cold start: an item with no interactions gets a row composed from its brand (plus the known items'
    average id part) and is recommended at once; an id-only model says it cannot do this."""
    from bertrec.recommend import Recommender

    recommender = Recommender.from_pretrained(str(content_run["dir"]))
    tokenizer = recommender.tokenizer
    weight = recommender.model.get_output_embeddings().weight.detach().clone()
    offset, n = tokenizer.item_offset, tokenizer.num_items
    content = item_content.composition(tokenizer).content(weight)
    id_part = (weight[offset : offset + n] - content).mean(dim=0)
    brand1 = tokenizer.attribute_offset + tokenizer.spec.attributes["brand"].index("brand1")
    new = pl.DataFrame({"item_id": ["fresh", "i3", "odd"], "brand": ["brand1", "brand3", "unheard-of"]})
    assert recommender.add_items(new) == ["fresh", "odd"]  # i3 is known: left as it is
    assert recommender.tokenizer.spec.items_from_content == 2  # scored in their own pool (pooled_scores)
    rows = recommender.item_embeddings()
    assert rows.shape[0] == n + 2
    assert torch.allclose(torch.as_tensor(rows[n]), weight[brand1] + id_part, atol=1e-5)
    none_row = weight[tokenizer.attribute_offset]  # an unknown value counts as [NONE]
    assert torch.allclose(torch.as_tensor(rows[n + 1]), none_row + id_part, atol=1e-5)
    ranked = recommender.recommend([("i1", "interact", 0.0), ("fresh", "interact", 1.0)], k=n + 2)
    assert "odd" in ranked.items and "fresh" not in ranked.items  # new items rank; seen ones stay excluded
    everything = recommender.recommend([("i1", "interact", 0.0)], k=n + 2, exclude_seen=False)
    assert torch.tensor(everything.scores).exp().sum() == pytest.approx(1.0, abs=1e-4)  # one distribution, both pools
    assert ranked.unknown_items_skipped == 0  # "fresh" is a known item now
    with pytest.raises(ValueError, match="layout 'item' has no action tokens.*'time\\+action\\+item'"):
        recommender.recommend([("i1", "interact", 0.0)], action="purchase")  # refused, not silently ignored


def test_recommend_recipe_ranks_new_items_from_a_feature_file(content_run, tmp_path):
    """recipes/recommend.py --new_items: items published since training are read in the model's columns, added
    from their content and recommended; a column the file lacks counts as [NONE]."""
    from bertrec.recipes.recommend import main

    (tmp_path / "new.csv").write_text("item_id,shelf\nfresh,shelf1\n")  # no brand column
    (tmp_path / "histories.csv").write_text("user_id,item_id,timestamp\nana,i1,1\nbo,i2,1\n")
    output = tmp_path / "recs.jsonl"
    folder, n = str(content_run["dir"]), EventTokenizer.load(content_run["dir"]).num_items
    common = ["--model_dir", folder, "--histories", str(tmp_path / "histories.csv"), "--k", str(n + 1)]
    assert main([*common, "--new_items", str(tmp_path / "new.csv"), "--output_file", str(output)]) == 2
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert all("fresh" in row["items"] and len(row["items"]) == n for row in rows)  # every item but the seen one
    main([*common, "--output_file", str(output)])
    assert not any("fresh" in json.loads(line)["items"] for line in output.read_text().splitlines())


def test_new_item_files_are_read_in_the_model_s_columns_numeric_ones_included(content_run, tmp_path):
    """read_features_for: a model attribute column holding numbers is read as that attribute (a default read
    leaves numeric columns out), columns the model does not use are dropped, and one the file lacks is reported."""
    tokenizer = EventTokenizer.load(content_run["dir"])
    (tmp_path / "numeric.csv").write_text("item_id,brand,shelf\nfresh,7,3\n")
    table = item_content.read_features_for(tokenizer, tmp_path / "numeric.csv")
    assert table.columns == ["item_id", "brand"] and table["brand"].to_list() == [["7"]]
    (tmp_path / "lacking.csv").write_text("item_id,shelf\nfresh,a\n")
    assert item_content.read_features_for(tokenizer, tmp_path / "lacking.csv").columns == ["item_id"]


def test_items_added_from_content_rank_by_their_pools_share_not_by_their_raw_scale():
    scores = torch.tensor([[5.0, 4.0, 3.0, 0.1, -0.5], [1.0, 1.0, 1.0, -3.0, -9.0]])  # 3 trained, 2 added
    pooled = item_content.pooled_scores(scores, items_from_content=2)
    # one distribution over the catalogue, whose added pool holds its share of the items
    assert torch.allclose(pooled.exp().sum(dim=1), torch.ones(2))
    assert torch.allclose(pooled[:, 3:].exp().sum(dim=1), torch.full((2,), 2 / 5))
    for pool in (slice(0, 3), slice(3, 5)):  # each pool keeps its own order
        assert torch.equal(pooled[:, pool].argsort(dim=1, stable=True), scores[:, pool].argsort(dim=1, stable=True))
    # raw, both added items rank last for both users; pooled, the second user (no trained item stands out)
    # gets the best added item first, the first user (a clear trained favourite) does not
    assert pooled[1, 3] > pooled[1, :3].max() and pooled[0, 0] > pooled[0, 3]
    assert torch.equal(item_content.pooled_scores(scores, 0), scores)  # nothing added: the scores as they are


def test_a_fit_weighing_spans_the_flat_share_and_the_plain_softmax():
    scores = torch.tensor([[5.0, 4.0, 3.0, 0.1, -0.5], [1.0, 1.0, 1.0, -3.0, -9.0]])  # 3 trained, 2 added
    flat = item_content.pooled_scores(scores, 2, (0.0, math.log(2 / 3)))  # slope 0, intercept logit(2/5)
    assert torch.allclose(flat, item_content.pooled_scores(scores, 2), atol=1e-6)
    # slope 1, intercept 0: each prompt gives the new pool what a softmax over the raw scores gives it
    assert torch.allclose(item_content.pooled_scores(scores, 2, (1.0, 0.0)), torch.log_softmax(scores, 1), atol=1e-6)
    gaps = item_content.new_pool_gap(scores, 2)
    for slope in (0.0, 0.5, 1.0):
        intercept = intercept_for_share(gaps, slope, 0.3)  # fit without labels: the share on average
        weighed = item_content.pooled_scores(scores, 2, (slope, intercept))
        assert weighed[:, 3:].exp().sum(dim=1).mean() == pytest.approx(0.3, abs=1e-5)
        assert torch.allclose(weighed.exp().sum(dim=1), torch.ones(2))
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        intercept_for_share(gaps, 0.0, 1.0)


def test_the_weighing_takes_the_largest_share_within_one_standard_error_of_the_best():
    """Offline NDCG cannot separate rules within its noise; among those, new items get the most exposure."""
    best = np.random.default_rng(0).random(400)
    noisy = best - 0.002 + np.where(np.arange(400) % 2, 0.05, -0.05)  # 0.002 worse, standard error 0.0025
    per_example = np.stack([best, noisy, best - 0.3, best - 0.001])  # the last: worse for every example alike
    candidates = [{"slope": 0.0, "share_factor": f} for f in (0.5, 1.0, 1.4)] + [{"slope": 1.0, "share_factor": 1.0}]
    assert one_standard_error_choice(per_example, candidates) == 1
    assert candidates[1]["difference_to_best"] == pytest.approx(0.002)
    assert candidates[1]["standard_error"] == pytest.approx(0.05 / np.sqrt(400), rel=0.01)
    assert candidates[3]["standard_error"] == pytest.approx(0.0, abs=1e-12)  # a steady loss is no tie
    assert candidates[0]["difference_to_best"] == 0.0 and candidates[0]["standard_error"] == 0.0
    assert one_standard_error_choice(per_example[[0, 2]], [candidates[0], candidates[2]]) == 0


def test_a_known_loss_budget_keeps_the_candidates_that_cost_known_targets_little():
    """Candidates are judged on the known-target examples against the ranking without new items; the budget
    admits those within it, and the one losing least when none is."""
    without_new = np.array([1.0, 0.5, 0.2, 0.0])
    known = np.array([True, True, False, True])  # the third example's target is a new item
    per_example = np.array([
        [1.0, 0.5, 0.0, 0.0],  # loses nothing on known targets
        [0.9, 0.45, 0.1, 0.0],  # loses 10%
        [0.5, 0.25, 1.0, 0.0],  # loses 50%, and wins the new-item example
    ])  # fmt: skip
    candidates = [{"share_factor": f} for f in (0.35, 0.7, 1.4)]
    assert within_known_loss(per_example, without_new, known, candidates, 0.2) == [0, 1]
    assert [c["known_target_loss"] for c in candidates] == pytest.approx([0.0, 0.1, 0.5])
    assert within_known_loss(per_example, without_new, known, candidates, 1.0) == [0, 1, 2]
    assert within_known_loss(per_example[1:], without_new, known, candidates[1:], 0.05) == [0]  # least loss
    with pytest.raises(ValueError, match="trained item"):
        within_known_loss(per_example, without_new, np.zeros(4, dtype=bool), candidates, 0.1)


def test_recommender_chooses_the_added_items_weighing_on_held_out_examples(content_run, tmp_path):
    """Examples whose targets are added items reward a larger share for them and examples whose targets are
    trained items a smaller one, for every slope; the best candidate is kept, saved with the tokenizer and
    used by ``recommend``; adding items again drops it (it was fit for the old pool)."""
    from bertrec.args import DataArguments
    from bertrec.recipes.common import prepare_data
    from bertrec.recommend import Recommender

    recommender = Recommender.from_pretrained(str(content_run["dir"]))
    examples = prepare_data(DataArguments(dataset=str(content_run["events"]))).split.test
    with pytest.raises(ValueError, match="no items added from content"):
        recommender.calibrate_added_items(examples)
    fresh = [f"new{i}" for i in range(6)]
    recommender.add_items(pl.DataFrame({"item_id": fresh, "brand": [f"brand{i % 4}" for i in range(6)]}))
    with pytest.raises(ValueError, match="none of the examples' targets is an item added"):
        recommender.calibrate_added_items(examples)
    # all targets added items; then all trained items but one (so that the fit may run)
    for targets, direction in ((fresh, 1), ([fresh[0]] + ["i1", "i2"] * examples.height, -1)):
        relabelled = examples.with_columns(target_item_id=pl.Series(targets * examples.height)[: examples.height])
        choice = added_item_weighing.fit_weighing(
            recommender.model, recommender.tokenizer, relabelled, objective=recommender.objective
        )
        assert len(choice.candidates) == len(SLOPES) * len(SHARE_FACTORS)
        chosen = next(c for c in choice.candidates if (c["slope"], c["intercept"]) == choice.weighing)
        assert chosen["difference_to_best"] <= chosen["standard_error"]  # as good as the best, within noise
        assert all(  # and no candidate that good gives the new items more
            c["share_factor"] <= chosen["share_factor"]
            for c in choice.candidates
            if c["difference_to_best"] <= c["standard_error"]
        )
        for slope in SLOPES:
            by_share = sorted((c for c in choice.candidates if c["slope"] == slope), key=lambda c: c["share_factor"])
            ndcg = [c["ndcg@10"] * direction for c in by_share]
            assert ndcg == sorted(ndcg)  # a larger share only lifts added items past trained ones
    # a budget of 0 keeps the candidate costing known targets least (trained targets, one added: the fit runs)
    budgeted = added_item_weighing.fit_weighing(
        recommender.model, recommender.tokenizer, relabelled, objective=recommender.objective, max_known_loss=0.0
    )
    least = min(c["known_target_loss"] for c in budgeted.candidates)
    chosen = next(c for c in budgeted.candidates if (c["slope"], c["intercept"]) == budgeted.weighing)
    assert chosen["known_target_loss"] == least and budgeted.max_known_loss == 0.0
    assert max(c["known_target_loss"] for c in budgeted.candidates) > least  # the budget had a choice to make
    choice = recommender.calibrate_added_items(
        examples.with_columns(target_item_id=pl.Series([fresh[row % 6] for row in range(examples.height)]))
    )
    assert choice.added_targets == examples.height
    assert recommender.tokenizer.spec.added_items_weighing == list(choice.weighing)
    recommender.tokenizer.save(tmp_path)
    assert EventTokenizer.load(tmp_path).spec.added_items_weighing == list(choice.weighing)
    history = [("i1", "interact", 0.0)]
    scores = recommender.recommend(history, k=recommender.tokenizer.num_items, exclude_seen=False).scores
    flat = Recommender(recommender.model, with_weighing(recommender.tokenizer, ()))
    flat_scores = flat.recommend(history, k=flat.tokenizer.num_items, exclude_seen=False).scores
    assert sorted(scores) != pytest.approx(sorted(flat_scores))  # the stored weighing is what ranks
    recommender.add_items(pl.DataFrame({"item_id": ["later"], "brand": ["brand1"]}))
    assert recommender.tokenizer.spec.added_items_weighing == []


def test_an_id_only_model_cannot_take_items_by_content(pretrained):
    from bertrec.recommend import Recommender

    recommender = Recommender.from_pretrained(str(pretrained["gpt2"]["dir"]))
    with pytest.raises(ValueError, match="reads items as ids only.*--item_features"):
        recommender.add_items(pl.DataFrame({"item_id": ["new"], "brand": ["x"]}))


def test_text_vectors_put_related_titles_together():
    from bertrec.text_vectors import tfidf_svd

    titles = [
        "blue ballpoint pen", "black ballpoint pen", "red gel pen", "printer paper ream", "copy paper ream a4",
        "paper clips box", "stapler heavy duty", "", "zzz unique words only",
    ]  # fmt: skip
    vectors = tfidf_svd(titles, dim=4)
    assert vectors.shape == (9, 4)
    assert abs(float((vectors[0] ** 2).sum()) - 1.0) < 1e-5  # unit rows
    assert not vectors[7].any() and not vectors[8].any()  # no kept word: a zero vector, not noise
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 3] and similarity[3, 4] > similarity[3, 0]


def test_semantic_ids_share_codes_between_similar_items_and_count_collisions():
    import numpy as np

    from bertrec.semantic_ids import residual_codebooks, semantic_id_table

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 8)) * 5
    vectors = np.concatenate([c + 0.01 * rng.normal(size=(10, 8)) for c in centres])
    vectors[5] = vectors[4]  # an exact duplicate: same codes at every level
    items = [f"i{i}" for i in range(30)]
    codes, _ = residual_codebooks(vectors, levels=2, codebook_size=3)
    table, report = semantic_id_table(items, codes, codebook_size=3)
    first = table["sid1"].list.first().to_list()
    assert len(set(first[:10])) == 1 and len(set(first)) == 3  # one level-1 code per content cluster
    codes = table.select(pl.concat_str([pl.col(c).list.first() for c in table.columns[1:]], separator="/"))
    assert codes.to_series().n_unique() == 30  # the dedup level makes every item's code unique
    assert report["items_sharing_codes"] >= 1 and table["sid_dedup"].to_list()[5] != ["0"]


def test_semantic_only_items_are_their_codes_and_need_no_id_rows(small_sequences, tmp_path):
    features = tmp_path / "items.jsonl"
    features.write_text(
        "\n".join(
            json.dumps({"item_id": item, "title": title})
            for item, title in [("a", "red pen"), ("b", "red pen ink"), ("c", "paper ream"), ("d", "paper pen")]
        )
    )
    tokenizer = item_content.tokenizer_with_features(
        _tokenizer(small_sequences), str(features), ["none"], item_tokens="semantic", text_columns=["title"],
        semantic_levels=2, codebook_size=2,
    )  # fmt: skip
    assert not tokenizer.spec.item_id_rows and set(tokenizer.spec.attributes) == {"sid1", "sid2", "sid_dedup"}
    model = _model(tokenizer, "gpt2")
    item_content.attach(model, tokenizer)
    original = model.get_input_embeddings().parametrizations.weight.original
    with torch.no_grad():
        original[tokenizer.item_offset :] = 100.0  # id rows are not read at all
    composed = model.get_input_embeddings().weight[tokenizer.item_offset :]
    assert composed.abs().max() < 50
    assert item_content.summary(tokenizer)["scheme"].startswith("mean of attribute tokens")

    # full ranking is exact: every item's score, from the saved stock model, is brute force over its codes
    # (the hidden state against the mean of its code rows); a cost of one dot product per item once folded
    with item_content.folded(model):
        model.save_pretrained(tmp_path / "run")
    stock = AutoModelForCausalLM.from_pretrained(tmp_path / "run").eval()
    with torch.no_grad():
        out = stock(
            input_ids=torch.tensor([[tokenizer.item_offset, tokenizer.item_offset + 2]]), output_hidden_states=True
        )
        hidden = out.hidden_states[-1][0, -1]
        brute = torch.stack([
            hidden @ torch.stack([original[tokenizer.attribute_offset + a] for a in row]).mean(dim=0)
            for row in tokenizer.spec.item_attributes
        ])  # fmt: skip
    assert torch.allclose(out.logits[0, -1, tokenizer.item_offset :], brute, atol=1e-5)


def test_a_semantic_model_ranks_a_new_item_from_its_text_alone(small_sequences, tmp_path):
    """The text encoder and codebooks are fit on the training catalogue, saved beside the tokenizer (plain
    AutoTokenizer still loads it), and give an item published later its codes from its title alone: the same
    codes as a known item with that title, told apart by the next dedup value, never a collision."""
    import numpy as np

    from bertrec.integrity import write_manifest
    from bertrec.recommend import Recommender

    features = tmp_path / "items.jsonl"
    titles = [("a", "red pen"), ("b", "red pen ink refill"), ("c", "paper ream"), ("d", "paper ream white")]
    features.write_text("\n".join(json.dumps({"item_id": i, "title": t}) for i, t in titles))
    tokenizer = item_content.tokenizer_with_features(
        _tokenizer(small_sequences), str(features), ["none"], item_tokens="id+semantic", text_columns=["title"],
        semantic_levels=2, codebook_size=2,
    )  # fmt: skip
    assert tokenizer.spec.items == ["a", "b", "c"]  # d has text but no interaction: not in the catalogue
    from bertrec.hub import _item_tokens

    card = " ".join(_item_tokens(item_content.summary(tokenizer)))  # the model card names the encoder
    assert "Semantic IDs: 2 levels of 2 residual k-means codes" in card and "`title` by TF-IDF + SVD" in card
    model = _model(tokenizer, "gpt2")
    item_content.attach(model, tokenizer)
    with item_content.folded(model):
        model.save_pretrained(tmp_path / "run")
    tokenizer.save(tmp_path / "run")
    write_manifest(tmp_path / "run")
    AutoTokenizer.from_pretrained(tmp_path / "run")  # the encoder's files do not disturb a plain load

    recommender = Recommender.from_pretrained(str(tmp_path / "run"))
    saved = recommender.tokenizer.item_encoder
    assert np.array_equal(saved.centroids, tokenizer.item_encoder.centroids)
    with pytest.raises(ValueError, match="no column.*title"):
        recommender.add_items(pl.DataFrame({"item_id": ["x"], "brand": ["Acme"]}))
    assert recommender.add_items(pl.DataFrame({"item_id": ["twin", "d"], "title": ["red pen", "paper ream white"]}))
    extended = recommender.tokenizer
    codes = item_content.known_codes(extended)
    index = {item: i for i, item in enumerate(extended.spec.items)}
    assert np.array_equal(codes[index["twin"]], codes[index["a"]])  # same text, same codes
    dedup = extended.spec.attributes["sid_dedup"]
    rows = extended.spec.item_attributes
    assert rows[index["twin"]][-1] != rows[index["a"]][-1] or dedup == ["[NONE]", "0"]  # next dedup, or [NONE]
    embeddings = recommender.item_embeddings()
    assert not np.allclose(embeddings[index["twin"]], embeddings[index["d"]])  # placed by their own text
    # the id part it never learnt is borrowed from its text's nearest catalogue items (here all 3 of them), and
    # the row takes their length, so a new item can reach a top 10 against trained rows
    lengths = np.linalg.norm(embeddings, axis=1)
    assert lengths[index["twin"]] == pytest.approx(lengths[[index[i] for i in "abc"]].mean(), rel=1e-4)
    ranked = recommender.recommend([("b", "interact", 0.0)], k=4)
    assert {"twin", "d"} & set(ranked.items)  # new items are recommended at once


def test_semantic_ids_from_a_sentence_transformers_model_made_in_the_test(small_sequences, tmp_path):
    """--item_text_encoder PATH: codes from a sentence-transformers model (a tiny one built here: nothing is
    downloaded); the saved tokenizer names it, and a new item gets its codes from it and its text."""
    import numpy as np
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "pen", "ink", "refill", "paper", "ream", "white"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)  # fmt: skip
    BertModel(config).save_pretrained(tmp_path / "bert")
    BertTokenizerFast(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path / "bert")
    transformer = models.Transformer(str(tmp_path / "bert"), max_seq_length=16)
    encoder_dir = tmp_path / "encoder"
    SentenceTransformer(modules=[transformer, models.Pooling(16)]).save(str(encoder_dir))

    features = tmp_path / "items.jsonl"
    titles = [("a", "red pen"), ("b", "red pen ink refill"), ("c", "paper ream"), ("d", "white paper ream")]
    features.write_text("\n".join(json.dumps({"item_id": i, "title": t}) for i, t in titles))
    tokenizer = item_content.tokenizer_with_features(
        _tokenizer(small_sequences), str(features), ["none"], item_tokens="id+semantic", text_columns=["title"],
        semantic_levels=2, codebook_size=2, text_encoder=str(encoder_dir),
    )  # fmt: skip
    assert tokenizer.item_encoder.text.dim == 16
    assert "sentence-transformers" in item_content.summary(tokenizer)["semantic_ids"]["encoder"]
    tokenizer.save(tmp_path / "tok")
    loaded = EventTokenizer.load(tmp_path / "tok")
    assert loaded.item_encoder.text.model == str(encoder_dir)
    expected = SentenceTransformer(str(encoder_dir)).encode(["paper ream"], normalize_embeddings=True)
    table = pl.DataFrame({"item_id": ["x"], "title": ["paper ream"]})
    assert np.allclose(loaded.item_encoder.vectors(table), expected, atol=1e-5)  # the same model, reloaded
    known = item_content.known_codes(loaded)
    codes = loaded.item_encoder.codes_for(table["item_id"], loaded.item_encoder.vectors(table), known)
    c_codes = known[loaded.spec.items.index("c")]  # "c" has the same text: the same codes, the next dedup
    assert [int(codes[f"sid{i + 1}"][0][0]) for i in range(2)] == c_codes.tolist()
    assert codes["sid_dedup"][0].to_list() == ["1"]


def test_content_similarity_baseline_ranks_items_like_the_history_first(small_sequences):
    import numpy as np

    from bertrec.baselines import content_similarity_scorer
    from bertrec.evaluation import EvalBatch

    tokenizer = _tokenizer(small_sequences)  # items a, b, c (by frequency)
    index = {item: i for i, item in enumerate(tokenizer.spec.items)}
    vectors = np.zeros((3, 2), dtype=np.float32)
    vectors[index["a"]], vectors[index["b"]], vectors[index["c"]] = [1, 0], [0.8, 0.6], [0, 1]
    score = content_similarity_scorer(tokenizer, small_sequences, vectors)
    batch = EvalBatch(
        input_ids=torch.zeros(2, 1, dtype=torch.long), attention_mask=torch.ones(2, 1),
        last_item=torch.tensor([index["a"], -1]), seen_rows=(torch.tensor([0]), torch.tensor([index["a"]])),
        targets=torch.tensor([0, 0]),
    )  # fmt: skip
    scores = score(batch)
    assert scores[0, index["b"]] > scores[0, index["c"]]  # b's content is close to a's, c's is not
    assert torch.argmax(scores[1]) == index["a"]  # no known history: popularity decides


def test_a_fine_tune_can_add_items_to_a_content_model(small_sequences):
    """--new_items on a base trained with item features: the new items get [NONE] attributes (they are learnt
    from their interactions), so the tokenizer stays consistent instead of failing on a short table."""
    from bertrec.new_items import add_new_items

    tokenizer, _ = item_content.with_attributes(_tokenizer(small_sequences), FEATURES, ["brand", "categories"])
    model = _model(tokenizer, "gpt2")
    sequences = small_sequences.with_columns(pl.col("item_id").list.eval(pl.element().replace("c", "new")))
    extended, new_ids = add_new_items(model, tokenizer, sequences, ["new"])
    assert extended.spec.item_attributes[-1] == item_content.none_attributes(tokenizer) == [0, 2]
    assert len(new_ids) == 1 and extended.num_items == tokenizer.num_items + 1


def test_a_new_period_s_items_start_from_their_content_and_train_in_both_untied_layers(content_run, tmp_path):
    """finetune --new_items on a base with attributes, text vectors and output rows of its own: new items with a
    row in the item features start from their content (attributes kept, not [NONE]); the others keep the
    co-occurrence start; both join the trained pool, their text vectors stay one per item (so items can be added
    to the fine-tuned model later), and LoRA trains their input and output rows while the old rows stay."""
    from bertrec.data.item_features import read_item_features
    from bertrec.modeling import load_model
    from bertrec.new_items import add_new_items
    from bertrec.recipes.finetune import main as finetune
    from bertrec.recipes.pretrain import main as pretrain
    from bertrec.recommend import Recommender

    features = tmp_path / "items.jsonl"
    rows = [{"item_id": f"i{i}", "brand": f"brand{i % 4}", "title": f"shelf {i % 3} item"} for i in range(30)]
    rows += [{"item_id": "n3", "brand": "brand3", "title": "shelf 0 item"}]  # "n5" has no row
    features.write_text("\n".join(json.dumps(row) for row in rows))
    base, out = tmp_path / "base", tmp_path / "out"
    pretrain([
        "--dataset", str(content_run["events"]), "--item_features", str(features), "--item_feature_columns", "brand",
        "--item_text_columns", "title", "--item_text_vectors", "true", "--layout", "item", "--hidden_size", "16",
        "--num_layers", "1", "--num_heads", "2", "--max_events", "10", "--num_epochs", "1", "--batch_size", "16",
        "--repeat_scores", "false", "--transition_scores", "false", "--tie_embeddings", "false",
        "--early_stopping_patience", "0", "--output_dir", str(base),
    ])  # fmt: skip
    period = pl.read_csv(content_run["events"]).with_columns(pl.col("item_id").replace({"i3": "n3", "i5": "n5"}))
    period.write_csv(tmp_path / "period.csv")
    metrics = finetune(["--base_model", str(base), "--dataset", str(tmp_path / "period.csv"), "--new_items", "true",
                        "--num_epochs", "1", "--batch_size", "16", "--output_dir", str(out)])  # fmt: skip
    assert metrics["finetuning"]["new_items"] == 2
    old, tokenizer = EventTokenizer.load(base), EventTokenizer.load(out)
    spec, index = tokenizer.spec, {item: i for i, item in enumerate(tokenizer.spec.items)}
    assert spec.items[old.num_items :] == ["n3", "n5"] and spec.items_from_content == 0
    brand3 = spec.attributes["brand"].index("brand3")
    assert spec.item_attributes[index["n3"]] == [brand3]  # from its row in the features
    assert spec.item_attributes[index["n5"]] == item_content.none_attributes(tokenizer)
    assert tokenizer.item_encoder.item_vectors.shape[0] == len(spec.items)
    assert not tokenizer.item_encoder.item_vectors[index["n5"]].any()  # no text: a zero vector
    before, after = load_model(str(base)), load_model(str(out))
    for layer in ("get_input_embeddings", "get_output_embeddings"):
        trained, start = getattr(after, layer)().weight, getattr(before, layer)().weight
        assert torch.equal(trained[: old.vocab_size], start)  # old rows frozen
    fresh, table = load_model(str(base)), read_item_features(features, categorical=["brand"], text=["title"]).table
    add_new_items(fresh, old, period.group_by("user_id", maintain_order=True).agg("item_id"), ["n3", "n5"], 2, table)
    new = slice(old.vocab_size, tokenizer.vocab_size)
    for layer in ("get_input_embeddings", "get_output_embeddings"):  # both trained from their start
        assert (getattr(after, layer)().weight[new] - getattr(fresh, layer)().weight[new]).abs().amax(dim=1).gt(0).all()
    recommender = Recommender.from_pretrained(str(out))
    later = tmp_path / "later.jsonl"  # read in the model's columns: the title as text, not a one-value category
    later.write_text(json.dumps({"item_id": "later", "brand": "brand1", "title": "shelf 1 item", "extra": "x"}))
    assert recommender.add_items(later) == ["later"]
    later_vector = recommender.tokenizer.item_encoder.item_vectors[-1].astype(np.float32)
    assert np.allclose(later_vector, recommender.tokenizer.item_encoder.item_vectors[index["i1"]], atol=1e-3)
    assert "later" in recommender.recommend([("i1", "interact", 0.0)], k=len(spec.items) + 1).items


def test_text_vectors_join_item_rows_through_a_learned_map_that_places_new_items(small_sequences, tmp_path):
    """--item_text_vectors: each item row is id + attribute mean + its text vector times a learned map that
    starts at zero and trains from every item; the map is saved with the tokenizer's item encoder (the folded
    model's rows already hold the trained items' text terms), and an item added later is placed by its text."""
    import numpy as np

    from bertrec.integrity import write_manifest
    from bertrec.recommend import Recommender

    features = tmp_path / "items.jsonl"
    titles = [("a", "red pen"), ("b", "red pen ink refill"), ("c", "paper ream"), ("d", "paper ream white")]
    features.write_text("\n".join(json.dumps({"item_id": i, "title": t}) for i, t in titles))
    tokenizer = item_content.tokenizer_with_features(
        _tokenizer(small_sequences), str(features), ["none"], text_columns=["title"], text_dim=2, text_vectors=True
    )
    assert tokenizer.item_encoder.columns == [] and not tokenizer.spec.attributes  # a text encoder, no codes
    assert tokenizer.item_encoder.item_vectors.shape[1] == 2  # --item_text_dim (4 kept words would allow 4)
    from bertrec.hub import _item_tokens

    card = " ".join(_item_tokens(item_content.summary(tokenizer)))  # the model card names the encoder
    assert "Text vectors: each item row also holds the item's vector from `title` by TF-IDF + SVD" in card
    model = _model(tokenizer, "gpt2")
    raw = model.get_input_embeddings().weight.detach().clone()
    module = item_content.attach(model, tokenizer)
    offset, n = tokenizer.item_offset, tokenizer.num_items
    assert torch.equal(model.get_input_embeddings().weight, raw)  # the map starts at zero
    vectors = torch.as_tensor(tokenizer.item_encoder.item_vectors.astype(np.float32))
    with torch.no_grad():
        module.text_projection.copy_(5.0 * torch.randn(vectors.shape[1], 8))
    composed = model.get_input_embeddings().weight
    assert torch.allclose(composed[offset : offset + n], raw[offset : offset + n] + vectors @ module.text_projection)
    hidden = model.base_model(input_ids=torch.tensor([[offset, offset + 1]])).last_hidden_state
    item_logits(model, hidden[:, -1], offset, n)[0, 2].backward()
    assert module.text_projection.grad.abs().sum() > 0  # the map learns from the items' gradients

    item_content.keep_text_projection(model, tokenizer)  # as save_output does
    with item_content.folded(model):
        model.save_pretrained(tmp_path / "run")
    tokenizer.save(tmp_path / "run")
    write_manifest(tmp_path / "run")
    recommender = Recommender.from_pretrained(str(tmp_path / "run"))
    assert np.array_equal(recommender.tokenizer.item_encoder.projection, module.text_projection.detach().numpy())
    assert recommender.add_items(pl.DataFrame({"item_id": ["twin", "d"], "title": ["red pen", "paper ream white"]}))
    extended = recommender.tokenizer
    index = {item: i for i, item in enumerate(extended.spec.items)}
    assert extended.item_encoder.item_vectors.shape == (len(extended.spec.items), 2)  # new items' vectors kept
    rows = torch.as_tensor(recommender.item_embeddings())
    similarity = torch.nn.functional.cosine_similarity(rows[index["twin"]], rows, dim=1)
    assert similarity[index["a"]] > similarity[index["c"]]  # placed beside the item with its title
    assert similarity[index["d"]] < similarity[index["a"]]
