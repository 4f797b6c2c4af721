"""Why a next-purchase model scores what it does: how often the target repeats the user's last item, whether
that item was in the user's training events, and each model's hit@1 in those cases, on validation and test.

python benchmarks/next_purchase_diagnostics.py outputs/bench_quality/tmall-2014-brand/target \\
    outputs/bench_quality/tmall-2014-brand/target/sasrec/<run> [more run folders]

The first argument is a ``quality.py`` protocol folder (its ``split/`` is read); the rest are run folders of
that split. Seen items are kept, as in Tmall's headline setting.
"""

from __future__ import annotations

import sys

import numpy as np
import polars as pl
import torch
from quality_protocol import load_saved_run

from bertrec.evaluation import evaluate_scorer, model_scorer
from bertrec.recipes.prepare import load_split


def describe_split(split) -> None:
    events = split.train.select("user_id", "item_id").explode("item_id")
    same_user = events["user_id"] == events["user_id"].shift(1)
    repeats = ((events["item_id"] == events["item_id"].shift(1)) & same_user).sum() / max(same_user.sum(), 1)
    print(f"training: {repeats:.3f} of consecutive events repeat the item; {split.stats}")
    for part, examples in (("valid", split.valid), ("test", split.test)):
        frame = examples.with_columns(
            same_day=pl.col("timestamp").list.last() == pl.col("target_timestamp"),
            is_last=pl.col("item_id").list.last() == pl.col("target_item_id"),
        )
        print(
            f"{part}: target = last history item {frame['is_last'].mean():.3f}; target on the day of the last "
            f"event {frame['same_day'].mean():.3f}, and then = last item "
            f"{frame.filter('same_day')['is_last'].mean():.3f}; median history {frame['item_id'].list.len().median()}"
        )


def hit_at_1_by_case(run: str, split) -> None:
    model, tokenizer, objective, action = load_saved_run(run)  # the prompts quality.py evaluated it with
    trained = split.train.select("user_id", trained_items="item_id")
    print(run)
    for part, examples in (("valid", split.valid), ("test", split.test)):
        metrics = evaluate_scorer(
            model_scorer(model, tokenizer), tokenizer, examples, objective=objective, ks=[10], details=True,
            action=action,
        )  # fmt: skip
        ranks = pl.DataFrame({"user_id": metrics["details"]["user_id"], "rank": np.asarray(metrics["details"]["rank"])})
        frame = examples.join(ranks, on="user_id").join(trained, on="user_id", how="left")
        frame = frame.with_columns(
            is_last=pl.col("item_id").list.last() == pl.col("target_item_id"),
            in_user_training=pl.col("trained_items").list.contains(pl.col("target_item_id")).fill_null(False),
        )
        table = frame.group_by("is_last", "in_user_training").agg(
            users=pl.len(), hit_at_1=(pl.col("rank") == 1).mean(), hit_at_10=(pl.col("rank") <= 10).mean()
        )
        print(f"{part}: NDCG@10 {metrics['ndcg@10']:.4f}")
        print(table.sort("is_last", "in_user_training"))


def main() -> None:
    torch.set_num_threads(1)
    split = load_split(f"{sys.argv[1]}/split")
    describe_split(split)
    for run in sys.argv[2:]:
        hit_at_1_by_case(run, split)


if __name__ == "__main__":
    main()
