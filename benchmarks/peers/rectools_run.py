"""Run RecTools' SASRec or BERT4Rec as a peer baseline on our pre-split leave-one-out data.

Runs INSIDE the RecTools virtual environment made by ``benchmarks/peers/install_rectools.sh``:

    benchmarks/peers/.venv-rectools/bin/python benchmarks/peers/rectools_run.py \\
        --split_dir D --model SASRec --max_len 200 --run_dir R --output R/rectools.json

``D`` holds our exported ``train.inter``/``valid.inter``/``test.inter`` (see ``peer_io.py``). RecTools trains on
the training events only (its own data preparation: one sequence per user, its most recent ``max_len`` (+1 for
SASRec) events, users with fewer than 2 events dropped), with its own loss (softmax by default), optimiser and
Lightning loop. After every epoch the runner scores each user's validation target over the full catalogue of
training items by our rules (``peer_io.evaluate_users``) and logs ``valid_ndcg10``; Lightning's
``EarlyStopping`` (patience 10 by default) and ``ModelCheckpoint`` (``best.ckpt`` and ``last.ckpt`` every epoch in
``<run_dir>/checkpoints``) watch it. Rerun with the same ``--run_dir``, training resumes from ``last.ckpt``
(Lightning ``ckpt_path``: weights, optimiser, epoch, early-stopping state and the epoch record); the result
counts ``restarts``. The test scores come from the best-validation weights, with the training events plus the
validation event as history.
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

MODELS = ("SASRec", "BERT4Rec")
# RecTools' own defaults (SASRecModel / BERT4RecModel signatures, rectools 0.19.0), for --preset rectools
RECTOOLS_DEFAULTS = {"hidden_size": 256, "num_layers": 2, "num_heads": 4, "dropout": 0.2, "batch_size": 128}
EQUAL_SIZE = {"hidden_size": 64, "num_layers": 2, "num_heads": 2, "dropout": 0.2, "batch_size": 128}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split_dir", required=True, type=Path)
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--max_len", required=True, type=int, help="RecTools session_max_len")
    p.add_argument(
        "--preset",
        choices=("equal", "rectools"),
        default="equal",
        help="equal: our equal-size setting (64 hidden, 2 layers, 2 heads); rectools: the library's defaults "
        "(256 hidden, 2 layers, 4 heads); explicit flags below override either",
    )
    p.add_argument("--hidden_size", type=int, default=None, help="n_factors")
    p.add_argument("--num_layers", type=int, default=None, help="n_blocks")
    p.add_argument("--num_heads", type=int, default=None, help="n_heads")
    p.add_argument("--dropout", type=float, default=None, help="dropout_rate (default 0.2, RecTools')")
    p.add_argument("--batch_size", type=int, default=None, help="default 128 (RecTools')")
    p.add_argument("--learning_rate", type=float, default=0.001)
    p.add_argument("--loss", choices=("softmax", "BCE", "gBCE", "sampled_softmax"), default="softmax")
    p.add_argument("--n_negatives", type=int, default=1, help="negatives per positive for BCE/gBCE/sampled_softmax")
    p.add_argument("--mask_prob", type=float, default=0.15, help="BERT4Rec only")
    p.add_argument("--epochs", type=int, default=300, help="most epochs (early stopping usually ends sooner)")
    p.add_argument("--patience", type=int, default=10, help="epochs without a better validation NDCG@10")
    p.add_argument(
        "--valid_setting", choices=peer_io.SETTINGS, default="excluded", help="setting of the stopping metric"
    )
    p.add_argument("--eval_batch_size", type=int, default=256)
    p.add_argument("--seed", type=int, default=2020)
    peer_io.add_run_arguments(p)
    p.add_argument("--run_dir", required=True, type=Path, help="checkpoints; a rerun resumes from its last.ckpt")
    p.add_argument("--output", required=True, type=Path, help="result JSON")
    args = p.parse_args(argv)
    preset = RECTOOLS_DEFAULTS if args.preset == "rectools" else EQUAL_SIZE
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def interactions_frame(histories: dict[str, list[str]]):
    """RecTools interactions: one row per event, the ordinal position as its datetime (order is all that counts)."""
    import pandas as pd
    from rectools import Columns

    users, items, positions = [], [], []
    for user, seq in histories.items():
        users += [user] * len(seq)
        items += seq
        positions += range(len(seq))
    return pd.DataFrame(
        {
            Columns.User: users,
            Columns.Item: items,
            Columns.Weight: 1.0,
            Columns.Datetime: pd.to_datetime(pd.Series(positions, dtype="int64"), unit="s"),
        }
    )


def make_scorer(pl_module, split: peer_io.PeerSplit, batch_size: int):
    """score_fn(users, histories) -> [users, catalogue] scores of the model in ``pl_module``, in our item order
    (-inf for an item RecTools dropped, a row of -inf for a user with no known item)."""
    import numpy as np
    import torch
    from rectools.dataset import Dataset

    preparator = pl_module.data_preparator
    internal = preparator.item_id_map.to_internal.reindex(split.catalogue)
    known = torch.from_numpy(~internal.isna().to_numpy())
    columns = torch.from_numpy(internal.fillna(0).to_numpy().astype(np.int64))

    def score(users: list[str], histories: list[list[str]]) -> torch.Tensor:
        device = pl_module.device  # where Lightning trains it: scoring must not move it elsewhere
        out = torch.full((len(users), len(split.catalogue)), -torch.inf, device=device)
        dataset = Dataset.construct(interactions_frame(dict(zip(users, histories))))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "N target users were considered cold"
            rec = preparator.transform_dataset_u2i(dataset, users)
        if rec.user_id_map.size == 0:
            return out
        loader = preparator.get_dataloader_recommend(rec, batch_size)
        user_embs, item_embs = pl_module._get_user_item_embeddings(loader, str(device))
        logits = pl_module.torch_model.similarity_module(user_embs.to(device), item_embs).float()
        rows = rec.user_id_map.to_internal.reindex(users)
        present = torch.from_numpy(~rows.isna().to_numpy()).to(device)
        picked = logits[torch.from_numpy(rows.dropna().to_numpy().astype(np.int64)).to(device)]
        picked = picked[:, columns.to(device)]
        picked[:, ~known.to(device)] = -torch.inf
        out[present] = picked
        return out

    return score


def build_model(args, trainer_factory):
    from rectools.models import BERT4RecModel, SASRecModel

    common = dict(
        n_blocks=args.num_layers,
        n_heads=args.num_heads,
        n_factors=args.hidden_size,
        dropout_rate=args.dropout,
        session_max_len=args.max_len,
        loss=args.loss,
        n_negatives=args.n_negatives,
        lr=args.learning_rate,
        batch_size=args.batch_size,
        epochs=args.epochs,
        recommend_batch_size=args.eval_batch_size,
        recommend_torch_device="cpu",
        get_trainer_func=trainer_factory,
    )
    if args.model == "SASRec":
        return SASRecModel(**common)
    return BERT4RecModel(mask_prob=args.mask_prob, **common)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    peer_io.set_threads(args.threads)
    import pytorch_lightning as pl
    import rectools
    import torch
    from rectools.dataset import Dataset

    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*GPU available but not used.*")
    run_dir = args.run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    split = peer_io.load_split(args.split_dir)
    state_file = run_dir / "training_state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    resume = peer_io.last_checkpoint(run_dir)
    pl.seed_everything(args.seed, workers=True)

    # validation: each user's training events -> validation target, by our rules, every epoch
    valid_users = [u for u in split.train if u in split.valid]

    def validate(pl_module) -> dict:
        score = make_scorer(pl_module, split, args.eval_batch_size)
        return peer_io.evaluate_users(split, score, valid_users, "valid", args.eval_batch_size)

    recorder, stopper, checkpoint = peer_io.lightning_callbacks(
        pl, run_dir, validate, args.patience, args.valid_setting, args.budget_seconds
    )
    max_epochs = state["epochs_run"] if state.get("stopped_by") == "early_stopping" else args.epochs

    class ResumingTrainer(pl.Trainer):
        """RecTools calls ``trainer.fit(module, train_loader, val_loader)``; this adds ``ckpt_path``."""

        def fit(self, model, *a, **kw):
            if resume is not None:
                model.is_fitted = True  # RecTools re-initialises the weights in on_train_start unless fitted
                kw["ckpt_path"] = resume
            return super().fit(model, *a, **kw)

    def trainer_factory() -> pl.Trainer:
        return ResumingTrainer(
            max_epochs=max_epochs,
            min_epochs=1,
            accelerator=args.accelerator,
            devices=1,
            callbacks=[recorder, stopper, checkpoint],
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            deterministic=False,
        )

    model = build_model(args, trainer_factory)
    dataset = Dataset.construct(interactions_frame(split.train))
    started = time.perf_counter()
    model.fit(dataset)
    fit_seconds = time.perf_counter() - started
    trainer = model.fit_trainer
    recorder = next(c for c in trainer.callbacks if isinstance(c, type(recorder)))
    stopper = next(c for c in trainer.callbacks if isinstance(c, pl.callbacks.EarlyStopping))
    checkpoint = next(c for c in trainer.callbacks if isinstance(c, pl.callbacks.ModelCheckpoint))
    training = peer_io.training_summary(recorder, stopper, args.epochs, args.patience)
    peer_io.write_json(state_file, {k: training[k] for k in ("epochs_run", "stopped_by", "best_epoch", "restarts")})

    best = checkpoint.best_model_path
    if not best:
        raise RuntimeError("no best checkpoint was written")
    module = model.lightning_model
    module.load_state_dict(torch.load(best, map_location="cpu", weights_only=False)["state_dict"])
    module.to(peer_io.torch_device(args.accelerator))  # Lightning's teardown left it on the CPU
    started = time.perf_counter()
    test_users = [u for u in split.train if u in split.test]
    test = peer_io.evaluate_users(
        split, make_scorer(module, split, args.eval_batch_size), test_users, "test", args.eval_batch_size
    )
    extra = {
        "n_parameters": sum(p.numel() for p in module.parameters()),
        "n_items_model": int(model.data_preparator.item_id_map.size),
        "fit_call_seconds": round(fit_seconds, 3),
        "test_eval_seconds": round(time.perf_counter() - started, 3),
        "best_checkpoint": best,
        "rectools_config": json.loads(json.dumps(model.get_config(simple_types=True), default=str)),
        "versions": {"rectools": rectools.__version__, "pytorch_lightning": pl.__version__},
    }
    peer_io.write_result("rectools", args.model, args, split, training, test, extra)


if __name__ == "__main__":
    main()
