"""How the pooled ranking of items added from content trades cold targets against warm ones (a diagnostic).

python benchmarks/cold_pool.py --dataset amazon-scientific --model sasrec-content-text --seeds 0 --part valid

For each trained run of ``cold_items.py``'s protocol (the configuration of the model's leave-one-out row), the
cold items are added from content as the protocol does, and the validation or test users are ranked under
several rules for weighing the new items against the trained ones (``item_content.pooled_scores`` is the first):

- ``pooled``: each pool's scores turned into probabilities within the pool, the new pool weighed by its share
  of the catalogue (what ``Recommender`` and the protocol do);
- ``pooled share xF``: the same with the new pool's share times F; ``pooled temperature T``: its scores divided
  by T first (a flatter new pool);
- ``offset``: the raw scores, the new items' raised by one offset chosen so that the new items' probability,
  averaged over the ranked users, equals their catalogue share (a per-user share, fit without labels; the
  slope-1 rule of ``bertrec.added_item_weighing``, whose other slopes and shares ``cold_items.py --weighing
  validated`` chooses from);
- ``slope S share xF``: each candidate ``cold_items.py --weighing validated`` chose from (its intercept fit on
  the validation users' histories), where that run exists, beside the validation NDCG@10 it was chosen by;
- ``not added``: the cold items left out of the ranking (cold targets cannot be hit): what training without
  them costs warm targets on its own.

Rows give NDCG@10 (seen items excluded) of all, cold-target and warm-target users, beside the model trained on
all items (the leave-one-out run) and content-knn on the same users. Nothing here changes the protocol's
figures; it shows where on the cold/warm frontier a weighing rule lands. Writes
``benchmarks/results/pooling_<dataset>_<part>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_items import WEIGHED_EVALUATION, ColdBenchmark  # noqa: E402
from quality import RESULTS, Benchmark, shared_arguments  # noqa: E402
from quality_protocol import KS, load_saved_run  # noqa: E402

from bertrec import item_content  # noqa: E402
from bertrec.added_item_weighing import intercept_for_share  # noqa: E402
from bertrec.atomic import atomic_write_text  # noqa: E402
from bertrec.collators import TokenLayout  # noqa: E402
from bertrec.evaluation import evaluate_scorer, layout_scorer, model_scorer  # noqa: E402
from bertrec.metrics import per_row_ndcg  # noqa: E402
from bertrec.tokenization import EventTokenizer  # noqa: E402


def raw_scorer(model, tokenizer: EventTokenizer):
    """The model's scores with no pooling: every item scored as if it had been trained."""
    return layout_scorer(model, replace(TokenLayout.from_tokenizer(tokenizer), items_from_content=0))


def pooled(scores: torch.Tensor, added: int, share_factor: float = 1.0, temperature: float = 1.0) -> torch.Tensor:
    """``item_content.pooled_scores`` with the new pool's share scaled and its scores divided by a temperature."""
    share = share_factor * added / scores.shape[1]
    tempered = torch.cat([scores[:, :-added], scores[:, -added:] / temperature], dim=1)
    return item_content.pooled_scores(tempered, added, (0.0, math.log(share) - math.log1p(-share)))


def group_ndcg(users: list[str], ndcg: np.ndarray, cold_users: set[str]) -> dict[str, float]:
    cold = np.array([u in cold_users for u in users])
    return {"all": float(ndcg.mean()), "cold": float(ndcg[cold].mean()), "warm": float(ndcg[~cold].mean())}


def rank(score, tokenizer, examples, objective: str, action, cold_users: set[str]) -> dict[str, float]:
    metrics = evaluate_scorer(
        score, tokenizer, examples, objective=objective, ks=KS, exclude_seen=True, details=True, action=action
    )
    details = metrics["details"]
    return group_ndcg(details["user_id"], per_row_ndcg(details["rank"], 10), cold_users)


def run_rules(bench: ColdBenchmark, run_dir: Path, part: str) -> dict[str, dict[str, float]]:
    model, tokenizer, objective, action = bench.load_run(run_dir)
    examples = bench.split.valid if part == "valid" else bench.split.test
    cold_users = bench.users_with_cold_target(examples)
    rows = {"not added": rank(model_scorer(model, tokenizer), tokenizer, examples, objective, action, cold_users)}
    tokenizer, counts = bench.add_missing_items(model, tokenizer)
    added = counts["items_added_from_content"]
    raw = raw_scorer(model, tokenizer)
    gaps: list[torch.Tensor] = []

    def library_rule(scores: torch.Tensor) -> torch.Tensor:  # its pass also gathers what the offset is fit on
        gaps.append(item_content.new_pool_gap(scores, added))
        return item_content.pooled_scores(scores, added)

    rules = {
        "pooled": library_rule,
        "pooled share x0.5": lambda s: pooled(s, added, share_factor=0.5),
        "pooled share x0.25": lambda s: pooled(s, added, share_factor=0.25),
        "pooled temperature 2": lambda s: pooled(s, added, temperature=2.0),
    }
    for name, rule in rules.items():
        rows[name] = rank(lambda batch, rule=rule: rule(raw(batch)), tokenizer, examples, objective, action, cold_users)
    # a slope of 1 gives each prompt what a softmax over the raw scores with the new items' raised by ``offset``
    # would give the new pool
    offset = intercept_for_share(torch.cat(gaps), 1.0, added / len(tokenizer.spec.items))

    def offset_rule(batch) -> torch.Tensor:
        return item_content.pooled_scores(raw(batch), added, (1.0, offset))

    rows["offset"] = {**rank(offset_rule, tokenizer, examples, objective, action, cold_users), "offset": offset}
    weighed = run_dir / WEIGHED_EVALUATION  # cold_items.py --weighing validated: every candidate, fit on validation
    for candidate in json.loads(weighed.read_text())["weighing"]["candidates"] if weighed.is_file() else []:
        weighing = (candidate["slope"], candidate["intercept"])

        def candidate_rule(batch, weighing=weighing) -> torch.Tensor:
            return item_content.pooled_scores(raw(batch), added, weighing)

        name = f"slope {candidate['slope']} share x{candidate['share_factor']}"
        ranked = rank(candidate_rule, tokenizer, examples, objective, action, cold_users)
        rows[name] = {**ranked, "valid all (chosen on)": candidate["ndcg@10"]}
    return rows


def references(bench: ColdBenchmark, work: Path, model: str, part: str) -> dict[str, dict[str, float]]:
    """The model trained on all items (its leave-one-out run, first seed) and content-knn on the same users."""
    from bertrec.baselines import content_similarity_scorer

    examples = bench.split.valid if part == "valid" else bench.split.test
    cold_users = bench.users_with_cold_target(examples)
    loo = Benchmark(bench.dataset, "loo", work, bench.threads, budget=0)
    config = bench.loo_choice(model)
    trained, tokenizer, objective, action = load_saved_run(loo.run_dir(model, config, 0))
    out = {"trained on all items": rank(model_scorer(trained, tokenizer), tokenizer, examples, objective, action,
                                        cold_users)}  # fmt: skip
    knn_tokenizer = EventTokenizer.build(bench.split.train, layout="item", max_events=bench.spec.max_events)
    vectors = bench.item_text_vectors(knn_tokenizer, None)
    knn = content_similarity_scorer(knn_tokenizer, bench.warm_train, vectors)
    out["content-knn"] = rank(knn, knn_tokenizer, examples, "next", None, cold_users)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", default="sasrec-content-text")
    parser.add_argument("--part", choices=("valid", "test"), default="valid")
    parser.add_argument("--cold_share", type=float, default=0.1)
    shared_arguments(parser)
    args = parser.parse_args()
    bench = ColdBenchmark(args.dataset, Path(args.work_dir), args.cpu_threads, args.cold_share)
    config = bench.loo_choice(args.model)
    result = {"references": references(bench, Path(args.work_dir), args.model, args.part), "runs": {}}
    for seed in args.seeds:
        result["runs"][str(seed)] = run_rules(bench, bench.run_dir(args.model, config, seed), args.part)
    result.update(
        dataset=args.dataset,
        model=args.model,
        part=args.part,
        date=time.strftime("%Y-%m-%d"),
        command=" ".join(["python", "benchmarks/cold_pool.py", *sys.argv[1:]]),
    )
    out = RESULTS / f"pooling_{args.dataset}_{args.part}.json"
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    for name, row in {**result["references"], **result["runs"][str(args.seeds[0])]}.items():
        print(f"{name:24s} " + "  ".join(f"{k} {v:.4f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
