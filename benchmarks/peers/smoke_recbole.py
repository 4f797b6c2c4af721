"""Smoke test of recbole_run.py: a tiny random leave-one-out split, 2 epochs of each model, JSON sanity checks.

    python benchmarks/peers/smoke_recbole.py [--work_dir /tmp/recbole_smoke] [--models SASRec GRU4Rec]

Needs the RecBole venv (benchmarks/peers/install_recbole.sh); runs each model with 1 thread.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV_PYTHON = HERE / ".venv-recbole" / "bin" / "python"
HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"
METRICS = ("hr@10", "ndcg@10", "mrr@10", "hr@50", "ndcg@50")


def make_split(folder: Path, n_users: int = 200, n_items: int = 300, seed: int = 0) -> None:
    """~20 events per user, items drifting forward with popularity-skewed jumps; one item only in valid and
    one only in test, to check they are in the catalogue."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    train, valid, test = [HEADER], [HEADER], [HEADER]
    for u in range(n_users):
        n = rng.randint(5, 35)
        cur, seq = rng.randrange(n_items), []
        for _ in range(n):
            jump = cur + rng.choice([1, 1, 2, 3]) if rng.random() < 0.7 else int(rng.paretovariate(1.2))
            cur = jump % n_items
            seq.append(f"i{cur}")
        if u == 0:
            seq[-2] = "only_valid_item"
        if u == 1:
            seq[-1] = "only_test_item"
        user = f"u{u:03d}"
        train += [f"{user}\t{item}\t{t}\n" for t, item in enumerate(seq[:-2])]
        valid.append(f"{user}\t{seq[-2]}\t{n - 2}\n")
        test.append(f"{user}\t{seq[-1]}\t{n - 1}\n")
    for name, lines in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.inter").write_text("".join(lines))


def read_split(folder: Path) -> tuple[dict[str, list[str]], dict[str, str], dict[str, str]]:
    def rows(name):
        lines = (folder / f"{name}.inter").read_text().splitlines()[1:]
        return [line.split("\t") for line in lines]

    hist = defaultdict(list)
    for user, item, _ in sorted(rows("train"), key=lambda r: (r[0], float(r[2]))):
        hist[user].append(item)
    return hist, {u: i for u, i, _ in rows("valid")}, {u: i for u, i, _ in rows("test")}


def check(result: dict, folder: Path) -> list[str]:
    hist, valid, test = read_split(folder)
    catalogue = {i for items in hist.values() for i in items} | set(valid.values()) | set(test.values())
    problems = []
    for setting in ("plain", "excluded"):
        m = result["test"][setting]
        if not all(0.0 <= m[k] <= 1.0 for k in METRICS):
            problems.append(f"{setting}: metric outside [0, 1]")
        if not (m["hr@50"] >= m["hr@10"] >= m["ndcg@10"] >= m["mrr@10"] and m["ndcg@50"] >= m["ndcg@10"]):
            problems.append(f"{setting}: metrics out of order {m}")
        per_user = result["per_user_ndcg@10"][setting]
        if set(per_user) != set(test):
            problems.append(f"{setting}: per-user NDCG@10 does not cover the {len(test)} test users")
        elif abs(sum(per_user.values()) / len(per_user) - m["ndcg@10"]) > 1e-9:
            problems.append(f"{setting}: per-user mean differs from the reported NDCG@10")
        if set(result["top10"][setting]) != set(test):
            problems.append(f"{setting}: top-10 lists do not cover the test users")
    reported = result["recbole_reported_test_plain"]
    for k in METRICS:
        if abs(reported[k.replace("hr@", "hit@")] - result["test"]["plain"][k]) > 1e-3:
            problems.append(f"plain {k} differs from RecBole's own evaluation")
    for user, top in result["top10"]["excluded"].items():
        seen = set(hist[user]) | {valid[user]}
        if len(set(top)) != 10 or seen & set(top) or not set(top) <= catalogue:
            problems.append(f"excluded top-10 of {user} has a seen, repeated or unknown item")
            break
    for user, target in test.items():
        plain, excluded = result["per_user_rank"]["plain"][user], result["per_user_rank"]["excluded"][user]
        if (target in set(hist[user]) | {valid[user]}) != (excluded is None):
            problems.append(f"seen-target bookkeeping wrong for {user}")
            break
        if excluded is not None and excluded > plain:
            problems.append(f"excluding seen items made {user}'s rank worse")
            break
    if result["data"]["n_items_catalogue"] != len(catalogue):
        problems.append(f"catalogue {result['data']['n_items_catalogue']} items, files have {len(catalogue)}")
    if result["autograd_anomaly_detection"]:
        problems.append("autograd anomaly detection was on")
    if result["epochs_run"] != len(result["valid_curve"]) or not result["train_seconds"] > 0:
        problems.append("training record inconsistent")
    return problems


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work_dir", type=Path, default=Path("/tmp/recbole_smoke"))
    p.add_argument("--models", nargs="+", default=["SASRec", "BERT4Rec", "GRU4Rec"])
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    split = args.work_dir / "split"
    make_split(split)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    failed = 0
    for model in args.models:
        out = args.work_dir / f"{model}.json"
        command = [str(VENV_PYTHON), str(HERE / "recbole_run.py"), "--split_dir", str(split), "--model", model]
        command += ["--max_len", "20", "--epochs", str(args.epochs), "--threads", "1", "--quiet"]
        command += ["--output", str(out)]
        run = subprocess.run(command, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            print(f"{model}: FAILED (exit {run.returncode})\n{run.stderr[-3000:]}")
            failed += 1
            continue
        result = json.loads(out.read_text())
        problems = check(result, split)
        failed += bool(problems)
        status = "OK" if not problems else "PROBLEMS: " + "; ".join(problems)
        print(f"{model}: {status}  ({result['epochs_run']} epochs, {result['train_seconds']:.1f}s)")
        for setting in ("plain", "excluded"):
            print(f"  {setting:8s} " + "  ".join(f"{k} {result['test'][setting][k]:.4f}" for k in METRICS))
    print(f"{len(args.models) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
