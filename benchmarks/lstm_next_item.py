"""The classical next-item model bertrec replaces: item embedding -> LSTM -> softmax over all items.

python benchmarks/lstm_next_item.py --split_dir SPLIT_DIR --output_dir RUN_DIR --max_events 200

A baseline for ``quality.py``, not part of the library: trained on every position of each training sequence
with full cross-entropy, early-stopped on validation NDCG@10 (same evaluation code as every other row), then
evaluated on test in both seen-item settings. Writes ``evaluation.json`` and ``metrics.json`` to the run folder.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_protocol import evaluate_both, write_evaluation  # noqa: E402

from bertrec.atomic import atomic_write_text  # noqa: E402
from bertrec.collators import pad_sequences  # noqa: E402
from bertrec.evaluation import EvalBatch, evaluate_scorer  # noqa: E402
from bertrec.recipes.prepare import load_split  # noqa: E402
from bertrec.tokenization import EventTokenizer  # noqa: E402
from bertrec.training import TrainingArguments, epoch_batches  # noqa: E402


class LSTMNextItem(nn.Module):
    """Embedding + LSTM; item scores are the dot product with the (tied) item embeddings."""

    def __init__(self, vocab_size: int, item_offset: int, hidden: int, layers: int, dropout: float, pad_id: int):
        super().__init__()
        self.item_offset = item_offset
        self.embedding = nn.Embedding(vocab_size, hidden, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0)

    def hidden(self, input_ids: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(self.dropout(self.embedding(input_ids)))
        return self.dropout(output)

    def item_scores(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.embedding.weight[self.item_offset :].T


def train_step(model, optimizer, batch, tokenizer) -> float:
    input_ids, mask = batch["input_ids"], batch["attention_mask"].bool()
    targets = input_ids[:, 1:] - tokenizer.item_offset
    labelled = mask[:, 1:] & (targets >= 0)  # the unknown item is never a label
    features = model.hidden(input_ids[:, :-1])[labelled]
    loss = nn.functional.cross_entropy(model.item_scores(features), targets[labelled])
    optimizer.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    return loss.item()


def scorer(model):
    @torch.no_grad()
    def score(batch: EvalBatch) -> torch.Tensor:
        hidden = model.hidden(batch.input_ids)
        last = batch.attention_mask.sum(dim=1) - 1
        return model.item_scores(hidden[torch.arange(len(last)), last])

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split_dir", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--max_events", type=int, default=50)
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--num_layers", type=int, default=1)
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--num_epochs", type=int, default=200)
    parser.add_argument("--early_stopping_patience", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cpu_threads", type=int, default=1)
    parser.add_argument("--exclude_seen", default="true", choices=("true", "false"), help="validation setting")
    default_grouping = str(TrainingArguments.group_by_length).lower()  # batched as bertrec's recipe batches
    parser.add_argument("--group_by_length", default=default_grouping, choices=("true", "false"))
    args = parser.parse_args()
    torch.set_num_threads(args.cpu_threads)
    torch.manual_seed(args.seed)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    split = load_split(args.split_dir)
    tokenizer = EventTokenizer.build(split.train, layout="item", max_events=args.max_events)
    windows = tokenizer.encode_training_windows(split.train, min_events=2)
    lengths = np.array([len(w) for w in windows])
    model = LSTMNextItem(
        tokenizer.vocab_size, tokenizer.item_offset, args.hidden_size, args.num_layers, args.dropout, tokenizer.pad_id
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    best, best_state, bad, history, started = -1.0, None, 0, [], time.perf_counter()
    for epoch in range(args.num_epochs):
        model.train()
        grouped = args.group_by_length == "true"
        for indices in epoch_batches(lengths, args.batch_size, args.seed, epoch, 0, 1, group_by_length=grouped):
            train_step(model, optimizer, pad_sequences([windows[i] for i in indices], tokenizer.pad_id), tokenizer)
        model.eval()
        valid = evaluate_scorer(
            scorer(model), tokenizer, split.valid, ks=(10,), exclude_seen=args.exclude_seen == "true", desc="validate"
        )["ndcg@10"]
        history.append({"epoch": epoch + 1, "ndcg@10": valid, "elapsed_seconds": time.perf_counter() - started})
        print(f"epoch {epoch + 1} valid ndcg@10 {valid:.4f}", flush=True)
        if valid > best:
            best, bad = valid, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            bad += 1
            if bad >= args.early_stopping_patience:
                break
    wall = time.perf_counter() - started
    model.load_state_dict(best_state)
    model.eval()
    evaluation = evaluate_both(scorer(model), tokenizer, split, objective="next")
    best_entry = max(history, key=lambda h: h["ndcg@10"])
    evaluation["training"] = {
        "wall_seconds": round(wall, 1),
        "seconds_to_best": round(best_entry["elapsed_seconds"], 1),
        "epochs_run": len(history),
        "best_epoch": best_entry["epoch"],
        "history": history,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    write_evaluation(out, evaluation)
    atomic_write_text(out / "metrics.json", json.dumps({"config": vars(args), **evaluation["training"]}) + "\n")


if __name__ == "__main__":
    main()
