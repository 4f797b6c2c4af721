"""What the fine-tuning recipe needs around the training loop: the base model, leakage against it, candidates."""

from __future__ import annotations

import dataclasses
import logging
import resource
import sys
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch
import yaml

from bertrec.args import DataArguments
from bertrec.data.splits import LeakageError, Split
from bertrec.modeling import load_model
from bertrec.recipes.common import CONFIG_FILE, prepare_data
from bertrec.tasks import attach_candidates, read_candidates
from bertrec.tokenization import EventTokenizer

logger = logging.getLogger("bertrec")
ADAPTER_DIR = "adapter"
# fields that identify the raw log: equal values mean the same events with the same event_index
SOURCE_FIELDS = (
    "dataset",
    "format",
    "reader",
    "user_column",
    "item_column",
    "action_column",
    "timestamp_column",
    "synthetic_users",
    "synthetic_seed",
)


@dataclass
class BaseModel:
    name: str
    folder: Path
    model: torch.nn.Module
    tokenizer: EventTokenizer
    config: dict  # the base's resolved bertrec config ({} when it has none)

    @property
    def data(self) -> dict:
        """The data arguments the base was trained with: the fine-tuning recipe's defaults."""
        known = {f.name for f in dataclasses.fields(DataArguments)}
        return {k: v for k, v in self.config.items() if k in known}


def load_base(name: str) -> BaseModel:
    """A local bertrec folder, or a Hub model id downloaded with ``huggingface_hub`` (network needed)."""
    folder = Path(name)
    if not folder.is_dir():
        if folder.exists() or name.startswith((".", "/")) or name.count("/") != 1:
            raise FileNotFoundError(f"base model {name} is neither a folder nor a Hub id (owner/name)")
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(name))
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{folder} has no config.json: not a saved model (pretrain one first)")
    config_file = folder / CONFIG_FILE
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    return BaseModel(name, folder, load_model(str(folder)), EventTokenizer.load(folder), config or {})


def check_base_saw_no_targets(base: BaseModel, data_args: DataArguments, split: Split) -> None:
    """Refuse evaluation targets that the base model was pretrained on: its metrics would be inflated.

    With the base's own data arguments the split is the base's split and nothing can leak. Otherwise, on the
    same raw log, the base's training split is rebuilt and compared event by event.
    """
    if not base.data:
        logger.warning(
            "base model %s has no %s: cannot check it never trained on these targets", base.name, CONFIG_FILE
        )
        return
    base_args = DataArguments(**base.data)
    if base_args == data_args:
        return
    if any(getattr(base_args, f) != getattr(data_args, f) for f in SOURCE_FIELDS):
        logger.warning("fine-tuning data differs from the base model's: make sure the base never saw its targets")
        return
    seen = prepare_data(base_args).split.train.select("user_id", "event_index").explode("event_index")
    for part in ("valid", "test"):
        targets = getattr(split, part).select("user_id", pl.col("target_event_index").alias("event_index"))
        leaked = targets.join(seen, on=["user_id", "event_index"], how="semi")
        if leaked.height:
            raise LeakageError(
                f"the base model {base.name} was pretrained on {leaked.height} of this run's {part} target events "
                f"(split {data_args.split}, target action {data_args.target_action}); its metrics would be inflated. "
                "Pretrain with the same data arguments (e.g. --target_action purchase) or fine-tune on the base's "
                "split."
            )


def with_candidates(split: Split, ft_args, tokenizer: EventTokenizer, seed: int) -> Split:
    """For re-ranking, validation and test examples carry their candidate lists; otherwise unchanged."""
    if ft_args.task != "rerank":
        return split
    candidates = read_candidates(ft_args.candidates_file) if ft_args.candidates_file else None
    parts = {
        part: attach_candidates(
            getattr(split, part),
            part,
            tokenizer=tokenizer,
            candidates=candidates,
            num_negatives=ft_args.num_negatives,
            seed=seed,
        )
        for part in ("valid", "test")
    }
    return dataclasses.replace(split, **parts)


def peak_memory_mb(device: torch.device) -> float:
    """Peak accelerator memory allocated, or the process's peak resident memory on CPU."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)
