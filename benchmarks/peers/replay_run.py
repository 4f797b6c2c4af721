"""Run RePlay's SasRec (CE or SCE loss) as a peer baseline on our pre-split leave-one-out data.

Runs INSIDE the RePlay virtual environment made by ``benchmarks/peers/install_replay.sh``:

    benchmarks/peers/.venv-replay/bin/python benchmarks/peers/replay_run.py \\
        --split_dir D --max_len 200 --loss CE --run_dir R --output R/replay.json

``D`` holds our exported ``train.inter``/``valid.inter``/``test.inter`` (see ``peer_io.py``). Items are numbered in
our catalogue order (every training item), so the model's score columns are our items. RePlay's ``SasRec``
Lightning module (``replay.models.nn.sequential.SasRec``, deprecated in 0.22 in favour of ``replay.nn`` but
still shipped) trains on one sample per user (``SasRecTrainingDataset``: its most recent ``max_len`` + 1 training
events, every position predicting the next), with its own loss (full-catalogue CE, or SCE), Adam and Lightning
loop. After every epoch the runner scores each user's validation target by our rules and logs
``valid_ndcg10``; Lightning's ``EarlyStopping`` (patience 10) and ``ModelCheckpoint`` (``best.ckpt``,
``last.ckpt`` in ``<run_dir>/checkpoints``) watch it; a rerun with the same ``--run_dir`` resumes from
``last.ckpt`` (``ckpt_path``). Test scores come from the best-validation weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peer_io  # noqa: E402

ITEM = "item_id"
QUERY = "query_idx"
# RePlay's own SasRec defaults (replay-rec 0.22.0 signature), for --preset replay
REPLAY_DEFAULTS = {"hidden_size": 50, "num_layers": 2, "num_heads": 1, "dropout": 0.2}
EQUAL_SIZE = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "dropout": 0.2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split_dir", required=True, type=Path)
    p.add_argument("--model", choices=("SasRec",), default="SasRec")
    p.add_argument("--max_len", required=True, type=int, help="max_seq_len")
    p.add_argument(
        "--preset",
        choices=("equal", "replay"),
        default="equal",
        help="equal: 64 hidden, 2 blocks, 2 heads; replay: the library's defaults (50 hidden, 2 blocks, 1 head)",
    )
    p.add_argument("--hidden_size", type=int, default=None)
    p.add_argument("--num_layers", type=int, default=None, help="block_count")
    p.add_argument("--num_heads", type=int, default=None, help="head_count")
    p.add_argument("--dropout", type=float, default=None, help="dropout_rate (default 0.2, RePlay's)")
    p.add_argument("--loss", choices=("CE", "SCE", "BCE"), default="CE")
    p.add_argument("--loss_sample_count", type=int, default=None, help="sampled CE/BCE negatives (default: full CE)")
    p.add_argument("--sce_buckets", type=int, default=256, help="SCE n_buckets")
    p.add_argument("--sce_bucket_size_x", type=int, default=256)
    p.add_argument("--sce_bucket_size_y", type=int, default=256)
    p.add_argument("--learning_rate", type=float, default=0.001)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--patience", type=int, default=10)
    p.add_argument("--valid_setting", choices=peer_io.SETTINGS, default="excluded")
    p.add_argument("--eval_batch_size", type=int, default=256)
    p.add_argument("--seed", type=int, default=2020)
    peer_io.add_run_arguments(p)
    p.add_argument("--run_dir", required=True, type=Path)
    p.add_argument("--output", required=True, type=Path)
    args = p.parse_args(argv)
    preset = REPLAY_DEFAULTS if args.preset == "replay" else EQUAL_SIZE
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def tensor_schema(n_items: int, hidden_size: int):
    from replay.data import FeatureHint, FeatureSource, FeatureType
    from replay.data.nn import TensorFeatureInfo, TensorFeatureSource, TensorSchema

    return TensorSchema(
        TensorFeatureInfo(
            name=ITEM,
            is_seq=True,
            feature_type=FeatureType.CATEGORICAL,
            feature_hint=FeatureHint.ITEM_ID,
            cardinality=n_items,
            embedding_dim=hidden_size,
            feature_sources=[TensorFeatureSource(FeatureSource.INTERACTIONS, ITEM)],
        )
    )


def encode(split: peer_io.PeerSplit, history: list[str]) -> list[int]:
    """Catalogue indices of a history; items outside the catalogue (seen only in valid/test) are dropped."""
    return [split.item_index[i] for i in history if i in split.item_index]


def make_scorer(module, split: peer_io.PeerSplit, max_len: int):
    import torch

    n_items = len(split.catalogue)

    def score(users: list[str], histories: list[list[str]]) -> torch.Tensor:
        device = module.device
        out = torch.full((len(users), n_items), -torch.inf, device=device)
        encoded = [encode(split, h)[-max_len:] for h in histories]
        rows = [r for r, e in enumerate(encoded) if e]
        if not rows:
            return out
        ids = torch.zeros((len(rows), max_len), dtype=torch.long)
        mask = torch.zeros((len(rows), max_len), dtype=torch.bool)
        for i, r in enumerate(rows):  # left padding: the last position holds the most recent item
            seq = encoded[r]
            ids[i, max_len - len(seq) :] = torch.tensor(seq)
            mask[i, max_len - len(seq) :] = True
        batch = {
            "query_id": torch.tensor(rows, device=device),
            "padding_mask": mask.to(device),
            "feature_tensor": {ITEM: ids.to(device)},
        }
        was_training = module.training
        module.eval()
        with torch.no_grad():
            scores = module.predict(batch).float()
        module.train(was_training)
        out[torch.tensor(rows, device=device)] = scores[:, :n_items]
        return out

    return score


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    peer_io.set_threads(args.threads)
    import lightning
    import lightning.pytorch as pl
    import pandas as pd
    import replay
    import torch
    from replay.data.nn import PandasSequentialDataset
    from replay.models.nn.loss import SCEParams
    from replay.models.nn.optimizer_utils import FatOptimizerFactory
    from replay.models.nn.sequential import SasRec
    from replay.models.nn.sequential.sasrec import SasRecTrainingDataset

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    run_dir = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    split = peer_io.load_split(args.split_dir)
    state_file = run_dir / "training_state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    resume = peer_io.last_checkpoint(run_dir)
    pl.seed_everything(args.seed, workers=True)

    schema = tensor_schema(len(split.catalogue), args.hidden_size)
    users = list(split.train)
    sequences = pd.DataFrame({QUERY: range(len(users)), ITEM: [encode(split, split.train[u]) for u in users]})
    sequences = sequences[sequences[ITEM].map(len) >= 2].reset_index(drop=True)  # one input and one target at least
    train_data = SasRecTrainingDataset(PandasSequentialDataset(schema, QUERY, ITEM, sequences), args.max_len)
    loader = torch.utils.data.DataLoader(train_data, batch_size=args.batch_size, shuffle=True, num_workers=0)

    module = SasRec(
        tensor_schema=schema,
        block_count=args.num_layers,
        head_count=args.num_heads,
        hidden_size=args.hidden_size,
        max_seq_len=args.max_len,
        dropout_rate=args.dropout,
        loss_type=args.loss,
        loss_sample_count=args.loss_sample_count,
        optimizer_factory=FatOptimizerFactory(learning_rate=args.learning_rate),
        sce_params=SCEParams(args.sce_buckets, args.sce_bucket_size_x, args.sce_bucket_size_y)
        if args.loss == "SCE"
        else None,
    )
    valid_users = [u for u in split.train if u in split.valid]

    def validate(pl_module) -> dict:
        score = make_scorer(pl_module, split, args.max_len)
        return peer_io.evaluate_users(split, score, valid_users, "valid", args.eval_batch_size)

    recorder, stopper, checkpoint = peer_io.lightning_callbacks(
        pl, run_dir, validate, args.patience, args.valid_setting, args.budget_seconds
    )
    max_epochs = state["epochs_run"] if state.get("stopped_by") == "early_stopping" else args.epochs
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        accelerator=args.accelerator,
        devices=1,
        callbacks=[recorder, stopper, checkpoint],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    started = time.perf_counter()
    # our own checkpoint (it pickles RePlay's TensorSchema in the hyper-parameters): full unpickling is safe here
    trainer.fit(module, train_dataloaders=loader, ckpt_path=resume, weights_only=False if resume else None)
    fit_seconds = time.perf_counter() - started
    training = peer_io.training_summary(recorder, stopper, args.epochs, args.patience)
    peer_io.write_json(state_file, {k: training[k] for k in ("epochs_run", "stopped_by", "best_epoch", "restarts")})

    best = checkpoint.best_model_path
    if not best:
        raise RuntimeError("no best checkpoint was written")
    module.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["state_dict"])
    module.to(peer_io.torch_device(args.accelerator))  # Lightning's teardown left it on the CPU
    started = time.perf_counter()
    test_users = [u for u in split.train if u in split.test]
    test = peer_io.evaluate_users(
        split, make_scorer(module, split, args.max_len), test_users, "test", args.eval_batch_size
    )
    extra = {
        "n_parameters": sum(p.numel() for p in module.parameters()),
        "n_train_sequences": len(sequences),
        "fit_call_seconds": round(fit_seconds, 3),
        "test_eval_seconds": round(time.perf_counter() - started, 3),
        "best_checkpoint": best,
        "replay_hparams": json.loads(json.dumps(dict(module.hparams), default=str)),
        "versions": {"replay-rec": getattr(replay, "__version__", "?"), "lightning": lightning.__version__},
    }
    peer_io.write_result("replay", f"SasRec-{args.loss}", args, split, training, test, extra)


if __name__ == "__main__":
    main()
