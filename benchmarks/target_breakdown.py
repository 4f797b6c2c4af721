"""Where a saved model wins and loses against Markov on the built-in log: test NDCG@10 by kind of target.

    python benchmarks/target_breakdown.py outputs/pretrain

Kinds: the target repeats the last event's item, repeats an earlier item, or is new to the user; and the
last event's action. The model is scored as the recipe evaluates it (seen items kept).
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from bertrec.args import DataArguments
from bertrec.baselines import markov_scorer
from bertrec.evaluation import evaluate_model, evaluate_scorer
from bertrec.modeling import load_model
from bertrec.recipes.common import prepare_data
from bertrec.tokenization import EventTokenizer


def ndcg(ranks: np.ndarray) -> np.ndarray:
    return np.where(ranks <= 10, 1.0 / np.log2(ranks + 1.0), 0.0)


def main(folder: str) -> None:
    torch.set_num_threads(1)
    split = prepare_data(DataArguments()).split
    test = split.test
    model, tokenizer = load_model(folder).eval(), EventTokenizer.load(folder)
    ours = np.asarray(evaluate_model(model, tokenizer, test, details=True)["details"]["rank"], dtype=float)
    markov = evaluate_scorer(markov_scorer(tokenizer, split.train), tokenizer, test, details=True)
    theirs = np.asarray(markov["details"]["rank"], dtype=float)
    last = (test["item_id"].list.last() == test["target_item_id"]).to_numpy()
    seen = np.array([t in h for t, h in zip(test["target_item_id"], test["item_id"])])
    kinds = {
        "all": np.ones(len(ours), bool),
        "repeats the last item": last,
        "repeats an earlier item": seen & ~last,
        "new to the user": ~seen,
    }
    for action in sorted(set(test["action"].list.last().to_list())):
        kinds[f"after a {action}"] = (test["action"].list.last() == action).to_numpy()
    print("| target | users | model NDCG@10 | Markov NDCG@10 |\n|---|---|---|---|")
    for name, rows in kinds.items():
        print(f"| {name} | {rows.sum()} | {ndcg(ours[rows]).mean():.4f} | {ndcg(theirs[rows]).mean():.4f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "outputs/pretrain")
