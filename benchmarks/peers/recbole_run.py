"""Run a RecBole 1.2.1 sequential model (SASRec, BERT4Rec, GRU4Rec) as a peer baseline on our pre-split data.

Runs INSIDE the RecBole virtual environment made by ``benchmarks/peers/install_recbole.sh``:

    benchmarks/peers/.venv-recbole/bin/python benchmarks/peers/recbole_run.py \\
        --split_dir D --model SASRec --max_len 200 --output out/sasrec.json

``D`` holds ``train.inter``, ``valid.inter`` and ``test.inter`` (tab-separated, header
``user_id:token  item_id:token  timestamp:float``; the timestamp is the event's ordinal position in its user's
sequence).  valid/test hold one row per user: the event right after the user's training events, and the one
after that.

Protocol (leave-one-out): training examples are every prefix of each training sequence -> next training item;
validation is training events -> valid target; test is training + valid events -> test target; every input
history is truncated to the most recent ``--max_len`` items.  RecBole's ``benchmark_filename`` mode does no
augmentation of its own, so the runner writes already-augmented atomic files (``item_id_list:token_seq``) and
remaps ``item_id_list`` in the same id space as ``item_id`` (``alias_of_item_id``), so every item of the three
files, including those seen only in valid/test, is in the ranking catalogue.

Test metrics are computed by the runner from ``model.full_sort_predict`` on the best-validation model, in two
settings: ``plain`` (nothing excluded, as RecBole's own sequential evaluation, which masks no history items) and
``excluded`` (every item of the user's full, untruncated test history gets -inf before ranking).  Ranks are 1-based,
``1 + #items with a strictly higher score`` (ties count in the target's favour); RecBole's padding id 0 is
never ranked.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_io  # noqa: E402  (the split reader shared with the Lightning peers; no dependencies)

MODELS = ("SASRec", "BERT4Rec", "GRU4Rec")
DATASET = "peer"  # RecBole dataset name of the generated files (never "ml-100k": RecBole special-cases that name)
SPLITS = ("train", "valid", "test")
KS = (10, 50)

log = logging.getLogger("recbole_run")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split_dir", required=True, type=Path, help="folder with train/valid/test .inter files")
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--max_len", required=True, type=int, help="most recent items kept in an input history")
    p.add_argument("--hidden_size", type=int, default=64, help="GRU4Rec: both embedding_size and hidden_size")
    p.add_argument("--num_layers", type=int, default=None, help="default 2 (transformers); GRU4Rec: RecBole's 1")
    p.add_argument("--num_heads", type=int, default=2, help="transformers only")
    p.add_argument("--inner_size", type=int, default=None, help="feed-forward size; default RecBole's (256)")
    p.add_argument(
        "--dropout",
        type=float,
        default=None,
        help="hidden and attention dropout (GRU4Rec: dropout_prob); default RecBole's per-model default "
        "(SASRec 0.5, BERT4Rec 0.2, GRU4Rec 0.3)",
    )
    p.add_argument("--learning_rate", type=float, default=0.001)
    p.add_argument("--weight_decay", type=float, default=0.0)
    p.add_argument("--train_batch_size", type=int, default=256)
    p.add_argument("--eval_batch_size", type=int, default=1024, help="rows per evaluation batch (no effect on results)")
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--stopping_step", type=int, default=10)
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--budget_seconds", type=float, default=None, help="stop after the epoch that crosses it")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--throughput_batches",
        type=int,
        default=0,
        help="only time this many training batches (after 2 warm-up batches) and write samples/s",
    )
    p.add_argument("--output", required=True, type=Path, help="JSON result path")
    p.add_argument("--work_dir", type=Path, default=None, help="default: <output stem>_recbole_work beside --output")
    p.add_argument("--keep_work", action="store_true", help="keep the generated atomic files and checkpoint")
    p.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue from the work folder's last finished epoch when a previous run left one (--no-resume: "
        "start over)",
    )
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------------


def load_split(split_dir: Path) -> tuple[dict[str, list[str]], dict[str, str], dict[str, str]]:
    """Training sequences (sorted by timestamp), valid targets and test targets, keyed by user: the reader the
    Lightning peers share (``peer_io``), plus RecBole's own limit: it splits sequences on spaces."""
    split = peer_io.load_split(split_dir)
    for user, items in split.train.items():
        for item in [*items, split.valid.get(user, ""), split.test.get(user, "")]:
            if any(c.isspace() for c in user + item):
                raise ValueError(f"{split_dir}: id with whitespace ({user!r}, {item!r}); RecBole splits on spaces")
    return split.train, split.valid, split.test


def test_history(user: str, train: dict[str, list[str]], valid: dict[str, str]) -> list[str]:
    return train[user] + ([valid[user]] if user in valid else [])


def write_augmented(
    work_data: Path, train: dict[str, list[str]], valid: dict[str, str], test: dict[str, str], max_len: int
) -> dict[str, int]:
    """Write RecBole benchmark files <work_data>/peer.{train,valid,test}.inter, already augmented."""
    work_data.mkdir(parents=True, exist_ok=True)
    header = "user_id:token\titem_id:token\titem_id_list:token_seq\n"
    counts = {}

    def row(user: str, target: str, history: list[str]) -> str:
        return f"{user}\t{target}\t{' '.join(history[-max_len:])}\n"

    with (work_data / f"{DATASET}.train.inter").open("w", encoding="utf-8") as f:
        f.write(header)
        n = 0
        for user, seq in train.items():
            for k in range(1, len(seq)):
                f.write(row(user, seq[k], seq[max(0, k - max_len) : k]))
                n += 1
        counts["train"] = n
    for split, targets in (("valid", valid), ("test", test)):
        with (work_data / f"{DATASET}.{split}.inter").open("w", encoding="utf-8") as f:
            f.write(header)
            for user, target in targets.items():
                hist = train[user] if split == "valid" else test_history(user, train, valid)
                f.write(row(user, target, hist))
        counts[split] = len(targets)
    return counts


# ---------------------------------------------------------------------------------------------------------------
# RecBole set-up and patches
# ---------------------------------------------------------------------------------------------------------------


def import_recbole():
    """Import the RecBole pieces used here, then undo what RecBole does to torch at import time."""
    import torch
    from recbole.model import sequential_recommender  # noqa: F401  (imports sine.py: set_detect_anomaly(True))

    # recbole/model/sequential_recommender/sine.py calls torch.autograd.set_detect_anomaly(True) at import time,
    # which makes every backward pass several times slower.  Switch it off again and make sure it stays off.
    torch.autograd.set_detect_anomaly(False)
    if torch.is_anomaly_enabled():
        raise RuntimeError("could not switch off autograd anomaly detection")


class _NullWriter:
    """Stands in for tensorboard's SummaryWriter (RecBole writes ./log_tensorboard/ relative to the cwd)."""

    def add_scalar(self, *args, **kwargs):
        pass

    def add_hparams(self, *args, **kwargs):
        pass

    def close(self):
        pass


def patch_recbole(checkpoint_dir: Path) -> None:
    import recbole.trainer.trainer as rb_trainer
    import torch

    rb_trainer.get_tensorboard = lambda logger: _NullWriter()

    # RecBole 1.2.1 torch.load()s its own checkpoint (a pickled dict holding its Config object) without
    # weights_only, which fails under torch>=2.6's weights_only=True default.  Allow full unpickling for
    # files in OUR checkpoint folder only; every other torch.load keeps torch's default.
    original_load = torch.load
    root = str(checkpoint_dir.resolve()) + os.sep

    def load(f, *args, **kwargs):
        if "weights_only" not in kwargs and isinstance(f, (str, os.PathLike)):
            if os.path.abspath(os.fspath(f)).startswith(root):
                kwargs["weights_only"] = False
        return original_load(f, *args, **kwargs)

    if not getattr(torch.load, "_recbole_run_patched", False):
        load._recbole_run_patched = True
        torch.load = load


def model_config(args: argparse.Namespace) -> dict:
    """Model hyper-parameters in RecBole's names; None means RecBole's default for that model."""
    if args.model == "GRU4Rec":
        cfg = {
            "embedding_size": args.hidden_size,
            "hidden_size": args.hidden_size,
            "num_layers": args.num_layers,
            "dropout_prob": args.dropout,
        }
    else:
        cfg = {
            "hidden_size": args.hidden_size,
            "n_layers": 2 if args.num_layers is None else args.num_layers,
            "n_heads": args.num_heads,
            "inner_size": args.inner_size,
            "hidden_dropout_prob": args.dropout,
            "attn_dropout_prob": args.dropout,
        }
    return {k: v for k, v in cfg.items() if v is not None}


def build_config(args: argparse.Namespace, work_dir: Path):
    from recbole.config import Config

    config_dict = {
        # data
        "data_path": str(work_dir / "data"),
        "checkpoint_dir": str(work_dir / "checkpoints"),
        "benchmark_filename": list(SPLITS),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "load_col": {"inter": ["user_id", "item_id", "item_id_list"]},
        "alias_of_item_id": ["item_id_list"],  # remap history tokens in the item id space
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        "seq_len": {"item_id_list": args.max_len},
        # training
        "epochs": args.epochs,
        "train_batch_size": args.train_batch_size,
        "learner": "adam",
        "learning_rate": args.learning_rate,
        "weight_decay": args.weight_decay,
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "stopping_step": args.stopping_step,
        "eval_step": 1,
        "seed": args.seed,
        "reproducibility": True,
        "use_gpu": False,
        "gpu_id": "",
        "worker": 0,
        "show_progress": False,
        "shuffle": True,
        "log_wandb": False,
        # evaluation
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Hit", "NDCG", "MRR"],
        "topk": list(KS),
        "valid_metric": "NDCG@10",
        "valid_metric_bigger": True,
        "eval_batch_size": args.eval_batch_size,
        "metric_decimal_place": 6,
        **model_config(args),
    }
    saved_argv = sys.argv
    sys.argv = sys.argv[:1]  # RecBole's Config parses --key=value pairs from sys.argv itself
    try:
        config = Config(model=args.model, dataset=DATASET, config_dict=config_dict)
    finally:
        sys.argv = saved_argv
    return config


RECORDED_CONFIG_KEYS = (
    "model",
    "MAX_ITEM_LIST_LENGTH",
    "hidden_size",
    "embedding_size",
    "inner_size",
    "n_layers",
    "n_heads",
    "num_layers",
    "hidden_dropout_prob",
    "attn_dropout_prob",
    "dropout_prob",
    "hidden_act",
    "layer_norm_eps",
    "initializer_range",
    "mask_ratio",
    "ft_ratio",
    "transform",
    "loss_type",
    "learner",
    "learning_rate",
    "weight_decay",
    "train_batch_size",
    "eval_batch_size",
    "epochs",
    "stopping_step",
    "eval_step",
    "valid_metric",
    "metrics",
    "topk",
    "train_neg_sample_args",
    "eval_args",
    "seed",
    "reproducibility",
    "clip_grad_norm",
    "device",
)


def recorded_config(config) -> dict:
    out = {}
    for key in RECORDED_CONFIG_KEYS:
        value = config[key] if key in config else None
        if value is None:
            continue
        out[key] = value if isinstance(value, (int, float, str, bool, list, dict)) else str(value)
    return json.loads(json.dumps(out, default=str))


# ---------------------------------------------------------------------------------------------------------------
# training with a wall-clock budget
# ---------------------------------------------------------------------------------------------------------------


def time_training(trainer, train_data, batches: int, warmup: int = 2) -> dict:
    """Training samples per second of RecBole's own step (``calculate_loss``, backward, clip, optimizer step, as
    in ``Trainer._train_epoch``), timed over ``batches`` batches after ``warmup``; data loading included."""
    import torch

    model, optimizer = trainer.model, trainer.optimizer
    model.train()
    samples, started = 0, None
    for index, interaction in enumerate(train_data):
        if index == warmup:
            samples, started = 0, time.perf_counter()
        if index == warmup + batches:
            break
        optimizer.zero_grad()
        loss = model.calculate_loss(interaction.to(trainer.device))
        loss.backward()
        if trainer.clip_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), **trainer.clip_grad_norm)
        optimizer.step()
        samples += len(interaction)
    seconds = time.perf_counter() - started
    return {"samples": samples, "seconds": seconds, "samples_per_second": samples / seconds}


RESUME_FILE = "resume.pt"


def save_resume_state(path: Path, trainer, curve: list[dict], best_epoch: int | None, restarts: int) -> None:
    """Everything a rerun needs to continue after the last finished epoch: weights, optimiser, RecBole's
    early-stopping counters, the epoch record and the RNG; written to a temporary file and renamed, so a kill
    mid-write leaves the previous state."""
    import torch

    state = {
        "model": trainer.model.state_dict(),
        "optimizer": trainer.optimizer.state_dict(),
        "best_valid_score": trainer.best_valid_score,
        "best_valid_result": trainer.best_valid_result,
        "cur_step": trainer.cur_step,
        "curve": curve,
        "best_epoch": best_epoch,
        "restarts": restarts,
        "torch_rng": torch.get_rng_state(),
    }
    temp = path.with_suffix(".tmp")
    torch.save(state, temp)
    temp.replace(path)


def load_resume_state(path: Path, trainer) -> dict | None:
    """The state ``save_resume_state`` wrote, applied to ``trainer`` (None: no earlier run to continue)."""
    import torch

    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)  # our own file, written above
    trainer.model.load_state_dict(state["model"])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.best_valid_score, trainer.best_valid_result = state["best_valid_score"], state["best_valid_result"]
    trainer.cur_step = state["cur_step"]
    torch.set_rng_state(state["torch_rng"])
    return state


def fit(trainer, train_data, valid_data, args: argparse.Namespace, resume_file: Path | None = None) -> dict:
    """RecBole's Trainer.fit loop (same _train_epoch, _valid_epoch, early_stopping, checkpointing), plus a
    wall-clock budget checked after every epoch, a per-epoch record, and (``resume_file``) the state after each
    epoch, so that a rerun stopped by the budget or killed continues from its last finished epoch."""
    import torch
    from recbole.utils import early_stopping

    trainer.eval_collector.data_collect(train_data)
    curve: list[dict] = []
    stopped_by = "max_epochs"
    best_epoch = None
    restarts = 0
    resumed = load_resume_state(resume_file, trainer) if resume_file is not None else None
    if resumed is not None:
        curve, best_epoch, restarts = resumed["curve"], resumed["best_epoch"], resumed["restarts"] + 1
        log.info("resumed after epoch %d (restart %d)", len(curve) - 1, restarts)
        if trainer.cur_step >= trainer.stopping_step:  # it had already stopped early: nothing left to train
            stopped_by = "early_stopping"
    t0 = time.perf_counter()
    for epoch in range(len(curve), args.epochs if stopped_by != "early_stopping" else len(curve)):
        e0 = time.perf_counter()
        loss_sum = trainer._train_epoch(train_data, epoch, show_progress=False)
        loss_sum = float(sum(loss_sum) if isinstance(loss_sum, tuple) else loss_sum)
        e1 = time.perf_counter()
        valid_score, valid_result = trainer._valid_epoch(valid_data, show_progress=False)
        trainer.best_valid_score, trainer.cur_step, stop_flag, update_flag = early_stopping(
            valid_score, trainer.best_valid_score, trainer.cur_step, max_step=trainer.stopping_step, bigger=True
        )
        if update_flag:
            trainer._save_checkpoint(epoch, verbose=False)
            trainer.best_valid_result = valid_result
            best_epoch = epoch
        e2 = time.perf_counter()
        rec = {
            "epoch": epoch,
            "train_loss": loss_sum / max(len(train_data), 1),
            "train_loss_sum": loss_sum,
            "valid_ndcg@10": float(valid_score),
            "valid": {k: float(v) for k, v in valid_result.items()},
            "train_seconds": e1 - e0,
            "valid_seconds": e2 - e1,
            "epoch_seconds": e2 - e0,
            "best_so_far": update_flag,
        }
        curve.append(rec)
        log.info(
            "epoch %d  loss %.4f  valid ndcg@10 %.4f%s  (%.1fs train, %.1fs valid)",
            epoch,
            rec["train_loss"],
            rec["valid_ndcg@10"],
            " *" if update_flag else "",
            rec["train_seconds"],
            rec["valid_seconds"],
        )
        if torch.is_anomaly_enabled():
            raise RuntimeError("autograd anomaly detection was switched back on")
        if resume_file is not None:
            save_resume_state(resume_file, trainer, curve, best_epoch, restarts)
        if stop_flag:
            stopped_by = "early_stopping"
            break
        if args.budget_seconds is not None and time.perf_counter() - t0 >= args.budget_seconds:
            stopped_by = "budget"
            break
    if best_epoch is None:
        raise RuntimeError("no epoch was evaluated")
    last = curve[-1]["epoch"]
    return {
        "curve": curve,
        "epochs_run": len(curve),
        "best_epoch": best_epoch,
        "best_valid_ndcg@10": curve[best_epoch]["valid_ndcg@10"],
        "stopped_by": stopped_by,
        "flattened": stopped_by == "early_stopping" or (last - best_epoch) > args.stopping_step / 2,
        "train_seconds": sum(r["epoch_seconds"] for r in curve),  # over every run that trained it
        "session_seconds": time.perf_counter() - t0,
        "seconds_to_best": sum(r["epoch_seconds"] for r in curve[: best_epoch + 1]),
        "restarts": restarts,
    }


# ---------------------------------------------------------------------------------------------------------------
# test evaluation
# ---------------------------------------------------------------------------------------------------------------


def metrics_from_rank(rank: int | None) -> dict[str, float]:
    """Single-target metrics from a 1-based rank (None: the target cannot be recommended)."""
    out = {}
    for k in KS:
        hit = rank is not None and rank <= k
        out[f"hr@{k}"] = 1.0 if hit else 0.0
        out[f"ndcg@{k}"] = 1.0 / math.log2(rank + 1) if hit else 0.0
    out["mrr@10"] = 1.0 / rank if rank is not None and rank <= 10 else 0.0
    return out


def evaluate_test(model, test_data, dataset, train, valid) -> dict:
    import torch

    uid_field, iid_field = dataset.uid_field, dataset.iid_field
    uid_tokens = dataset.field2id_token[uid_field]
    iid_tokens = dataset.field2id_token[iid_field]
    iid_of = dataset.field2token_id[iid_field]
    n_items = dataset.item_num  # includes padding id 0
    settings = ("plain", "excluded")
    ranks: dict[str, dict[str, int | None]] = {s: {} for s in settings}
    top10: dict[str, dict[str, list[str]]] = {s: {} for s in settings}
    target_in_history = 0
    model.eval()
    with torch.no_grad():
        for interaction, _, _, _ in test_data:
            scores = model.full_sort_predict(interaction).view(len(interaction), -1).float()
            if scores.shape[1] != n_items:
                raise RuntimeError(f"full_sort_predict returned {scores.shape[1]} columns, expected {n_items}")
            scores[:, 0] = -math.inf  # padding id
            users = [str(uid_tokens[u]) for u in interaction[uid_field].tolist()]
            targets = interaction[iid_field]
            masked = scores.clone()
            for row, user in enumerate(users):
                hist = [iid_of[t] for t in set(test_history(user, train, valid))]
                masked[row, hist] = -math.inf
            for setting, s in (("plain", scores), ("excluded", masked)):
                t_score = s.gather(1, targets.view(-1, 1))
                rank = ((s > t_score).sum(1) + 1).tolist()
                finite = torch.isfinite(t_score.view(-1)).tolist()
                for user, r, ok in zip(users, rank, finite):
                    ranks[setting][user] = int(r) if ok else None  # None: target is a seen item (excluded)
                for user, idx in zip(users, s.topk(10, dim=1).indices.tolist()):
                    top10[setting][user] = [str(iid_tokens[i]) for i in idx]
            target_in_history += int((~torch.isfinite(masked.gather(1, targets.view(-1, 1)))).sum())
    out = {"metrics": {}, "per_user_ndcg@10": {}, "per_user_rank": {}}
    for setting in settings:
        per_user = {u: metrics_from_rank(r) for u, r in ranks[setting].items()}
        n = len(per_user)
        out["metrics"][setting] = {
            m: sum(v[m] for v in per_user.values()) / n for m in ("hr@10", "ndcg@10", "mrr@10", "hr@50", "ndcg@50")
        }
        out["per_user_ndcg@10"][setting] = {u: v["ndcg@10"] for u, v in per_user.items()}
        out["per_user_rank"][setting] = ranks[setting]
    out["top10"] = top10
    out["n_test_users"] = len(ranks["plain"])
    out["n_test_targets_in_history"] = target_in_history
    return out


# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    # RecBole 1.2.1 code triggers pandas/torch deprecation FutureWarnings (fillna(inplace=True) on a column,
    # Series.agg(len), torch.cuda.amp.GradScaler); they are harmless with the pinned pandas<3.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")
    import torch

    torch.set_num_threads(args.threads)
    import_recbole()
    import recbole
    from recbole.data import create_dataset, data_preparation
    from recbole.trainer import Trainer
    from recbole.utils import get_model, init_seed

    output = args.output.resolve()
    work_dir = (args.work_dir or output.parent / f"{output.stem}_recbole_work").resolve()
    resume_file = work_dir / RESUME_FILE
    if work_dir.exists() and not (args.resume and resume_file.is_file()):
        shutil.rmtree(work_dir)  # nothing to continue: start clean
    (work_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    patch_recbole(work_dir / "checkpoints")

    t_start = time.perf_counter()
    train, valid, test = load_split(args.split_dir)
    counts = write_augmented(work_dir / "data" / DATASET, train, valid, test, args.max_len)
    log.info("augmented files: %s", counts)

    config = build_config(args, work_dir)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)
    # RecBole names its best-model file by the start time; a rerun that continues this one must find it
    trainer.saved_model_file = str(work_dir / "checkpoints" / f"{args.model}-best.pth")
    data_seconds = time.perf_counter() - t_start
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%s: %d parameters, %d items (+pad), %d users", args.model, n_params, dataset.item_num - 1, len(test))

    if args.throughput_batches:
        result = time_training(trainer, train_data, args.throughput_batches)
        result.update(model=args.model, n_parameters=n_params, n_train_examples=counts["train"], threads=args.threads)
        output.write_text(json.dumps(result, indent=2) + "\n")
        return
    fit_result = fit(trainer, train_data, valid_data, args, resume_file if args.resume else None)

    # best-validation model; RecBole's own test evaluation loads it from the checkpoint (torch.load patch)
    t_eval = time.perf_counter()
    recbole_test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    ours = evaluate_test(trainer.model, test_data, dataset, train, valid)
    eval_seconds = time.perf_counter() - t_eval

    result = {
        "peer": "recbole",
        "model": args.model,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "recbole_config": recorded_config(config),
        "data": {
            "n_users_train": len(train),
            "n_users_valid": len(valid),
            "n_users_test": len(test),
            "n_items_catalogue": dataset.item_num - 1,
            "n_train_examples": counts["train"],
            "max_seq_width": int(dataset.field2seqlen["item_id_list"]),
        },
        "n_parameters": n_params,
        "epochs_run": fit_result["epochs_run"],
        "best_epoch": fit_result["best_epoch"],
        "best_valid_ndcg@10": fit_result["best_valid_ndcg@10"],
        "stopped_by": fit_result["stopped_by"],
        "flattened": fit_result["flattened"],
        "restarts": fit_result["restarts"],
        "valid_curve": [r["valid_ndcg@10"] for r in fit_result["curve"]],
        "epochs": fit_result["curve"],
        "train_seconds": fit_result["train_seconds"],
        "seconds_to_best": fit_result["seconds_to_best"],
        "data_prep_seconds": data_seconds,
        "test_eval_seconds": eval_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "test": ours["metrics"],
        "recbole_reported_test_plain": {k: float(v) for k, v in recbole_test.items()},
        "n_test_users": ours["n_test_users"],
        "n_test_targets_in_history": ours["n_test_targets_in_history"],
        "per_user_ndcg@10": ours["per_user_ndcg@10"],
        "per_user_rank": ours["per_user_rank"],
        "top10": ours["top10"],
        "versions": {
            "recbole": recbole.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "threads": torch.get_num_threads(),
        "autograd_anomaly_detection": torch.is_anomaly_enabled(),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=1) + "\n")
    log.info(
        "test plain: %s | seen excluded: %s",
        {k: round(v, 4) for k, v in ours["metrics"]["plain"].items()},
        {k: round(v, 4) for k, v in ours["metrics"]["excluded"].items()},
    )
    if not args.keep_work and fit_result["stopped_by"] != "budget":  # a budget stop continues on the next run
        shutil.rmtree(work_dir, ignore_errors=True)
    print(output)


if __name__ == "__main__":
    main()
