"""Top-k recommendations for every user of a history file, as JSONL or CSV.

python recipes/recommend.py --model_dir outputs/pretrain --histories events.csv --output_file recs.jsonl --k 10
python recipes/recommend.py --model_dir outputs/office --histories events.csv --new_items new_items.jsonl

``--new_items``: items published since training, ranked from their content alone (a model trained with
``--item_features``; ``Recommender.add_items``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field

from bertrec.args import parse_args
from bertrec.atomic import atomic_write_text
from bertrec.data.readers import read_events
from bertrec.data.schema import ColumnMapping
from bertrec.data.sequences import build_sequences
from bertrec.recipes.common import check_choices, setup_logging
from bertrec.recommend import Recommender


@dataclass
class RecommendArguments:
    model_dir: str = field(default="outputs/pretrain", metadata={"help": "A saved bertrec model folder."})
    histories: str = field(default="histories.csv", metadata={"help": "Events file (csv/tsv/parquet/jsonl)."})
    output_file: str = field(default="recommendations.jsonl", metadata={"help": "Output .jsonl or .csv file."})
    k: int = field(default=10, metadata={"help": "Items per user."})
    exclude_seen: bool = field(default=True, metadata={"help": "Never recommend an item from the user's history."})
    action: str | None = field(default=None, metadata={"help": "Condition on the next action, e.g. purchase."})
    now: float | None = field(default=None, metadata={"help": "Current time (unix s) for the time bucket."})
    user_column: str = field(default="user_id", metadata={"help": "Column holding user ids."})
    item_column: str = field(default="item_id", metadata={"help": "Column holding item ids."})
    batch_size: int = field(default=256, metadata={"help": "Users scored together."})
    new_items: str | None = field(
        default=None,
        metadata={
            "help": "Item feature file (csv/parquet/jsonl/item.json) of items without interactions yet, ranked "
            "from their content (a model trained with --item_features); known items in it are left as they are."
        },
    )


def main(argv: list[str] | None = None) -> int:
    (args,) = parse_args((RecommendArguments,), argv)
    setup_logging(True)
    check_choices(output_format=(args.output_file.rsplit(".", 1)[-1], ("jsonl", "csv")))
    recommender = Recommender.from_pretrained(args.model_dir)
    if args.new_items:
        added = recommender.add_items(args.new_items)
        print(f"{len(added)} new items from {args.new_items} ranked from their content")
    events = read_events(args.histories, columns=ColumnMapping(user=args.user_column, item=args.item_column))
    sequences = build_sequences(events)
    users = sequences["user_id"].to_list()
    histories = [list(zip(r["item_id"], r["action"], r["timestamp"])) for r in sequences.iter_rows(named=True)]
    rows = []
    for start in range(0, len(histories), args.batch_size):
        batch = recommender.recommend_batch(
            histories[start : start + args.batch_size],
            k=args.k,
            exclude_seen=args.exclude_seen,
            action=args.action,
            now=args.now,
        )
        rows += [
            {
                "user_id": u,
                "items": r.items,
                "scores": [round(s, 6) for s in r.scores],
                "unknown_items_skipped": r.unknown_items_skipped,
            }
            for u, r in zip(users[start:], batch)
        ]
    if args.output_file.endswith(".jsonl"):
        text = "".join(json.dumps(row) + "\n" for row in rows)
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["user_id", "rank", "item_id", "score"])
        for row in rows:
            writer.writerows(
                (row["user_id"], rank, item, score)
                for rank, (item, score) in enumerate(zip(row["items"], row["scores"]), 1)
            )
        text = buffer.getvalue()
    atomic_write_text(args.output_file, text)
    print(f"{len(rows)} users, top-{args.k} written to {args.output_file}")
    return len(rows)


if __name__ == "__main__":
    main()
