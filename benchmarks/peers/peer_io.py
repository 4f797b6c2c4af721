"""What the RecTools and RePlay peer runners share: our exported split, our ranking rules, resumable training
callbacks and the result JSON.

Imported by ``rectools_run.py`` and ``replay_run.py`` inside their own virtual environments, and by the project's
tests in its own environment, so nothing here imports a peer library or the project (``bertrec``); the
ranking mirrors ``bertrec.metrics.pessimistic_ranks`` and ``bertrec.evaluation.evaluate_scorer`` (a test checks
that they agree):

- the catalogue is every item of the training events (our tokenizer's items); a valid/test target outside it
  is unknown and counts as a miss, like ``unknown_targets`` in our evaluation;
- rank = number of catalogue items scoring at least the target's score (ties count against the model);
- ``excluded``: every item of the user's full, untruncated history gets ``-inf`` first, so a target the user
  has seen cannot be ranked (a miss); ``plain``: nothing is excluded;
- a target whose score is ``-inf`` or NaN (unscorable by the peer) is a miss; its rank is recorded as ``None``.

Split files (as ``benchmarks/quality_protocol.export_recbole`` writes them): ``train.inter``, ``valid.inter``,
``test.inter``, tab-separated, header ``user_id:token  item_id:token  timestamp:float``, the timestamp being the
event's ordinal position in its user's sequence. valid/test hold one row per user: the event after the user's
training events, and the one after that; the test history is the training events plus the validation event.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

HEADER = ["user_id:token", "item_id:token", "timestamp:float"]
KS = (10, 50)
SETTINGS = ("excluded", "plain")
METRIC_NAMES = ("hr@10", "ndcg@10", "mrr@10", "hr@50", "ndcg@50")
VALID_METRIC = "valid_ndcg10"  # the name logged to Lightning (monitored by early stopping and checkpointing)


# ---------------------------------------------------------------------------------------------------------------
# split
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class PeerSplit:
    """Training sequences in order, validation and test targets, keyed by our user ids."""

    train: dict[str, list[str]]
    valid: dict[str, str]
    test: dict[str, str]
    catalogue: list[str] = field(default_factory=list)  # training items, in order of first appearance

    def __post_init__(self) -> None:
        if not self.catalogue:
            seen: dict[str, None] = {}
            for items in self.train.values():
                seen.update(dict.fromkeys(items))
            self.catalogue = list(seen)
        self.item_index = {item: i for i, item in enumerate(self.catalogue)}

    def valid_history(self, user: str) -> list[str]:
        return self.train[user]

    def test_history(self, user: str) -> list[str]:
        return self.train[user] + ([self.valid[user]] if user in self.valid else [])


def read_inter(path: Path) -> list[tuple[str, str, float]]:
    """Rows (user, item, timestamp) of one exported file; header and ids checked."""
    rows = []
    with Path(path).open(encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        if header != HEADER:
            raise ValueError(f"{path}: header {header}, expected {HEADER}")
        for n, line in enumerate(f, start=2):
            line = line.rstrip("\n")
            if not line:
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise ValueError(f"{path}:{n}: expected 3 tab-separated fields, got {len(parts)}")
            user, item, ts = parts
            if not user or not item:
                raise ValueError(f"{path}:{n}: empty id")
            rows.append((user, item, float(ts)))
    return rows


def load_split(split_dir: Path) -> PeerSplit:
    """Our exported split; training events sorted by timestamp (file order breaks ties)."""
    split_dir = Path(split_dir)
    by_user: dict[str, list[tuple[float, int, str]]] = defaultdict(list)
    for n, (user, item, ts) in enumerate(read_inter(split_dir / "train.inter")):
        by_user[user].append((ts, n, item))
    train = {u: [item for _, _, item in sorted(events)] for u, events in by_user.items()}
    targets = []
    for part in ("valid", "test"):
        found: dict[str, str] = {}
        for user, item, _ in read_inter(split_dir / f"{part}.inter"):
            if user in found:
                raise ValueError(f"{part}.inter: user {user!r} has more than one row")
            if user not in train:
                raise ValueError(f"{part}.inter: user {user!r} has no training events")
            found[user] = item
        targets.append(found)
    return PeerSplit(train, targets[0], targets[1])


def write_split(split: PeerSplit, folder: Path) -> Path:
    """The same files ``export_recbole`` writes (ordinal timestamps), for tests and tiny generated logs."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    head = "\t".join(HEADER) + "\n"
    train = [f"{u}\t{item}\t{float(t)}\n" for u, items in split.train.items() for t, item in enumerate(items)]
    valid = [f"{u}\t{item}\t{float(len(split.train[u]))}\n" for u, item in split.valid.items()]
    test = [f"{u}\t{item}\t{float(len(split.train[u]) + 1)}\n" for u, item in split.test.items()]
    for name, lines in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"{name}.inter").write_text(head + "".join(lines), encoding="utf-8")
    return folder


def generated_split(n_users: int = 120, n_items: int = 60, seed: int = 0, min_len: int = 6, max_len: int = 20):
    """A tiny learnable log: each user walks forward through the items (mostly +1 steps, some random jumps),
    so the next item is predictable from the last one and popularity alone does badly."""
    import random

    rng = random.Random(seed)
    train, valid, test = {}, {}, {}
    for u in range(n_users):
        n = rng.randint(min_len, max_len)
        cur, seq = rng.randrange(n_items), []
        for _ in range(n):
            cur = (cur + 1) % n_items if rng.random() < 0.85 else rng.randrange(n_items)
            seq.append(f"i{cur}")
        user = f"u{u:04d}"
        train[user], valid[user], test[user] = seq[:-2], seq[-2], seq[-1]
    return PeerSplit(train, valid, test)


# ---------------------------------------------------------------------------------------------------------------
# ranking (our rules)
# ---------------------------------------------------------------------------------------------------------------


def rank_targets(scores, targets, seen_rows=None):
    """1-based pessimistic ranks of each row's target and the top-50 item indices, as ``evaluate_scorer`` does.

    ``scores``: float tensor [rows, catalogue]; ``targets``: long tensor (catalogue index, -1 unknown);
    ``seen_rows``: optional (rows, items) index tensors set to -inf first. Returns (ranks as a float64 tensor with
    ``inf`` for a miss, top indices with -1 where nothing is rankable).
    """
    import torch

    scores = scores.float().clone()
    if seen_rows is not None and seen_rows[0].numel():
        scores[seen_rows[0], seen_rows[1]] = -math.inf
    safe = targets.clamp(min=0)
    target_scores = scores.gather(1, safe[:, None])
    ranks = (scores >= target_scores).sum(dim=1).to(torch.float64)
    rankable = (targets >= 0) & torch.isfinite(target_scores[:, 0])
    ranks = torch.where(rankable, ranks, torch.full_like(ranks, math.inf))
    k = min(max(KS), scores.shape[1])
    best = scores.topk(k, dim=1)
    top = best.indices.masked_fill(best.values == -math.inf, -1)
    return ranks, top


def metrics_from_ranks(ranks: list[float]) -> dict[str, float]:
    """HR@K, NDCG@K (K in 10, 50) and MRR@10 averaged over rows (``inf``: a miss)."""
    n = len(ranks)
    out = {}
    for k in KS:
        out[f"hr@{k}"] = sum(r <= k for r in ranks) / n
        out[f"ndcg@{k}"] = sum(1.0 / math.log2(r + 1) for r in ranks if r <= k) / n
    out["mrr@10"] = sum(1.0 / r for r in ranks if r <= 10) / n
    return {m: out[m] for m in METRIC_NAMES}


def evaluate_users(split: PeerSplit, score_fn, users: list[str], part: str, batch_size: int = 256) -> dict:
    """Rank ``part``'s ('valid' or 'test') target of every user in both settings.

    ``score_fn(users, histories)`` returns a [len(users), len(catalogue)] float tensor over ``split.catalogue``
    (``-inf`` for items the peer cannot score). Returns per-setting metrics, ranks (None: a miss) and top-10 ids.
    """
    import torch

    targets_of = split.valid if part == "valid" else split.test
    history_of = split.valid_history if part == "valid" else split.test_history
    out = {"metrics": {}, "rank": {s: {} for s in SETTINGS}, "top10": {s: {} for s in SETTINGS}}
    unknown = 0
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        histories = [history_of(u) for u in batch]
        scores = score_fn(batch, histories)
        if tuple(scores.shape) != (len(batch), len(split.catalogue)):
            raise RuntimeError(
                f"score_fn returned {tuple(scores.shape)}, expected {(len(batch), len(split.catalogue))}"
            )
        device = scores.device  # ranked where the peer scored (a GPU run ranks on the GPU)
        targets = torch.tensor([split.item_index.get(targets_of[u], -1) for u in batch], device=device)
        unknown += int((targets < 0).sum())
        rows, cols = [], []
        for row, history in enumerate(histories):
            items = {split.item_index[i] for i in history if i in split.item_index}
            rows += [row] * len(items)
            cols += sorted(items)
        seen = tuple(torch.tensor(index, dtype=torch.long, device=device) for index in (rows, cols))
        for setting in SETTINGS:
            ranks, top = rank_targets(scores, targets, seen if setting == "excluded" else None)
            for user, r, t in zip(batch, ranks.tolist(), top[:, :10].tolist()):
                out["rank"][setting][user] = None if math.isinf(r) else int(r)
                out["top10"][setting][user] = [split.catalogue[i] if i >= 0 else None for i in t]
    for setting in SETTINGS:
        ranks = [math.inf if r is None else r for r in out["rank"][setting].values()]
        out["metrics"][setting] = metrics_from_ranks(ranks)
    out["unknown_targets"] = unknown
    return out


def ndcg_at_10(rank: int | None) -> float:
    return 1.0 / math.log2(rank + 1) if rank is not None and rank <= 10 else 0.0


# ---------------------------------------------------------------------------------------------------------------
# resumable Lightning training: validation NDCG@10 each epoch, early stopping, last + best checkpoints
# ---------------------------------------------------------------------------------------------------------------


def lightning_callbacks(pl, run_dir: Path, validate, patience: int, setting: str, budget_seconds: float | None = None):
    """[epoch recorder, early stopping, checkpoint] for a Lightning ``Trainer``.

    ``pl`` is the Lightning package the peer uses (``pytorch_lightning`` for RecTools, ``lightning.pytorch``
    for RePlay). ``validate(pl_module)`` returns ``evaluate_users(...)`` on the validation targets. Every epoch
    the recorder logs ``valid_ndcg10`` (in ``setting``); early stopping (``patience`` epochs without a strictly
    better value) and the checkpoint (best weights as ``best.ckpt``, every epoch as ``last.ckpt``) watch it.
    The recorder's history travels in the checkpoint, so a resumed run continues the same record. With
    ``budget_seconds``, training stops after the epoch that ends past that many seconds of this invocation.
    """
    invocation_started = time.perf_counter()

    class EpochRecorder(pl.Callback):
        def __init__(self) -> None:
            self.epochs: list[dict] = []
            self.restarts = 0
            self.best_valid: dict | None = None
            self.budget_hit = False
            self._started = time.perf_counter()

        @property
        def state_key(self) -> str:
            return "peer_epoch_recorder"

        def state_dict(self) -> dict:
            return {"epochs": self.epochs, "restarts": self.restarts, "best_valid": self.best_valid}

        def load_state_dict(self, state: dict) -> None:
            self.epochs = list(state["epochs"])
            self.best_valid = state.get("best_valid")
            self.restarts = int(state.get("restarts", 0)) + 1  # loaded only when a run resumes

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._started = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            train_seconds = time.perf_counter() - self._started
            loss = trainer.callback_metrics.get("train_loss")
            was_training = pl_module.training
            started = time.perf_counter()
            result = validate(pl_module)
            pl_module.train(was_training)
            value = result["metrics"][setting]["ndcg@10"]
            record = {
                "epoch": len(self.epochs) + 1,
                "train_loss": None if loss is None else float(loss),
                "valid_ndcg@10": value,
                "valid": result["metrics"],
                "train_seconds": round(train_seconds, 3),
                "valid_seconds": round(time.perf_counter() - started, 3),
                "restart": self.restarts,
            }
            best = max((e["valid_ndcg@10"] for e in self.epochs), default=-math.inf)
            if value > best:
                self.best_valid = {"epoch": record["epoch"], **result["metrics"]}
            self.epochs.append(record)
            pl_module.log(VALID_METRIC, value, on_step=False, on_epoch=True, prog_bar=False, logger=False)
            if budget_seconds is not None and time.perf_counter() - invocation_started >= budget_seconds:
                self.budget_hit = True
                trainer.should_stop = True
            print(
                f"epoch {record['epoch']}: loss {record['train_loss']}, valid ndcg@10 ({setting}) {value:.5f}, "
                f"{train_seconds:.1f}s + {record['valid_seconds']:.1f}s",
                flush=True,
            )

    recorder = EpochRecorder()
    stopper = pl.callbacks.EarlyStopping(
        monitor=VALID_METRIC, mode="max", patience=patience, min_delta=0.0, check_on_train_epoch_end=True, strict=True
    )
    checkpoint = pl.callbacks.ModelCheckpoint(
        dirpath=str(Path(run_dir) / "checkpoints"),
        filename="best",
        monitor=VALID_METRIC,
        mode="max",
        save_top_k=1,
        save_last=True,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
    return recorder, stopper, checkpoint


def last_checkpoint(run_dir: Path) -> str | None:
    path = Path(run_dir) / "checkpoints" / "last.ckpt"
    return str(path) if path.is_file() else None


def training_summary(recorder, stopper, max_epochs: int, patience: int) -> dict:
    epochs = recorder.epochs
    curve = [e["valid_ndcg@10"] for e in epochs]
    best_epoch = curve.index(max(curve)) + 1 if curve else None
    if stopper.stopped_epoch > 0 or (curve and len(curve) - best_epoch >= patience):
        stopped_by = "early_stopping"
    elif len(curve) >= max_epochs:
        stopped_by = "max_epochs"
    elif recorder.budget_hit:
        stopped_by = "budget"
    else:
        stopped_by = "unknown"
    upto = epochs[:best_epoch] if best_epoch else []
    return {
        "epochs_run": len(epochs),
        "best_epoch": best_epoch,
        "best_valid_ndcg@10": max(curve) if curve else None,
        "best_valid": recorder.best_valid,
        "stopped_by": stopped_by,
        "flattened": stopped_by == "early_stopping" or (bool(curve) and len(curve) - best_epoch > patience / 2),
        "restarts": recorder.restarts,
        "valid_curve": curve,
        "epochs": epochs,
        "train_seconds": round(sum(e["train_seconds"] + e["valid_seconds"] for e in epochs), 3),
        "seconds_to_best": round(sum(e["train_seconds"] + e["valid_seconds"] for e in upto), 3),
    }


# ---------------------------------------------------------------------------------------------------------------
# result JSON
# ---------------------------------------------------------------------------------------------------------------


def result_json(peer: str, model: str, args, split: PeerSplit, training: dict, test: dict, extra: dict) -> dict:
    """The runner's output: what ``quality.py`` turns into an evaluation (``per_user_rank`` is the input of our
    metrics; ``test`` holds the same metrics computed here as a cross-check)."""
    import torch

    per_user_ndcg = {s: {u: ndcg_at_10(r) for u, r in test["rank"][s].items()} for s in SETTINGS}
    return {
        "peer": peer,
        "model": model,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "data": {
            "n_users_train": len(split.train),
            "n_users_valid": len(split.valid),
            "n_users_test": len(split.test),
            "n_items_catalogue": len(split.catalogue),
            "n_train_events": sum(len(s) for s in split.train.values()),
        },
        **training,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "test": test["metrics"],
        "n_test_users": len(test["rank"]["plain"]),
        "n_test_unknown_targets": test["unknown_targets"],
        "n_test_targets_in_history": sum(
            1 for u, r in test["rank"]["excluded"].items() if r is None and test["rank"]["plain"][u] is not None
        ),
        "per_user_rank": test["rank"],
        "per_user_ndcg@10": per_user_ndcg,
        "top10": test["top10"],
        "threads": torch.get_num_threads(),
        "versions": {"torch": torch.__version__, "python": platform.python_version(), **extra.pop("versions", {})},
        **extra,
    }


def write_result(peer: str, model: str, args, split: PeerSplit, training: dict, test: dict, extra: dict) -> None:
    """``result_json`` written atomically to ``args.output``, and the line a benchmark log shows for the run."""
    result = result_json(peer, model, args, split, training, test, extra)
    write_json(args.output, result)
    test_ndcg = {s: round(result["test"][s]["ndcg@10"], 4) for s in SETTINGS}
    print(
        f"test ndcg@10 {test_ndcg}; {training['epochs_run']} epochs (best {training['best_epoch']}, "
        f"{training['stopped_by']}), restarts {training['restarts']}",
        flush=True,
    )
    print(args.output)


def write_json(path: Path, data: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(path.suffix + ".tmp")
    temp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(temp, path)


# a peer at its authors' own settings for a dataset, where they publish them (replacing the equal-size flags;
# quality.py's rows and gpu_batch.sh read them here): RecTools' SASRec+SS on Amazon Beauty, leave-one-out, from the
# eSASRec benchmark of RecTools' authors (github.com/blondered/transformer_benchmark,
# configs/paper/loo/s3_vanilla.yaml: 256 factors, 1 block, 1 head, dropout 0.2, 50 events, sampled softmax over
# 256 negatives, lr 1e-3, at most 200 epochs); early stopping keeps our patience of 10, where theirs is 50
PUBLISHED_SETTINGS = {
    "rectools-sasrec-published": {
        "amazon-beauty": [
            "--hidden_size", "256", "--num_layers", "1", "--num_heads", "1", "--dropout", "0.2",
            "--loss", "sampled_softmax", "--n_negatives", "256", "--learning_rate", "0.001", "--epochs", "200",
        ],
    },
}  # fmt: skip


def add_run_arguments(parser) -> None:
    """Where and how long a Lightning runner trains: a GPU run trains, scores and ranks on the GPU; a budget stops
    training after the epoch that crosses it (the run is then "budget", not converged, and a rerun continues it)."""
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--accelerator", choices=("cpu", "gpu"), default="cpu", help="Lightning accelerator; gpu = one CUDA device"
    )
    parser.add_argument("--budget_seconds", type=float, default=None, help="wall-clock budget of this invocation")


def torch_device(accelerator: str) -> str:
    return "cuda" if accelerator == "gpu" else "cpu"


def set_threads(threads: int) -> None:
    """One setting for every thread pool (call before importing numpy-heavy peers where possible)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import torch

    torch.set_num_threads(threads)
