"""Output folders written before stacked layouts and repeat scores (2026-12-03) still load and score the same.

``tests/assets/legacy`` holds two tiny folders trained by the code of commit addf1f5 (GPT-2 with the
``time action item`` layout, BERT with ``item``), and the scores that code's evaluation gave four test users.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bertrec.args import DataArguments
from bertrec.collators import pad_sequences
from bertrec.evaluation import EvalBatch, encode_prompts, model_scorer
from bertrec.modeling import load_model, model_objective
from bertrec.recipes.common import prepare_data
from bertrec.recommend import Recommender
from bertrec.tokenization import EventTokenizer

LEGACY = Path(__file__).parent / "assets" / "legacy"


@pytest.mark.parametrize("name", ["gpt2-time-action-item", "bert-item"])
def test_legacy_folder_scores_as_before(name):
    folder = LEGACY / name
    expected = json.loads((LEGACY / f"{name}.expected.json").read_text())
    model, tokenizer = load_model(str(folder)).eval(), EventTokenizer.load(folder)
    examples = prepare_data(DataArguments(synthetic_users=60)).split.test.head(4)
    assert examples["user_id"].to_list() == expected["user_id"]
    batch = pad_sequences(encode_prompts(tokenizer, examples, model_objective(model)), tokenizer.pad_id)
    scores = model_scorer(model, tokenizer)(EvalBatch(batch["input_ids"], batch["attention_mask"], None, None, None))
    np.testing.assert_allclose(scores.numpy(), np.array(expected["scores"]), atol=1e-5)
    # and the serving path ranks with the same scores (on a history whose items all have tokens: the
    # Recommender skips unknown items, which evaluation encodes as the unknown-item token)
    known = [r for r in range(4) if (tokenizer.item_indices(examples["item_id"][r]) >= 0).all()]
    assert known, "no test user with only known items"
    row = known[0]
    history = list(zip(examples["item_id"][row], examples["action"][row], examples["timestamp"][row]))
    result = Recommender.from_pretrained(str(folder)).recommend(
        history, k=5, exclude_seen=False, now=examples["target_timestamp"][row]
    )
    np.testing.assert_allclose(result.scores, torch.tensor(expected["scores"][row]).topk(5).values.numpy(), atol=1e-5)
