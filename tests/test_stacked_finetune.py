"""The fine-tune recipe, Recommender and recipes/evaluate.py on the stacked representation with score terms.

A tiny GPT-2 base on the next-purchase split (``time+action+item``, repeat and transition scores), then LoRA
for "what will they buy next": the merged folder, the adapter on its base, the Recommender and the evaluate
recipe must all give the same scores and metrics.
"""

import json

import numpy as np
import pytest
import torch
from peft import PeftModel

from bertrec import repeats, transitions
from bertrec.evaluation import _batches, encode_prompts, model_scorer
from bertrec.modeling import load_model
from bertrec.recommend import Recommender
from bertrec.tokenization import EventTokenizer
from tests.conftest import TINY_FINETUNE, TINY_PRETRAIN


@pytest.fixture(scope="module")
def stacked_lora(tmp_path_factory):
    from bertrec.recipes.finetune import main as finetune
    from bertrec.recipes.pretrain import main as pretrain

    base, out = tmp_path_factory.mktemp("stacked-base"), tmp_path_factory.mktemp("stacked-lora")
    flags = ["--model_type", "gpt2", "--layout", "time+action+item", "--repeat_scores", "true"]
    flags += ["--transition_scores", "true"]
    pretrain([*TINY_PRETRAIN, "--num_epochs", "3", *flags, "--target_action", "purchase", "--output_dir", str(base)])
    metrics = finetune(["--base_model", str(base), *TINY_FINETUNE, "--output_dir", str(out)])
    return {"base": base, "dir": out, "metrics": metrics}


def test_lora_on_the_stacked_base_merges_and_serves_the_same_scores(stacked_lora):
    run = stacked_lora
    assert run["metrics"]["finetuning"]["target_action"] == "purchase"
    tokenizer = EventTokenizer.load(run["dir"])
    merged_model = load_model(str(run["dir"])).eval()
    base_model = load_model(str(run["base"])).eval()
    # LoRA keeps the score terms as it keeps the item embeddings: the adapter on its base is the whole model
    torch.testing.assert_close(repeats.bias_of(merged_model), repeats.bias_of(base_model))
    torch.testing.assert_close(repeats.gate_of(merged_model), repeats.gate_of(base_model))
    torch.testing.assert_close(transitions.weight_of(merged_model), transitions.weight_of(base_model))
    for merged_table, base_table in zip(transitions.table_of(merged_model), transitions.table_of(base_model)):
        assert torch.equal(merged_table, base_table)
    saved = json.loads((run["dir"] / "config.json").read_text())
    assert saved["repeat_bias"] and saved["transition_weight"] and (run["dir"] / transitions.FILE).exists()
    from tests.test_finetune import purchase_examples

    examples = purchase_examples(run)
    prompts = encode_prompts(tokenizer, examples, "next", action="purchase")
    batch = next(_batches(tokenizer, examples, prompts, batch_size=len(prompts)))
    merged = model_scorer(merged_model, tokenizer)(batch)
    peft = PeftModel.from_pretrained(load_model(str(run["base"])), str(run["dir"] / "adapter")).eval()
    torch.testing.assert_close(model_scorer(peft.get_base_model(), tokenizer)(batch), merged, atol=1e-5, rtol=0)
    assert not torch.allclose(merged, model_scorer(base_model, tokenizer)(batch), atol=1e-3)
    recommender = Recommender.from_pretrained(str(run["dir"]))
    for row, scores in zip(examples.iter_rows(named=True), merged):
        history = list(zip(row["item_id"], row["action"], row["timestamp"]))
        got = recommender.recommend(history, k=10, exclude_seen=False, action="purchase", now=row["target_timestamp"])
        np.testing.assert_allclose(got.scores, scores.topk(10).values.numpy(), atol=1e-4)


def test_evaluate_recipe_reproduces_the_fine_tunes_test_metrics(stacked_lora, tmp_path):
    from bertrec.recipes.evaluate import main as evaluate_main

    rows = evaluate_main(["--model_dir", str(stacked_lora["dir"]), "--output_file", str(tmp_path / "eval.json")])
    assert rows["model"]["ndcg@10"] == pytest.approx(stacked_lora["metrics"]["test"]["ndcg@10"], abs=1e-6)
