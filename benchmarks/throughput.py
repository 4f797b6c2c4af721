"""Speed and scale, measured side by side: data path, training step, evaluation, serving, a 1M-item catalogue,
and wall time to RecBole's best validation quality.

    python benchmarks/throughput.py                                  # every section
    python benchmarks/throughput.py --sections data --events 1e6 1e7
    python benchmarks/throughput.py --report                         # rebuild the markdown from the JSON

Figures go to ``benchmarks/results/throughput.json`` (each section replaces its own entry) and the table to
``benchmarks/results/throughput.md``. Sections that need a fresh process (peak RSS) run in one. RecBole
figures need ``benchmarks/peers/install_recbole.sh``; the training and time-to-quality sections read ml-100k and
yoochoose-100k like ``quality.py`` (``BERTREC_DATA``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from bertrec.args import TokenizerArguments
from bertrec.integrity import is_complete

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
RESULTS = ROOT / "benchmarks" / "results" / "throughput.json"
RECBOLE_PYTHON = ROOT / "benchmarks" / "peers" / ".venv-recbole" / "bin" / "python"
SECTIONS = (
    "data", "bucketed", "scale", "training_memory", "training", "profile", "evaluation", "latency", "million",
    "semantic", "time_to_quality",
)  # fmt: skip
SIZES = ((64, 2), (256, 4))
RECBOLE_NAMES = {"gpt2": "SASRec", "bert": "BERT4Rec"}


def child(section: str, *options: str) -> dict:
    """Run one measurement in a fresh interpreter (its own peak RSS) and return the JSON it prints last."""
    command = [sys.executable, __file__, "--child", section, *options]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_child_section(args) -> None:
    import throughput_parts as parts

    work = Path(args.work_dir)
    log = work / f"{log_name(args)}.parquet"
    if args.child == "generate":
        parts.synthetic_log(log, int(args.events[0]), users=args.log_users, items=args.log_items)
        result = {}
    elif args.child == "data":
        result = parts.data_path(log)
    elif args.child == "bucketed":
        result = parts.bucketed_data_path(log, args.events_per_bucket, args.layout, args.max_events)
    elif args.child == "spark":
        result = parts.spark_data_path(log)
    elif args.child == "train_from_folder":
        folder = work / f"{args.from_folder}-{log.stem}"
        result = parts.training_from_folder(folder, args.train_seconds, args.threads, args.train_steps)
    else:
        result = parts.million_item_run(work / "million")
    print(json.dumps(result))


def log_name(args) -> str:
    """The synthetic log's file stem: its size, and its user and item counts where they are fixed."""
    fixed = f"-u{args.log_users}-i{args.log_items}" if args.log_users or args.log_items else ""
    return f"log-{int(args.events[0])}{fixed}"


def training_memory_section(args) -> dict:
    """Training from a bucketed folder at a fixed catalogue and user count, for logs of growing length (more
    events per user): each log prepared in buckets, then one process trains ``--train_steps`` steps from the
    folder, validates, and runs the final evaluation with the baselines. Its peak RSS should not follow the log."""
    rows = []
    users, items = args.log_users or 50_000, args.log_items or 50_000
    fixed = ["--log_users", str(users), "--log_items", str(items)]
    for events in (int(e) for e in args.memory_events):
        options = ["--events", str(events), "--work_dir", args.work_dir, *fixed]
        child("generate", *options)
        row = {"events": events, "users": users, "items": items}
        defaults = TokenizerArguments()  # the recipe's own representation: one position per event, 50 events
        tokens = ["--layout", defaults.layout, "--max_events", str(defaults.max_events)]
        row["bucketed"] = child("bucketed", *options, *tokens, "--events_per_bucket", str(args.events_per_bucket))
        steps = ["--train_steps", str(args.train_steps or 50), "--threads", str(args.threads)]
        steps += ["--from_folder", "bucketed"]
        row["training"] = child("train_from_folder", *options, *steps)
        peak = row["training"]["peak_rss_mb"]
        print(f"training from the folder, {events:,} events: peak RSS {peak:,} MB", flush=True)
        rows.append(row)
    return {"cleaning": "dedup + min 5 events per user and item", "runs": rows}


def data_section(args) -> dict:
    rows = []
    for events in (int(e) for e in args.events):
        child("generate", "--events", str(events), "--work_dir", args.work_dir)
        rows.append(child("data", "--events", str(events), "--work_dir", args.work_dir))
        print(f"data path, {events:,} events: {rows[-1]['events_per_second']:,} events/s", flush=True)
    return {"cleaning": "dedup + min 5 events per user and item", "runs": rows}


def bucketed_section(args) -> dict:
    """The larger-than-memory path on the same synthetic logs: peak RSS follows ``--events_per_bucket``."""
    rows = []
    for events in (int(e) for e in args.bucketed_events):
        child("generate", "--events", str(events), "--work_dir", args.work_dir)
        options = ["--events", str(events), "--events_per_bucket", str(args.events_per_bucket)]
        rows.append(child("bucketed", *options, "--work_dir", args.work_dir))
        print(f"bucketed path, {events:,} events: {rows[-1]['events_per_second']:,} events/s", flush=True)
    return {"cleaning": "dedup + min 5 events per user and item", "runs": rows}


def scale_section(args) -> dict:
    """One log, side by side in one run: Spark, bucketed and in-memory preparation (each in a fresh process,
    with its peak RSS), then a training process reading the Spark folder for ``--train_seconds``."""
    rows = []
    for events in (int(e) for e in args.scale_events):
        child("generate", "--events", str(events), "--work_dir", args.work_dir)
        options = ["--events", str(events), "--work_dir", args.work_dir]
        row = {"events": events, "spark": child("spark", *options)}
        print(f"spark path, {events:,} events: {row['spark']['events_per_second']:,} events/s", flush=True)
        row["bucketed"] = child("bucketed", *options, "--events_per_bucket", str(args.events_per_bucket))
        print(f"bucketed path, {events:,} events: {row['bucketed']['events_per_second']:,} events/s", flush=True)
        if events <= args.in_memory_limit:
            row["in_memory"] = child("data", *options)
            print(f"in-memory path: {row['in_memory']['events_per_second']:,} events/s", flush=True)
        seconds = ["--train_seconds", str(args.train_seconds), "--threads", str(args.threads)]
        row["training"] = child("train_from_folder", *options, *seconds)
        print(f"training from the folder: peak RSS {row['training']['peak_rss_mb']:,} MB", flush=True)
        rows.append(row)
    return {"cleaning": "dedup + min 5 events per user and item", "runs": rows}


def training_section(args) -> dict:
    import throughput_parts as parts
    import torch
    from quality_protocol import export_recbole, prepared_split

    from bertrec.tokenization import EventTokenizer

    torch.set_num_threads(args.threads)
    work = ROOT / "outputs" / "bench_quality"
    split, _, _ = prepared_split("ml-100k", work, "loo")
    tokenizer = EventTokenizer.build(split.train, layout="item", max_events=200)
    peak = parts.matmul_gflops()
    files = export_recbole(split, work / "ml-100k" / "loo" / "recbole_files") if RECBOLE_PYTHON.is_file() else None
    ours, recbole = [], []
    for model_type in ("gpt2", "bert"):
        windows = tokenizer.encode_training_windows(split.train, min_events=2 if model_type == "gpt2" else 1)
        for hidden, layers in SIZES:
            row = parts.training_step_rate(
                windows,
                tokenizer,
                model_type=model_type,
                hidden_size=hidden,
                num_layers=layers,
            )
            row["share_of_matmul_peak"] = round(row["achieved_gflops"] / peak, 3)
            ours.append(row)
            print(f"bertrec {model_type} {hidden}x{layers}: {row['supervised_events_per_second']:,} ev/s", flush=True)
            if files is not None:
                recbole.append(recbole_rate(files, RECBOLE_NAMES[model_type], hidden, layers, args.threads))
    return {
        "data": "ml-100k leave-one-out training split, item layout, max length 200",
        "threads": args.threads,
        "matmul_peak_gflops": round(peak, 1),
        "bertrec": ours,
        "recbole": recbole,
    }


def profile_section(args) -> dict:
    import throughput_parts as parts
    import torch
    from quality_protocol import prepared_split

    from bertrec.tokenization import EventTokenizer

    torch.set_num_threads(args.threads)
    split, _, _ = prepared_split("ml-100k", ROOT / "outputs" / "bench_quality", "loo")
    tokenizer = EventTokenizer.build(split.train, layout="item", max_events=200)
    windows = tokenizer.encode_training_windows(split.train, min_events=2)
    return {"threads": args.threads, "model": "GPT-2 64x2, ml-100k", "top_ops": parts.profile_step(windows, tokenizer)}


def recbole_rate(files: Path, model: str, hidden: int, layers: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as temp:
        output = Path(temp) / "rate.json"
        command = [str(RECBOLE_PYTHON), str(ROOT / "benchmarks" / "peers" / "recbole_run.py"), "--quiet"]
        command += ["--split_dir", str(files), "--model", model, "--max_len", "200", "--hidden_size", str(hidden)]
        command += ["--num_layers", str(layers), "--num_heads", str(max(hidden // 64, 2))]
        command += ["--inner_size", str(4 * hidden), "--threads", str(threads), "--throughput_batches", "8"]
        command += ["--output", str(output)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise SystemExit(f"RecBole {model} failed:\n{result.stderr[-3000:]}")
        row = json.loads(output.read_text())
    row.update(hidden_size=hidden, num_layers=layers)
    row["epoch_seconds_estimate"] = round(row["n_train_examples"] / row["samples_per_second"], 1)
    print(f"recbole {model} {hidden}x{layers}: {row['samples_per_second']:.1f} samples/s", flush=True)
    return row


def evaluation_section(args) -> dict:
    import throughput_parts as parts
    import torch

    torch.set_num_threads(args.threads)
    rows = [parts.evaluation_rate(items) for items in (10_000, 100_000, 1_000_000)]
    for row in rows:
        print(f"evaluation, {row['items']:,} items: {row['users_per_second']} users/s", flush=True)
    return {"model": "GPT-2, 64 hidden, 2 layers, history 50", "threads": args.threads, "runs": rows}


def latency_section(args) -> dict:
    import throughput_parts as parts
    import torch

    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, **parts.recommend_latency()}
    print(f"latency p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms", flush=True)
    return result


def million_section(args) -> dict:
    result = child("million", "--work_dir", args.work_dir)
    print(f"1M items: {result['step_seconds']} s/step, peak RSS {result['peak_rss_mb']} MB", flush=True)
    return result


def semantic_section(args) -> dict:
    import throughput_parts as parts
    import torch

    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, **parts.semantic_catalogue()}
    print(
        f"semantic IDs, {result['items']:,} items: {result['semantic_share']:.4%} of the id table's item "
        f"parameters; eval {result['eval_users_per_second']} users/s (ids: "
        f"{result['id_model']['users_per_second']})",
        flush=True,
    )
    return result


def chosen_configuration(result: dict) -> tuple[str, dict[str, str]]:
    """The best id-only, item-layout bertrec row of a ``quality.py`` result by validation: its name and
    configuration (content rows read the dataset's item features, which the peers do not get, so they are left
    out)."""
    from quality import BERTREC_MODELS, ITEM_FEATURES

    ours = [
        r
        for r in result["rows"]
        if r["model"] in BERTREC_MODELS
        and BERTREC_MODELS[r["model"]][1] == "item"
        and ITEM_FEATURES not in BERTREC_MODELS[r["model"]][2]
    ]
    best = max(ours, key=lambda r: r["valid_ndcg@10"][0])
    return best["model"], best["config"]


def converged_cpu_peers(result: dict) -> list[dict]:
    """The peer rows of a ``quality.py`` leave-one-out result that their own early stopping ended on the CPU
    (RecBole validates with seen items kept, its own setting; the Lightning runners in the table's headline)."""
    from quality import LIGHTNING_PEERS, RECBOLE_MODELS

    peers = []
    for row in result["rows"]:
        training = row["training"]
        if row["model"] not in (*RECBOLE_MODELS, *LIGHTNING_PEERS):
            continue
        if training.get("stopped_by") != "early_stopping" or training.get("accelerator", "cpu") != "cpu":
            continue
        setting = "plain" if row["model"] in RECBOLE_MODELS else result.get("headline", "excluded")
        peers.append({"row": row, "setting": setting})
    return peers


def time_to_quality_section(args) -> dict:
    """Wall seconds until bertrec's validation NDCG@10 first reaches each converged peer's best, both trained
    with 1 thread on the same split, sizes and maximum length. Ours is the configuration ``quality.py`` chose
    on validation (its full recipe), trained here once per validation setting the peers use; a peer's seconds
    and best come from its ``quality.py`` row."""
    from quality import RESULTS as QUALITY_RESULTS
    from quality import Benchmark, run_child

    from bertrec.training import TrainingArguments

    earlier = json.loads(RESULTS.read_text()).get("time_to_quality", {}) if RESULTS.is_file() else {}
    rows = [  # rows of datasets this call does not measure stay as they were, dated
        {**row, "measured": row.get("measured", earlier["date"])}
        for row in earlier.get("runs", [])
        if row["dataset"] not in args.ttq_datasets and "peer" in row
    ]
    for dataset in args.ttq_datasets:
        bench = Benchmark(dataset, "loo", ROOT / "outputs" / "bench_quality", threads=1, budget=3600)
        result = json.loads((QUALITY_RESULTS / f"quality_{dataset}_loo.json").read_text())
        name, config = chosen_configuration(result)
        for peer in converged_cpu_peers(result):
            exclude_seen = "true" if peer["setting"] == "excluded" else "false"
            setting_config = config
            if exclude_seen == "false":  # seen-item exclusion in the loss trains for the other ranking
                setting_config = {k: v for k, v in config.items() if k != "loss_excludes_seen"}
            run_dir = Path(args.work_dir) / "time_to_quality" / f"{dataset}-{name}-exclude_seen{exclude_seen}"
            if not is_complete(run_dir):  # the recipe's default seed, as the measured rows were trained
                command = bench.pretrain_command(name, setting_config, TrainingArguments.seed, run_dir, exclude_seen)
                run_child(command, run_dir.parent / f"{run_dir.name}.log")
            history = json.loads((run_dir / "metrics.json").read_text())["training"]["history"]
            theirs = peer["row"]["training"]
            bar = peer["row"]["valid_ndcg@10"][0]
            reached = next((h for h in history if h["ndcg@10"] >= bar), None)
            near = next((h for h in history if h["ndcg@10"] >= 0.98 * bar), None)
            best = max(history, key=lambda h: h["ndcg@10"])  # the first of equals, as early stopping keeps it
            peer_seconds = theirs["seconds_to_best"][0]
            rows.append(
                {
                    "dataset": dataset,
                    "ours": f"{name} ({', '.join(f'{k} {v}' for k, v in setting_config.items())})",
                    "peer": peer["row"]["model"],
                    "setting": peer["setting"],
                    "peer_best_valid_ndcg@10": bar,
                    "peer_seconds_to_best": round(peer_seconds, 1),
                    "peer_epochs_run": int(theirs["epochs_run"][0]),
                    "peer_date": peer["row"].get("date"),
                    "ours_best_valid_ndcg@10": best["ndcg@10"],
                    "ours_seconds_to_reach": reached and reached["elapsed_seconds"],
                    "ours_epoch_reached": reached and reached["epoch"],
                    "speedup": reached and round(peer_seconds / reached["elapsed_seconds"], 1),
                    "ours_seconds_to_98_percent": near and near["elapsed_seconds"],
                    "ours_seconds_to_own_best": best["elapsed_seconds"],
                }
            )
            print(f"{dataset}: {rows[-1]}", flush=True)
    return {"threads": 1, "runs": rows}


def machine() -> dict:
    import torch

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--events", nargs="+", type=float, default=[1e6, 1e7])
    parser.add_argument("--bucketed_events", nargs="+", type=float, default=[1e7, 5e7])
    parser.add_argument("--events_per_bucket", type=int, default=2_000_000)
    parser.add_argument("--scale_events", nargs="+", type=float, default=[5e7])
    parser.add_argument(
        "--in_memory_limit", type=float, default=5e7, help="largest log the scale section also prepares in memory"
    )
    parser.add_argument(
        "--train_seconds",
        type=float,
        default=180,
        help="how long the scale section's training process runs before it is stopped",
    )
    parser.add_argument("--memory_events", nargs="+", type=float, default=[1e7, 5e7])
    parser.add_argument("--log_users", type=int, default=None, help="fixed users of the synthetic log")
    parser.add_argument("--log_items", type=int, default=None, help="fixed catalogue of the synthetic log")
    parser.add_argument("--train_steps", type=int, default=None, help="training_memory: steps before evaluation")
    parser.add_argument("--from_folder", default="spark", choices=("spark", "bucketed"), help=argparse.SUPPRESS)
    parser.add_argument("--layout", default="time action item", help=argparse.SUPPRESS)  # a child's tokenizer
    parser.add_argument("--max_events", type=int, default=200, help=argparse.SUPPRESS)
    parser.add_argument(
        "--ttq_datasets", nargs="+", default=["yoochoose-100k", "ml-100k"], help="time_to_quality's datasets"
    )
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--work_dir", default=str(ROOT / "outputs" / "bench_throughput"))
    parser.add_argument("--report", action="store_true")
    parser.add_argument(
        "--child",
        choices=("generate", "data", "bucketed", "spark", "train_from_folder", "million"),
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    if args.child:
        return run_child_section(args)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    if not args.report:
        command = "python benchmarks/throughput.py " + " ".join(sys.argv[1:])
        for section in args.sections:
            figures = globals()[f"{section}_section"](args)
            results[section] = {**machine(), "command": command.strip(), **figures}
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    from throughput_report import markdown

    (RESULTS.parent / "throughput.md").write_text(markdown(results))
    print(f"written {RESULTS} and throughput.md")


if __name__ == "__main__":
    main()
