"""Evaluate a saved model (and the baselines) on a prepared split, with full-catalogue ranking.

python recipes/evaluate.py --model_dir outputs/pretrain --split_dir data/prepared --part test
python recipes/evaluate.py --model_dir outputs/pretrain              # re-prepares the data from the model's config
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bertrec.args import DataArguments, EvalArguments, parse_args
from bertrec.atomic import atomic_write_text
from bertrec.baselines import markov_scorer, popularity_scorer
from bertrec.evaluation import evaluate_model, evaluate_scorer
from bertrec.modeling import load_model, model_objective
from bertrec.recipes.common import (
    CONFIG_FILE,
    check_choices,
    format_metrics_table,
    prepare_data,
    reads_action_prompt,
    setup_logging,
)
from bertrec.recipes.prepare import load_split
from bertrec.tokenization import EventTokenizer


@dataclass
class EvaluateArguments:
    model_dir: str = field(default="outputs/pretrain", metadata={"help": "A saved bertrec model folder."})
    split_dir: str | None = field(
        default=None,
        metadata={"help": "A folder from recipes/prepare.py; default: prepare the data the model was trained on."},
    )
    part: str = field(default="test", metadata={"help": "valid or test."})
    output_file: str | None = field(default=None, metadata={"help": "Write the metrics JSON here."})


def main(argv: list[str] | None = None) -> dict:
    eval_args, metric_args, data_args = parse_args((EvaluateArguments, EvalArguments, DataArguments), argv)
    setup_logging(True)
    check_choices(part=(eval_args.part, ("valid", "test")))
    saved = yaml.safe_load((Path(eval_args.model_dir) / CONFIG_FILE).read_text())
    if eval_args.split_dir:
        split = load_split(eval_args.split_dir)
    else:
        known = DataArguments.__dataclass_fields__
        split = prepare_data(DataArguments(**{k: v for k, v in saved.items() if k in known})).split
    examples, train = getattr(split, eval_args.part), split.train
    tokenizer = EventTokenizer.load(eval_args.model_dir)
    model = load_model(eval_args.model_dir)
    kwargs = {"ks": tuple(metric_args.metric_ks), "exclude_seen": metric_args.exclude_seen}
    # the question the model was trained to answer: "what will they <target action> next", where it reads one
    action = saved.get("target_action") if reads_action_prompt(saved, model_objective(model)) else None
    rows = {"model": evaluate_model(model, tokenizer, examples, action=action, **kwargs)}
    for name, make in (("popularity", popularity_scorer), ("markov", markov_scorer)):
        rows[name] = evaluate_scorer(make(tokenizer, train), tokenizer, examples, **kwargs)
    keys = [f"{m}@{k}" for k in metric_args.metric_ks for m in ("hr", "ndcg", "mrr")]
    print(format_metrics_table(rows, keys))
    if eval_args.output_file:
        atomic_write_text(eval_args.output_file, json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
