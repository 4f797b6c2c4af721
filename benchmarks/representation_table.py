"""The "what actions, times and repeats are worth" table, from the quality benchmark's result files.

    python benchmarks/representation_table.py          # writes benchmarks/results/representation.md

Every row is a run of ``benchmarks/quality.py`` (its command is in the dataset's result file); this script
only reads those files and the per-user figures beside them, and adds two paired tests per row: against
``recent`` (the user's own items, latest first) and against the row's item-only twin (the same configuration
with the `item` layout: no actions, no times).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import RESULTS, per_user_file  # noqa: E402
from quality_protocol import DATASETS, paired_test  # noqa: E402

PANELS = [
    ("synthetic", "loo", "built-in shop log, next event (leave-one-out)"),
    ("tmall-2014-brand", "loo", "Tmall, next event (leave-one-out)"),
    ("tmall-2014-brand", "target", "Tmall, next purchase (leave-one-out over buys)"),
    ("yoochoose-100k", "loo", "yoochoose-100k, next click (seen items excluded)"),
]
# model -> (event tokens, positions per event, repeat (and transition) scores, item rows), and its item-only twin
ROWS = {
    "sasrec": ("item", "1", "no", "tied, random", None),
    "sasrec-rope": ("item (rotary)", "1", "no", "tied, random", None),
    "sasrec-repeat": ("item", "1", "yes", "tied, random", None),
    "sasrec-repeat-untied": ("item", "1", "yes", "untied, from transitions", None),
    "bertrec-next": ("time action item", "3", "no", "tied, random", "sasrec"),
    "bertrec-next-rope": ("time action item (rotary)", "3", "no", "tied, random", "sasrec-rope"),
    "bertrec-event-norepeat": ("time+action+item", "1", "no", "tied, random", "sasrec"),
    "bertrec-event": ("time+action+item", "1", "yes", "tied, random", "sasrec-repeat"),
    "bertrec-event-untied": ("time+action+item", "1", "yes", "untied, from transitions", "sasrec-repeat-untied"),
    "sasrec-transitions": ("item", "1", "yes + transitions", "untied, from transitions", None),
    "bertrec-event-transitions": (
        "time+action+item",
        "1",
        "yes (by gap) + transitions",
        "untied, from transitions",
        "sasrec-transitions",
    ),
    "sasrec-ft": ("item", "1", "no", "tied, random; full fine-tune", None),
    "sasrec-repeat-ft": ("item", "1", "yes", "tied, random; LoRA", None),
    "bertrec-next-rope-ft": ("time action item (rotary)", "3", "no", "tied, random; LoRA", "sasrec-ft"),
    "bertrec-event-ft": ("time+action+item", "1", "yes", "tied, random; LoRA", "sasrec-repeat-ft"),
    "bertrec-event-tied-transitions": (
        "time+action+item",
        "1",
        "yes (by gap) + transitions",
        "tied, random",
        None,
    ),
    "sasrec-gated": ("item", "1", "gated mixture + transitions", "untied, from transitions", None),
    "bertrec-event-gated": (
        "time+action+item",
        "1",
        "gated mixture (by gap) + transitions",
        "untied, from transitions",
        "sasrec-gated",
    ),
    "bertrec-event-transitions-norepeat": (
        "time+action+item",
        "1",
        "transitions only",
        "untied, from transitions",
        None,
    ),
    "bertrec-event-untied-plain": ("time+action+item", "1", "no", "untied, from transitions", None),
    "bertrec-event-tied-gated": ("time+action+item", "1", "gated mixture (by gap) + transitions", "tied, random", None),
    "bertrec-event-untied-ft": ("time+action+item", "1", "yes", "untied, from transitions; LoRA", None),
    "bertrec-event-gated-ft": (
        "time+action+item",
        "1",
        "gated mixture (by gap) + transitions",
        "untied, from transitions; LoRA",
        None,
    ),
    "bertrec-event-tied-gated-ft": (
        "time+action+item",
        "1",
        "gated mixture (by gap) + transitions",
        "tied, random; LoRA",
        None,
    ),
    "bertrec-event-tied-transitions-ft": (
        "time+action+item",
        "1",
        "yes (by gap) + transitions",
        "tied, random; LoRA",
        None,
    ),
    "bertrec-event-transitions-ft": (
        "time+action+item",
        "1",
        "yes (by gap) + transitions",
        "untied, from transitions; LoRA",
        None,
    ),
}
BASELINES = ("popular", "markov", "recent")


def _per_user(dataset: str, protocol: str, model: str, setting: str) -> dict[str, float] | None:
    path = per_user_file(dataset, protocol, model)
    if not path.is_file():
        return None
    with gzip.open(path, "rt") as handle:
        return json.load(handle)[setting]


def _test(dataset, protocol, setting, model, other) -> str:
    ours, theirs = _per_user(dataset, protocol, model, setting), _per_user(dataset, protocol, other, setting)
    if ours is None or theirs is None:
        return ""
    test = paired_test(ours, theirs)
    return f"{test['mean_difference']:+.4f} (p {test['p_value']:.4f})"


def panel(dataset: str, protocol: str, title: str) -> list[str]:
    path = RESULTS / f"quality_{dataset}_{protocol}.json"
    if not path.is_file():
        return []
    result = json.loads(path.read_text())
    setting = result["headline"]
    rows = {row["model"]: row for row in result["rows"]}
    lines = [
        f"**{title}** ({result['test_users']} test users, {result['catalogue_items']} items; seen items "
        f"{'excluded' if setting == 'excluded' else 'kept'})",
        "",
        "| model | event tokens | positions per event | repeat / transition scores | item rows | valid NDCG@10 "
        "| test NDCG@10 | seeds | vs recent | vs item-only twin |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model in (*BASELINES, *ROWS):
        if model not in rows:
            continue
        row = rows[model]
        tokens, positions, repeat, items, twin = ROWS.get(model, ("", "", "", "", None))
        rich = DATASETS[dataset].rich_layout  # e.g. "time item" for click sessions
        tokens = tokens.replace("time action item", rich).replace("time+action+item", rich.replace(" ", "+"))
        mean, std = row[setting]["ndcg@10"]
        test = f"{mean:.4f}" + (f" ± {std:.4f}" if row["seeds"] > 1 else "")
        versus_recent = "" if model in BASELINES else _test(dataset, protocol, setting, model, "recent")
        versus_twin = _test(dataset, protocol, setting, model, twin) if twin in rows else ""
        lines.append(
            f"| {model} | {tokens} | {positions} | {repeat} | {items} | {row['valid_ndcg@10'][0]:.4f} | {test} | "
            f"{row['seeds']} | {versus_recent} | {versus_twin} |"
        )
    return [*lines, ""]


def main() -> None:
    lines = [line for args in PANELS for line in panel(*args)]
    text = "\n".join(lines)
    (RESULTS / "representation.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
