"""LoRA vs full fine-tuning vs none on the built-in default, for the next-purchase task (issue 3).

python benchmarks/finetune_lora.py --output benchmarks/results/finetune_lora.json

1. Pretrains the built-in default (BERT-style, `item` layout, 40 epochs) with `--target_action purchase`, so
   the base never trains on a purchase that is later a validation or test target.
2. Fine-tunes it three ways with `recipes/finetune.py`, each run in its own process (so peak memory is its
   own), one after the other: `--method none` (the base, evaluated on the task), `--method lora` (adapters +
   ranking head) and `--method full`. LoRA and full fine-tuning each try every learning rate of the grid; the
   one with the best validation NDCG@10 is selected and only its test figures are compared (all runs are
   logged in the JSON file).
3. Writes every figure to the JSON file and prints a markdown table.

Each step is cached by its output folder's metrics.json; delete the folder to rerun it.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(recipe: str, args: list[str], output_dir: Path) -> dict:
    metrics_file = output_dir / "metrics.json"
    if not metrics_file.is_file():
        command = [sys.executable, str(ROOT / "recipes" / f"{recipe}.py"), *args, "--output_dir", str(output_dir)]
        print("running:", " ".join(command), flush=True)
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        print(f"  {time.perf_counter() - started:.0f} s", flush=True)
    return json.loads(metrics_file.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="benchmarks/results/finetune_lora.json")
    parser.add_argument("--work_dir", default="outputs/bench_finetune")
    parser.add_argument("--target_action", default="purchase")
    parser.add_argument("--finetune_args", nargs="*", default=[], help="extra flags for every fine-tuning run")
    parser.add_argument("--learning_rates", nargs="+", default=["3e-4", "1e-3", "3e-3", "1e-2"])
    parser.add_argument(
        "--cpu_threads", default="1", help="torch threads per run; 1 keeps timings stable beside other work"
    )
    args = parser.parse_args()
    work = Path(args.work_dir)
    base_dir = work / "base"
    threads = ["--cpu_threads", args.cpu_threads]
    base = run("pretrain", ["--target_action", args.target_action, *threads], base_dir)
    rows, tried = {}, []
    for method in ("none", "lora", "full"):
        candidates = {}
        for lr in ["base"] if method == "none" else args.learning_rates:
            flags = ["--base_model", str(base_dir), "--method", method, *threads, *args.finetune_args]
            flags += [] if method == "none" else ["--learning_rate", lr]
            metrics = run("finetune", flags, work / (method if method == "none" else f"{method}-lr{lr}"))
            candidates[lr] = summary(metrics)
            tried.append({"method": method, "learning_rate": lr, "valid_ndcg@10": metrics["valid"]["ndcg@10"]})
        best = max(candidates, key=lambda lr: candidates[lr]["valid"]["ndcg@10"])
        rows[method] = {"learning_rate": best, **candidates[best]}
    none_metrics = json.loads((work / "none" / "metrics.json").read_text())
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()} {platform.processor() or ''}, python {platform.python_version()}".strip(),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "base": {"test": base["test"], "training": {k: base["training"][k] for k in ("epochs_run", "wall_seconds")}},
        "baselines": {name: b["test"] for name, b in none_metrics["baselines"].items() if name != "no fine-tuning"},
        "rows": rows,
        "configurations_tried": tried,
        "lora_over_full_ndcg@10": rows["lora"]["test"]["ndcg@10"] / rows["full"]["test"]["ndcg@10"],
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(markdown_table(result))


def summary(metrics: dict) -> dict:
    ft = metrics["finetuning"]
    return {
        "trainable_parameters": ft["trainable"],
        "total_parameters": ft["total"],
        "trainable_fraction": ft["trainable_fraction"],
        "wall_seconds": metrics["training"]["wall_seconds"],
        "peak_memory_mb": ft["peak_memory_mb"],
        "epochs_run": metrics["training"]["epochs_run"],
        "valid": metrics["valid"],
        "test": metrics["test"],
    }


def markdown_table(result: dict) -> str:
    lines = [
        "| fine-tuning | learning rate (on valid) | trainable parameters | share | wall time | peak RSS "
        "| valid NDCG@10 | test NDCG@10 | test HR@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for method, row in result["rows"].items():
        lines.append(
            f"| {method} | {row['learning_rate']} | {row['trainable_parameters']:,} | "
            f"{100 * row['trainable_fraction']:.2f}% | "
            f"{row['wall_seconds']:.0f} s | {row['peak_memory_mb']:.0f} MB | {row['valid']['ndcg@10']:.4f} | "
            f"{row['test']['ndcg@10']:.4f} | {row['test']['hr@10']:.4f} |"
        )
    for name, test in result["baselines"].items():
        lines.append(f"| baseline: {name} | | | | | | | {test['ndcg@10']:.4f} | {test['hr@10']:.4f} |")
    lines.append(f"\nLoRA / full test NDCG@10: {result['lora_over_full_ndcg@10']:.3f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
