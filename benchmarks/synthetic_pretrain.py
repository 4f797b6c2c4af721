"""Pretrain the default and other synthetic configurations as a user runs them, and tabulate test metrics.

    python benchmarks/synthetic_pretrain.py --output benchmarks/results/synthetic_pretrain.json

Each run is the pretraining recipe exactly as a user runs it; the table compares test NDCG@10/HR@10 with the
popularity and Markov baselines measured in the same run, and records wall time.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from bertrec.args import LEGACY_REPRESENTATION_FLAGS

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "default (no arguments: gpt2, time+action+item, repeat scores, transition-started untied items)": [],
    "bert, time+action+item (pretrain_masked.yaml)": ["--config", "recipes/configs/synthetic/pretrain_masked.yaml"],
    "previous default (bert, item, 40 epochs)": [
        "--model_type",
        "bert",
        "--layout",
        "item",
        "--num_epochs",
        "40",
        *LEGACY_REPRESENTATION_FLAGS,
    ],
    "gpt2, time action item (one position per token)": [
        "--layout",
        "time action item",
        "--num_epochs",
        "25",
        *LEGACY_REPRESENTATION_FLAGS,
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="benchmarks/results/synthetic_pretrain.json")
    parser.add_argument("--work_dir", default="outputs/benchmarks")
    parser.add_argument("--runs", nargs="*", default=list(RUNS))
    args = parser.parse_args()
    results = {}
    for name in args.runs:
        out = Path(args.work_dir) / re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "recipes/pretrain.py", *RUNS[name], "--output_dir", str(out)],
            cwd=ROOT,
            check=True,
        )
        metrics = json.loads((ROOT / out / "metrics.json").read_text())
        results[name] = {
            "wall_seconds": round(time.perf_counter() - started, 1),
            "test": metrics["test"],
            "valid": metrics["valid"],
            "baselines": metrics["baselines"],
            "training": {k: v for k, v in metrics["training"].items() if k != "history"},
        }
        print(name, json.dumps(results[name]["test"]), flush=True)
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {platform.processor() or 'cpu'}",
        "command": " ".join(sys.argv),
        "runs": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(record, indent=2) + "\n")
    print(markdown_table(results))


def markdown_table(results: dict) -> str:
    lines = [
        "| run | test NDCG@10 | test HR@10 | popularity NDCG@10 | Markov NDCG@10 | ratio to popularity | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        pop = r["baselines"]["popularity"]["test"]["ndcg@10"]
        markov = r["baselines"]["markov"]["test"]["ndcg@10"]
        lines.append(
            f"| {name} | {r['test']['ndcg@10']:.4f} | {r['test']['hr@10']:.4f} | {pop:.4f} | {markov:.4f} | "
            f"{r['test']['ndcg@10'] / pop:.1f}x | {r['wall_seconds']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
