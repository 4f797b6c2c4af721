"""Steps the recipes share: data preparation, tokenizer, logging, saving the output folder."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch
import yaml

from bertrec import item_content, repeats, transitions
from bertrec.args import ConfigError
from bertrec.atomic import atomic_write_text
from bertrec.baselines import markov_scorer, popularity_scorer, recent_items_scorer
from bertrec.data.cleaning import CleaningConfig, CleaningReport, clean_events
from bertrec.data.readers import read_events
from bertrec.data.schema import ColumnMapping, EventDataError
from bertrec.data.sequences import add_sessions, build_sequences
from bertrec.data.splits import Split, fold_validation_into_training, leave_one_out, temporal_split
from bertrec.evaluation import evaluate_model, evaluate_scorer
from bertrec.hub import CARD_FILE, push_folder, write_model_card
from bertrec.integrity import mark_incomplete, write_manifest
from bertrec.tokenization import EventTokenizer
from bertrec.training import CHECKPOINT_DIR

logger = logging.getLogger("bertrec")
CONFIG_FILE = "bertrec_config.yaml"
REPORT_FILE = "cleaning_report.json"
METRICS_FILE = "metrics.json"


@dataclass
class PreparedData:
    split: Split
    report: CleaningReport


def check_choices(**chosen: tuple[object, tuple]) -> None:
    """Reject an option outside its choices before any work starts: ``check_choices(split=(value, choices))``."""
    for name, (value, choices) in chosen.items():
        if value not in choices:
            raise ConfigError(f"--{name} {value!r} is not one of {list(choices)}")


def setup_logging(is_main_process: bool) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if is_main_process else logging.WARNING,
    )


def start_run(train_args, config: dict[str, Any], *, project: str):
    """The accelerator, logging, CPU threads, trackers and seed every training recipe starts with."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    from bertrec.training import configure_cpu_threads

    accelerator = Accelerator(
        mixed_precision=train_args.mixed_precision,
        project_dir=train_args.output_dir,
        log_with=None if train_args.report_to == "none" else train_args.report_to,
        cpu=not torch.accelerator.is_available(),  # else accelerate leaves CPU-only launches undistributed
    )
    check_process_group(accelerator.num_processes)
    setup_logging(accelerator.is_main_process)
    configure_cpu_threads(accelerator, train_args.cpu_threads)
    logger.info("resolved config: %s", json.dumps(config))
    accelerator.init_trackers(project, config={k: str(v) for k, v in config.items()})
    set_seed(train_args.seed)
    return accelerator


def check_process_group(num_processes: int) -> None:
    """Refuse to run when the launcher started N processes but they did not join one group.

    Each would then train alone on the whole data and write the same output folder.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != num_processes:
        raise RuntimeError(
            f"the launcher started {launched} processes (WORLD_SIZE) but accelerate formed a group of "
            f"{num_processes}; check the accelerate config (e.g. `accelerate launch --multi_gpu "
            "--num_processes N` or `torchrun --nproc_per_node N`) or launch a single process"
        )


def load_events(data_args) -> pl.DataFrame:
    """The raw log as canonical events: a file, or the built-in synthetic shop log."""
    if data_args.dataset == "synthetic":
        from bertrec.data.synthetic import SyntheticShopConfig, generate_shop_log  # numpy-heavy; only when used

        config = SyntheticShopConfig(seed=data_args.synthetic_seed)
        if data_args.synthetic_users is not None:
            config.n_users = data_args.synthetic_users
        return generate_shop_log(config)
    if data_args.reader is not None:
        from bertrec.data.public_formats import read_public

        generic = {
            "format": None,
            "delimiter": None,
            "encoding": "utf8",
            "user_column": "user_id",
            "item_column": "item_id",
            "action_column": None,
            "timestamp_column": None,
            "timestamp_unit": "auto",
        }  # the generic reader's options: with a native reader they would be silently ignored
        clash = [f"--{name}" for name, default in generic.items() if getattr(data_args, name) != default]
        if clash:
            raise ConfigError(f"--reader {data_args.reader} decides the columns itself; drop {', '.join(clash)}")
        return read_public(data_args.dataset, reader=data_args.reader)
    return read_events(
        data_args.dataset,
        columns=column_mapping(data_args),
        format=data_args.format,
        timestamp_unit=data_args.timestamp_unit,
        delimiter=data_args.delimiter,
        encoding=data_args.encoding,
    )


def column_mapping(data_args) -> ColumnMapping:
    return ColumnMapping(
        user=data_args.user_column,
        item=data_args.item_column,
        action=data_args.action_column,
        timestamp=data_args.timestamp_column,
    )


def cleaning_config(data_args) -> CleaningConfig:
    renames = dict(pair.split("=", 1) for pair in data_args.rename_actions or [])
    return CleaningConfig(
        drop_duplicates=data_args.drop_duplicates,
        collapse_consecutive_repeats=data_args.collapse_repeats,
        min_user_events=data_args.min_user_events,
        min_item_events=data_args.min_item_events,
        k_core=data_args.k_core,
        keep_actions=data_args.keep_actions,
        rename_actions=renames or None,
    )


def prepare_data(data_args) -> PreparedData:
    """Read, clean (with a report), sequence and split; the split is checked for leakage as it is made. With
    ``--prepared_dir``, the split ``recipes/prepare.py`` made is read instead (``prepared_input``)."""
    if getattr(data_args, "prepared_dir", None):
        from bertrec.recipes.prepared_input import prepared_data

        return prepared_data(data_args)
    check_choices(split=(data_args.split, ("leave_one_out", "temporal")))
    if data_args.target_action is not None and data_args.split != "leave_one_out":
        raise ConfigError("--target_action works with --split leave_one_out only (temporal is not supported yet)")
    events = load_events(data_args)
    events, report = clean_events(events, cleaning_config(data_args))
    if events.height == 0:
        raise EventDataError(
            f"{data_args.dataset}: no events left after cleaning; the report says what was dropped:\n{report.summary()}"
        )
    key = "user_id"
    if data_args.session_gap_seconds:
        events, key = add_sessions(events, data_args.session_gap_seconds), "session_id"
    sequences = build_sequences(events, key=key)
    if data_args.split == "leave_one_out":
        try:
            split = leave_one_out(sequences, target_action=data_args.target_action)
        except ValueError as error:
            raise ConfigError(f"--target_action {data_args.target_action}: {error}") from error
    else:
        split = temporal_split(
            sequences, valid_fraction=data_args.valid_fraction, test_fraction=data_args.test_fraction
        )
    if split.valid.height == 0 or split.test.height == 0:
        raise EventDataError(
            f"{data_args.dataset}: the {data_args.split} split left no validation or test users ({split.stats}); "
            "lower the cleaning minimums or provide longer histories"
        )
    if data_args.train_on_validation:
        split = fold_validation_into_training(split)
    logger.info("data: %s", report.summary().replace("\n", "; "))
    logger.info("split: %s", split.stats)
    return PreparedData(split, report)


def make_tokenizer(tokenizer_args, split: Split) -> EventTokenizer:
    if tokenizer_args.tokenizer_dir:
        return EventTokenizer.load(tokenizer_args.tokenizer_dir)
    return EventTokenizer.build(
        split.train,
        layout=tokenizer_args.layout,
        max_events=tokenizer_args.max_events,
        min_item_count=tokenizer_args.min_item_count,
        time_boundaries=tokenizer_args.time_boundaries,
    )


def save_output(
    output_dir: str,
    *,
    model,
    tokenizer: EventTokenizer,
    config: dict[str, Any],
    report: CleaningReport | None,
    metrics: dict,
    state_dict: dict | None = None,
) -> None:
    """Write the standard HF folder (model + tokenizer), resolved config, cleaning report and metrics.

    ``state_dict`` replaces the model's own when it holds only shards (FSDP; see ``bertrec.sharding``).

    Files are written in a temp folder and moved in, so a kill leaves no half-written model file behind. An
    earlier run's manifest is removed first, so from here until ``publish`` writes the new one (last) the
    folder does not look complete.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    mark_incomplete(out)
    with tempfile.TemporaryDirectory(dir=out, prefix=".save.") as temp:
        folded = (repeats.PARAMETER, repeats.GATE, transitions.PARAMETER)  # small score tables go to config.json
        with item_content.folded(model), repeats.folded_into_config(model, state_dict, folded) as weights:
            model.save_pretrained(temp, state_dict=weights)
        transitions.save_table(model, temp)
        item_content.keep_text_projection(model, tokenizer)
        tokenizer.save(temp)
        for name in os.listdir(temp):
            shutil.move(os.path.join(temp, name), out / name)
    atomic_write_text(out / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
    if report is not None:
        report.save(out / REPORT_FILE)
    atomic_write_text(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")


def reads_action_prompt(config: dict[str, Any], objective: str) -> bool:
    """Whether a model trained under ``config`` (a resolved bertrec config, as saved beside it) was trained to read
    a prompt that ends with an action, such as "what will they buy next": masked models (their masks keep the
    action), next-event ones with ``supervise_conditioned`` or a stacked layout, and fine-tunes (``base_model``),
    whose prompts end at target events. Any other model would read the action as a token it never learnt to
    follow."""
    stacked = "+" in str(config.get("layout", ""))  # the next event's action is asked at half the positions
    return objective == "masked" or stacked or bool(config.get("supervise_conditioned")) or "base_model" in config


def evaluation_options(eval_args, train_args, accelerator, action: str | None) -> dict[str, Any]:
    """Keyword arguments of ``evaluate_model``/``evaluate_scorer`` shared by every evaluation of a run."""
    return {
        "action": action,
        "ks": tuple(eval_args.metric_ks),
        "exclude_seen": eval_args.exclude_seen,
        "batch_size": train_args.eval_batch_size,
        "accelerator": accelerator,
    }


def evaluated_parts(split: Split) -> dict[str, pl.DataFrame]:
    """The parts of ``split`` that hold examples: validation and test, or test alone after a final fit."""
    return {part: getattr(split, part) for part in ("valid", "test") if getattr(split, part).height}


def validation_of(model, tokenizer: EventTokenizer, split: Split, **options) -> Callable[[], dict] | None:
    """The training loop's validation: metrics of the current weights on ``split.valid``; ``None`` after a final
    fit (``--train_on_validation``), which leaves nothing to validate on."""
    if split.valid.height == 0:
        return None
    return lambda: evaluate_model(model, tokenizer, split.valid, desc="validate", **options)


def evaluate_parts(model, tokenizer: EventTokenizer, split: Split, prefix: str = "", **options) -> dict:
    """The model's metrics on the validation and test examples of ``split``."""
    return {
        part: evaluate_model(model, tokenizer, examples, desc=f"{prefix}{part}", **options)
        for part, examples in evaluated_parts(split).items()
    }


def training_summary(state: dict, wall_seconds: float, processes: int) -> dict:
    """What ``metrics.json`` keeps of a training run, the same for pretraining and fine-tuning: the trainer
    state, the recipe's wall time (data preparation and final evaluation included) and its process count."""
    return {
        "wall_seconds": round(wall_seconds, 1),
        "processes": processes,
        "best_step": state["best_step"],
        "best_valid_ndcg@10": state["best_metric"] if state["best_metric"] >= 0 else None,  # None: a final fit
        "seconds_to_best": next(
            (h["elapsed_seconds"] for h in state["history"] if h["step"] == state["best_step"]), None
        ),
        "epochs_run": state["epoch"],
        "stopped_by": state.get("stopped_by", "epochs"),
        "anneal": state.get("anneal"),  # {start_step, steps, factor} once validation stalled (--anneal_on_plateau)
        "steps": state["global_step"],
        "history": state["history"],
    }


def publish(output_dir: str | Path, *, metrics: dict, config: dict, report: CleaningReport, hub_args) -> None:
    """Write the model card, then the manifest (the completion marker, last), and upload when asked."""
    repo_id = hub_args.hub_model_id or Path(output_dir).name
    write_model_card(output_dir, repo_id=repo_id, metrics=metrics, config=config, report_summary=report.summary())
    write_manifest(output_dir, exclude=(CHECKPOINT_DIR, CARD_FILE))  # the card is the user's to edit
    if hub_args.push_to_hub:
        print(f"pushed to {push_folder(output_dir, repo_id, private=hub_args.hub_private)}")


def print_test_table(name: str, metrics: dict, ks: list[int], heading: str) -> None:
    """The run's test metrics beside its baselines, as an aligned text table."""
    keys = [f"{m}@{k}" for k in ks for m in ("hr", "ndcg", "mrr")]
    rows = {name: metrics["test"], **{base: b["test"] for base, b in metrics["baselines"].items()}}
    print(heading)
    print(format_metrics_table(rows, keys))


def evaluate_baselines(tokenizer: EventTokenizer, split: Split, target_action: str | None, **eval_kwargs) -> dict:
    """Popularity, Markov and recent items (and, for a target action, that action's popularity) on validation
    and test."""
    scorers = {
        "popularity": popularity_scorer(tokenizer, split.train),
        "markov": markov_scorer(tokenizer, split.train),
        "recent items": recent_items_scorer(tokenizer, split.train),
    }
    if target_action:
        scorers[f"popularity ({target_action})"] = popularity_scorer(tokenizer, split.train, target_action)
    return {
        name: {
            part: evaluate_scorer(scorer, tokenizer, examples, desc=f"{name} {part}", **eval_kwargs)
            for part, examples in evaluated_parts(split).items()
        }
        for name, scorer in scorers.items()
    }


def format_metrics_table(rows: dict[str, dict], keys: list[str]) -> str:
    """A small aligned text table: one row per model, one column per metric."""
    width = max(len(name) for name in rows) + 2
    lines = ["".ljust(width) + "".join(k.rjust(10) for k in keys)]
    for name, metrics in rows.items():
        lines.append(name.ljust(width) + "".join(f"{metrics.get(k, float('nan')):10.4f}" for k in keys))
    return "\n".join(lines)
