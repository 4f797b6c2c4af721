"""Where a cold-protocol run's warm cost comes from: its test warm targets under fixed weighings of the added items.

python benchmarks/cold_warm_cost.py --dataset amazon-office \\
    --run_dir outputs/bench_quality/amazon-office/cold10/<model>/<run>

``cold_items.py`` reports one figure per run: warm targets against the model trained on all items, with the new
items ranked by the chosen rule. That mixes two costs: training without the cold items, and the new items taking
top-10 slots from warm targets. Ranking no new item at all isolates the first; a small flat share and the run's
chosen rule (``evaluation_weighing_validated*.json`` beside it) show the second. Prints one line per weighing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_items import ColdBenchmark  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--run_dir", required=True, type=Path, help="a cold-protocol bertrec run folder")
    parser.add_argument("--model", default="sasrec-content-text", help="its leave-one-out row (the reference)")
    parser.add_argument("--work_dir", default="outputs/bench_quality")
    parser.add_argument("--cold_share", type=float, default=0.1)
    args = parser.parse_args()

    from bertrec.added_item_weighing import NO_NEW_ITEMS, SHARE_FACTORS, with_weighing
    from bertrec.evaluation import evaluate_scorer, model_scorer
    from bertrec.metrics import per_row_ndcg

    bench = ColdBenchmark(args.dataset, Path(args.work_dir), 1, args.cold_share)
    model, tokenizer, objective, action = bench.load_run(args.run_dir)
    tokenizer, _ = bench.add_missing_items(model, tokenizer)
    reference = bench.loo_per_user(args.model)
    if reference is None:
        raise SystemExit(f"no per-user leave-one-out figures for {args.model}: run quality.py for it first")
    warm_users = [u for u in reference if u not in bench.cold_users]
    warm_reference = float(np.mean([reference[u] for u in warm_users]))
    smallest = min(SHARE_FACTORS)  # the smallest share fit_weighing tries, times the catalogue share
    share = smallest * tokenizer.spec.items_from_content / tokenizer.num_items
    weighings = {
        "no new item ranked": (0.0, NO_NEW_ITEMS),
        f"flat {smallest}x share": (0.0, math.log(share / (1 - share))),
    }
    for chosen in sorted(args.run_dir.glob("evaluation_weighing_validated*.json")):
        weighings[f"chosen ({chosen.stem})"] = tuple(json.loads(chosen.read_text())["weighing"]["slope_intercept"])
    test = bench.test_only.test
    for name, weighing in weighings.items():
        weighed = with_weighing(tokenizer, weighing)
        metrics = evaluate_scorer(  # the headline setting only (seen items excluded), as cold_items.py reports
            model_scorer(model, weighed), weighed, test, objective=objective, exclude_seen=True, details=True,
            action=action, desc=name,
        )  # fmt: skip
        per_user = dict(zip(metrics["details"]["user_id"], per_row_ndcg(metrics["details"]["rank"], 10)))
        warm = float(np.mean([per_user[u] for u in warm_users]))
        cold = float(np.mean([per_user[u] for u in bench.cold_users]))
        print(
            f"{name}: warm {warm:.4f} ({warm / warm_reference - 1:+.1%} against {warm_reference:.4f}), cold {cold:.4f}"
        )


if __name__ == "__main__":
    main()
