"""Recipe arguments: dataclasses parsed by ``HfArgumentParser``, a YAML file first, then the command line.

``--config file.yaml`` sets defaults for any field; every field can still be overridden on the command line.
Unknown keys in the YAML file and unknown flags are errors (a typo must not silently train the default).
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

# the representation of releases before the stacked layouts (one token per position, plain logits, tied item
# rows from noise): configs and benchmark rows that reproduce published setups pass these
LEGACY_REPRESENTATION_FLAGS = [
    "--repeat_scores",
    "false",
    "--repeat_gate",
    "false",
    "--transition_scores",
    "false",
    "--tie_embeddings",
    "true",
    "--item_init",
    "random",
    "--loss_excludes_seen",
    "false",
]


@dataclass
class DataArguments:
    dataset: str = field(
        default="synthetic",
        metadata={"help": "A log file (csv/tsv/parquet/jsonl) or 'synthetic' for the built-in shop log."},
    )
    prepared_dir: str | None = field(
        default=None,
        metadata={
            "help": "Train from a folder written by recipes/prepare.py instead of --dataset: its split and, when "
            "prepared with --events_per_bucket, its tokenizer and memory-mapped training windows."
        },
    )
    format: str | None = field(default=None, metadata={"help": "File format if the extension does not say it."})
    delimiter: str | None = field(
        default=None, metadata={"help": "CSV/TSV field separator, e.g. ';' (default: ',' for .csv, tab for .tsv)."}
    )
    encoding: str = field(
        default="utf8",
        metadata={"help": "utf8, or utf8-lossy to read invalid bytes as U+FFFD (ids then differ from the file's)."},
    )
    reader: str | None = field(
        default=None,
        metadata={
            "help": "Read --dataset in a public dataset's native format: movielens, recbole, sequence_text, "
            "inter_json, amazon, retailrocket, taobao, tmall, yoochoose or diginetica (docs/datasets.md). Default: "
            "the generic reader."
        },
    )
    user_column: str = field(default="user_id", metadata={"help": "Column holding user ids."})
    item_column: str = field(default="item_id", metadata={"help": "Column holding item ids."})
    action_column: str | None = field(
        default=None, metadata={"help": "Column holding actions (default: 'action' if present)."}
    )
    timestamp_column: str | None = field(
        default=None, metadata={"help": "Column holding times (default: 'timestamp' if present)."}
    )
    timestamp_unit: str = field(default="auto", metadata={"help": "auto, s or ms for numeric timestamps."})
    synthetic_users: int | None = field(
        default=None, metadata={"help": "Users in the synthetic log (default: the built-in size)."}
    )
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic log."})
    drop_duplicates: bool = field(default=True, metadata={"help": "Drop exact duplicate events."})
    collapse_repeats: bool = field(
        default=False, metadata={"help": "Drop an event repeating the previous one (same item and action)."}
    )
    min_user_events: int = field(default=3, metadata={"help": "Drop users with fewer events (counted)."})
    min_item_events: int = field(default=1, metadata={"help": "Drop items with fewer events (counted)."})
    k_core: bool = field(default=False, metadata={"help": "Repeat the user/item minimums until they all hold."})
    keep_actions: list[str] | None = field(default=None, metadata={"help": "Keep only these actions."})
    rename_actions: list[str] | None = field(default=None, metadata={"help": "Renames as old=new, e.g. 0=click."})
    session_gap_seconds: float | None = field(
        default=None, metadata={"help": "Treat each session (split at this inactivity gap) as a user."}
    )
    split: str = field(default="leave_one_out", metadata={"help": "leave_one_out or temporal."})
    target_action: str | None = field(
        default=None,
        metadata={
            "help": "Evaluate next events of this action only (e.g. purchase): each user's last such event is the "
            "test target, the one before the validation target; training sees only events before it."
        },
    )
    train_on_validation: bool = field(
        default=False,
        metadata={
            "help": "Final fit: also train on each user's validation target (fold_validation_into_training), with "
            "a configuration and --num_epochs chosen on validation by an earlier run. Nothing is validated: "
            "training keeps the last epoch's weights and only test metrics are reported."
        },
    )
    valid_fraction: float = field(default=0.1, metadata={"help": "Temporal split: share of time for validation."})
    test_fraction: float = field(default=0.1, metadata={"help": "Temporal split: share of time for test."})
    item_features: str | None = field(
        default=None,
        metadata={
            "help": "Item content (CSV/TSV, Parquet, JSONL, or a public *.item.json), one row per item: its "
            "categorical columns become attribute tokens composed into each item's embedding."
        },
    )
    item_feature_columns: list[str] | None = field(
        default=None,
        metadata={"help": "Categorical columns of --item_features to use (default: the reader's; 'none': none)."},
    )
    item_text_columns: list[str] | None = field(
        default=None,
        metadata={"help": "Text columns of --item_features for semantic IDs (default: title and description)."},
    )


@dataclass
class TokenizerArguments:
    layout: str = field(
        default="time+action+item",
        metadata={
            "help": "Tokens per event: 'item', 'time+action+item' (one position per event, the tokens' embeddings "
            "summed), 'action+item', 'time+item', or one position per token: 'action item', 'time item', "
            "'time action item'."
        },
    )
    max_events: int = field(default=50, metadata={"help": "Model input length in events (whatever the layout)."})
    min_item_count: int = field(default=1, metadata={"help": "Items rarer in training map to the unknown item."})
    time_boundaries: list[float] | None = field(
        default=None,
        metadata={"help": "Gap bucket boundaries in seconds (default: log-spaced 1 s to 180 days)."},
    )
    tokenizer_dir: str | None = field(
        default=None,
        metadata={"help": "Use this saved tokenizer instead of building one from the training split."},
    )
    min_attribute_items: int = field(
        default=2,
        metadata={"help": "Attribute values held by fewer catalogue items map to the column's [NONE] token."},
    )
    item_tokens: str = field(
        default="id",
        metadata={
            "help": "What an item's embedding is made of (with --item_features): id (its own row, plus its "
            "attributes), semantic (semantic-ID codes from its text, plus attributes, no id row) or id+semantic."
        },
    )
    item_text_encoder: str = field(
        default="tfidf",
        metadata={
            "help": "Semantic IDs and text vectors: item vectors from text by 'tfidf' (built in, no download) or a "
            "sentence-transformers model's name or path (needs the sentence-transformers package)."
        },
    )
    item_text_dim: int = field(
        default=64,
        metadata={
            "help": "The built-in tfidf encoder's dimensions (its SVD rank): more keep more of what the words "
            "tell apart. A sentence-transformers model has its own."
        },
    )
    item_text_vectors: bool = field(
        default=False,
        metadata={
            "help": "With --item_features: add each item's text vector (--item_text_encoder over "
            "--item_text_columns), through a learned linear map, to its embedding, so items with similar text "
            "start close and an item added from its content alone is placed by its text."
        },
    )
    semantic_id_levels: int = field(default=3, metadata={"help": "Semantic IDs: residual k-means levels."})
    semantic_id_codebook: int = field(default=64, metadata={"help": "Semantic IDs: codes per level."})


@dataclass
class ModelArguments:
    model_type: str = field(
        default="gpt2",
        metadata={
            "help": "gpt2, llama, gpt_neox or bert-generation (next event; bert-generation: BERT's post-norm "
            "block, causal, as SASRec's); bert (masked events)."
        },
    )
    hidden_size: int = field(default=64, metadata={"help": "Hidden size."})
    num_layers: int = field(default=2, metadata={"help": "Transformer layers."})
    num_heads: int = field(default=2, metadata={"help": "Attention heads."})
    intermediate_size: int | None = field(default=None, metadata={"help": "Feed-forward size (default 4x hidden)."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout on embeddings and hidden layers."})
    attention_dropout: float = field(
        default=0.0, metadata={"help": "Dropout on attention weights (0 keeps the fused SDPA kernels)."}
    )
    item_id_dropout: float = field(
        default=0.0,
        metadata={
            "help": "With --item_features: in training, the share of items read by their content alone, their id "
            "row left out (DropoutNet), so attributes and text learn to rank items without ids."
        },
    )
    mask_prob: float = field(default=0.4, metadata={"help": "Masked events: share of events masked."})
    mask_action_prob: float = field(
        default=0.5,
        metadata={
            "help": "Masked events: share whose action is masked too; stacked layouts, next event: share of "
            "positions where the next event's action is hidden (the open question rather than the conditioned one)."
        },
    )
    supervise_conditioned: bool = field(
        default=False, metadata={"help": "Next event: also train the action-conditioned prompt (2x head work)."}
    )
    loss: str = field(default="full", metadata={"help": "full (softmax over all items) or sampled."})
    num_negatives: int = field(default=1024, metadata={"help": "Sampled loss: uniform negatives per batch."})
    loss_excludes_seen: bool | None = field(
        default=None,
        metadata={
            "help": "Leave items already in the input (for next event: up to each position) out of the softmax, "
            "except the target: trains as --exclude_seen ranks. Default: on with --exclude_seen (unless "
            "--repeat_scores), off otherwise; turn it off for logs full of repeat clicks (yoochoose: BENCHMARKS.md)."
        },
    )
    logit_temperature: float | None = field(
        default=None,
        metadata={
            "help": "Train on cosine item logits divided by this (e.g. 0.05) instead of raw dot products; item "
            "embeddings stay at unit norm, so the saved model ranks as trained. Not with FSDP."
        },
    )
    tie_embeddings: bool = field(
        default=False,
        metadata={"help": "Tie the output layer to the input embeddings (false: item output rows of their own)."},
    )
    item_init: str = field(
        default="transitions",
        metadata={
            "help": "random, or transitions: item input and output rows from a factorisation of the training "
            "log's item-to-item transitions (bertrec.item_init; needs --tie_embeddings false)."
        },
    )
    repeat_scores: bool | None = field(
        default=None,
        metadata={
            "help": "Score the user's own items by their action, recency and the gap to the asked event "
            "(bertrec.repeats; saved in config.json). Layouts with one position per event ('item', "
            "'time+action+item', ...), full loss. Default: on, unless --exclude_seen (a ranking without the "
            "user's items has nothing for them to rank)."
        },
    )
    repeat_gate: bool = field(
        default=True,
        metadata={
            "help": "With --repeat_scores: mix the repeat distribution over the history with the model's by a "
            "learned gate (RepeatNet-style, saved as config.repeat_gate) instead of adding it to the logits."
        },
    )
    transition_scores: bool = field(
        default=True,
        metadata={
            "help": "Add the log's own item-to-item transition counts, with learned weights, to the scores of the "
            "last item's successors (bertrec.transitions; saved as transitions.safetensors). Same layouts as "
            "--repeat_scores, full loss."
        },
    )
    attn_implementation: str = field(default="sdpa", metadata={"help": "eager, sdpa or flash_attention_2."})


@dataclass
class EvalArguments:
    metric_ks: list[int] = field(default_factory=lambda: [10, 50], metadata={"help": "Cut-offs K for metrics."})
    exclude_seen: bool = field(default=False, metadata={"help": "Remove the user's history items from rankings."})


@dataclass
class HubArguments:
    push_to_hub: bool = field(default=False, metadata={"help": "Upload the output folder to the Hugging Face Hub."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo id, e.g. user/my-recommender."})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})

    def __post_init__(self) -> None:
        if self.push_to_hub and not self.hub_model_id:
            raise ConfigError("--push_to_hub needs --hub_model_id (e.g. your-name/shop-recommender)")


@dataclass
class FinetuneArguments:
    base_model: str = field(
        default="outputs/pretrain", metadata={"help": "A pretrained bertrec folder or a Hub model id."}
    )
    method: str = field(default="lora", metadata={"help": "lora (adapters + ranking head), full, or none."})
    task: str = field(
        default="next_item",
        metadata={"help": "next_item (full catalogue; with --target_action, e.g. next purchase) or rerank."},
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA path."})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "Module names LoRA adapts (default: the attention projections)."}
    )
    head_modules: list[str] | None = field(
        default=None,
        metadata={"help": "Ranking head trained in full (default: BERT's prediction transform, GPT's final norm)."},
    )
    mask_prob: float = field(default=0.4, metadata={"help": "next_item without a target action, masked models."})
    rerank_loss: str = field(default="listwise", metadata={"help": "rerank: listwise (softmax) or bpr."})
    num_negatives: int = field(
        default=100, metadata={"help": "rerank: sampled negatives per target in training and sampled candidates."}
    )
    candidates_file: str | None = field(
        default=None,
        metadata={
            "help": "rerank: candidates per user as rows user_id,split,item_id (split valid or test; "
            "CSV/Parquet/JSONL); default: the target plus --num_negatives sampled items."
        },
    )
    new_items: bool = field(
        default=False,
        metadata={"help": "Add training items missing from the base vocabulary; only their rows train."},
    )
    new_item_min_count: int = field(default=1, metadata={"help": "Training events a new item needs for a token."})


class ConfigError(ValueError):
    """A YAML config or flag that does not match any argument."""


def check_output_folder(path: str, flag: str = "--output_dir") -> None:
    """A run writes a folder there: an existing file at that path is a clear error, not a traceback later."""
    if Path(path).exists() and not Path(path).is_dir():
        raise ConfigError(f"{flag} {path} is a file; give the path of a folder to write the run into")


def parse_args(
    dataclass_types: tuple[type, ...], argv: list[str] | None = None, defaults: dict[str, Any] | None = None
) -> tuple[Any, ...]:
    """Parse ``[--config file.yaml] [--field value ...]`` into one instance per dataclass.

    Precedence, lowest first: the dataclass defaults, ``defaults`` (a recipe's own, e.g. the data arguments a
    base model was trained with), the YAML file, the command line.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    config_path, argv = _pop_config(argv)
    parser = HfArgumentParser(dataclass_types)
    if defaults:
        parser.set_defaults(**defaults)
    if config_path is not None:
        parser.set_defaults(**_read_config(config_path, dataclass_types))
    *instances, unknown = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if unknown:
        known = [f"--{f.name}" for cls in dataclass_types for f in dataclasses.fields(cls)]
        flags = [token.split("=", 1)[0] for token in unknown if token.startswith("-")] or unknown
        hints = [_suggest(flag, known) for flag in flags]
        raise ConfigError(f"unknown arguments {', '.join(hints)}; --help lists the valid ones")
    return tuple(instances)


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, 1)
    return f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)


def _pop_config(argv: list[str]) -> tuple[str | None, list[str]]:
    for i, token in enumerate(argv):
        if token == "--config":
            if i + 1 >= len(argv):
                raise ConfigError("--config needs a YAML file path")
            return argv[i + 1], argv[:i] + argv[i + 2 :]
        if token.startswith("--config="):
            return token.split("=", 1)[1], argv[:i] + argv[i + 1 :]
    return None, argv


def _read_config(path: str, dataclass_types: tuple[type, ...]) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {path} not found")
    try:
        values = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must be a mapping of argument names to values, got {type(values).__name__}")
    known = [f.name for cls in dataclass_types for f in dataclasses.fields(cls)]
    unknown = [key for key in values if key not in known]
    if unknown:
        hints = [_suggest(key, known) for key in unknown]
        raise ConfigError(f"{path}: unknown keys {', '.join(hints)}; valid keys are the recipe's --flags")
    return values


def resolved_config(*instances: Any) -> dict[str, Any]:
    """All fields of all argument instances as one flat mapping (what is saved beside the model)."""
    merged: dict[str, Any] = {}
    for instance in instances:
        merged.update(dataclasses.asdict(instance))
    return merged
