"""Every quality row's test NDCG@10 by kind of target, and what the kinds allow any ranking to reach.

    python benchmarks/target_kinds.py --dataset tmall-2014-brand --protocol target

Kinds (seen items kept, the "plain" setting): the target is the item of the history's last event, an earlier
history item, an item of the catalogue new to the user, or outside the catalogue (the training split never
holds it, so no ranking can score it). The bounds say what a row could reach by ranking every repeat first
while keeping the best new-item figure any row reached: when a target sits above that, the question is not
how well repeats are ranked. Reads the per-user figures `benchmarks/quality.py` wrote (no training) and
writes `benchmarks/results/target_kinds_<dataset>_<protocol>.json`.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_protocol import ROOT, prepared_split  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
KINDS = ("last item again", "earlier item again", "new to the user", "outside the catalogue")


def target_kinds(split, max_events: int) -> dict[str, str]:
    """Each test user's kind of target; histories cut to the ``max_events`` a model reads."""
    catalogue = {item for items in split.train["item_id"].to_list() for item in items}
    kinds = {}
    test = split.test.select("user_id", "item_id", "target_item_id").iter_rows()
    for user, history, target in test:
        history = history[-max_events:]
        if target not in catalogue:
            kinds[user] = KINDS[3]
        elif history and history[-1] == target:
            kinds[user] = KINDS[0]
        elif target in history:
            kinds[user] = KINDS[1]
        else:
            kinds[user] = KINDS[2]
    return kinds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--protocol", default="loo")
    parser.add_argument("--work_dir", default="outputs/bench_quality")
    args = parser.parse_args(argv)
    from quality_protocol import DATASETS

    split, _, _ = prepared_split(args.dataset, Path(args.work_dir), args.protocol)
    kinds = target_kinds(split, DATASETS[args.dataset].max_events)
    users = {kind: [u for u, k in kinds.items() if k == kind] for kind in KINDS}
    rows = {}
    for path in sorted((RESULTS / "per_user").glob(f"{args.dataset}_{args.protocol}_*.json.gz")):
        model = path.name.removeprefix(f"{args.dataset}_{args.protocol}_").removesuffix(".json.gz")
        ndcg = json.loads(gzip.open(path).read())["plain"]
        rows[model] = {"all": float(np.mean([ndcg[u] for u in kinds]))}
        rows[model] |= {kind: float(np.mean([ndcg[u] for u in members])) if members else None
                        for kind, members in users.items()}  # fmt: skip
    share = {kind: len(members) / len(kinds) for kind, members in users.items()}
    best_new = max((row[KINDS[2]] or 0.0) for row in rows.values()) if rows else 0.0
    ceiling = share[KINDS[0]] + share[KINDS[1]] + share[KINDS[2]] * best_new
    result = {
        "dataset": args.dataset,
        "protocol": args.protocol,
        "test_users": len(kinds),
        "users_per_kind": {kind: len(members) for kind, members in users.items()},
        "rows": rows,
        "best_new_to_user_ndcg@10": best_new,
        "every_repeat_first_ceiling": ceiling,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"target_kinds_{args.dataset}_{args.protocol}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"| model | all | {' | '.join(f'{k} ({len(users[k])})' for k in KINDS)} |")
    print("|---|---|" + "---|" * len(KINDS))
    for model, row in sorted(rows.items(), key=lambda item: -item[1]["all"]):
        cells = " | ".join("" if row[k] is None else f"{row[k]:.4f}" for k in KINDS)
        print(f"| {model} | {row['all']:.4f} | {cells} |")
    print(f"\nevery repeat ranked first, new-to-user targets as the best row ({best_new:.4f}): {ceiling:.4f}")
    return result


if __name__ == "__main__":
    main()
